"""The ``Task`` that trains any edge classifier (filter or GNN) with the shared loop."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..metrics.edges import efficiency_at_masked_purity, working_point
from ..models.losses import weighted_bce
from .data import GraphItem


def edge_logits(model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, chunk_size: int | None = None):
    """Logits of all edges; the filter may score them ``chunk_size`` at a time (a filter with
    context in two passes: ``FilterModel.chunked_logits``)."""
    n = edge_index.shape[1]
    if chunk_size is None or n <= chunk_size:
        return model(x, edge_index)
    if getattr(model, "context", False):
        return model.chunked_logits(x, edge_index, chunk_size)
    return torch.cat([model(x, edge_index[:, i : i + chunk_size]) for i in range(0, n, chunk_size)])


#: masked purities at which validation reports the target-edge efficiency (and the cut reaching it)
PURITY_POINTS = (0.9, 0.95)


class EdgeClassifierTask:
    """Weighted BCE per item (focal with ``focal_gamma`` > 0); validation at the working point
    ``score_cut``, its loss the plain weighted BCE (a proper score, whatever the training loss).

    ``max_edges_per_step`` trains a per-edge model on a random subset of an item's edges (drawn
    from torch's global generator, so a resumed run draws the same subsets); leave it None for
    the GNN, whose edges interact.
    """

    def __init__(
        self,
        model: nn.Module,
        score_cut: float = 0.5,
        max_edges_per_step: int | None = None,
        eval_chunk_size: int | None = None,
        focal_gamma: float = 0.0,
    ):
        self.model = model
        self.score_cut = score_cut
        self.max_edges_per_step = max_edges_per_step
        self.eval_chunk_size = eval_chunk_size
        self.focal_gamma = focal_gamma

    def model_config(self) -> dict:
        return dict(self.model.config)

    def loss(self, item: GraphItem, device: torch.device) -> torch.Tensor:
        ei, y, w = item.edge_index, item.y, item.weight
        if self.max_edges_per_step is not None and item.n_edges > self.max_edges_per_step:
            pick = torch.randperm(item.n_edges)[: self.max_edges_per_step]
            ei, y, w = ei[:, pick], y[pick], w[pick]
        if not bool((w > 0).any()):
            return torch.zeros((), device=device)  # nothing to learn (no weighted edges): fit skips it
        logits = self.model(item.x.to(device), ei.to(device))
        return weighted_bce(logits, y.to(device), w.to(device), self.focal_gamma)

    def evaluate(self, items: Sequence[GraphItem], device: torch.device) -> dict[str, float]:
        return self.reduce_evaluation([self.evaluate_item(i, item, device) for i, item in enumerate(items)])

    def evaluate_item(self, index: int, item: GraphItem, device: torch.device) -> tuple:
        """One validation item's part of ``evaluate``: edge scores and labels, weighted loss sum."""
        logits = edge_logits(self.model, item.x.to(device), item.edge_index.to(device), self.eval_chunk_size)
        logits = logits.float().cpu()
        per_edge = nn.functional.binary_cross_entropy_with_logits(logits, item.y, reduction="none")
        return (
            float((per_edge * item.weight).sum()),
            float(item.weight.sum()),
            torch.sigmoid(logits).numpy(),
            item.y.numpy() > 0.5,
            item.y_target.numpy(),
        )

    def reduce_evaluation(self, parts: Sequence[tuple]) -> dict[str, float]:
        """The validation metrics of the items whose ``evaluate_item`` parts these are, in order."""
        loss_sum, weight_sum = 0.0, 0.0
        for item_loss, item_weight, *_ in parts:
            loss_sum += item_loss
            weight_sum += item_weight
        scores = np.concatenate([p[2] for p in parts])
        ys = np.concatenate([p[3] for p in parts])
        yts = np.concatenate([p[4] for p in parts])
        metrics = working_point(scores, ys, yts, self.score_cut)
        for purity in PURITY_POINTS:
            eff, cut = efficiency_at_masked_purity(scores, ys, yts, purity)
            metrics[f"eff_at_mp{round(100 * purity)}"] = eff
            metrics[f"cut_at_mp{round(100 * purity)}"] = cut
        metrics["loss"] = loss_sum / weight_sum if weight_sum > 0 else float("nan")
        return metrics
