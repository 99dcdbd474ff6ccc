"""Weighted binary cross-entropy for edge classifiers, with acorn-style per-edge weights.

Each edge has label ``y`` (it is a truth-graph edge) and a weight from one of two schemes:

- simple: ``target_weight`` for edges of target particles, ``non_target_weight`` for true edges
  of other particles (0 = ignore them: the classifier is neither rewarded nor punished for
  keeping a low-pT or secondary track), ``fake_weight`` for false edges;
- ``weighting``: acorn's list of ``{weight, conditions}``; edges start at weight 1 and every entry
  whose ``gnntrack.conditions`` selection matches overrides, in order. Conditions may use the
  edge columns ``y``, ``y_target``, ``is_fake`` and any particle column of the edge's particle
  (``pt``, ``abs_eta``, ``is_primary``, ``radius``, ``pdg_id``, …; NaN on false edges, so a
  particle condition never matches a fake).

``focal_gamma`` > 0 multiplies each edge's cross-entropy by (1 - p_t)^gamma (focal loss, p_t the
predicted probability of the edge's true label): edges the classifier already gets right with
confidence (most fakes of a large graph) weigh less, the ones near the cut more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..conditions import select
from ..config import NonNegative


@dataclass
class WeightRule:
    weight: NonNegative
    conditions: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    target_weight: NonNegative = 1.0
    non_target_weight: NonNegative = 0.0
    fake_weight: NonNegative = 1.0
    weighting: list[WeightRule] = field(default_factory=list)
    #: focal-loss exponent gamma (0 = plain weighted cross-entropy)
    focal_gamma: NonNegative = 0.0


def edge_table(y, y_target, edge_particle, particles: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns a weighting condition may refer to, one value per edge."""
    y = np.asarray(y, bool)
    ep = np.asarray(edge_particle, np.int64)
    table = {"y": y, "y_target": np.asarray(y_target, bool), "is_fake": ~y}
    has = ep >= 0
    for name, col in particles.items():
        col = np.asarray(col)
        numeric = np.issubdtype(col.dtype, np.number) or col.dtype == bool
        if col.ndim != 1 or not numeric:
            continue
        vals = np.full(len(ep), np.nan)
        if len(col):
            vals[has] = col[ep[has]].astype(float)
        table[name] = vals
    return table


def edge_weights(
    y, y_target, edge_particle, particles: Mapping[str, np.ndarray], cfg: LossConfig
) -> np.ndarray:
    """(E,) float32 loss weight of every edge under ``cfg``."""
    y = np.asarray(y, bool)
    y_target = np.asarray(y_target, bool)
    n = len(y)
    if not cfg.weighting:
        w = np.full(n, cfg.fake_weight, np.float32)
        w[y] = cfg.non_target_weight
        w[y_target] = cfg.target_weight
        return w
    table = edge_table(y, y_target, edge_particle, particles)
    w = np.ones(n, np.float32)
    with np.errstate(invalid="ignore"):
        for rule in cfg.weighting:
            w[select(table, rule.conditions, n)] = rule.weight
    return w


def weighted_bce(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, focal_gamma: float = 0.0
) -> torch.Tensor:
    """Σ w·BCE / Σ w, computed in fp32 (stable under autocast); 0 with gradient for an empty item.

    ``focal_gamma`` > 0: each edge's BCE times (1 - p_t)^gamma (the normalisation stays Σ w)."""
    logits, labels = logits.float(), labels.float()
    per_edge = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if focal_gamma > 0:
        # 1 - p_t = sigmoid of the logit signed against the label
        per_edge = per_edge * torch.sigmoid(logits * (1 - 2 * labels)).pow(focal_gamma)
    return (per_edge * weights).sum() / weights.sum().clamp_min(1e-12)
