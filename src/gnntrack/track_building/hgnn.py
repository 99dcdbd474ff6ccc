"""HGNN track building: settings, training (shared loop) and candidates from a trained ``HGNN``.

The model (``gnntrack.models.hgnn.HGNN``) pools the hits of a GNN-scored graph into super-nodes
(GMPool) and scores hit–super-node assignments; here:

- ``HGNNConfig``: the ``track_building.hgnn`` settings -- the pooling and assignment cuts, the
  duplicate control, and (for ``gnntrack train-hgnn``) the model's hyper-parameters and its
  training. The trained model is a model file, given to track building like the GNN's
  (``hgnn_model=``; ``gnntrack infer --hgnn-model``; the workflow's ``train_hgnn`` rule);
- ``HGNNTask``: the ``gnntrack.training.Task`` (loss = GMPool edge loss + assignment loss against
  the truth particles, target particles weighted up; validation = two-way track efficiency and
  fake rate of the candidates), trained by ``gnntrack.training.fit``;
- ``hgnn_tracks``: the candidates of one event.

Training labels. An edge is positive when both hits belong to the same particle. A hit–super-node
pair is positive when the hit's particle is the super-node's majority particle (noise and
noise-majority super-nodes: negative). Pairs and edges of target particles weigh 1, the others
``non_target_weight``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, Count, NonNegative, Probability, from_dict
from ..io.errors import InputError
from ..io.features import node_features
from ..models.hgnn import HGNN, HGNNModelConfig
from ..tracks import Tracks
from ..training import TrainConfig, fit


@dataclass
class HGNNConfig(HGNNModelConfig):
    """The ``track_building.hgnn`` section: the model's settings (``HGNNModelConfig``, used when
    training; a trained model file carries its own), then track building and training settings.

    pool_cut: GMPool edge cut on the learned similarity; None = adaptive (the valley of the
        similarity histogram of each event). 0.8 over-splits into pure fragments that the
        assignment joins again: on the default campaign's validation events it beat the adaptive
        cut (two-way efficiency 0.9807 against 0.9608 after 10 and 8 epochs on 40 events;
        benchmarks/hgnn_20261203). Training and track building should use the same cut.
    assign_cut: a hit joins a super-node's candidate when its assignment score exceeds this
        (0.7: the best two-way efficiency on the validation events, benchmarks/hgnn_20261203).
    max_overlap: a candidate sharing more than this fraction of its hits with one larger
        candidate is dropped (duplicate control; 1 keeps all).
    """

    pool_cut: Probability | None = 0.8
    assign_cut: Probability = 0.7
    max_overlap: Probability = 0.5
    non_target_weight: NonNegative = 0.1
    #: weight of the GMPool edge loss beside the assignment loss
    edge_loss_weight: NonNegative = 1.0
    max_train_events: Count | None = None
    max_val_events: Count | None = None
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class HGNNItem:
    """One event's loose graph, ready for the HGNN (CPU tensors)."""

    key: str
    x: torch.Tensor  # (N, F) node features of the loose graph's hits
    edge_index: torch.Tensor  # (2, E) local rows
    score: torch.Tensor  # (E,) GNN scores
    nodes: np.ndarray  # (N,) event hit row of each local node
    n_hits: int
    particle: np.ndarray  # (N,) particle row of each node, -1 noise
    is_target: np.ndarray  # (P,) bool
    hit_particle: np.ndarray  # (2, L) the event's hit-particle links (for the validation metrics)


