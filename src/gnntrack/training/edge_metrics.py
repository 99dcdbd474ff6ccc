"""Edge-classifier working-point metrics and ROC AUC in numpy (no sklearn)."""

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

    As in the evaluation report, purity counts target edges as signal; masked
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


def efficiency_at_masked_purity(
    scores: np.ndarray, y: np.ndarray, y_target: np.ndarray, purity: float
) -> tuple[float, float]:
    """(target-edge efficiency, score cut) of the lowest cut whose kept edges reach ``purity``.

    Masked purity as in ``working_point`` (true edges of non-target particles ignored). Scanning
    cuts from high to low, the kept set grows; the answer is the largest kept set whose masked
    purity is still >= ``purity``. (0, 1) when no cut reaches it; NaN without target edges.
    """
    scores = np.asarray(scores, np.float64)
    y = np.asarray(y, bool)
    y_target = np.asarray(y_target, bool)
    keep = ~(y & ~y_target)
    s, t = scores[keep], y_target[keep]
    n_target = int(t.sum())
    if n_target == 0:
        return float("nan"), float("nan")
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    # only cut positions between distinct scores are realisable
    last_of_run = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(t)[last_of_run]
    n = np.flatnonzero(last_of_run) + 1
    ok = np.flatnonzero(tp >= purity * n)
    if len(ok) == 0:
        return 0.0, 1.0
    i = ok[-1]
    return float(tp[i] / n_target), float(s[last_of_run][i])


def cut_at_efficiency(scores: np.ndarray, y_target: np.ndarray, efficiency: float) -> float:
    """The highest cut c such that edges with score >= c keep at least ``efficiency`` of the
    target edges (0 without target edges)."""
    t = np.sort(np.asarray(scores, np.float64)[np.asarray(y_target, bool)])[::-1]
    if len(t) == 0:
        return 0.0
    k = max(int(np.ceil(efficiency * len(t))), 1)  # target edges that must pass
    return float(t[k - 1])
