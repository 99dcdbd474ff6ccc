"""Distances in the trained embedding on one held-out event: target truth edges against the
hits' nearest neighbours (what limits efficiency at a given number of edges).

    python benchmarks/metric_learning_cpu_20261203/distances.py --model MODEL --events TEST.h5 \
        --output benchmarks/metric_learning_cpu_20261203/distances.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import faiss
import numpy as np
import torch
from items_cache import cached_items

from gnntrack.graph_construction.metric_learning import MetricLearningConfig
from gnntrack.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    (item,) = cached_items([args.events], MetricLearningConfig(), limit=1)
    model = load_model(args.model, "cpu").eval()
    with torch.no_grad():
        emb = model(item.x).float()
    i, j = item.target_truth
    d_target = (emb[i] - emb[j]).pow(2).sum(-1).sqrt().numpy()
    x = emb.numpy()
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    rng = np.random.default_rng(0)
    q = rng.choice(len(x), 5000, replace=False)
    d2, _ = index.search(x[q], 65)
    knn = np.sqrt(np.maximum(d2[:, 1:], 0))  # drop the query itself
    qs = [0.5, 0.9, 0.95, 0.98, 0.99]
    out = {
        "events": args.events,
        "n_hits": len(x),
        "n_target_edges": len(d_target),
        "target_edge_distance_quantiles": dict(zip(map(str, qs), np.quantile(d_target, qs).tolist())),
        "median_distance_to_kth_neighbour": {
            str(k): float(np.median(knn[:, k - 1])) for k in (1, 4, 8, 16, 32, 64)
        },
        "median_neighbours_within": {
            str(r): float(np.median((knn < r).sum(1))) for r in (0.03, 0.05, 0.07, 0.1)
        },
    }
    print(json.dumps(out, indent=1))
    Path(args.output).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
