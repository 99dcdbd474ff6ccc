"""Where one metric-learning training step spends its CPU time: whole event vs a sample.

    python benchmarks/metric_learning_cpu_20261203/profile_step.py --events EVENTS.h5 \
        --output benchmarks/metric_learning_cpu_20261203/profile.json

Times (process CPU seconds, one torch thread) of each part of ``MetricLearningTask._loss`` plus
the backward pass, for the previous whole-event step (``sample_hits: null``) and the sampled step
of the default config, on the first event of the file (an untrained model, as at the start of a
training). ``--config`` sets the sampled step's settings; ``--reps-full 0`` skips the whole-event
step; results are merged into an existing output file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from items_cache import cached_items

from gnntrack.config import from_dict
from gnntrack.graph_construction.metric_learning import (
    MetricLearningConfig,
    MetricLearningTask,
    _knn_within,
    restrict_truth,
    sample_hits,
)


def profile(task: MetricLearningTask, item, reps: int) -> dict:
    cfg = task.cfg
    parts: dict[str, list[float]] = {}

    def tick(name, t0):
        t = time.process_time()
        parts.setdefault(name, []).append(t - t0)
        return t

    for rep in range(reps):
        gen = torch.Generator().manual_seed(rep)
        task.model.zero_grad()
        t = time.process_time()
        nodes = sample_hits(item, cfg, gen)
        truth, weight = restrict_truth(item, nodes)
        x = item.x if nodes.numel() == item.x.shape[0] else item.x.index_select(0, nodes)
        t = tick("sample", t)
        emb = task.model(x)
        t = tick("embed_forward", t)
        n = emb.shape[0]
        q = n if cfg.queries_per_event is None else min(n, cfg.queries_per_event)
        queries = torch.randperm(n, generator=gen)[:q]
        _knn_within(emb.detach(), queries, cfg.knn, cfg.margin)
        t = tick("knn_hard_negatives", t)
        i, j, y, w = task._pairs(truth, weight, emb, "cpu", gen)
        t1 = time.process_time()
        # _pairs repeats the k-NN search: its labelling/random-pair part is the difference
        parts.setdefault("pairs_and_labels", []).append(t1 - t - parts["knn_hard_negatives"][-1])
        t = t1
        d2 = (emb[i] - emb[j]).pow(2).sum(-1)
        pos_w, neg_w = w * y, w * (~y)
        loss = (pos_w * d2).sum() / pos_w.sum().clamp_min(1e-12) + (
            neg_w * torch.relu(cfg.margin - torch.sqrt(d2 + 1e-12)).pow(2)
        ).sum() / neg_w.sum().clamp_min(1e-12)
        t = tick("loss", t)
        loss.backward()
        tick("backward", t)
        parts.setdefault("n_hits", []).append(n)
        parts.setdefault("n_pairs", []).append(int(i.numel()))
    out = {k: float(np.median(v)) for k, v in parts.items()}
    out["total_cpu_s"] = sum(v for k, v in out.items() if k not in ("n_hits", "n_pairs"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", required=True)
    ap.add_argument("--reps-full", type=int, default=2)
    ap.add_argument("--reps-sample", type=int, default=5)
    ap.add_argument("--config", default="{}", help="metric_learning settings of the sampled step (JSON)")
    ap.add_argument("--name", default="sample", help="key of the sampled step's profile in the output")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = from_dict(MetricLearningConfig, json.loads(args.config), "metric_learning")
    (item,) = cached_items([args.events], base, limit=1)
    result = {"events": args.events, "n_hits_event": int(item.x.shape[0]), "torch_threads": 1}
    for name, overrides, reps in (
        ("whole_event", {"sample_hits": None}, args.reps_full),
        (args.name, {}, args.reps_sample),
    ):
        if reps < 1:
            continue
        cfg = MetricLearningConfig(**{**base.__dict__, **overrides})
        torch.manual_seed(0)
        result[name] = profile(MetricLearningTask(cfg), item, reps)
        print(name, json.dumps(result[name]), flush=True)
    out = Path(args.output)
    if out.exists():  # keep what an earlier run measured (e.g. the whole-event step before a change)
        result = {**json.loads(out.read_text()), **{k: v for k, v in result.items() if k != "previous"}}
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
