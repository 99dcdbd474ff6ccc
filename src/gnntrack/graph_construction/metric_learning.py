"""Metric learning: train the spacepoint embedding with a contrastive hinge loss.

One training step works on a *sample* of one event's hits (``sample_hits``): the hits nearest in
(η, φ) to a random hit of a target particle (a region, so that the hard negatives are the hits a
radius graph would really confuse) plus ``sample_random_hits`` random hits of the event (far
pairs, so that distant regions are not folded onto each other). Embedding a whole ⟨μ⟩ = 200
event and searching its k-NN every step cost 20.6 CPU-s (one thread, 4 x 256 model); a sample of
2000 + 200 hits costs 0.05 CPU-s with a 128 x 3 model (benchmarks/metric_learning_cpu_20261203). ``sample_hits: null`` trains on
whole events as before. In the sample, a random subset of query hits gets training pairs from
three sources (acorn's recipe):

- the truth graph's edges with both ends in the sample (positives; target particles weighted 1,
  other particles ``non_target_weight``),
- hard negatives: each query's ``knn`` nearest neighbours in the sample within ``margin`` in the
  *current* embedding (the pairs the graph would wrongly contain),
- random pairs within the sample (keep the whole space spread out, not only the neighbourhoods
  already learned).

A pair is positive when it is a truth-graph edge (whatever source found it). Loss (distances
d): positives d^2 (or relu(d - positive_margin)^2), negatives relu(margin - d)^2, the two means added so the balance
does not depend on how many negatives were mined. Training goes through the shared loop
``gnntrack.training.fit``; the validation builds the full radius graph of at most
``max_val_events`` events (its loss is that of one fixed sample per event).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from ..config import ConfigError, Count, NonNegative, NonNegativeInt, Positive, from_dict, one_of
from ..io.errors import InputError
from ..io.event_store import Event, iter_events
from ..io.features import node_features
from ..metrics.edges import target_edge_counts
from ..models.embedding import EmbeddingMLP, EmbeddingMLPConfig
from ..training import TrainConfig, fit
from .geometry import hits_to_tensors, orient_outward
from .neighbours import BACKENDS, radius_graph


@dataclass
class MetricLearningConfig(EmbeddingMLPConfig):
    """The ``metric_learning`` section: the embedding's own settings (``EmbeddingMLPConfig``), then
    loss and graph settings (``train``: the shared loop's settings)."""

    #: hinge margin and hard-negative search radius during training
    margin: Positive = 0.1
    #: true pairs closer than this cost nothing (loss relu(d - positive_margin)^2; 0: d^2, every
    #: true pair pulled all the way together). Above 0 the training effort goes to the true
    #: pairs at risk of falling outside the graph's radius rather than to pairs already inside it.
    positive_margin: NonNegative = 0.0
    #: hits of one training sample nearest in (eta, phi) to a random hit of a target particle
    #: (None: every step embeds the whole event; ~20 CPU-s per step at <mu> = 200 against 0.05
    #: for 2000 + 200 hits with a 128 x 3 model: benchmarks/metric_learning_cpu_20261203)
    sample_hits: Count | None = 2000
    #: random hits of the event added to each sample (far negatives)
    sample_random_hits: NonNegativeInt = 200
    #: training samples drawn from each training event per epoch (optimiser steps per event)
    samples_per_event: Count = 50
    #: query hits per sample (None: all hits of the sample)
    queries_per_event: Count | None = 20000
    #: hard negatives per query (kNN in the current embedding within ``margin``)
    knn: NonNegativeInt = 32
    #: random pairs per query
    n_random: NonNegativeInt = 4
    non_target_weight: NonNegative = 0.1
    #: training events used (the first ones; None: all)
    max_train_events: Count | None = None
    #: validation events (the first ones) whose full radius graph is built after each epoch
    #: (None: all); the search is capped at k_max + 2 candidates per hit (``exact_ties=False``)
    max_val_events: Count | None = 2
    #: neighbour search backend of the validation graphs
    backend: Annotated[str, one_of(BACKENDS)] = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"metric_learning.backend: {self.backend!r} is not one of {list(BACKENDS)}")
        if not (self.margin > 0 and self.r_max > 0):
            raise ConfigError("metric_learning: margin and r_max must be > 0")
        if not 0 <= self.positive_margin < self.margin:
            raise ConfigError(
                f"metric_learning.positive_margin must be in [0, margin = {self.margin}), got {self.positive_margin}"
            )
        if self.emb_dim < 1 or self.k_max < 1 or self.knn < 0 or self.n_random < 0:
            raise ConfigError("metric_learning: emb_dim, k_max >= 1 and knn, n_random >= 0 required")


