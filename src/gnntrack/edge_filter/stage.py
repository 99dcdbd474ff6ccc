"""The edge filter stage: train the filter MLP, and apply it to stored graphs at its working point."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from torch import nn

from ..config import Count, ProperFraction, Rule, from_dict
from ..device import resolve_device
from ..edge_classification import EdgeClassifier
from ..edge_classification.compression import CompressionConfig
from ..edge_classification.regions import RegionConfig
from ..edge_classification.shards import as_model, score_file, score_summary, train_edge_classifier
from ..io.graph_store import write_graphs
from ..metrics.edges import cut_at_efficiency, working_point
from ..models.filter import FilterModel, FilterModelConfig
from ..models.losses import LossConfig
from ..models.registry import load_checkpoint, save_checkpoint
from ..training.checkpoint import seed_everything
from ..training.config import TrainConfig
from ..training.distributed import is_main

log = logging.getLogger(__name__)


@dataclass
class FilterConfig(FilterModelConfig):
    """The ``filter`` section: the model's own settings (``FilterModelConfig``) and its training."""

    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    regions: RegionConfig = field(default_factory=RegionConfig)
    #: random edge subset per training step of the per-edge filter (a filter with context always
    #: trains on whole regions: a hit's context sums all its edges)
    max_edges_per_step: Count | None = 200_000
    #: apply_filter keeps edges with score >= cut; also the validation working point and inference's
    #: filter_cut, hence below 1. The cut is stored with the model (its working point).
    score_cut: ProperFraction = 0.1
    #: when set, the stored cut is instead the highest cut that keeps this fraction of the
    #: validation events' target edges (chosen after training)
    target_efficiency: Annotated[float, Rule(exclusive_minimum=0, maximum=1)] | None = None
    chunk_size: Count = 1_000_000  # edges per forward pass when scoring (bounds memory)
    max_train_events: Count | None = None
    max_val_events: Count | None = None
    #: model file whose weights (and input standardisation) training starts from: fine-tuning,
    #: e.g. before compression; it must have this section's model settings (a filter with
    #: context may start from a per-edge filter of the same settings: its context is new)
    init_from: str | None = None
    #: training of a filter with context (``context_hidden`` > 0), which starts from a trained
    #: per-edge filter: ``init_from`` when set, else one trained first with ``train`` (random edge
    #: subsets, ``<output>.per_edge``); then the whole filter trains on whole regions with this
    context_train: TrainConfig = field(default_factory=TrainConfig)
    #: pruning / quantisation-aware training (``gnntrack.edge_classification.compression``)
    compression: CompressionConfig = field(default_factory=CompressionConfig)


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
    data = (train_events, train_graphs, val_events, val_graphs)
    per_edge = None
    if model.context:
        # the per-edge filter the context round starts from, unless init_from gives one
        if not cfg.init_from:
            start = Path(output).with_name(Path(output).name + ".per_edge")
            widths = {k: v for k, v in cfg.widths.items() if k.startswith("net.")}
            phase1 = dataclasses.replace(
                cfg, context_hidden=0, widths=widths, compression=CompressionConfig()
            )
            log.info("filter with context: training the per-edge filter it starts from -> %s", start)
            per_edge = train_edge_classifier(
                FilterModel(phase1), phase1, *data, start, device,
                max_edges_per_step=cfg.max_edges_per_step, eval_chunk_size=cfg.chunk_size,
            )  # fmt: skip
            cfg = dataclasses.replace(cfg, init_from=str(start))
        cfg = dataclasses.replace(cfg, train=cfg.context_train)
        seed_everything(cfg.train.seed)
    summary = train_edge_classifier(
        model, cfg, *data, output, device,
        max_edges_per_step=None if model.context else cfg.max_edges_per_step, eval_chunk_size=cfg.chunk_size,
    )  # fmt: skip
    if per_edge is not None:
        summary["per_edge"] = {k: v for k, v in per_edge.items() if k != "history"}
    if not is_main():
        return summary  # data-parallel training: rank 0 chooses and stores the working point
    dev = resolve_device(device)
    wp = {"score_cut": float(cfg.score_cut), "criterion": "fixed"}
    if cfg.target_efficiency is not None:
        s_l, y_l, yt_l = [], [], []
        for ef, gf in zip(val_events, val_graphs):
            stage = EdgeClassifier("filter", model, cfg.score_cut, chunk_size=cfg.chunk_size)
            for graph, scores, _ in score_file(ef, gf, stage, dev):
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
    net = as_model(model, dev)
    cut = float(getattr(net, "score_cut", cfg.score_cut))  # the model's stored working point
    # the inference chain's filter stage; its cut is applied below, where the graph's truth
    # labels are kept with the edges
    stage = EdgeClassifier("filter", net, cut, chunk_size=cfg.chunk_size)
    out, scores_l, y_l, yt_l, times = [], [], [], [], []
    for graph, scores, dt in score_file(event_file, graph_file, stage, dev):
        graph.scores["filter"] = scores
        out.append(graph.subset(stage.passes(scores)))
        scores_l.append(scores)
        y_l.append(graph.y)
        yt_l.append(graph.y_target)
        times.append(dt)
    write_graphs(output, out, stage="filter")
    return score_summary(scores_l, y_l, yt_l, cut, times, len(out))
