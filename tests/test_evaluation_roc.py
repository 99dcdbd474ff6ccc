"""Edge ROC and precision-recall: the hand-written AUC and the binned curves against scikit-learn.

scikit-learn is a test-only reference (extra ``dev``): the pipeline computes these in numpy
(``metrics.edges.roc_auc``, exact; ``ScoreHistogram``, summed over events in fixed memory).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gnntrack.metrics.edges import ScoreHistogram, roc_auc

metrics = pytest.importorskip("sklearn.metrics")


def _edges(n, seed, ties=False):
    """Scores of a mediocre classifier: truth edges (some of non-target particles) and fakes."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.1
    y_target = y & (rng.random(n) < 0.7)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(0.0, 2.0, n) + 4.0 * y)))
    if ties:
        s = np.round(s, 3)
    return s, y, y_target


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_equals_sklearn(ties):
    s, y, y_target = _edges(50_000, 1, ties)
    assert roc_auc(s, y) == pytest.approx(metrics.roc_auc_score(y, s), rel=0, abs=1e-12)
    keep = ~(y & ~y_target)  # working_point's masked AUC
    assert roc_auc(s[keep], y_target[keep]) == pytest.approx(
        metrics.roc_auc_score(y_target[keep], s[keep]), rel=0, abs=1e-12
    )


def test_histogram_curves_are_sklearns_at_every_bin_edge():
    s, y, y_target = _edges(200_000, 2)
    h = ScoreHistogram()
    for part in np.array_split(np.arange(len(s)), 7):  # summed over "events"
        h.add(s[part], y[part], y_target[part])
    keep = ~(y & ~y_target)
    fpr, tpr, thr = metrics.roc_curve(y_target[keep], s[keep], drop_intermediate=False)
    c = h.curves()
    # sklearn's point for a cut t is its last threshold >= t (thresholds decrease)
    j = np.searchsorted(-thr, -c["thresholds"], side="right") - 1
    ok = j >= 0
    np.testing.assert_array_equal(c["tpr"][ok], tpr[j[ok]])
    np.testing.assert_array_equal(c["fpr"][ok], fpr[j[ok]])
    prec, rec, pthr = metrics.precision_recall_curve(y_target[keep], s[keep])
    k = np.searchsorted(pthr, c["thresholds"], side="left")  # first sklearn cut >= ours (increasing)
    ok = k < len(pthr)
    np.testing.assert_allclose(c["precision"][ok], prec[k[ok]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(c["tpr"][ok], rec[k[ok]], rtol=0, atol=1e-12)
    # areas: the binned curve is within binning distance of the exact ones
    assert h.auc() == pytest.approx(metrics.roc_auc_score(y_target[keep], s[keep]), abs=1e-4)
    assert h.average_precision() == pytest.approx(
        metrics.average_precision_score(y_target[keep], s[keep]), abs=2e-3
    )


def test_histogram_edge_cases():
    h = ScoreHistogram()
    assert math.isnan(h.auc()) and math.isnan(h.average_precision())
    h.add(
        np.array([0.0, 1.0, np.nan, 0.2, 0.9]),
        np.array([0, 1, 1, 1, 0], bool),
        np.array([0, 1, 1, 0, 0], bool),
    )
    assert h.pos.sum() == 1 and h.neg.sum() == 2  # NaN score dropped, non-target truth edge left out
    assert h.auc() == 1.0 and h.average_precision() == 1.0
    fpr, tpr, precision = h.point_at(0.5)
    assert (fpr, tpr, precision) == (0.5, 1.0, 0.5)  # 0.9 (fake) and 1.0 (target) pass
