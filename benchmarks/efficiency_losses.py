#!/usr/bin/env python
"""Where a campaign loses target particles, by cause, per |η| and pT bin; edge-score distributions.

    python benchmarks/efficiency_losses.py --campaign results/default -o DIR [--cut C] [--label L]

Reads the campaign's test events, its GNN-scored test graphs (``scored/test``), its tracks
(``tracks/``) and the GNN model's stored working point (``models/gnn.pt``; ``--cut`` overrides),
classifies every target particle that two-way matching misses and every candidate it leaves
unmatched (causes and kinds in ``gnntrack.evaluation.losses``). Writes ``DIR/losses.json`` (counts and fractions, score
histograms), ``DIR/losses.md`` (tables) and ``DIR/scores.png`` (score distributions of target,
non-target true and fake edges). Use it before and after a change to see what moved.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.conditions import DEFAULT_TARGET, select  # noqa: E402
from gnntrack.evaluation.losses import (  # noqa: E402
    CAUSES,
    FAKE_KINDS,
    LossBreakdown,
    classify_event,
    classify_fakes,
    score_histograms,
)
from gnntrack.io.event_store import read_event  # noqa: E402
from gnntrack.io.graph_store import iter_graphs  # noqa: E402
from gnntrack.io.track_store import iter_tracks  # noqa: E402
from gnntrack.models.registry import read_model_info  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", type=Path, default=ROOT / "results" / "default")
    ap.add_argument("--cut", type=float, default=None, help="edge score cut (default: the model's)")
    ap.add_argument("--label", default="", help="a name for this record (e.g. the recipe)")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    c = args.campaign
    cut = args.cut
    if cut is None:
        wp = read_model_info(c / "models" / "gnn.pt").get("working_point") or {}
        cut = float(wp.get("score_cut", 0.5))
    breakdown = LossBreakdown()
    all_s, all_y, all_yt = [], [], []
    fakes = dict.fromkeys((*FAKE_KINDS, "n_tracks"), 0)
    n_events = 0
    for scored in sorted((c / "scored" / "test").glob("*.h5")):
        tracks = {r.key: r.tracks for r in iter_tracks(c / "tracks" / scored.name)}
        events = c / "events" / "test" / scored.name
        for g in iter_graphs(scored):
            event = read_event(events, g.key, tables=("hits", "particles"))
            target = select(event.particles, DEFAULT_TARGET, n=len(event.particles["pt"]))
            s = g.scores["gnn"]
            causes = classify_event(event, g.edge_index, g.y, g.edge_particle, s, cut, tracks[g.key], target)
            breakdown.add(causes, event.particles, target)
            for k, v in classify_fakes(event, tracks[g.key], target).items():
                fakes[k] += v
            all_s.append(s)
            all_y.append(g.y)
            all_yt.append(g.y_target)
            n_events += 1
    summary = breakdown.summary()
    hist = score_histograms(np.concatenate(all_s), np.concatenate(all_y), np.concatenate(all_yt))
    record = {"campaign": str(c), "label": args.label, "score_cut": cut, "n_events": n_events, **summary,
              "unmatched_tracks_two_way": fakes, "scores": hist}  # fmt: skip
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "losses.json").write_text(json.dumps(record, indent=1) + "\n")

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}"

    lines = [
        f"Lost target particles (two-way matching), {n_events} events, {summary['n_target']} targets, "
        f"edge cut {cut:.3f}{' — ' + args.label if args.label else ''}",
        "",
        "| cause | lost | % of targets |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {k} | {summary['lost'][k]} | {pct(summary['lost_fraction'][k])} |" for k in CAUSES]
    lines += [f"| all | {summary['n_lost']} | {pct(summary['n_lost'] / max(summary['n_target'], 1))} |", ""]
    n_tr = max(fakes["n_tracks"], 1)
    lines += [
        f"Candidates two-way matching leaves unmatched ({fakes['n_tracks']} candidates)",
        "",
        "| kind | candidates | % of candidates |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {k} | {fakes[k]} | {100 * fakes[k] / n_tr:.2f} |" for k in FAKE_KINDS]
    lines.append("")
    for name, bins, key, counts in (
        ("|η|", summary["abs_eta_bins"], "lost_fraction_per_abs_eta", summary["n_target_per_abs_eta"]),
        ("pT [GeV]", summary["pt_bins_gev"], "lost_fraction_per_pt", summary["n_target_per_pt"]),
    ):
        labels = [f"{a:g}–{b:g}" if b is not None else f"> {a:g}" for a, b in zip(bins[:-1], bins[1:])]
        lines += [f"Lost fraction [%] per {name} bin", "", "| cause | " + " | ".join(labels) + " |"]
        lines += ["| --- " * (len(labels) + 1) + "|", "| targets | " + " | ".join(map(str, counts)) + " |"]
        lines += [f"| {k} | " + " | ".join(pct(v) for v in summary[key][k]) + " |" for k in CAUSES]
        lines.append("")
    (args.output / "losses.md").write_text("\n".join(lines))
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    edges = np.array(hist["bin_edges"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("target", "non_target_true", "fake"):
        counts = np.array(hist[name]["counts"], float)
        if counts.sum():
            ax.stairs(counts / counts.sum(), edges, label=f"{name} ({hist[name]['n']})")
    ax.axvline(cut, color="k", ls="--", lw=1, label=f"cut {cut:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel("GNN edge score")
    ax.set_ylabel("fraction of edges")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output / "scores.png", dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
