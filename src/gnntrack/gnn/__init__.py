"""The GNN edge classifier (interaction network): training, and its working point (the edge cut
chosen on validation events with the campaign's track building and stored with the model)."""

from .stage import GNNConfig, run_choose_working_point, run_train_gnn
from .working_point import WorkingPointConfig, choose_working_point, scan_cuts

__all__ = [
    "GNNConfig",
    "WorkingPointConfig",
    "choose_working_point",
    "run_choose_working_point",
    "run_train_gnn",
    "scan_cuts",
]
