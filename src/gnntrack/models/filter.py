"""Edge filter: an MLP on both spacepoints' features and the edge's geometry -> one logit per edge.

Cheap per edge and independent across edges, so it prunes the large metric-learning graphs
before the GNN and can score any number of edges in chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..io.features import DEFAULT_NODE_FEATURES
from .base import EdgeClassifier
from .edge_features import EDGE_FEATURES, EdgeFeatures
from .mlp import make_mlp


class FilterModel(EdgeClassifier):
    def __init__(
        self,
        node_features: Sequence[str] = DEFAULT_NODE_FEATURES,
        feature_scales: Mapping[str, float] | None = None,
        edge_features: Sequence[str] = EDGE_FEATURES,
        encoder_exclude: Sequence[str] = (),
        hidden: int = 256,
        n_layers: int = 3,
        activation: str = "silu",
        layer_norm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__(
            node_features,
            feature_scales,
            edge_features,
            encoder_exclude,
            hidden=hidden,
            n_layers=n_layers,
            activation=activation,
            layer_norm=layer_norm,
            dropout=dropout,
        )
        self.edge_feats = EdgeFeatures(self.node_features, self.feature_scales, edge_features)
        n_in = 2 * self.n_encoder_features + self.edge_feats.n_out
        self.net = make_mlp(n_in, hidden, 1, n_layers, activation, layer_norm, dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        xn = self.encoder_input(x)
        h = torch.cat([xn[edge_index[0]], xn[edge_index[1]], self.edge_feats(x, edge_index)], dim=1)
        return self.net(h).squeeze(-1)
