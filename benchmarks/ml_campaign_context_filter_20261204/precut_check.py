"""``context_min_score`` on the campaign's trained context filter (trained without it): the same
weights with edges of per-edge score below q left out of the context round, scored as the chain
scores them (``EdgeClassifier``, 1 M-edge chunks, inference mode), against q = 0 on the same
events: edges kept at the stored cut, target edges kept, decisions that differ, scoring time.

    PYTHONPATH=src python benchmarks/ml_campaign_context_filter_20261204/precut_check.py \
        --shard results/physics_mu200_ml/graphs/test/5.h5 --q 1e-5 1e-4 3e-4 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gnntrack.edge_classification.shards import event_data
from gnntrack.edge_classification.stage import EdgeClassifier
from gnntrack.io.event_store import read_event
from gnntrack.io.graph_store import iter_graphs
from gnntrack.models import FilterModel, load_model

MODEL = Path(__file__).resolve().parent / "models" / "filter_context_q0_mu200.pt"


def variant(base: FilterModel, q: float) -> FilterModel:
    m = FilterModel(**{**base.config, "context_min_score": q})
    m.load_state_dict(base.state_dict())
    m.score_cut = base.score_cut
    return m.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard", required=True, help="a graphs file of the campaign (events file alongside)")
    ap.add_argument("--q", type=float, nargs="+", default=[1e-5, 1e-4, 3e-4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = load_model(MODEL)
    cut = float(base.score_cut)
    qs = [0.0, *args.q]
    models = {q: variant(base, q) for q in qs}
    events_file = Path(str(args.shard).replace("/graphs/", "/events/"))
    totals = {q: {"kept": 0, "target_kept": 0, "differ": 0, "seconds": [], "edges": 0} for q in qs}
    n_events = 0
    for graph in iter_graphs(args.shard):
        n_events += 1
        hits = read_event(events_file, graph.key, tables=("hits",)).hits
        yt = graph.y_target.astype(bool)
        ref = None
        for _ in range(args.repeats):
            for q in qs:  # alternated
                stage = EdgeClassifier("filter", models[q], cut, chunk_size=1_000_000)
                ev = event_data(hits, graph, models[q], torch.device("cpu"))
                t0 = time.perf_counter()
                keep = (stage.scores(ev) >= cut).numpy()
                totals[q]["seconds"].append(time.perf_counter() - t0)
                if q == 0.0:
                    ref = keep
                if _ == 0:
                    t = totals[q]
                    t["kept"] += int(keep.sum())
                    t["target_kept"] += int(keep[yt].sum())
                    t["differ"] += int((keep != ref).sum())
                    t["edges"] += len(keep)
        print(f"{graph.key}: {len(yt)} edges", flush=True)
    rows = []
    for q, t in totals.items():
        row = {
            "context_min_score": q,
            "events": n_events,
            "edges_in_per_event": t["edges"] / n_events,
            "kept_per_event": t["kept"] / n_events,
            "target_kept": t["target_kept"],
            "decisions_differing_from_q0": t["differ"],
            "median_seconds_per_event": float(np.median(t["seconds"])),
        }
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"model": str(MODEL), "shard": str(args.shard), "rows": rows}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
