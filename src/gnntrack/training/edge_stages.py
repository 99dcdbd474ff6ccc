"""Pipeline stages of the edge classifiers: train filter/GNN, apply the filter, score graphs.

Each stage reads the per-shard events and graphs files (paired by shard), and writes its
output atomically (``fit``'s checkpoints, ``write_graphs``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from torch import nn

from ..config import Count, Probability, ProperFraction, Rule, from_dict
from ..edge_classification import EdgeClassifier
from ..event_data import EventData, feature_spec
from ..io.atomic import atomic_output
from ..io.errors import InputError
from ..io.event_store import read_event
from ..io.graph_store import Graph, iter_graphs, write_graphs
from ..metrics.edges import cut_at_efficiency, working_point
from ..models.filter import FilterModel, FilterModelConfig
from ..models.interaction_gnn import InteractionGNN, InteractionGNNConfig
from ..models.losses import LossConfig
from ..models.registry import load_checkpoint, load_model, save_checkpoint
from ..track_building.build import DEFAULT_SCORE_CUT
from .checkpoint import seed_everything
from .config import TrainConfig
from .device import resolve_device
from .edge_task import EdgeClassifierTask
from .graph_data import load_items
from .loop import fit
from .regions import RegionConfig
from .working_point import WorkingPointConfig, choose_working_point

log = logging.getLogger(__name__)


@dataclass
class FilterConfig(FilterModelConfig):
    """The ``filter`` section: the model's own settings (``FilterModelConfig``) and its training."""

    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    regions: RegionConfig = field(default_factory=RegionConfig)
    max_edges_per_step: Count | None = 200_000  # random edge subset per training step
    #: apply_filter keeps edges with score >= cut; also the validation working point and inference's
    #: filter_cut, hence below 1. The cut is stored with the model (its working point).
    score_cut: ProperFraction = 0.1
    #: when set, the stored cut is instead the highest cut that keeps this fraction of the
    #: validation events' target edges (chosen after training)
    target_efficiency: Annotated[float, Rule(exclusive_minimum=0, maximum=1)] | None = None
    chunk_size: Count = 1_000_000  # edges per forward pass when scoring (bounds memory)
    max_train_events: Count | None = None
    max_val_events: Count | None = None


@dataclass
class GNNConfig(InteractionGNNConfig):
    """The ``gnn`` section: the model's own settings (``InteractionGNNConfig``), its training and
    its working point."""

    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    regions: RegionConfig = field(default_factory=RegionConfig)
    score_cut: Probability = 0.5  # cut of the per-epoch validation metrics; the "fixed" working point
    #: the edge cut stored with the model, chosen on validation events after training
    working_point: WorkingPointConfig = field(default_factory=WorkingPointConfig)
    max_train_events: Count | None = None
    max_val_events: Count | None = None


def _train(model, cfg, train_events, train_graphs, val_events, val_graphs, output, device, **task_kw) -> dict:
    t0 = time.perf_counter()
    train = load_items(
        train_events, train_graphs, model.node_features, model.feature_scales, cfg.loss, cfg.regions,
        cfg.max_train_events,
    )  # fmt: skip
    val = load_items(
        val_events, val_graphs, model.node_features, model.feature_scales, cfg.loss, None, cfg.max_val_events
    )
    log.info(
        "%d training items, %d validation events (%.1f s to load)",
        len(train),
        len(val),
        time.perf_counter() - t0,
    )
    # input standardisation from the training items (region margins count a few hits twice)
    model.fit_input_normalisation(item.x for item in train)
    task = EdgeClassifierTask(model, score_cut=cfg.score_cut, **task_kw)
    summary = fit(task, train, val, cfg.train, output, device)
    summary["n_train_items"] = len(train)
    summary["n_val_events"] = len(val)
    return summary


