"""The k-d tree's search of one ⟨μ⟩ = 200 event in query order against the tree's leaf order.

Embeds the first ``--n-events`` events of ``--events`` with ``--model``, then times
``cKDTree.query(k = k_max + 2, distance_upper_bound = r)`` on all hits, in their own order and in
``tree.indices`` order (the order ``neighbours._kdtree_graph`` uses), ``--repeats`` times each;
prints a table and writes JSON (medians, wall seconds, and whether both orders found the same
neighbours).

    PYTHONPATH=src python benchmarks/metric_learning_margin_20261204/query_order.py \\
        --model M.pt --events test/5.h5 --n-events 5 --r 0.1 --k-max 32 --threads 2 --output out.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from gnntrack.graph_construction import EmbeddingBuilder
from gnntrack.io.event_store import iter_events
from gnntrack.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--n-events", type=int, default=5)
    ap.add_argument("--r", type=float, required=True)
    ap.add_argument("--k-max", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    builder = EmbeddingBuilder(load_model(args.model, "cpu"), device="cpu")
    rows = []
    for i, ev in enumerate(iter_events(args.events, tables=("hits",))):
        if i >= args.n_events:
            break
        x = builder.embed(ev.hits).double().numpy()
        tree = cKDTree(x)
        perm = tree.indices
        times = {"query_order": [], "leaf_order": []}
        for _ in range(args.repeats):
            for name, q in (("query_order", x), ("leaf_order", x[perm])):
                t0 = time.perf_counter()
                _, nbr = tree.query(q, k=args.k_max + 2, distance_upper_bound=args.r, workers=args.threads)
                times[name].append(time.perf_counter() - t0)
                if name == "query_order":
                    first = nbr
                else:
                    back = np.empty_like(nbr)
                    back[perm] = nbr
                    same = bool(np.array_equal(np.sort(first, 1), np.sort(back, 1)))
        rows.append({"event": ev.key, "n_hits": len(x), "same_neighbours": same,
                     **{k: float(np.median(v)) for k, v in times.items()}})  # fmt: skip
        print(f"{ev.key}: {len(x)} hits, query order {rows[-1]['query_order']:.3f} s, "
              f"leaf order {rows[-1]['leaf_order']:.3f} s, same neighbours {same}")  # fmt: skip
    summary = {k: float(np.median([r[k] for r in rows])) for k in ("query_order", "leaf_order")}
    out = {"model": args.model, "events": args.events, "r": args.r, "k_max": args.k_max,
           "threads": args.threads, "repeats": args.repeats, "rows": rows, "median_s": summary}  # fmt: skip
    with open(args.output, "w") as f:
        json.dump(out, f, indent=1)
    print(
        f"median over events: query order {summary['query_order']:.3f} s, leaf order {summary['leaf_order']:.3f} s"
    )


if __name__ == "__main__":
    main()
