"""The k-d tree query alone, by frame and tree settings, on embedded <mu> = 200 events.

For each event: the trained embedding of its hits (float64, as ``_kdtree_graph`` gives the
tree), in the original coordinates and rotated onto its principal axes; scipy ``cKDTree`` built
with median (``balanced_tree=True``, scipy's default) or sliding-midpoint splits and several leaf
sizes; each hit queried for its k nearest within r in the tree's leaf order (what
``_kdtree_graph`` asks of the tree), best wall time of ``--repeats`` and the CPU time of that
run. Each setting's neighbour set per hit is compared with the first setting's (a rotation moves
distances by ~1e-16, so only exact ties could differ). Prints a table and writes JSON.

    PYTHONPATH=src python benchmarks/metric_learning_search_20261204/tree_probe.py \
        --model benchmarks/metric_learning_margin_20261204/campaign/embedding_E_mu200.pt \
        --events results/physics_mu200_ml/events/test/5.h5 --n-events 2 --threads 2 \
        --output benchmarks/metric_learning_search_20261204/tree_probe.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_neighbours import embedded_points  # noqa: E402

from gnntrack.graph_construction.neighbours import _principal_axes  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--n-events", type=int, default=2)
    ap.add_argument("--r", type=float, default=0.155)
    ap.add_argument("--k", type=int, default=50, help="neighbours per query (k_max + 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = [
        ("original", True, 16),
        ("principal", True, 16),
        ("principal", True, 32),
        ("principal", False, 16),
        ("principal", False, 24),
        ("principal", False, 32),
    ]
    rows = []
    for ev, pts in enumerate(embedded_points(args.model, args.events, args.n_events, "cpu")):
        x = pts.double().numpy()
        x64 = torch.from_numpy(x)
        frames = {"original": x, "principal": (x64 @ _principal_axes(x64)).numpy()}
        found_ref = None
        for frame, balanced, leaf in settings:
            y = frames[frame]
            tree = cKDTree(y, leafsize=leaf, balanced_tree=balanced)
            q = y[tree.indices]
            best, cpu = float("inf"), float("nan")
            for _ in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                dist, nbr = tree.query(q, k=args.k, distance_upper_bound=args.r, workers=args.threads)
                wall = time.perf_counter() - t0
                if wall < best:
                    best, cpu = wall, time.process_time() - c0
            found = np.sort(np.where(np.isfinite(dist), nbr, -1), axis=1)
            back = np.empty_like(found)
            back[tree.indices] = found  # rows in hit order
            if found_ref is None:
                found_ref = back
            rows.append(
                {
                    "event": ev, "n_points": len(x), "frame": frame, "balanced_tree": balanced,
                    "leafsize": leaf, "query_s": best, "query_cpu_s": cpu,
                    "same_neighbours": bool(np.array_equal(back, found_ref)),
                }
            )  # fmt: skip
            r = rows[-1]
            print(
                f"event {ev} ({len(x)} points) {frame:9s} balanced={balanced!s:5s} leaf {leaf:2d}: "
                f"{best:.3f} s ({cpu:.3f} CPU-s) same={r['same_neighbours']}",
                flush=True,
            )
    ev = np.var([v for v in frames["principal"].T], axis=1)
    out = {
        "model": args.model, "events": args.events, "r": args.r, "k": args.k, "threads": args.threads,
        "repeats": args.repeats, "machine": platform.processor() or platform.machine(),
        "principal_variance_fractions_last_event": (ev / ev.sum()).round(4).tolist(), "rows": rows,
    }  # fmt: skip
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
