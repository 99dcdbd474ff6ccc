"""Edge-level metrics: efficiency, purity, masked purity, working points, ROC AUC, truth edges.

Edges are compared with the event's truth graph as undirected hit pairs. Definitions (one set
for training, graph construction and evaluation):

- efficiency    = target truth edges present in the graph / target truth edges
- purity        = graph edges that are target truth edges / graph edges
- total (true) purity = graph edges that are truth edges (any particle) / graph edges
- masked purity = target truth edges / (graph edges - true edges of non-target particles):
  true edges of non-target particles are neither signal nor fakes

Three entry points count them from different inputs: ``working_point`` from per-edge labels
and scores (training, working-point scans), ``EdgeCounts`` from edge lists against the truth
graph with a configurable target mask, summed over events with (r, z) maps (evaluation), and
``target_edge_counts`` in torch on the device (metric-learning validation). ROC AUC in numpy;
``ScoreHistogram`` sums a stage's score distributions over events for its ROC and
precision-recall curves in fixed memory. Both are checked against scikit-learn in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..io.event_store import Event
from ..io.graph_store import Graph


def edge_codes(edge_index: np.ndarray, n: int) -> np.ndarray:
    """Undirected code ``min * n + max`` of each hit pair of ``edge_index`` (2, E), n = hits."""
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    return np.minimum(ei[0], ei[1]) * np.int64(max(n, 1)) + np.maximum(ei[0], ei[1])


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


@dataclass
class ScoreHistogram:
    """Score distributions of one stage's target edges and fake edges, summed over events, for
    its ROC and precision-recall curves.

    Labels as for masked purity and ``working_point``'s masked AUC: target truth edges are the
    signal, edges that are no truth edge the background, and true edges of non-target particles
    are left out. Scores are binned in their logit: ``n_bins`` bins over ±``logit_range``
    (scores 2e-9 to 1 - 2e-9 for 20; scores beyond fall in the end bins). Every curve point is
    exact for a cut at a bin edge (``score >= threshold``), so memory does not grow with the
    number of edges; areas are trapezoids between the points (binned ties count half, as in the
    Mann–Whitney AUC).
    """

    n_bins: int = 4000
    logit_range: float = 20.0
    pos: np.ndarray = field(default=None)
    neg: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        for name in ("pos", "neg"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.n_bins, dtype=np.int64))

    def bin_of(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            logit = np.log(s) - np.log1p(-s)
        pos = (np.clip(logit, -self.logit_range, self.logit_range) + self.logit_range) / (
            2 * self.logit_range
        )
        return np.clip(np.floor(pos * self.n_bins), 0, self.n_bins - 1).astype(np.int64)

    def add(self, scores: np.ndarray, y: np.ndarray, y_target: np.ndarray) -> None:
        """Count one event's scored edges (``y``: truth edge, ``y_target``: target truth edge)."""
        scores = np.asarray(scores)
        ok = ~np.isnan(scores)
        idx = self.bin_of(scores[ok])
        y, y_target = np.asarray(y, bool)[ok], np.asarray(y_target, bool)[ok]
        self.pos += np.bincount(idx[y_target], minlength=self.n_bins)
        self.neg += np.bincount(idx[~y], minlength=self.n_bins)

    @property
    def thresholds(self) -> np.ndarray:
        """The cut of each curve point, descending: the lower score edge of bins n-1 .. 0 (0 for bin 0)."""
        edges = -self.logit_range + 2 * self.logit_range * np.arange(self.n_bins) / self.n_bins
        cuts = 1.0 / (1.0 + np.exp(-edges))
        cuts[0] = 0.0
        return cuts[::-1]

    def curves(self) -> dict[str, np.ndarray]:
        """Per cut (``thresholds``): target-edge efficiency (tpr), fake-edge acceptance (fpr) and
        masked purity (precision, NaN where nothing passes); ``tp``/``fp`` are the counts."""
        tp = np.cumsum(self.pos[::-1])
        fp = np.cumsum(self.neg[::-1])
        n_pos, n_neg = int(self.pos.sum()), int(self.neg.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "thresholds": self.thresholds,
                "tp": tp,
                "fp": fp,
                "tpr": tp / n_pos if n_pos else np.full(len(tp), np.nan),
                "fpr": fp / n_neg if n_neg else np.full(len(fp), np.nan),
                "precision": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan),
            }

    def auc(self) -> float:
        """Area under the ROC curve (trapezoids between the bin-edge points); NaN without both classes."""
        if not self.pos.any() or not self.neg.any():
            return float("nan")
        c = self.curves()
        return float(np.trapezoid(np.r_[0.0, c["tpr"]], np.r_[0.0, c["fpr"]]))

    def average_precision(self) -> float:
        """Sum over the cuts of (recall step) x precision, scikit-learn's definition; NaN without signal."""
        if not self.pos.any():
            return float("nan")
        c = self.curves()
        step = np.diff(np.r_[0.0, c["tpr"]])
        return float(np.sum(step[step > 0] * c["precision"][step > 0]))

    def point_at(self, cut: float) -> tuple[float, float, float]:
        """(fpr, tpr, precision) of the curve point for ``score >= cut`` (cut rounded up to a bin edge)."""
        c = self.curves()
        i = int(np.searchsorted(-c["thresholds"], -float(cut), side="right")) - 1
        i = min(max(i, 0), self.n_bins - 1)
        return float(c["fpr"][i]), float(c["tpr"][i]), float(c["precision"][i])


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


