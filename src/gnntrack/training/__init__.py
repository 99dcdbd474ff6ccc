"""Training: the one loop every learned stage trains with (``fit`` / ``Trainer``), its settings
(``TrainConfig``) and checkpoints. The stages' own training lives with them (``edge_filter``,
``gnn``, ``graph_construction.metric_learning``)."""

from .checkpoint import seed_everything
from .config import TrainConfig
from .loop import Task, Trainer, checkpoint_paths, fit

__all__ = ["Task", "TrainConfig", "Trainer", "checkpoint_paths", "fit", "seed_everything"]