@dataclass
class EmbeddingItem:
    """One event prepared for metric learning (CPU tensors; moved to the device per step)."""

    key: str
    x: torch.Tensor  # (N, F) scaled node features
    truth: torch.Tensor  # (2, T) truth-graph edges
    truth_weight: torch.Tensor  # (T,) loss weight of each truth edge
    target_truth: torch.Tensor  # (2, T_target) unique target truth edges (for efficiency)
    r: torch.Tensor  # (N,) for orienting validation graphs
    z: torch.Tensor
    eta: torch.Tensor  # (N,) for drawing training samples
    phi: torch.Tensor


def make_item(event: Event, cfg: MetricLearningConfig, scales=None) -> EmbeddingItem:
    """Features and truth of one event in the form the loss and the evaluation need."""
    x = node_features(event.hits, cfg.node_features, scales)
    truth = np.asarray(event.truth_edges, dtype=np.int64)
    part = np.asarray(event.truth_edge_particle, dtype=np.int64)
    is_target = np.asarray(event.particles["is_target"], bool)
    tgt = (part >= 0) & is_target[np.maximum(part, 0)]
    weight = np.where(tgt, 1.0, cfg.non_target_weight).astype(np.float32)
    t = truth[:, tgt]
    t = np.unique(np.sort(t, axis=0), axis=1) if t.size else t.reshape(2, 0)
    geo = hits_to_tensors(event.hits, ("r", "z", "eta", "phi"))
    return EmbeddingItem(
        key=event.key,
        x=torch.from_numpy(x),
        truth=torch.from_numpy(truth),
        truth_weight=torch.from_numpy(weight),
        target_truth=torch.from_numpy(t),
        r=geo["r"],
        z=geo["z"],
        eta=geo["eta"],
        phi=geo["phi"],
    )


def sample_hits(item: EmbeddingItem, cfg: MetricLearningConfig, generator=None) -> torch.Tensor:
    """Sorted hit indices of one training sample of ``item`` (every hit when the event is small).

    The ``cfg.sample_hits`` hits nearest in (η, φ) to a centre, the hit at one end of a random
    target truth edge (a random hit if the event has none), plus ``cfg.sample_random_hits``
    random hits of the event.
    """
    n = item.x.shape[0]
    if cfg.sample_hits is None or cfg.sample_hits + cfg.sample_random_hits >= n:
        return torch.arange(n)
    n_target = item.target_truth.shape[1]
    if n_target:
        edge = int(torch.randint(n_target, (1,), generator=generator))
        end = int(torch.randint(2, (1,), generator=generator))
        centre = int(item.target_truth[end, edge])
    else:
        centre = int(torch.randint(n, (1,), generator=generator))
    deta = item.eta - item.eta[centre]
    dphi = torch.remainder(item.phi - item.phi[centre] + math.pi, 2 * math.pi) - math.pi
    region = torch.topk(deta * deta + dphi * dphi, cfg.sample_hits, largest=False, sorted=False).indices
    extra = torch.randint(n, (cfg.sample_random_hits,), generator=generator)
    return torch.unique(torch.cat([region, extra]))


