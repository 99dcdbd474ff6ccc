"""Which target edges a metric-learning graph loses: efficiency by particle pT, |eta|, detector
layer of the inner hit and radial gap, on the first two events of a file.

    PYTHONPATH=src python benchmarks/metric_learning_margin_20261204/lost_edges.py MODEL.pt R K_MAX \\
        [--events results/physics_mu200/events/test/5.h5] [--n-events 2]

For each group: target edges, efficiency, and the group's share of all lost edges; first line:
how many lost edges were farther apart than r in the embedding and how many were within r but
not among the k_max nearest.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gnntrack.graph_construction import EmbeddingBuilder
from gnntrack.graph_construction.neighbours import radius_graph
from gnntrack.io.event_store import iter_events
from gnntrack.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("r", type=float)
    ap.add_argument("k_max", type=int)
    ap.add_argument("--events", default="results/physics_mu200/events/test/5.h5")
    ap.add_argument("--n-events", type=int, default=2)
    args = ap.parse_args()
    builder = EmbeddingBuilder(load_model(args.model, "cpu"), device="cpu")
    cols = {k: [] for k in ("d", "found", "pt", "abs_eta", "layer", "dr")}
    for i, ev in enumerate(iter_events(args.events)):
        if i >= args.n_events:
            break
        emb = builder.embed(ev.hits)
        n = emb.shape[0]
        e = radius_graph(emb, args.r, args.k_max)
        graph = set((torch.minimum(e[0], e[1]) * n + torch.maximum(e[0], e[1])).tolist())
        t, p = np.asarray(ev.truth_edges), np.asarray(ev.truth_edge_particle)
        target = (p >= 0) & np.asarray(ev.particles["is_target"], bool)[np.maximum(p, 0)]
        a, b, p = np.minimum(*t[:, target]), np.maximum(*t[:, target]), p[target]
        _, first = np.unique(a * n + b, return_index=True)
        a, b, p = a[first], b[first], p[first]
        h = ev.hits
        r = np.asarray(h["r"])
        inner = np.where(r[a] <= r[b], a, b)
        cols["d"].append((emb[a] - emb[b]).norm(dim=1).numpy())
        cols["found"].append(np.array([c in graph for c in (a * n + b).tolist()]))
        cols["pt"].append(np.asarray(ev.particles["pt"])[p])
        cols["abs_eta"].append(np.abs(np.asarray(ev.particles["eta"])[p]))
        be, ld = np.asarray(h["barrel_endcap"]), np.asarray(h["layer_disk"])
        cols["layer"].append(np.char.add(np.char.add(be[inner].astype(str), ":"), ld[inner].astype(str)))
        cols["dr"].append(np.abs(r[a] - r[b]))
    c = {k: np.concatenate(v) for k, v in cols.items()}
    found, lost = c["found"], ~c["found"]
    far = lost & (c["d"] >= args.r)
    print(f"target edges {len(found)}, efficiency {found.mean():.4f}, lost {lost.sum()}: "
          f"{far.sum()} farther than r, {(lost & ~far).sum()} within r but beyond k_max")  # fmt: skip
    groups = {
        "pT (GeV)": np.digitize(c["pt"], [1.5, 2, 3, 5, 10]),
        "|eta|": np.digitize(c["abs_eta"], [0.5, 1, 1.5, 2, 2.5, 3]),
        "inner hit (barrel_endcap:layer)": c["layer"],
        "|dr| (mm)": np.digitize(c["dr"], [20, 50, 100, 200, 400]),
    }
    edges = {
        "pT (GeV)": [1, 1.5, 2, 3, 5, 10],
        "|eta|": [0, 0.5, 1, 1.5, 2, 2.5, 3],
        "|dr| (mm)": [0, 20, 50, 100, 200, 400],
    }
    for name, key in groups.items():
        print(f"-- {name}")
        for v in np.unique(key):
            s = key == v
            label = f">= {edges[name][v]}" if name in edges else str(v)
            print(f"  {label:>10} edges {s.sum():6d}  efficiency {found[s].mean():.4f}  "
                  f"share of lost {lost[s].sum() / max(lost.sum(), 1):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