def loose_graph(edge_index: np.ndarray, scores: np.ndarray, n_hits: int, loose_cut: float):
    """The hits touched by an edge scoring above ``loose_cut`` and those edges, re-indexed."""
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    sc = np.asarray(scores, dtype=np.float32)
    keep = sc > loose_cut
    ei, sc = ei[:, keep], sc[keep]
    nodes = np.unique(ei)
    local = np.full(n_hits, -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    return nodes, local[ei], sc


def make_item(event, graph, model: HGNN) -> HGNNItem:
    """An ``HGNNItem`` from an event (hits, particles, hit_particle) and its GNN-scored graph."""
    if "gnn" not in graph.scores:
        raise InputError("graph has no GNN scores (scores/gnn); score it first", event=graph.key)
    nodes, ei, sc = loose_graph(graph.edge_index, graph.scores["gnn"], graph.n_hits, model.loose_cut)
    x = node_features(event.hits, model.node_features, model.feature_scales)[nodes]
    particle = np.asarray(event.hits["particle_index"], dtype=np.int64)[nodes]
    return HGNNItem(
        key=graph.key,
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(ei),
        score=torch.from_numpy(sc),
        nodes=nodes,
        n_hits=int(graph.n_hits),
        particle=particle,
        is_target=np.asarray(event.particles["is_target"], dtype=bool),
        hit_particle=np.asarray(event.hit_particle, dtype=np.int64),
    )


def majority_particle(supernode: np.ndarray, particle: np.ndarray, n_super: int) -> np.ndarray:
    """The particle with most hits in each super-node (-1 when its hits are mostly noise/empty)."""
    out = np.full(n_super, -1, dtype=np.int64)
    if supernode.size == 0:
        return out
    code = supernode * (int(particle.max()) + 2) + (particle + 1)
    uniq, counts = np.unique(code, return_counts=True)
    sn, part = uniq // (int(particle.max()) + 2), uniq % (int(particle.max()) + 2) - 1
    order = np.lexsort((-counts, sn))  # per super-node, most hits first
    first = np.r_[True, sn[order][1:] != sn[order][:-1]]
    out[sn[order][first]] = part[order][first]
    return out


def _labels(item: HGNNItem, out, non_target_weight: float):
    """Edge and pair labels/weights of one forward pass (CPU numpy -> tensors)."""
    ei = item.edge_index.numpy()
    p = item.particle
    pa, pb = p[ei[0]], p[ei[1]]
    tgt = item.is_target
    edge_y = (pa == pb) & (pa >= 0)
    edge_t = edge_y & tgt[np.maximum(pa, 0)]
    edge_w = np.where(edge_y & ~edge_t, non_target_weight, 1.0)
    sn = out.supernode.cpu().numpy()
    major = majority_particle(sn, p, out.n_super)
    ph, ps = out.pair_hit.cpu().numpy(), out.pair_super.cpu().numpy()
    hp, sp = p[ph], major[ps]
    pair_y = (hp == sp) & (sp >= 0)
    important = ((sp >= 0) & tgt[np.maximum(sp, 0)]) | ((hp >= 0) & tgt[np.maximum(hp, 0)])
    pair_w = np.where(important, 1.0, non_target_weight)
    as_t = functools.partial(torch.as_tensor, dtype=torch.float32)
    return as_t(edge_y), as_t(edge_w), as_t(pair_y), as_t(pair_w)


def _bce(logit: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if logit.numel() == 0:
        return logit.sum()
    per = nn.functional.binary_cross_entropy_with_logits(logit.float(), y, reduction="none")
    return (per * w).sum() / w.sum().clamp_min(1e-12)


def candidates(out, nodes: np.ndarray, assign_cut: float, max_overlap: float) -> Tracks:
    """Track candidates of one forward pass: each super-node's hits assigned above the cut (event
    hit rows), larger candidates first; one sharing more than ``max_overlap`` of its hits with a
    single kept candidate is dropped."""
    keep = (torch.sigmoid(out.pair_logit.detach().float()) > assign_cut).cpu().numpy()
    ph = out.pair_hit.cpu().numpy()[keep]
    ps = out.pair_super.cpu().numpy()[keep]
    if ph.size == 0:
        return Tracks.empty()
    order = np.lexsort((ph, ps))
    ph, ps = ph[order], ps[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    ends = np.r_[starts[1:], len(ps)]
    by_size = np.argsort(-(ends - starts), kind="stable")
    owner = np.full(len(nodes), -1, dtype=np.int64)
    kept = []
    for c in by_size.tolist():
        hits = ph[starts[c] : ends[c]]
        owned = owner[hits]
        owned = owned[owned >= 0]
        if owned.size and np.bincount(owned).max() > max_overlap * len(hits):
            continue
        free = hits[owner[hits] < 0]
        owner[free] = len(kept)
        kept.append(nodes[hits])
    kept.sort(key=lambda t: int(t.min()))
    return Tracks.from_lists(kept)


class HGNNTask:
    """``gnntrack.training.Task`` of the HGNN (see the module docstring)."""

    def __init__(self, cfg: HGNNConfig, model: HGNN | None = None, min_hits: int = 3):
        self.cfg = cfg
        self.model = model or HGNN(cfg)
        self.min_hits = min_hits

    def model_config(self) -> dict:
        return dict(self.model.config)

    def _forward(self, item: HGNNItem, device):
        return self.model(
            item.x.to(device), item.edge_index.to(device), item.score.to(device), pool_cut=self.cfg.pool_cut
        )

    def _loss(self, item: HGNNItem, out, device) -> torch.Tensor:
        labels = _labels(item, out, self.cfg.non_target_weight)
        edge_y, edge_w, pair_y, pair_w = (t.to(device) for t in labels)
        edge = _bce(out.edge_logit, edge_y, edge_w)
        return self.cfg.edge_loss_weight * edge + _bce(out.pair_logit, pair_y, pair_w)

    def loss(self, item: HGNNItem, device) -> torch.Tensor:
        return self._loss(item, self._forward(item, device), device)

    def evaluate(self, items: Sequence[HGNNItem], device) -> dict[str, float]:
        return self.reduce_evaluation([self.evaluate_item(i, item, device) for i, item in enumerate(items)])

    def evaluate_item(self, index: int, item: HGNNItem, device) -> tuple:
        """Loss, and two-way efficiency/fake counts of the candidates (>= ``min_hits`` hits)."""
        from ..metrics.tracks import apply_style, event_rates, match_pairs

        out = self._forward(item, device)
        loss = float(self._loss(item, out, device))
        tracks = candidates(out, item.nodes, self.cfg.assign_cut, self.cfg.max_overlap)
        tracks = _min_hits(tracks, self.min_hits)
        pairs = match_pairs(tracks, item.hit_particle, item.n_hits, len(item.is_target))
        r = event_rates(apply_style(pairs, "two_way", 0.5), item.is_target)
        return loss, r.n_target, r.n_target_reconstructed, r.n_tracks, r.n_fake, r.n_duplicates, out.cut

    def reduce_evaluation(self, parts: Sequence[tuple]) -> dict[str, float]:
        loss = float(np.mean([p[0] for p in parts])) if parts else float("nan")
        n_t, n_r, n_tr, n_f, n_d = (sum(p[k] for p in parts) for k in range(1, 6))
        return {
            "loss": loss,
            "eff": n_r / n_t if n_t else float("nan"),
            "fake": n_f / n_tr if n_tr else float("nan"),
            "dup": n_d / n_r if n_r else float("nan"),
            "pool_cut": float(np.mean([p[6] for p in parts])) if parts else float("nan"),
        }


def _min_hits(tracks: Tracks, min_hits: int) -> Tracks:
    from .selection import select_tracks

    return select_tracks(tracks, tracks.lengths() >= min_hits)


# --------------------------------------------------------------------------- track building
@functools.lru_cache(maxsize=4)
def _cached_model(path: str, mtime_ns: int, size: int) -> HGNN:
    from ..models.registry import load_model

    model = load_model(path, "cpu")
    if not isinstance(model, HGNN):
        raise InputError(f"not an HGNN model file (class {type(model).__name__})", file=path)
    return model


def load_hgnn(model: HGNN | str | Path | None) -> HGNN:
    """The HGNN of a model file (loaded once per file version); a loaded HGNN is passed through."""
    if isinstance(model, HGNN):
        return model
    if model is None:
        raise ConfigError(
            "track_building.method 'hgnn' needs a trained HGNN model file (gnntrack train-hgnn; "
            "hgnn_model=..., gnntrack infer --hgnn-model)"
        )
    if isinstance(model, nn.Module):
        raise InputError(f"not an HGNN model ({type(model).__name__})")
    p = Path(model)
    if not p.exists():
        raise InputError("HGNN model file does not exist", file=p)
    st = p.stat()
    return _cached_model(str(p), st.st_mtime_ns, st.st_size)


def hgnn_tracks(edge_index, scores, n_hits: int, hits: Mapping, cfg: HGNNConfig, model) -> Tracks:
    """HGNN candidates of one event (numpy ``Tracks``, event hit rows; no length or pT cut yet).

    ``model``: an ``HGNN`` or its model file. ``hits`` must hold the model's node-feature columns
    (and ``x``), numpy or torch.
    """
    model = load_hgnn(model)
    if hits is None:
        raise ValueError("track_building.method 'hgnn' needs the event's hits (hits=...)")
    cols = {"x", *model.node_features}
    missing = sorted(c for c in cols if c not in hits)
    if missing:
        raise ValueError(f"track_building.method 'hgnn' needs hit column(s) {missing}")
    host = {c: _numpy(hits[c]) for c in cols}
    if scores is None:
        scores = np.ones(np.asarray(edge_index).shape[1], np.float32)
    nodes, ei, sc = loose_graph(edge_index, scores, n_hits, model.loose_cut)
    if len(nodes) == 0:
        return Tracks.empty()
    x = torch.from_numpy(node_features(host, model.node_features, model.feature_scales)[nodes])
    with torch.no_grad():
        out = model(x, torch.from_numpy(ei), torch.from_numpy(sc), pool_cut=cfg.pool_cut)
    return candidates(out, nodes, cfg.assign_cut, cfg.max_overlap)


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


# --------------------------------------------------------------------------- training
def load_items(event_files, scored_files, model: HGNN, max_events: int | None = None) -> list[HGNNItem]:
    from ..edge_classification.data import iter_event_graphs

    tables = ("hits", "particles")
    return [
        make_item(ev, g, model) for ev, g in iter_event_graphs(event_files, scored_files, tables, max_events)
    ]


def run_train_hgnn(
    train_events: Sequence[str | Path],
    train_scored: Sequence[str | Path],
    val_events: Sequence[str | Path],
    val_scored: Sequence[str | Path],
    output: str | Path,
    cfg: HGNNConfig | dict | None = None,
    device="auto",
    min_hits: int = 3,
) -> dict:
    """Stage entry point: events + GNN-scored graphs -> HGNN model file (``gnntrack.training.fit``)."""
    if cfg is None or isinstance(cfg, dict):
        cfg = from_dict(HGNNConfig, copy.deepcopy(cfg), "inference.track_building.hgnn")
    if cfg.train.distributed.ranks > 1:
        raise ConfigError("track_building.hgnn.train.distributed.ranks: HGNN training runs in one process")
    from ..training.checkpoint import seed_everything

    seed_everything(cfg.train.seed)
    model = HGNN(cfg)
    train_items = load_items(list(train_events), list(train_scored), model, cfg.max_train_events)
    if not train_items:
        raise InputError("no training events for the HGNN")
    val_items = load_items(list(val_events), list(val_scored), model, cfg.max_val_events)
    return fit(HGNNTask(cfg, model, min_hits), train_items, val_items, cfg.train, output, device)
