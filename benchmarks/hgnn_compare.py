#!/usr/bin/env python
"""HGNN track building against connected components and the walkthrough on the same GNN scores.

    python benchmarks/hgnn_compare.py --events E.h5 --scored S.h5 --hgnn-model M.pt \\
        --min-hits 4 --min-pt 0.9 -o DIR

Reads GNN-scored graphs (``score-gnn`` output, ``scores/gnn``) and their events, builds track
candidates with ``build_tracks`` (the function the track-building stage and inference call) for

- ``cc`` and ``walkthrough`` at every edge cut of ``--cuts``,
- ``hgnn`` (model ``--hgnn-model``) at every assignment cut of ``--assign-cuts``,

all with the same ``min_hits`` / ``min_pt`` candidate selection, and measures two-way and ATLAS
efficiency, fake and duplicate rates with the matching functions of the evaluation and the
working-point scan (``metrics.tracks``; targets: the default target selection), plus the
track-building time per event (wall and process CPU, one thread). Writes ``DIR/compare.json``
and ``DIR/compare.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.conditions import DEFAULT_TARGET, select  # noqa: E402
from gnntrack.edge_classification.data import iter_event_graphs  # noqa: E402
from gnntrack.gnn.working_point import DEFAULT_CUTS  # noqa: E402
from gnntrack.io.features import node_features  # noqa: E402
from gnntrack.metrics.tracks import Rates, apply_style, event_rates, match_pairs  # noqa: E402
from gnntrack.track_building import TrackBuildingConfig, build_tracks  # noqa: E402
from gnntrack.track_building.build import _group_numpy  # noqa: E402
from gnntrack.track_building.hgnn import load_hgnn, loose_graph  # noqa: E402
from gnntrack.track_building.selection import select_min_pt  # noqa: E402

RATES = ("two_way_efficiency", "two_way_fake_rate", "two_way_duplicate_rate",
         "atlas_efficiency", "atlas_fake_rate", "atlas_duplicate_rate")  # fmt: skip


def lost_causes(pairs, reconstructed: np.ndarray, target: np.ndarray) -> dict[str, int]:
    """Why the target particles two-way matching missed are lost: no candidate holds any of
    their hits ("absent"), none holds more than half of them ("split": fragments, or hits left
    out), or one does but more than half of its hits are others' ("merged")."""
    lost = target & ~reconstructed
    best_completeness = np.zeros(len(target))
    np.maximum.at(best_completeness, pairs.particle, pairs.completeness)
    touched = np.zeros(len(target), dtype=bool)
    touched[pairs.particle] = True
    return {
        "absent": int((lost & ~touched).sum()),
        "split": int((lost & touched & (best_completeness <= 0.5)).sum()),
        "merged": int((lost & (best_completeness > 0.5)).sum()),
    }


def pool_only_tracks(edge_index, scores, n_hits, tb: TrackBuildingConfig, hits, model):
    """Ablation: the HGNN's GMPool super-nodes themselves as the candidates (no assignment step),
    with the same min_hits / min_pt selection."""
    nodes, ei, sc = loose_graph(edge_index, scores, n_hits, model.loose_cut)
    x = torch.from_numpy(node_features(hits, model.node_features, model.feature_scales)[nodes])
    with torch.no_grad():
        out = model(x, torch.from_numpy(ei), torch.from_numpy(sc), pool_cut=tb.hgnn.pool_cut)
    labels = np.full(n_hits, -1, dtype=np.int64)
    labels[nodes] = out.supernode.numpy()
    tracks = _group_numpy(labels, tb.min_hits)
    return tracks if tb.min_pt is None else select_min_pt(tracks, hits["x"], hits["y"], tb.min_pt, tb.bfield)


