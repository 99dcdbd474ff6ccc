#!/usr/bin/env python
"""Train the GNN once with given setting overrides on a subset of a campaign; print the curve.

    python benchmarks/bench_gnn_settings.py NAME '{"train": {"lr": 0.003}}' --threads 1 \
        --results results/default --train-shards 0,1 --val-shard 8 --epochs 4 -o DIR

Used to compare settings at fixed compute (run two at once with one thread each on a 2-core
machine): the default campaign GNN (hidden 64 × 6) trained on the campaign's own graphs, the
overrides merged over it, validation on the first ``--max-val-events`` of the validation shard.
Writes ``DIR/NAME.pt`` (+ ``.metrics.csv``) and prints the per-epoch metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.gnn import run_train_gnn  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name")
    p.add_argument("overrides", help="JSON merged over the gnn settings (one level deep)")
    p.add_argument("--results", type=Path, default=ROOT / "results" / "default")
    p.add_argument("--train-shards", default="0,1")
    p.add_argument("--val-shard", default="8")
    p.add_argument("--max-val-events", type=int, default=4)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = {
        "hidden": 64,
        "n_graph_iters": 6,
        "train": {"epochs": args.epochs, "lr": 1e-3, "progress": "off", "resume": False},
        "max_val_events": args.max_val_events,
    }
    for k, v in json.loads(args.overrides).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    r = args.results
    shards = args.train_shards.split(",")
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / f"{args.name}.pt"
    t0 = time.perf_counter()
    run_train_gnn(
        [r / "events" / "train" / f"{s}.h5" for s in shards],
        [r / "graphs" / "train" / f"{s}.h5" for s in shards],
        [r / "events" / "val" / f"{args.val_shard}.h5"],
        [r / "graphs" / "val" / f"{args.val_shard}.h5"],
        out,
        cfg,
        "cpu",
    )
    print(args.name, cfg, f"{time.perf_counter() - t0:.0f} s")
    print(Path(f"{out}.metrics.csv").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
