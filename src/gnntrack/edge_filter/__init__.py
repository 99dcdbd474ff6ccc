"""The edge filter: an MLP on hit pairs between graph construction and the GNN, dropping the edges
below its working point (stored with the model) so that GNN epochs and inference get cheaper."""

from .stage import FilterConfig, run_apply_filter, run_train_filter

__all__ = ["FilterConfig", "run_apply_filter", "run_train_filter"]