def measure(data, tb: TrackBuildingConfig, hgnn_model=None, pool_only: bool = False) -> dict:
    two, atlas = Rates(), Rates()
    wall, cpu, n_tracks = [], [], 0
    causes = {"absent": 0, "split": 0, "merged": 0}
    reco = []
    for event, graph in data:
        w0, c0 = time.perf_counter(), time.process_time()
        build = pool_only_tracks if pool_only else build_tracks
        tracks = build(graph.edge_index, graph.scores["gnn"], event.n_hits, tb, event.hits, hgnn_model)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        n_tracks += len(tracks)
        target = select(event.particles, DEFAULT_TARGET, n=len(event.particles["pt"]))
        pairs = match_pairs(tracks, event.hit_particle, event.n_hits, len(target))
        m = apply_style(pairs, "two_way", 0.5)
        two.add(event_rates(m, target))
        for k, v in lost_causes(pairs, m.particle_reconstructed, target).items():
            causes[k] += v
        reco.append(m.particle_reconstructed & target)
        atlas.add(event_rates(apply_style(pairs, "ATLAS", 0.5), target))
    return {
        "two_way_efficiency": two.efficiency,
        "two_way_fake_rate": two.fake_rate,
        "two_way_duplicate_rate": two.duplicate_rate,
        "atlas_efficiency": atlas.efficiency,
        "atlas_fake_rate": atlas.fake_rate,
        "atlas_duplicate_rate": atlas.duplicate_rate,
        "counts": {"two_way": dataclasses.asdict(two), "ATLAS": dataclasses.asdict(atlas)},
        "tracks": n_tracks,
        "two_way_lost_targets": causes,
        "_reco": reco,
        "wall_s_per_event": float(np.mean(wall)),
        "cpu_s_per_event": float(np.mean(cpu)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=Path, nargs="+", required=True)
    ap.add_argument("--scored", type=Path, nargs="+", required=True)
    ap.add_argument("--hgnn-model", type=Path, required=True)
    ap.add_argument("--cuts", type=float, nargs="+", default=list(DEFAULT_CUTS))
    ap.add_argument("--assign-cuts", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    ap.add_argument("--pool-cut", type=float, default=None, help="fixed GMPool cut (default: adaptive)")
    ap.add_argument("--max-overlap", type=float, nargs="+", default=[0.5], help="HGNN duplicate control")
    ap.add_argument("--methods", nargs="+", default=["cc", "walkthrough", "hgnn"],
                    help="also: hgnn_pool_only (ablation: GMPool super-nodes as candidates)")  # fmt: skip
    ap.add_argument("--min-hits", type=int, default=4)
    ap.add_argument("--min-pt", type=float, default=0.9, help="GeV; 0 = no cut")
    ap.add_argument("--max-events", type=int)
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = list(iter_event_graphs(args.events, args.scored, ("hits", "particles"), args.max_events))
    model = load_hgnn(args.hgnn_model)  # loaded once, outside the timed calls
    base = TrackBuildingConfig(min_hits=args.min_hits, min_pt=args.min_pt or None, backend="scipy")
    rows = []
    for method in [m for m in ("cc", "walkthrough") if m in args.methods]:
        for cut in args.cuts:
            r = measure(data, dataclasses.replace(base, method=method, score_cut=cut))
            rows.append({"method": method, "cut": cut, **r})
            print(method, cut, {k: round(r[k], 4) for k in RATES}, flush=True)
    hgnn_settings = (
        [(a, o) for o in args.max_overlap for a in args.assign_cuts] if "hgnn" in args.methods else []
    )
    for acut, overlap in hgnn_settings:
        hg = dataclasses.replace(base.hgnn, assign_cut=acut, pool_cut=args.pool_cut, max_overlap=overlap)
        r = measure(data, dataclasses.replace(base, method="hgnn", score_cut=0.5, hgnn=hg), model)
        name = "hgnn" if len(args.max_overlap) == 1 else f"hgnn(max_overlap={overlap})"
        rows.append({"method": name, "cut": acut, "max_overlap": overlap, **r})
        print(name, acut, {k: round(r[k], 4) for k in RATES}, flush=True)
    if "hgnn_pool_only" in args.methods:
        hg = dataclasses.replace(base.hgnn, pool_cut=args.pool_cut)
        r = measure(data, dataclasses.replace(base, method="hgnn", hgnn=hg), model, pool_only=True)
        rows.append({"method": "hgnn_pool_only", "cut": args.pool_cut or 0.0, **r})
        print("hgnn_pool_only", {k: round(r[k], 4) for k in RATES}, flush=True)
    # targets found by one method's setting and not by another's (two-way), for every pair of
    # the best setting per method (two-way efficiency, ties: higher cut)
    best = {}
    for r in rows:
        b = best.get(r["method"])
        if b is None or (r["two_way_efficiency"], r["cut"]) >= (b["two_way_efficiency"], b["cut"]):
            best[r["method"]] = r
    overlap = {}
    for a in best.values():
        for b in best.values():
            if a is not b:
                only = sum(int((x & ~y).sum()) for x, y in zip(a["_reco"], b["_reco"]))
                overlap[f"{a['method']}@{a['cut']} not {b['method']}@{b['cut']}"] = only
    for r in rows:
        r.pop("_reco")
    out = {
        "events": [str(p) for p in args.events],
        "scored": [str(p) for p in args.scored],
        "hgnn_model": str(args.hgnn_model),
        "n_events": len(data),
        "min_hits": args.min_hits,
        "min_pt": args.min_pt or None,
        "pool_cut": args.pool_cut,
        "max_overlap": args.max_overlap,
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "two_way_found_by_one_only": overlap,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "compare.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [
        f"{len(data)} events, min_hits {args.min_hits}, min_pt {args.min_pt or '-'} GeV; cut = edge score "
        "cut (cc, walkthrough) or assignment cut (hgnn)",
        "",
        "| method | cut | two-way eff | two-way fake | two-way dup | ATLAS eff | ATLAS fake | ATLAS dup "
        "| tracks | wall s/event | CPU s/event | lost: absent/split/merged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        c = r["two_way_lost_targets"]
        cells = " | ".join("-" if r[k] is None else f"{r[k]:.4f}" for k in RATES)
        lines.append(
            f"| {r['method']} | {r['cut']:.2f} | {cells} | {r['tracks']} | {r['wall_s_per_event']:.4f} "
            f"| {r['cpu_s_per_event']:.4f} | {c['absent']}/{c['split']}/{c['merged']} |"
        )
    lines += ["", "Targets found (two-way) by the best setting of one method and not by another's:", ""]
    lines += [f"- {k}: {v}" for k, v in overlap.items()]
    (args.output / "compare.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
