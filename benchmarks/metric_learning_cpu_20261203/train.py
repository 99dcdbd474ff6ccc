"""Train the metric-learning embedding with the shared loop and record CPU seconds per epoch.

    python benchmarks/metric_learning_cpu_20261203/train.py --train TRAIN.h5 ... --val VAL.h5 \
        --config '{"hidden": 128, ...}' --output benchmarks/tmp/ml200/embedding.pt \
        --curve benchmarks/metric_learning_cpu_20261203/curve.csv

``gnntrack.training.Trainer``'s steps (``fit`` = restore, then per epoch train_epoch, validate,
end_epoch, checkpoint, then finish), with the process CPU time (``time.process_time``, all
threads of this process) of each epoch's training and validation added to every row: on a shared
machine the wall time is an upper bound of the cost, the CPU time is the cost. Events are read
once and cached as torch files under benchmarks/tmp/ (decompressing a <mu> = 200 shard is slow).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from items_cache import cached_items

from gnntrack.config import from_dict
from gnntrack.graph_construction.metric_learning import MetricLearningConfig, MetricLearningTask
from gnntrack.training.loop import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--val", nargs="+", required=True)
    ap.add_argument("--max-train-events", type=int, default=None)
    ap.add_argument("--config", default="{}", help="metric_learning section as JSON")
    ap.add_argument("--init", help="model file whose weights the training starts from (same model settings)")
    ap.add_argument("--output", required=True)
    ap.add_argument("--curve", required=True, help="CSV of the per-epoch rows")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = from_dict(MetricLearningConfig, json.loads(args.config), "metric_learning")
    c0 = time.process_time()
    train = cached_items(args.train, cfg, args.max_train_events)
    val = cached_items(args.val, cfg, cfg.max_val_events)
    load_cpu = time.process_time() - c0
    train = [item for item in train for _ in range(cfg.samples_per_event)]
    torch.manual_seed(cfg.train.seed)
    model = None
    if args.init:
        from gnntrack.models import load_model

        model = load_model(args.init, "cpu")
    task = MetricLearningTask(cfg, model)
    trainer = Trainer(task, train, val, cfg.train, args.output, "cpu")
    trainer.restore()
    rows, cpu_total = [], 0.0
    Path(args.curve).parent.mkdir(parents=True, exist_ok=True)
    with trainer:
        while not trainer.done:
            c0, w0 = time.process_time(), time.perf_counter()
            tr = trainer.train_epoch()
            c1 = time.process_time()
            metrics = trainer.validate()
            c2 = time.process_time()
            row = trainer.end_epoch(tr, metrics)
            trainer.checkpoint()
            cpu_total += c1 - c0
            row = {
                **row,
                "steps": trainer.steps_per_epoch * row["epoch"],
                "train_cpu_s": c1 - c0,
                "val_cpu_s": c2 - c1,
                "train_cpu_s_total": cpu_total,
                "wall_s": time.perf_counter() - w0,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            with open(args.curve, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
    summary = trainer.finish()
    print(json.dumps({"load_cpu_s": load_cpu, "best_epoch": summary["best_epoch"], "train_cpu_s": cpu_total}))


if __name__ == "__main__":
    main()
