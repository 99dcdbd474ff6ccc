#!/usr/bin/env python
"""Track building on the same GNN scores: methods x edge cuts x candidate selections.

    python benchmarks/track_building_compare.py --campaign results/default --split val \\
        --methods walkthrough --min-hits 3 4 5 --min-pt 0 0.9 -o DIR

Scores the campaign's graphs of one split (``graphs/<split>``, at most ``--max-events``) with the
campaign's GNN (``models/gnn.pt``, or ``--model``), builds track candidates with every method,
cut, minimum length and candidate pT cut (``inference.track_building``: min_hits, min_pt; 0 =
no pT cut), and writes ``DIR/track_building.json`` and ``DIR/track_building.md``: two-way and
ATLAS efficiency, fake and duplicate rates per setting, the best cut of each setting by two-way
efficiency (ties: higher cut), and the model's stored working point.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.gnn.working_point import DEFAULT_CUTS, WorkingPointConfig, scan_cuts, score_events  # noqa: E402
from gnntrack.models.registry import load_model, read_model_info  # noqa: E402
from gnntrack.track_building import TrackBuildingConfig  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", type=Path, default=ROOT / "results" / "default")
    ap.add_argument("--model", type=Path, help="GNN model file (default: the campaign's models/gnn.pt)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-events", type=int, default=10)
    ap.add_argument("--methods", nargs="+", default=["cc", "walkthrough"])
    ap.add_argument("--cuts", type=float, nargs="+", default=list(DEFAULT_CUTS))
    ap.add_argument("--min-hits", type=int, nargs="+", default=[3])
    ap.add_argument("--min-pt", type=float, nargs="+", default=[0.0], help="GeV; 0 = no cut")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    c = args.campaign
    model_file = args.model or c / "models" / "gnn.pt"
    events = sorted((c / "events" / args.split).glob("*.h5"))
    graphs = [c / "graphs" / args.split / f.name for f in events]
    t0 = time.process_time()
    scored = list(score_events(load_model(model_file), events, graphs, "cpu", args.max_events))
    score_cpu = time.process_time() - t0
    wp = read_model_info(model_file).get("working_point") or {}
    out = {
        "campaign": str(c),
        "model": str(model_file),
        "split": args.split,
        "n_events": len(scored),
        "score_cpu_s": score_cpu,
        "stored_cut": wp.get("score_cut"),
        "settings": [],
    }
    wcfg = WorkingPointConfig(cuts=args.cuts)
    for method, min_hits, min_pt in itertools.product(args.methods, args.min_hits, args.min_pt):
        tb = TrackBuildingConfig(method=method, min_hits=min_hits, min_pt=min_pt or None)
        t0 = time.process_time()
        rows = scan_cuts(scored, wcfg, tb)
        cpu = time.process_time() - t0
        best = max(rows, key=lambda r: (r["two_way_efficiency"] or 0.0, r["cut"]))
        out["settings"].append(
            {
                "method": method,
                "min_hits": min_hits,
                "min_pt": min_pt or None,
                "rows": rows,
                "best": best,
                "cpu_s_per_event_per_cut": cpu / max(len(scored), 1) / len(rows),
            }
        )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "track_building.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [
        f"Track building on the GNN scores of {len(scored)} {args.split} events ({c}, model {model_file}); "
        f"stored working point {wp.get('score_cut')}",
        "",
        "| method | min hits | min pT (GeV) | cut | two-way eff | two-way fake | ATLAS eff | ATLAS fake | ATLAS dup |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in out["settings"]:
        for r in s["rows"]:
            mark = " **best**" if r is s["best"] else ""
            rates = ("two_way_efficiency", "two_way_fake_rate", "atlas_efficiency", "atlas_fake_rate",
                     "atlas_duplicate_rate")  # fmt: skip
            cells = " | ".join("-" if r[k] is None else f"{r[k]:.4f}" for k in rates)
            lines.append(
                f"| {s['method']}{mark} | {s['min_hits']} | {s['min_pt'] or '-'} | {r['cut']:.2f} | {cells} |"
            )
    (args.output / "track_building.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
