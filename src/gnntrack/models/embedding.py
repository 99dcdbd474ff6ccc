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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Count, Positive
from ..io.features import DEFAULT_NODE_FEATURES, DEFAULT_SCALES
from .base import model_config
from .mlp import Activation, make_mlp


@dataclass
class EmbeddingMLPConfig:
    """Hyper-parameters of ``EmbeddingMLP`` (the ``metric_learning`` section extends them:
    ``MetricLearningConfig``)."""

    node_features: list[str] = field(default_factory=lambda: list(DEFAULT_NODE_FEATURES))
    emb_dim: Count = 8
    hidden: Count = 256
    n_layers: Count = 4
    activation: Activation = "tanh"
    normalize: bool = True  # L2-normalise the output onto the unit sphere
    #: graph radius and neighbour cap stored with the model (used by validation and inference)
    r_max: Positive = 0.1
    k_max: Count = 64


class EmbeddingMLP(nn.Module):
    """``forward(x (N, F)) -> (N, emb_dim)``; LayerNorm MLP, optionally L2-normalised.

    Built as ``EmbeddingMLP(EmbeddingMLPConfig(...))``, ``EmbeddingMLP(hidden=64)`` or a config
    with keyword overrides. ``r_max``/``k_max`` are the graph-construction settings the model was
    trained and validated for; they travel with the model file so inference builds the graphs the
    later stages saw. ``feature_scales`` (default: ``io.features.DEFAULT_SCALES``) is not a
    campaign setting, hence outside the config; ``.config`` (what the model file stores) holds
    it with the config's fields.
    """

    config_class = EmbeddingMLPConfig

    def __init__(
        self,
        config: EmbeddingMLPConfig | None = None,
        *,
        feature_scales: Mapping[str, float] | None = None,
        **overrides,
    ):
        super().__init__()
        cfg = model_config(EmbeddingMLPConfig, config, overrides, "EmbeddingMLP")
        scales = dict(DEFAULT_SCALES)
        scales.update(feature_scales or {})
        self.node_features = tuple(cfg.node_features)
        self.feature_scales = {k: float(scales.get(k, 1.0)) for k in self.node_features}
        cfg = dataclasses.replace(
            cfg,
            node_features=list(self.node_features),
            normalize=bool(cfg.normalize),
            r_max=float(cfg.r_max),
            k_max=int(cfg.k_max),
        )
        self.normalize, self.r_max, self.k_max = cfg.normalize, cfg.r_max, cfg.k_max
        # what the model file stores: the config's fields and the scales, in constructor order
        self.config = {
            "node_features": None,
            "feature_scales": dict(self.feature_scales),
            **dataclasses.asdict(cfg),
        }
        self.net = make_mlp(
            len(self.node_features), cfg.hidden, cfg.emb_dim, n_layers=cfg.n_layers, act=cfg.activation
        )

    @property
    def emb_dim(self) -> int:
        return self.config["emb_dim"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.normalize:
            out = nn.functional.normalize(out, p=2.0, dim=-1, eps=1e-12)
        return out