def restrict_truth(item: EmbeddingItem, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The truth edges with both ends in ``nodes`` (sorted hit indices), in the sample's local
    numbering, and their loss weights."""
    n = item.x.shape[0]
    if nodes.numel() == n:
        return item.truth, item.truth_weight
    local = torch.full((n,), -1, dtype=torch.long)
    local[nodes] = torch.arange(nodes.numel())
    a, b = local[item.truth[0]], local[item.truth[1]]
    keep = (a >= 0) & (b >= 0)
    return torch.stack([a[keep], b[keep]]), item.truth_weight[keep]


def _pair_codes(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    return torch.minimum(a, b) * n + torch.maximum(a, b)


def _knn_within(emb: torch.Tensor, queries: torch.Tensor, k: int, radius: float, chunk: int = 1 << 24):
    """(query, neighbour) pairs: each query's k nearest other points within ``radius``.

    On the CPU scipy's k-d tree (0.011 against 0.031 CPU-s for a flat faiss index on a sample of
    2200 hits at <mu> = 200, untrained 128 x 3 model, one thread: profile_step.json of
    benchmarks/metric_learning_kdtree_20261203), on a GPU chunked ``cdist`` + ``topk``."""
    n = emb.shape[0]
    k = min(k + 1, n)  # +1: the query itself
    if emb.device.type == "cpu":
        from scipy.spatial import cKDTree

        x = emb.detach().double().numpy()
        dist, idx = cKDTree(x).query(x[queries.numpy()], k=k, distance_upper_bound=radius)
        dist, idx = (
            torch.from_numpy(dist.reshape(-1, k)),
            torch.from_numpy(idx.reshape(-1, k).astype(np.int64)),
        )
        ok = (dist < radius) & (idx != queries[:, None]) & (idx < n)
        return queries[:, None].expand_as(idx)[ok], idx[ok]
    rows = max(1, chunk // n)
    out_i, out_j = [], []
    for s in range(0, queries.numel(), rows):
        q = queries[s : s + rows]
        d2 = torch.cdist(emb[q], emb).pow(2)
        vals, idx = torch.topk(d2, k, dim=1, largest=False)
        ok = (vals < radius * radius) & (idx != q[:, None])
        qi = q[:, None].expand_as(idx)
        out_i.append(qi[ok])
        out_j.append(idx[ok])
    return torch.cat(out_i), torch.cat(out_j)


class MetricLearningTask:
    """``gnntrack.training.Task`` of the embedding model."""

    def __init__(self, cfg: MetricLearningConfig, model: EmbeddingMLP | None = None):
        self.cfg = cfg
        self.model = model or EmbeddingMLP(cfg)

    def model_config(self) -> dict:
        return dict(self.model.config)

    def _pairs(
        self, truth: torch.Tensor, truth_weight: torch.Tensor, emb: torch.Tensor, device, generator=None
    ):
        cfg = self.cfg
        n = emb.shape[0]
        truth = truth.to(device)
        if cfg.queries_per_event is None or cfg.queries_per_event >= n:
            queries = torch.arange(n, device=device)
        else:
            queries = torch.randperm(n, device="cpu", generator=generator)[: cfg.queries_per_event].to(device)
        src, dst = [truth[0]], [truth[1]]
        if cfg.knn > 0:
            hi, hj = _knn_within(emb.detach().float(), queries, cfg.knn, cfg.margin)
            src.append(hi)
            dst.append(hj)
        if cfg.n_random > 0:
            rq = queries.repeat(cfg.n_random)
            rj = torch.randint(0, n, (rq.numel(),), generator=generator).to(device)
            src.append(rq)
            dst.append(rj)
        i, j = torch.cat(src), torch.cat(dst)
        keep = i != j
        i, j = i[keep], j[keep]
        # label: truth edge (any particle) -> positive with that edge's weight
        t_code = _pair_codes(truth[0], truth[1], n)
        order = torch.argsort(t_code)
        t_sorted = t_code[order]
        code = _pair_codes(i, j, n)
        pos = torch.searchsorted(t_sorted, code).clamp_(max=max(t_sorted.numel() - 1, 0))
        if t_sorted.numel():
            y = t_sorted[pos] == code
            w = torch.where(y, truth_weight.to(device)[order[pos]], torch.ones_like(code, dtype=emb.dtype))
        else:
            y = torch.zeros_like(code, dtype=torch.bool)
            w = torch.ones_like(code, dtype=emb.dtype)
        return i, j, y, w

    def _loss(self, item: EmbeddingItem, device, generator=None) -> torch.Tensor:
        nodes = sample_hits(item, self.cfg, generator)
        truth, truth_weight = restrict_truth(item, nodes)
        x = item.x if nodes.numel() == item.x.shape[0] else item.x.index_select(0, nodes)
        emb = self.model(x.to(device))
        i, j, y, w = self._pairs(truth, truth_weight, emb, device, generator)
        d2 = (emb[i] - emb[j]).float().pow(2).sum(-1)
        w = w.float()
        pos_w, neg_w = w * y, w * (~y)
        d = torch.sqrt(d2 + 1e-12)
        pull = d2 if self.cfg.positive_margin == 0 else torch.relu(d - self.cfg.positive_margin).pow(2)
        pos = (pos_w * pull).sum() / pos_w.sum().clamp_min(1e-12)
        neg = (neg_w * torch.relu(self.cfg.margin - d).pow(2)).sum() / neg_w.sum().clamp_min(1e-12)
        return pos + neg

    def loss(self, item: EmbeddingItem, device) -> torch.Tensor:
        return self._loss(item, device)

    def embed(self, item: EmbeddingItem, device) -> torch.Tensor:
        return self.model(item.x.to(device)).float()

    def evaluate(self, items: Sequence[EmbeddingItem], device) -> dict[str, float]:
        """Validation loss (fixed pair sampling) and graph efficiency/purity at (r_max, k_max)."""
        return self.reduce_evaluation([self.evaluate_item(i, item, device) for i, item in enumerate(items)])

    def evaluate_item(self, index: int, item: EmbeddingItem, device) -> tuple:
        """One validation event's part of ``evaluate`` (its pairs drawn from a seed of its index)."""
        gen = torch.Generator().manual_seed(12345 + index)
        loss = float(self._loss(item, device, gen).detach())
        # capped search (no ball/range fallback for ties at k_max): an immature embedding that
        # puts thousands of hits within r of each other cannot make the validation quadratic
        stats = graph_efficiency(
            self.embed(item, device), item, self.cfg.r_max, self.cfg.k_max, self.cfg.backend, exact_ties=False
        )
        return loss, stats["found"], stats["n_truth"], stats["n_target_edges"], stats["n_edges"]

    def reduce_evaluation(self, parts: Sequence[tuple]) -> dict[str, float]:
        """The validation metrics of the events whose ``evaluate_item`` parts these are, in order."""
        losses = [p[0] for p in parts]
        found, total, n_target_edges, n_edges = (sum(p[k] for p in parts) for k in range(1, 5))
        return {
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "eff": found / total if total else float("nan"),
            "pur": n_target_edges / n_edges if n_edges else 0.0,
            "edges_per_event": n_edges / max(len(parts), 1),
        }