def truth_target_edges(event: Event) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected codes (lo * n + hi) of the target truth edges and their particle rows.

    Targets are the events' ``is_target`` column (the convert-time selection).
    """
    t = np.asarray(event.truth_edges, dtype=np.int64)
    part = np.asarray(event.truth_edge_particle, dtype=np.int64)
    is_target = np.asarray(event.particles["is_target"], bool)
    keep = (part >= 0) & is_target[np.maximum(part, 0)]
    code = edge_codes(t[:, keep], event.n_hits)
    code, first = np.unique(code, return_index=True)
    return code, part[keep][first]


def edge_efficiency_per_truth(graph: Graph, event: Event) -> tuple[np.ndarray, np.ndarray]:
    """(found, particle) for every unique target truth edge of the event."""
    code, part = truth_target_edges(event)
    return np.isin(code, edge_codes(graph.edge_index, event.n_hits)), part


def target_edge_counts(edges: torch.Tensor, target_truth: torch.Tensor, n: int) -> dict[str, int]:
    """Counts behind target-edge efficiency (found / n_truth) and purity (n_target_edges /
    n_edges) of a graph, in torch on the graph's device.

    ``edges`` (2, E) graph edges, ``target_truth`` (2, T) unique target truth edges, n hits.
    """
    g_code = torch.minimum(edges[0], edges[1]) * n + torch.maximum(edges[0], edges[1])
    t_code = torch.minimum(target_truth[0], target_truth[1]) * n + torch.maximum(
        target_truth[0], target_truth[1]
    )
    hit = torch.isin(t_code, g_code)
    target_in_graph = torch.isin(g_code, t_code)
    return {
        "found": int(hit.sum()),
        "n_truth": int(t_code.numel()),
        "n_target_edges": int(target_in_graph.sum()),
        "n_edges": int(edges.shape[1]),
    }


@dataclass
class EdgeCounts:
    """Summable edge counts and (r, z) histograms of one stage.

    Counted against the *configured* target particles (``add_event``'s mask), so re-selecting
    targets at evaluation time needs no new graph files. For scored stages the graph is first cut
    on its score (``select_scored``). Positions in the (r, z) maps are the edge midpoints (mean of
    the two hits' r and z).
    """

    r_edges: np.ndarray
    z_edges: np.ndarray
    n_events: int = 0
    n_edges: int = 0
    n_true: int = 0
    n_target: int = 0
    n_true_non_target: int = 0
    n_truth_target: int = 0
    n_truth_target_found: int = 0
    truth_rz: np.ndarray = field(default=None)  # target truth edges per (r, z) bin
    found_rz: np.ndarray = field(default=None)  # of which present in the graph
    graph_rz: np.ndarray = field(default=None)  # graph edges per bin
    graph_target_rz: np.ndarray = field(default=None)  # of which target truth edges

    def __post_init__(self) -> None:
        shape = (len(self.r_edges) - 1, len(self.z_edges) - 1)
        for name in ("truth_rz", "found_rz", "graph_rz", "graph_target_rz"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(shape, dtype=np.int64))

    def _hist(self, r, z) -> np.ndarray:
        h, _, _ = np.histogram2d(r, z, bins=(self.r_edges, self.z_edges))
        return h.astype(np.int64)

    def add_event(self, edge_index: np.ndarray, event: Event, target: np.ndarray) -> None:
        """Accumulate one event's graph (already cut on its score) against the truth."""
        n = event.n_hits
        target = np.asarray(target, dtype=bool)
        truth = np.asarray(event.truth_edges, dtype=np.int64).reshape(2, -1)
        tep = np.asarray(event.truth_edge_particle, dtype=np.int64)
        # a truth edge without a particle (index < 0) is no target edge, not the last particle's
        is_target_truth = (tep >= 0) & target[np.clip(tep, 0, None)] if len(tep) else np.zeros(0, bool)
        all_codes = np.unique(edge_codes(truth, n))
        target_truth = truth[:, is_target_truth]
        target_codes, first = np.unique(edge_codes(target_truth, n), return_index=True)
        target_truth = target_truth[:, first]
        g_codes = edge_codes(edge_index, n)
        g_true = np.isin(g_codes, all_codes)
        g_target = np.isin(g_codes, target_codes)
        found = np.isin(target_codes, g_codes)

        self.n_events += 1
        self.n_edges += len(g_codes)
        self.n_true += int(g_true.sum())
        self.n_target += int(g_target.sum())
        self.n_true_non_target += int((g_true & ~g_target).sum())
        self.n_truth_target += len(target_codes)
        self.n_truth_target_found += int(found.sum())

        r = np.asarray(event.hits["r"], dtype=np.float64)
        z = np.asarray(event.hits["z"], dtype=np.float64)
        tr = 0.5 * (r[target_truth[0]] + r[target_truth[1]])
        tz = 0.5 * (z[target_truth[0]] + z[target_truth[1]])
        self.truth_rz += self._hist(tr, tz)
        self.found_rz += self._hist(tr[found], tz[found])
        ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
        gr = 0.5 * (r[ei[0]] + r[ei[1]])
        gz = 0.5 * (z[ei[0]] + z[ei[1]])
        self.graph_rz += self._hist(gr, gz)
        self.graph_target_rz += self._hist(gr[g_target], gz[g_target])

    def summary(self) -> dict:
        from .stats import ratio_entry

        return {
            "events": self.n_events,
            "edges_per_event": (self.n_edges / self.n_events) if self.n_events else None,
            "efficiency": ratio_entry(
                self.n_truth_target_found, self.n_truth_target,
                "target truth edges present in the graph / target truth edges (undirected)",
            ),
            "purity": ratio_entry(
                self.n_target, self.n_edges, "graph edges that are target truth edges / graph edges"
            ),
            "total_purity": ratio_entry(
                self.n_true, self.n_edges, "graph edges that are truth edges of any particle / graph edges"
            ),
            "masked_purity": ratio_entry(
                self.n_target, self.n_edges - self.n_true_non_target,
                "target truth edges / (graph edges - truth edges of non-target particles)",
            ),
        }  # fmt: skip


def select_scored(
    edge_index: np.ndarray, scores: dict, stage: str, cuts: dict
) -> tuple[np.ndarray, float | None]:
    """The edges of a stage's graph that pass its score cut (all edges when no cut applies)."""
    if stage in cuts and stage in scores:
        return edge_index[:, np.asarray(scores[stage]) > cuts[stage]], float(cuts[stage])
    return edge_index, None
