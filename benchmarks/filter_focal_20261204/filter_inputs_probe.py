"""Would the embedding distance, or an edge's score rank at its hits, add to the filter's score?

On the 10 events of a test shard of the metric-learning campaign: the campaign filter's score of
every graph edge, the edge's distance in the campaign's embedding, and the rank of its score among
the edges leaving its inner hit and among those entering its outer hit. Each candidate input is
added to the filter's logit with a range of weights (score = logit + a * input); for each weight,
the target-edge efficiency (target truth edges kept / all target truth edges) at the one cut that
keeps 150 k (and 120 k, 200 k) edges per event. A weight that helps linearly is a sign the input
carries information the filter lacks. Prints the table.

    PYTHONPATH=src python benchmarks/filter_focal_20261204/filter_inputs_probe.py \
        --campaign results/physics_mu200_ml --shard test/5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_edge_filter import budget_cut  # noqa: E402

from gnntrack.edge_classification import EdgeClassifier  # noqa: E402
from gnntrack.edge_classification.shards import event_data  # noqa: E402
from gnntrack.graph_construction.build import EmbeddingBuilder  # noqa: E402
from gnntrack.io.event_store import iter_events  # noqa: E402
from gnntrack.io.graph_store import iter_graphs  # noqa: E402
from gnntrack.metrics import truth_target_edges  # noqa: E402
from gnntrack.models.registry import load_model  # noqa: E402


def score_rank(scores: np.ndarray, node: np.ndarray) -> np.ndarray:
    """Rank (0 = best) of each edge's score among the edges sharing its ``node``."""
    order = np.lexsort((-scores, node))
    sorted_node = node[order]
    start = np.r_[0, np.flatnonzero(sorted_node[1:] != sorted_node[:-1]) + 1]
    rank_sorted = np.arange(len(node)) - np.repeat(start, np.diff(np.r_[start, len(node)]))
    rank = np.empty(len(node), dtype=np.int64)
    rank[order] = rank_sorted
    return rank


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaign", type=Path, required=True)
    ap.add_argument("--shard", default="test/5")
    args = ap.parse_args()
    torch.set_num_threads(2)
    split, num = args.shard.split("/")
    ev_file = args.campaign / "events" / split / f"{num}.h5"
    gr_file = args.campaign / "graphs" / split / f"{num}.h5"
    net = load_model(args.campaign / "models/filter.pt", "cpu")
    stage = EdgeClassifier("filter", net, 0.0, chunk_size=500_000)
    emb = EmbeddingBuilder(load_model(args.campaign / "models/metric_learning.pt", "cpu"), device="cpu")
    logit, dist, rank, yt, n_truth = [], [], [], [], 0
    for graph, ev in zip(iter_graphs(gr_file), iter_events(ev_file, tables=("hits", "particles"))):
        n_truth += len(truth_target_edges(ev)[0])
        s = stage(event_data(ev.hits, graph, net, torch.device("cpu"))).scores("filter").cpu().numpy()
        s = np.clip(s.astype(np.float64), 1e-7, 1 - 1e-7)
        e = emb.embed(ev.hits)
        ei = torch.from_numpy(graph.edge_index)
        dist.append((e[ei[0]] - e[ei[1]]).pow(2).sum(1).sqrt().numpy())
        logit.append(np.log(s) - np.log1p(-s))
        rank.append(
            np.log1p(score_rank(s, graph.edge_index[0])) + np.log1p(score_rank(s, graph.edge_index[1]))
        )
        yt.append(graph.y_target)
        print(f"{ev.key}: {len(s)} edges", flush=True)
    n_events = len(yt)
    logit, dist, rank, yt = (np.concatenate(a) for a in (logit, dist, rank, yt))
    print(
        f"target edges: median embedding distance {np.median(dist[yt]):.3f}; fakes {np.median(dist[~yt]):.3f}"
    )
    print("| input | weight a | eff. at 120 k | at 150 k | at 200 k |")
    print("| --- | --- | --- | --- | --- |")
    for name, feat, weights in (
        ("distance", dist, (0, -5, -10, -20, -40, -80)),
        ("log rank sum", rank, (0, -0.25, -0.5, -1, -2)),
    ):
        for a in weights:
            sc = logit + a * feat
            effs = [yt[sc >= budget_cut(sc, b, n_events)].sum() / n_truth for b in (120e3, 150e3, 200e3)]
            print(f"| {name} | {a:g} | " + " | ".join(f"{x:.4f}" for x in effs) + " |", flush=True)


if __name__ == "__main__":
    main()