def graph_efficiency(
    emb: torch.Tensor, item: EmbeddingItem, r_max: float, k_max: int, backend="auto", exact_ties: bool = True
) -> dict:
    """Target-edge efficiency and purity of the radius graph of one embedded event
    (``exact_ties``: see ``neighbours.radius_graph``)."""
    pairs = radius_graph(emb, r_max, k_max, backend, exact_ties=exact_ties)
    hits = {"r": item.r.to(emb.device), "z": item.z.to(emb.device)}
    edges = orient_outward(pairs, hits).cpu()
    return target_edge_counts(edges, item.target_truth, emb.shape[0])


def load_items(
    files: Sequence[str | Path], cfg: MetricLearningConfig, limit: int | None = None
) -> list[EmbeddingItem]:
    """The events of ``files`` in order as items, at most ``limit`` of them."""
    items = []
    for f in files:
        for ev in iter_events(f, tables=("hits", "particles")):
            if limit is not None and len(items) >= limit:
                return items
            items.append(make_item(ev, cfg))
    return items


def run_train_metric_learning(
    train_files: Sequence[str | Path],
    val_files: Sequence[str | Path],
    output: str | Path,
    cfg: MetricLearningConfig | dict | None = None,
    device="auto",
) -> dict:
    """Stage entry point: train/val event files -> embedding model file (resumable, atomic)."""
    if cfg is None or isinstance(cfg, dict):
        cfg = from_dict(MetricLearningConfig, copy.deepcopy(cfg), "metric_learning")
    train_files = [train_files] if isinstance(train_files, (str, Path)) else list(train_files)
    val_files = [val_files] if isinstance(val_files, (str, Path)) else list(val_files)
    train_items = load_items(train_files, cfg, cfg.max_train_events)
    if not train_items:
        raise InputError(
            "no training events for metric learning", file=train_files[0] if train_files else None
        )
    # every training event gives samples_per_event samples (optimiser steps) per epoch
    train_items = [item for item in train_items for _ in range(cfg.samples_per_event)]
    val_items = load_items(val_files, cfg, cfg.max_val_events)
    task = MetricLearningTask(cfg)
    return fit(task, train_items, val_items, cfg.train, output, device)
