"""Edge filter: an MLP on both spacepoints' features and the edge's geometry -> one logit per edge.

Cheap per edge and independent across edges, so it prunes the large metric-learning graphs
before the GNN and can score any number of edges in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import Count, ProperFraction
from .base import EdgeClassifier, EdgeClassifierConfig, model_config
from .edge_features import EdgeFeatures
from .mlp import Activation, block_linears, block_widths, check_widths, make_mlp


@dataclass
class FilterModelConfig(EdgeClassifierConfig):
    """Hyper-parameters of ``FilterModel`` (the ``filter`` section extends them: ``FilterConfig``)."""

    hidden: Count = 256
    n_layers: Count = 3
    activation: Activation = "silu"
    layer_norm: bool = True
    dropout: ProperFraction = 0.0
    #: hidden width per block where it differs from ``hidden``, by the Linear's name
    #: (``net.0``, ``net.3``, ...): what structured pruning leaves (``models.compression``)
    widths: dict[str, Count] = field(default_factory=dict)


class FilterModel(EdgeClassifier):
    """``FilterModel(FilterModelConfig(...))``, ``FilterModel(hidden=64)``, or a config with
    keyword overrides."""

    config_class = FilterModelConfig

    def __init__(self, config: FilterModelConfig | None = None, **overrides):
        cfg = model_config(FilterModelConfig, config, overrides, "FilterModel")
        super().__init__(cfg)
        self.edge_feats = EdgeFeatures(self.node_features, self.feature_scales, cfg.edge_features)
        n_in = 2 * self.n_encoder_features + self.edge_feats.n_out
        blocks = [f"net.{i}" for i in block_linears(cfg.n_layers, cfg.layer_norm, cfg.dropout)]
        check_widths(cfg.widths, blocks, "FilterModel")
        widths = block_widths(cfg.widths, "net", cfg.hidden, cfg.n_layers, cfg.layer_norm, cfg.dropout)
        self.net = make_mlp(
            n_in, cfg.hidden, 1, cfg.n_layers, cfg.activation, cfg.layer_norm, cfg.dropout, widths=widths
        )

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        xn = self.encoder_input(x)
        h = torch.cat([xn[edge_index[0]], xn[edge_index[1]], self.edge_feats(x, edge_index)], dim=1)
        return self.net(h).squeeze(-1)
