"""Binomial ratios with exact (Clopper-Pearson) intervals, binned for efficiency-style plots.

Efficiencies near 0 or 1 and bins with few particles make the normal approximation useless (it
gives zero-width or out-of-range bars); the Clopper-Pearson interval is exact and never leaves
[0, 1], which is what ATLAS tracking plots show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

ONE_SIGMA = 0.682689492137


def clopper_pearson(k, n, cl: float = ONE_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Central interval (lower, upper) of a binomial fraction k/n at confidence ``cl``; nan where n = 0."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    alpha = 1.0 - cl
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    lo = np.where(n > 0, lo, np.nan)
    hi = np.where(n > 0, hi, np.nan)
    return lo, hi


@dataclass
class BinnedRatio:
    """k passing out of n per bin, the ratio and its Clopper-Pearson interval."""

    edges: np.ndarray
    k: np.ndarray
    n: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def ratio(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.k / np.maximum(self.n, 1), np.nan)

    def interval(self, cl: float = ONE_SIGMA) -> tuple[np.ndarray, np.ndarray]:
        return clopper_pearson(self.k, self.n, cl)

    def to_dict(self) -> dict:
        lo, hi = self.interval()
        return {
            "edges": self.edges.tolist(),
            "passed": self.k.astype(int).tolist(),
            "total": self.n.astype(int).tolist(),
            "ratio": [None if np.isnan(v) else float(v) for v in self.ratio],
            "lower": [None if np.isnan(v) else float(v) for v in lo],
            "upper": [None if np.isnan(v) else float(v) for v in hi],
        }


def binned_ratio(values, passed, edges) -> BinnedRatio:
    """Fraction of entries with ``passed`` in each bin of ``values`` (entries outside are dropped)."""
    values = np.asarray(values, dtype=np.float64)
    passed = np.asarray(passed, dtype=bool)
    edges = np.asarray(edges, dtype=np.float64)
    n, _ = np.histogram(values, bins=edges)
    k, _ = np.histogram(values[passed], bins=edges)
    return BinnedRatio(edges, k.astype(np.int64), n.astype(np.int64))


def ratio_entry(k: int, n: int, definition: str) -> dict:
    """A summary.json number: value, its inputs, its 68% Clopper-Pearson interval, its definition."""
    if n:
        lo, hi = clopper_pearson(k, n)
        value, lower, upper = k / n, float(lo), float(hi)
    else:
        value = lower = upper = None
    return {"value": value, "numerator": int(k), "denominator": int(n), "lower": lower, "upper": upper,
            "definition": definition}  # fmt: skip
