"""The GNN stage: train the interaction GNN and choose its working point on validation events."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Count, Probability, from_dict
from ..device import resolve_device
from ..edge_classification.compression import CompressionConfig
from ..edge_classification.regions import RegionConfig
from ..edge_classification.shards import train_edge_classifier
from ..io.atomic import atomic_output
from ..models.interaction_gnn import InteractionGNN, InteractionGNNConfig
from ..models.losses import LossConfig
from ..models.registry import load_checkpoint, load_model, save_checkpoint
from ..training.checkpoint import seed_everything
from ..training.config import TrainConfig
from ..training.distributed import is_main
from .working_point import WorkingPointConfig, choose_working_point

log = logging.getLogger(__name__)


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
    #: model file whose weights (and input standardisation) training starts from: fine-tuning,
    #: e.g. before compression; it must have this section's model settings
    init_from: str | None = None
    #: pruning / quantisation-aware training (``gnntrack.edge_classification.compression``)
    compression: CompressionConfig = field(default_factory=CompressionConfig)


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
    summary = train_edge_classifier(
        model, cfg, train_events, train_graphs, val_events, val_graphs, output, device
    )
    if choose_cut and is_main():  # data-parallel training: rank 0 chooses and stores it
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
