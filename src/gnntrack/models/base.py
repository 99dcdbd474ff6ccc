"""What every edge classifier shares: its input description and its constructor config."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import torch
from torch import nn

from ..config import Positive, one_of
from ..io.features import DEFAULT_NODE_FEATURES, DEFAULT_SCALES
from .edge_features import ALL_EDGE_FEATURES, EDGE_FEATURES

EdgeFeature = Annotated[str, one_of(ALL_EDGE_FEATURES)]

C = TypeVar("C")


def model_config(config_class: type[C], config: C | None, overrides: dict, owner: str) -> C:
    """A fresh ``config_class`` from ``config`` (default: the class defaults) and keyword overrides.

    ``config`` may be an instance of a subclass (a stage config such as ``GNNConfig`` extends its
    model's config): only the model's own fields are taken. An unknown override is a TypeError,
    as an unknown keyword argument of a constructor is.
    """
    if config is None:
        config = config_class()
    elif not isinstance(config, config_class):
        raise TypeError(
            f"{owner}: config must be a {config_class.__name__} or None, not {type(config).__name__}"
            " (pass settings by keyword)"
        )
    names = [f.name for f in dataclasses.fields(config_class) if f.init]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"{owner} got unknown setting(s) {unknown}; allowed: {names}")
    return config_class(**{**{n: getattr(config, n) for n in names}, **overrides})


@dataclass
class EdgeClassifierConfig:
    """Input description every edge classifier shares (fields of its model config and stage section)."""

    node_features: list[str] = field(default_factory=lambda: list(DEFAULT_NODE_FEATURES))
    feature_scales: dict[str, Positive] = field(default_factory=dict)  # overrides io.features.DEFAULT_SCALES
    edge_features: list[EdgeFeature] = field(default_factory=lambda: list(EDGE_FEATURES))
    #: node columns the encoder does not see (edge features still use them); see EdgeClassifier
    encoder_exclude: list[str] = field(default_factory=list)


class EdgeClassifier(nn.Module):
    """Base of the filter and the GNN: ``forward(x (N,F), edge_index (2,E)) -> (E,) logits``.

    ``config`` (an ``EdgeClassifierConfig`` subclass: ``config_class`` of the model) holds every
    hyper-parameter. ``node_features``/``feature_scales`` say how to build ``x`` from an event's hits
    (``gnntrack.io.features.node_features``); ``.config`` is the same settings as a plain dict
    (scales completed from the defaults), which the model file stores so
    ``gnntrack.models.load_model`` can rebuild the model.

    ``encoder_exclude`` names node columns that only the geometric edge features read, not the
    node encoder: the absolute azimuth (``phi``, ``cl1_phi``, ...) carries no information on
    whether two hits belong together (the detector is φ-symmetric), so a network that sees it
    must learn that invariance from data and, with few training events, memorises it instead.
    """

    config_class = EdgeClassifierConfig

    def __init__(self, config: EdgeClassifierConfig):
        super().__init__()
        scales = dict(DEFAULT_SCALES)
        scales.update(config.feature_scales or {})
        self.node_features = tuple(config.node_features)
        self.feature_scales = {k: float(scales.get(k, 1.0)) for k in self.node_features}
        encoder_exclude = list(config.encoder_exclude)
        self.config = dataclasses.asdict(
            dataclasses.replace(
                config,
                node_features=list(self.node_features),
                feature_scales=dict(self.feature_scales),
                edge_features=list(config.edge_features),
                encoder_exclude=encoder_exclude,
            )
        )
        unknown = [c for c in encoder_exclude if c not in self.node_features]
        if unknown:
            raise ValueError(f"encoder_exclude names unknown node feature(s) {unknown}")
        keep = [i for i, c in enumerate(self.node_features) if c not in set(encoder_exclude)]
        if not keep:
            raise ValueError("encoder_exclude leaves the node encoder no input")
        self.register_buffer("encoder_cols", torch.tensor(keep, dtype=torch.long), persistent=False)
        self.select_encoder_cols = len(keep) < len(self.node_features)

        # per-feature standardisation of the node inputs, fitted on the training data
        # (``fit_input_normalisation``) and saved with the weights: a feature whose fixed scale
        # is off by orders of magnitude (cluster charge in electrons, say) would otherwise
        # dominate the first layer and stall learning. Edge features use the raw columns.
        n = len(self.node_features)
        self.register_buffer("x_mean", torch.zeros(n))
        self.register_buffer("x_std", torch.ones(n))

    @property
    def n_node_features(self) -> int:
        return len(self.node_features)

    @property
    def n_encoder_features(self) -> int:
        return int(self.encoder_cols.numel())

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_mean) / self.x_std

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised node columns the node encoder sees (all but ``encoder_exclude``)."""
        xn = self.normalise(x)
        return xn.index_select(1, self.encoder_cols) if self.select_encoder_cols else xn

    @torch.no_grad()
    def fit_input_normalisation(self, xs: Iterable[torch.Tensor]) -> None:
        """Set mean and standard deviation of every node feature from training node matrices."""
        total = torch.zeros(self.n_node_features, dtype=torch.float64)
        sq = torch.zeros_like(total)
        n = 0
        for x in xs:
            x = x.double().cpu()
            total += x.sum(0)
            sq += (x * x).sum(0)
            n += x.shape[0]
        if n == 0:
            return
        mean = total / n
        std = (sq / n - mean * mean).clamp_min(0).sqrt()
        self.x_mean.copy_(mean.float())
        self.x_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)).float())
