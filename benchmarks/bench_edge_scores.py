#!/usr/bin/env python
"""Edge-classifier numbers on held-out events of any pile-up: graph, scores, working point, AUC.

    python benchmarks/bench_edge_scores.py --events EVENTS.h5 --module-map MAP.h5 \
        --gnn-model gnn.pt --cut 0.5 -o DIR

Builds module-map graphs for the events, scores them with the GNN through the pipeline stages
(``run_build_graphs``, ``run_score_graphs``) and reports, for the graph and for the GNN at the
working-point cut: target-edge efficiency, purity, masked purity, ROC AUC (all true edges and
masked), edges in/out per event and the seconds per event of each stage. Writes
``DIR/edge_scores.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.edge_classification import run_score_graphs  # noqa: E402
from gnntrack.graph_construction import run_build_graphs  # noqa: E402
from gnntrack.graph_construction.module_map import ModuleMap  # noqa: E402
from gnntrack.io.event_store import iter_events  # noqa: E402
from gnntrack.io.graph_store import iter_graphs  # noqa: E402
from gnntrack.metrics.edges import working_point  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=Path, required=True)
    p.add_argument("--module-map", type=Path, required=True)
    p.add_argument("--gnn-model", type=Path, required=True)
    p.add_argument("--cut", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    graphs, scored = out / "graphs.h5", out / "scored.h5"

    t0 = time.perf_counter()
    mm = ModuleMap.load(args.module_map, args.device)
    run_build_graphs(args.events, graphs, {"method": "module_map"}, module_map=mm, device=args.device)
    t_graph = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_score_graphs(args.events, graphs, args.gnn_model, scored, device=args.device, score_cut=args.cut)
    t_gnn = time.perf_counter() - t0

    gs = list(iter_graphs(scored))
    n = len(gs)
    y = np.concatenate([g.y for g in gs])
    yt = np.concatenate([g.y_target for g in gs])
    s = np.concatenate([np.asarray(g.scores["gnn"] if isinstance(g.scores, dict) else g.scores) for g in gs])
    graph_wp = working_point(np.ones_like(s), y, yt, 0.5)  # every built edge kept
    gnn_wp = working_point(s, y, yt, args.cut)
    # efficiencies above are relative to the target edges in the graph; also give them relative
    # to all target truth edges of the events (what the graph lost counts against it)
    n_target_truth = sum(
        int(np.asarray(ev.particles["is_target"])[ev.truth_edge_particle].sum())
        for ev in iter_events(args.events, tables=("particles",))
    )
    for wp in (graph_wp, gnn_wp):
        wp["efficiency_vs_truth"] = wp["efficiency"] * float(yt.sum()) / n_target_truth
    result = {
        "events": str(args.events),
        "n_events": n,
        "module_map": str(args.module_map),
        "gnn_model": str(args.gnn_model),
        "cut": args.cut,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "graph": {**graph_wp, "seconds_per_event": t_graph / n},
        "gnn": {**gnn_wp, "seconds_per_event": t_gnn / n},
        "n_target_truth_edges": n_target_truth,
    }
    (out / "edge_scores.json").write_text(json.dumps(result, indent=2))
    graphs.unlink()
    scored.unlink()
    rows = [
        "| stage | edges in/event | edges out/event | target-edge eff (of graph) | target-edge eff (of truth) "
        "| purity | masked purity | AUC | masked AUC | s/event |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, wp in (("module map", result["graph"]), (f"GNN @ {args.cut}", result["gnn"])):
        auc = "–" if name == "module map" else f"{wp['auc']:.4f}"
        mauc = "–" if name == "module map" else f"{wp['masked_auc']:.4f}"
        rows.append(
            f"| {name} | {wp['edges_in'] / n:.0f} | {wp['edges_out'] / n:.0f} | {wp['efficiency']:.4f} | "
            f"{wp['efficiency_vs_truth']:.4f} | "
            f"{wp['purity']:.4f} | {wp['masked_purity']:.4f} | {auc} | {mauc} | {wp['seconds_per_event']:.2f} |"
        )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
