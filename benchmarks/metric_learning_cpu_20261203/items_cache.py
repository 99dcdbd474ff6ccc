"""Metric-learning items of event files, cached one event per torch file under benchmarks/tmp/."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from gnntrack.graph_construction.metric_learning import MetricLearningConfig, make_item
from gnntrack.io.event_store import iter_events

CACHE = Path("benchmarks/tmp/ml_items")


def cached_items(files: list[str], cfg: MetricLearningConfig, limit: int | None = None) -> list:
    """The first ``limit`` events of ``files`` as items (``load_items``), read once and cached."""
    tag = hashlib.sha1(json.dumps([cfg.node_features, cfg.non_target_weight]).encode()).hexdigest()[:8]
    items = []
    for f in files:
        f = Path(f)
        stem = f"{f.parent.parent.parent.name}_{f.parent.name}_{f.stem}_{tag}"
        i = 0
        while limit is None or len(items) < limit:
            path = CACHE / f"{stem}_{i}.pt"
            if not path.exists():
                break
            items.append(torch.load(path, weights_only=False))
            i += 1
        if limit is not None and len(items) >= limit:
            return items
        for j, ev in enumerate(iter_events(f, tables=("hits", "particles"))):
            if j < i:
                continue
            if limit is not None and len(items) >= limit:
                return items
            item = make_item(ev, cfg)
            CACHE.mkdir(parents=True, exist_ok=True)
            torch.save(item, CACHE / f"{stem}_{j}.pt")
            items.append(item)
    return items