def run_train_filter(
    train_events: Sequence[str | Path],
    train_graphs: Sequence[str | Path],
    val_events: Sequence[str | Path],
    val_graphs: Sequence[str | Path],
    output: str | Path,
    cfg: FilterConfig | dict | None = None,
    device: str = "auto",
) -> dict:
    """Train the edge filter; best model -> ``output`` (see ``gnntrack.training.fit``)."""
    cfg = cfg if isinstance(cfg, FilterConfig) else from_dict(FilterConfig, cfg, "filter")
    seed_everything(cfg.train.seed)
    model = FilterModel(cfg)
    summary = _train(
        model, cfg, train_events, train_graphs, val_events, val_graphs, output, device,
        max_edges_per_step=cfg.max_edges_per_step, eval_chunk_size=cfg.chunk_size,
    )  # fmt: skip
    dev = resolve_device(device)
    wp = {"score_cut": float(cfg.score_cut), "criterion": "fixed"}
    if cfg.target_efficiency is not None:
        s_l, y_l, yt_l = [], [], []
        for ef, gf in zip(val_events, val_graphs):
            stage = EdgeClassifier("filter", model, cfg.score_cut, chunk_size=cfg.chunk_size)
            for graph, scores, _ in _score_file(ef, gf, stage, dev):
                s_l.append(scores)
                y_l.append(graph.y)
                yt_l.append(graph.y_target)
        if s_l:
            s, y, yt = np.concatenate(s_l), np.concatenate(y_l), np.concatenate(yt_l)
            cut = cut_at_efficiency(s, yt, cfg.target_efficiency)
            wp = {"criterion": "target_efficiency", "target_efficiency": cfg.target_efficiency,
                  **working_point(s, y, yt, cut), "score_cut": float(min(cut, 1.0 - 1e-6))}  # fmt: skip
    payload = load_checkpoint(output, "model file")
    payload["working_point"] = wp
    save_checkpoint(payload, output)
    log.info("filter working point: %s", wp)
    summary["working_point"] = wp
    return summary


def run_train_gnn(
    train_events: Sequence[str | Path],
    train_graphs: Sequence[str | Path],
    val_events: Sequence[str | Path],
    val_graphs: Sequence[str | Path],
    output: str | Path,
    cfg: GNNConfig | dict | None = None,
    device: str = "auto",
    track_building=None,
    choose_cut: bool = True,
) -> dict:
    """Train the interaction GNN; best model -> ``output``.

    With ``choose_cut`` the working point is then chosen on the validation events with the
    ``track_building`` settings (see ``choose_gnn_working_point``); the workflow does that in its
    own rule instead, so that a change of track building does not retrain.
    """
    cfg = cfg if isinstance(cfg, GNNConfig) else from_dict(GNNConfig, cfg, "gnn")
    seed_everything(cfg.train.seed)
    model = InteractionGNN(cfg)
    summary = _train(model, cfg, train_events, train_graphs, val_events, val_graphs, output, device)
    if choose_cut:
        summary["working_point"] = _store_working_point(
            model, val_events, val_graphs, output, cfg, track_building, device
        )
    return summary


def run_choose_working_point(
    model_file: str | Path,
    val_events: Sequence[str | Path],
    val_graphs: Sequence[str | Path],
    output: str | Path,
    cfg: GNNConfig | dict | None = None,
    track_building=None,
    device: str = "auto",
) -> dict:
    """A trained GNN's file -> the same model with its working point chosen on validation events.

    ``cfg`` is the ``gnn`` section (its ``working_point`` and ``score_cut``), ``track_building``
    the ``inference.track_building`` settings the candidates are built with. Returns the working point.
    """
    cfg = cfg if isinstance(cfg, GNNConfig) else from_dict(GNNConfig, cfg, "gnn")
    dev = resolve_device(device)
    model = load_model(model_file, dev)
    payload = load_checkpoint(model_file, "model file")
    with atomic_output(output) as tmp:
        save_checkpoint(payload, tmp)
        return _store_working_point(model, val_events, val_graphs, tmp, cfg, track_building, device)


def _store_working_point(
    model, val_events, val_graphs, output, cfg: GNNConfig, track_building, device
) -> dict:
    t0 = time.perf_counter()
    wp = choose_working_point(
        model,
        val_events,
        val_graphs,
        cfg.working_point,
        cfg.score_cut,
        resolve_device(device),
        track_building,
    )
    payload = load_checkpoint(output, "model file")
    payload["working_point"] = wp
    save_checkpoint(payload, output)
    best = next((r for r in wp["scan"] if r["cut"] == wp["score_cut"]), {})
    log.info(
        "working point (%s, %d validation events, %.1f s): score cut %.3f, two-way efficiency %s, fake rate %s",
        wp["criterion"], wp["n_events"], time.perf_counter() - t0, wp["score_cut"],
        best.get("two_way_efficiency"), best.get("two_way_fake_rate"),
    )  # fmt: skip
    return wp


