"""Training: the shared loop (``fit``), its config and checkpoints, and the edge-classifier stages."""

from .checkpoint import seed_everything
from .config import TrainConfig
from .device import resolve_device
from .edge_stages import (
    FilterConfig,
    GNNConfig,
    run_apply_filter,
    run_choose_working_point,
    run_score_graphs,
    run_train_filter,
    run_train_gnn,
)
from .loop import Task, Trainer, checkpoint_paths, fit
from .regions import RegionConfig

__all__ = [
    "FilterConfig",
    "GNNConfig",
    "RegionConfig",
    "Task",
    "TrainConfig",
    "Trainer",
    "checkpoint_paths",
    "fit",
    "resolve_device",
    "run_apply_filter",
    "run_choose_working_point",
    "run_score_graphs",
    "run_train_filter",
    "run_train_gnn",
    "seed_everything",
]
