"""Edge-classifier working-point metrics (DESIGN.md §4) and ROC AUC in numpy (no sklearn)."""

from __future__ import annotations

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > that of a random negative).

    Mann–Whitney U with average ranks for ties; NaN when one class is absent.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), np.float64)
    # average rank (1-based) over each run of tied scores
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg = 0.5 * (starts + ends - 1) + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _ratio(a: int, b: int) -> float:
    return float(a) / b if b else float("nan")


def working_point(scores: np.ndarray, y: np.ndarray, y_target: np.ndarray, cut: float) -> dict[str, float]:
    """Target-edge efficiency, purity and masked purity of the edges with score >= ``cut``.

    As in DESIGN.md and the evaluation report, purity counts target edges as signal; masked
    purity ignores true edges of non-target particles (neither signal nor fake); true_purity
    counts every truth edge as signal.
    """
    scores = np.asarray(scores)
    y = np.asarray(y, bool)
    y_target = np.asarray(y_target, bool)
    keep = scores >= cut
    non_target_true = y & ~y_target
    return {
        "efficiency": _ratio(int((keep & y_target).sum()), int(y_target.sum())),
        "purity": _ratio(int((keep & y_target).sum()), int(keep.sum())),
        "true_purity": _ratio(int((keep & y).sum()), int(keep.sum())),
        "masked_purity": _ratio(int((keep & y_target).sum()), int((keep & ~non_target_true).sum())),
        "edges_in": float(len(scores)),
        "edges_out": float(keep.sum()),
        "auc": roc_auc(scores, y),
        "masked_auc": roc_auc(scores[~non_target_true], y_target[~non_target_true]),
    }
