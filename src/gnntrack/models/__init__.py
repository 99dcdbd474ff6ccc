"""Learned models: shared MLP builder, edge features, filter MLP, interaction GNN, losses, model files.

Each model takes its own config dataclass (``InteractionGNN(InteractionGNNConfig(...))``, or
settings by keyword: ``InteractionGNN(hidden=64)``); the stage sections extend those dataclasses.
"""

from .base import EdgeClassifierConfig
from .embedding import EmbeddingMLP, EmbeddingMLPConfig
from .filter import FilterModel, FilterModelConfig
from .interaction_gnn import InteractionGNN, InteractionGNNConfig
from .registry import load_model, read_model_info, save_model

__all__ = [
    "EdgeClassifierConfig",
    "EmbeddingMLP",
    "EmbeddingMLPConfig",
    "FilterModel",
    "FilterModelConfig",
    "InteractionGNN",
    "InteractionGNNConfig",
    "load_model",
    "read_model_info",
    "save_model",
]
