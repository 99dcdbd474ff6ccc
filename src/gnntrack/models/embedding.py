"""Metric-learning embedding: an MLP mapping each spacepoint's features to a point in R^D.

Hits of the same track segment should land within ``r_max`` of each other and other hits
farther away, so graph construction becomes a fixed-radius neighbour search.

The output is L2-normalised onto the unit sphere by default. A bounded space gives ``r_max`` and
the hinge margin a fixed meaning relative to the whole space (an unnormalised embedding can
shrink or inflate globally and silently change what a radius means between epochs), keeps the
grid neighbour search's cell count bounded, and makes the float32 distances well conditioned.
The price, one lost degree of freedom, is why the default dimension is 8 rather than 7.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..io.features import DEFAULT_NODE_FEATURES, DEFAULT_SCALES
from .mlp import make_mlp


class EmbeddingMLP(nn.Module):
    """``forward(x (N, F)) -> (N, emb_dim)``; LayerNorm MLP, optionally L2-normalised.

    ``r_max``/``k_max`` are the graph-construction settings the model was trained and validated
    for; they travel with the model file so inference builds the graphs the later stages saw.
    """

    def __init__(
        self,
        node_features: Sequence[str] = DEFAULT_NODE_FEATURES,
        feature_scales: Mapping[str, float] | None = None,
        emb_dim: int = 8,
        hidden: int = 256,
        n_layers: int = 4,
        activation: str = "tanh",
        normalize: bool = True,
        r_max: float = 0.1,
        k_max: int = 64,
    ):
        super().__init__()
        scales = dict(DEFAULT_SCALES)
        scales.update(feature_scales or {})
        self.node_features = tuple(node_features)
        self.feature_scales = {k: float(scales.get(k, 1.0)) for k in self.node_features}
        self.normalize = bool(normalize)
        self.r_max = float(r_max)
        self.k_max = int(k_max)
        self.config = {
            "node_features": list(self.node_features),
            "feature_scales": dict(self.feature_scales),
            "emb_dim": int(emb_dim),
            "hidden": int(hidden),
            "n_layers": int(n_layers),
            "activation": activation,
            "normalize": self.normalize,
            "r_max": self.r_max,
            "k_max": self.k_max,
        }
        self.net = make_mlp(len(self.node_features), hidden, emb_dim, n_layers=n_layers, act=activation)

    @property
    def emb_dim(self) -> int:
        return self.config["emb_dim"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.normalize:
            out = nn.functional.normalize(out, p=2.0, dim=-1, eps=1e-12)
        return out
