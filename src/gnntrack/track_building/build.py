"""Track candidates from a scored edge graph: connected components, CC-and-walk or a trained HGNN.

``build_tracks`` takes numpy arrays or torch tensors. With tensors the CC method stays on their
device end to end (edge cut, components, CSR grouping), which is the path the one-process
inference pipeline times as "labelling"; the walkthrough is a sequential walk and runs on the CPU.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ..config import Count, NonNegative, Positive, Probability, from_dict
from ..tracks import Tracks
from .components import connected_components
from .hgnn import HGNNConfig
from .selection import select_min_pt, select_tracks
from .walkthrough import walk_tracks


@dataclass
class TrackBuildingConfig:
    """Settings of the track-building stage.

    method: ``cc`` = connected components on edges with score > score_cut; ``walkthrough`` =
        acorn's CC-and-walk: simple chains from CC, junction components walked; ``hgnn`` = a
        trained hierarchical GNN (GMPool super-nodes, hit-to-super-node assignment) on the edges
        above its loose cut, settings and model file in ``hgnn`` (``track_building.hgnn``).
    score_cut: edge score cut (strictly greater passes); None = the GNN model's working point
        (chosen on validation events and stored in its file) where the caller has the model
        (inference), else ``DEFAULT_SCORE_CUT``.
    walk_score_cut: edge cut used inside junction components by the walk (None: score_cut).
    min_hits: minimum number of spacepoints of a kept candidate.
    min_pt: minimum transverse momentum (GeV) of a kept candidate, estimated from its own
        spacepoints by a beam-line-constrained circle fit (``track_building.selection``); None =
        no cut. Removes the fragments of particles below the target pT that the GNN links.
    bfield: solenoid field (tesla) for that estimate; 2 T in ATLAS and the built-in detector.
    backend: connected-components backend: auto | scipy | torch | cugraph.
    hgnn: the HGNN's settings (``track_building.hgnn.HGNNConfig``); read only with ``method: hgnn``.
    """

    method: Literal["cc", "walkthrough", "hgnn"] = "cc"
    score_cut: Probability | None = None
    walk_score_cut: Probability | None = None
    min_hits: Count = 3
    min_pt: NonNegative | None = None
    bfield: Positive = 2.0
    backend: Literal["auto", "scipy", "torch", "cugraph"] = "auto"
    hgnn: HGNNConfig = field(default_factory=HGNNConfig)

    def __post_init__(self) -> None:
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")


DEFAULT_SCORE_CUT = 0.5  # a model without a stored working point


def _as_config(cfg) -> TrackBuildingConfig:
    if cfg is None:
        cfg = TrackBuildingConfig()
    elif not isinstance(cfg, TrackBuildingConfig):
        cfg = from_dict(TrackBuildingConfig, cfg, "track_building")
    return resolve_score_cut(cfg, None)


def resolve_score_cut(cfg: TrackBuildingConfig, model=None) -> TrackBuildingConfig:
    """``cfg`` with its cut set: the configured one, else ``model``'s working point, else the default."""
    if cfg.score_cut is not None:
        return cfg
    cut = getattr(model, "score_cut", None)
    return dataclasses.replace(cfg, score_cut=float(DEFAULT_SCORE_CUT if cut is None else cut))


def build_tracks(
    edge_index,
    scores,
    n_hits: int,
    cfg: TrackBuildingConfig | dict | None = None,
    hits=None,
    hgnn_model=None,
) -> Tracks:
    """Build the track candidates of one event.

    ``edge_index`` (2, E) hit rows directed away from the beam, ``scores`` (E,) edge scores in
    [0, 1] (None: every edge passes). Returns CSR ``Tracks`` of the same array kind as the input
    (torch input: tensors on the input's device); candidates shorter than ``min_hits`` are dropped,
    and with ``min_pt`` set those with a lower pT estimate, which needs ``hits`` (a mapping with
    the spacepoints' ``x`` and ``y`` in mm, numpy or torch). ``method: hgnn`` needs
    ``hgnn_model`` (a trained ``HGNN`` or its model file) and the model's node-feature columns
    in ``hits``.
    """
    cfg = _as_config(cfg)
    n_hits = int(n_hits)
    if cfg.min_pt is None:
        return _build(edge_index, scores, n_hits, cfg, hits, hgnn_model)
    if hits is None or "x" not in hits or "y" not in hits:
        raise ValueError("track_building.min_pt needs the spacepoints' x and y (hits=...)")
    tracks = _build(edge_index, scores, n_hits, cfg, hits, hgnn_model)
    return select_min_pt(tracks, hits["x"], hits["y"], cfg.min_pt, cfg.bfield)


def _build(edge_index, scores, n_hits: int, cfg: TrackBuildingConfig, hits=None, hgnn_model=None) -> Tracks:
    if cfg.method == "hgnn":
        return _hgnn(edge_index, scores, n_hits, cfg, hits, hgnn_model)
    on_gpu = isinstance(edge_index, torch.Tensor) and edge_index.is_cuda
    if cfg.backend == "cugraph" and not (on_gpu and cfg.method == "cc"):
        # cuGraph needs data on a GPU; a campaign configured for the cluster still runs on a laptop
        warnings.warn("cugraph backend needs CUDA tensors; using the auto backend instead", stacklevel=2)
        cfg = dataclasses.replace(cfg, backend="auto")
    if isinstance(edge_index, torch.Tensor):
        if scores is not None:
            scores = torch.as_tensor(scores, device=edge_index.device)
        if cfg.method == "cc":
            return _cc_tracks_torch(edge_index.long(), scores, n_hits, cfg)
        tracks = _build_numpy(
            edge_index.detach().cpu().numpy(),
            None if scores is None else scores.detach().float().cpu().numpy(),
            n_hits,
            cfg,
        )
        return tracks.to(edge_index.device)
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    scores = None if scores is None else np.asarray(scores, dtype=np.float32)
    return _build_numpy(edge_index, scores, n_hits, cfg)