def _as_model(model: nn.Module | str | Path, device: torch.device) -> nn.Module:
    if isinstance(model, nn.Module):
        return model.to(device).eval()
    return load_model(model, device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def event_data(event_hits: dict, graph: Graph, model: nn.Module, device: torch.device) -> EventData:
    """A stored event's hits and graph as the ``EventData`` the stage objects take."""
    ev = EventData.from_hits(event_hits, (), [feature_spec(model)], device, key=graph.key)
    ev.set_graph(torch.from_numpy(np.ascontiguousarray(graph.edge_index, dtype=np.int64)))
    return ev


def score_graph(
    model: nn.Module, event_hits: dict, graph: Graph, device: torch.device, chunk_size: int | None = None
) -> np.ndarray:
    """Sigmoid scores (E,) float32 of one graph's edges (the pipeline's ``EdgeClassifier``)."""
    stage = EdgeClassifier("score", model, cut=0.5, chunk_size=chunk_size)
    return stage(event_data(event_hits, graph, model, device)).scores("score").cpu().numpy()


def _score_file(event_file, graph_file, stage: EdgeClassifier, device):
    """Yield (graph, scores, seconds) for every graph of a shard, scored by ``stage``."""
    for graph in iter_graphs(graph_file):
        event = read_event(event_file, graph.key, tables=("hits",))
        if event.n_hits != graph.n_hits:
            raise InputError(
                f"graph has {graph.n_hits} hits but the event has {event.n_hits}",
                file=graph_file,
                event=graph.key,
            )
        ev = event_data(event.hits, graph, stage.model, device)
        _sync(device)
        t0 = time.perf_counter()
        stage(ev)
        _sync(device)
        yield graph, ev.scores(stage.name).cpu().numpy(), time.perf_counter() - t0


def _summary(all_scores, all_y, all_yt, cut, times, n_events) -> dict:
    if all_scores:
        metrics = working_point(
            np.concatenate(all_scores), np.concatenate(all_y), np.concatenate(all_yt), cut
        )
    else:
        metrics = working_point(np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), cut)
    metrics.update(
        score_cut=cut,
        n_events=n_events,
        edges_in_per_event=metrics["edges_in"] / max(n_events, 1),
        edges_out_per_event=metrics["edges_out"] / max(n_events, 1),
        time_per_event_s=float(np.mean(times)) if times else float("nan"),
    )
    return metrics


def run_apply_filter(
    event_file: str | Path,
    graph_file: str | Path,
    model: nn.Module | str | Path,
    output: str | Path,
    cfg: FilterConfig | dict | None = None,
    device: str = "auto",
) -> dict:
    """Score every edge (``scores/filter``) and write the graphs of the edges with score >= cut.

    Returns working-point metrics of the cut on the input graphs (efficiency, purity, AUC,
    edges in/out per event, scoring time per event).
    """
    cfg = cfg if isinstance(cfg, FilterConfig) else from_dict(FilterConfig, cfg, "filter")
    dev = resolve_device(device)
    net = _as_model(model, dev)
    cut = float(getattr(net, "score_cut", cfg.score_cut))  # the model's stored working point
    # the inference chain's filter stage; its cut is applied below, where the graph's truth
    # labels are kept with the edges
    stage = EdgeClassifier("filter", net, cut, chunk_size=cfg.chunk_size)
    out, scores_l, y_l, yt_l, times = [], [], [], [], []
    for graph, scores, dt in _score_file(event_file, graph_file, stage, dev):
        graph.scores["filter"] = scores
        out.append(graph.subset(stage.passes(scores)))
        scores_l.append(scores)
        y_l.append(graph.y)
        yt_l.append(graph.y_target)
        times.append(dt)
    write_graphs(output, out, stage="filter")
    return _summary(scores_l, y_l, yt_l, cut, times, len(out))


def run_score_graphs(
    event_file: str | Path,
    graph_file: str | Path,
    model: nn.Module | str | Path,
    output: str | Path,
    stage_name: str = "gnn",
    device: str = "auto",
    score_cut: float | None = None,
    chunk_size: int | None = None,
) -> dict:
    """Add ``scores/<stage_name>`` to every graph (all edges kept); metrics at ``score_cut``
    (None: the model's stored working point, else 0.5)."""
    dev = resolve_device(device)
    net = _as_model(model, dev)
    if score_cut is None:
        score_cut = float(getattr(net, "score_cut", DEFAULT_SCORE_CUT))
    stage = EdgeClassifier(stage_name, net, score_cut, chunk_size=chunk_size)
    out, scores_l, y_l, yt_l, times = [], [], [], [], []
    for graph, scores, dt in _score_file(event_file, graph_file, stage, dev):
        graph.scores[stage_name] = scores
        out.append(graph)
        scores_l.append(scores)
        y_l.append(graph.y)
        yt_l.append(graph.y_target)
        times.append(dt)
    write_graphs(output, out, stage=stage_name)
    return _summary(scores_l, y_l, yt_l, score_cut, times, len(out))
