"""Learned models: shared MLP builder, edge features, filter MLP, interaction GNN, losses, model files."""

from .filter import FilterModel
from .interaction_gnn import InteractionGNN
from .registry import load_model, read_model_info, save_model

__all__ = ["FilterModel", "InteractionGNN", "load_model", "read_model_info", "save_model"]