def _hgnn(edge_index, scores, n_hits: int, cfg: TrackBuildingConfig, hits, model) -> Tracks:
    """HGNN candidates (run on the CPU) of the kind of ``edge_index``, at least ``min_hits`` long."""
    from .hgnn import hgnn_tracks

    device = edge_index.device if isinstance(edge_index, torch.Tensor) else None
    ei = edge_index.detach().cpu().numpy() if device is not None else np.asarray(edge_index, np.int64)
    ei = ei.reshape(2, -1).astype(np.int64, copy=False)
    sc = None
    if scores is not None:
        sc = scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    _check(ei, sc, n_hits)
    tracks = hgnn_tracks(ei, sc, n_hits, hits, cfg.hgnn, model)
    tracks = select_tracks(tracks, tracks.lengths() >= cfg.min_hits)
    return tracks if device is None else tracks.to(device)


def _check(edge_index, scores, n_hits: int) -> None:
    if scores is not None and scores.shape[0] != edge_index.shape[1]:
        raise ValueError(f"{scores.shape[0]} scores for {edge_index.shape[1]} edges")
    if edge_index.shape[1] and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n_hits):
        raise ValueError(f"edge_index refers to hits outside [0, {n_hits})")


def _cc_tracks_torch(edge_index: torch.Tensor, scores, n_hits: int, cfg: TrackBuildingConfig) -> Tracks:
    _check(edge_index, scores, n_hits)
    if scores is not None:
        edge_index = edge_index[:, scores > cfg.score_cut]
    labels = connected_components(edge_index, n_hits, backend=cfg.backend)
    return _group_torch(labels, cfg.min_hits)


def _group_torch(labels: torch.Tensor, min_hits: int) -> Tracks:
    """CSR grouping of hits by component label, without leaving the device."""
    device = labels.device
    if labels.numel() == 0:
        return Tracks(
            torch.zeros(0, dtype=torch.long, device=device), torch.zeros(1, dtype=torch.long, device=device)
        )
    sorted_labels, order = torch.sort(labels, stable=True)
    _, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    keep = counts >= min_hits
    hits = order[torch.repeat_interleave(keep, counts)]
    offsets = torch.zeros(int(keep.sum()) + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.cumsum(counts[keep], 0)
    return Tracks(hits, offsets)


def _group_numpy(labels: np.ndarray, min_hits: int, within: np.ndarray | None = None) -> Tracks:
    """Hit rows grouped by label (groups of >= min_hits) as CSR, each group sorted by ``within``.

    Groups come out in increasing label order; labels < 0 are ignored.
    """
    order = np.argsort(labels, kind="stable") if within is None else np.lexsort((within, labels))
    order = order[labels[order] >= 0]
    sorted_labels = labels[order]
    if len(order) == 0:
        return Tracks.empty()
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    keep = counts >= min_hits
    hits = order[np.repeat(keep, counts)]
    offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts[keep])
    return Tracks(hits.astype(np.int64), offsets)


def _build_numpy(edge_index: np.ndarray, scores, n_hits: int, cfg: TrackBuildingConfig) -> Tracks:
    _check(edge_index, scores, n_hits)
    passed = edge_index if scores is None else edge_index[:, scores > cfg.score_cut]
    labels = connected_components(passed, n_hits, backend=cfg.backend)
    if cfg.method == "cc":
        return _group_numpy(labels, cfg.min_hits)

    # CC-and-walk: components whose hits all have in- and out-degree <= 1 are simple chains.
    indeg = np.bincount(passed[1], minlength=n_hits)
    outdeg = np.bincount(passed[0], minlength=n_hits)
    junction_hit = (indeg > 1) | (outdeg > 1)
    junction_comp = np.zeros(n_hits, dtype=bool)
    junction_comp[labels[junction_hit]] = True
    in_junction = junction_comp[labels]

    simple_edges = passed[:, ~in_junction[passed[0]]]
    from_end = _distance_to_chain_end(simple_edges, n_hits)
    simple = list(_group_numpy(np.where(in_junction, -1, labels), cfg.min_hits, within=-from_end))
    walk_cut = cfg.score_cut if cfg.walk_score_cut is None else cfg.walk_score_cut
    walk_scores = np.ones(edge_index.shape[1], np.float32) if scores is None else scores
    walked = walk_tracks(edge_index, walk_scores, n_hits, np.flatnonzero(in_junction), walk_cut)
    walked = [t for t in walked if len(t) >= cfg.min_hits]
    tracks = sorted(simple + walked, key=lambda t: int(t.min()))
    return Tracks.from_lists(tracks)


def _distance_to_chain_end(edge_index: np.ndarray, n_hits: int) -> np.ndarray:
    """Number of edges from each hit to the end of its chain (list ranking by pointer doubling).

    Only meaningful where every hit has at most one successor (simple chains); sorting a chain by
    decreasing distance orders it from its first hit outward.
    """
    succ = np.full(n_hits, -1, dtype=np.int64)
    succ[edge_index[0]] = edge_index[1]
    dist = (succ >= 0).astype(np.int64)
    for _ in range(max(int(n_hits).bit_length(), 1) + 1):  # bounded: a directed cycle never ends
        has = succ >= 0
        if not has.any():
            break
        new_dist = dist.copy()
        new_dist[has] += dist[succ[has]]
        new_succ = succ.copy()
        new_succ[has] = succ[succ[has]]
        dist, succ = new_dist, new_succ
    return dist
