"""Edge-level efficiency and purity of each stage's graph, overall and in (r, z).

Edges are compared with the event's truth graph as undirected hit pairs, against the *configured*
target particles (so re-selecting targets at evaluation time needs no new graph files):

- efficiency    = target truth edges present in the graph / target truth edges
- purity        = graph edges that are target truth edges / graph edges
- total purity  = graph edges that are truth edges (any particle) / graph edges
- masked purity = target truth edges / (graph edges - true edges of non-target particles)

For scored stages the graph is first cut on its score (``EvaluationConfig.score_cuts``).
Positions in the (r, z) maps are the edge midpoints (mean of the two hits' r and z).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io.event_store import Event


def _codes(edge_index: np.ndarray, n: int) -> np.ndarray:
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    return np.minimum(ei[0], ei[1]) * np.int64(max(n, 1)) + np.maximum(ei[0], ei[1])


@dataclass
class EdgeCounts:
    """Summable edge counts and (r, z) histograms of one stage."""

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
        is_target_truth = target[tep] if len(tep) else np.zeros(0, bool)
        all_codes = np.unique(_codes(truth, n))
        target_truth = truth[:, is_target_truth]
        target_codes, first = np.unique(_codes(target_truth, n), return_index=True)
        target_truth = target_truth[:, first]
        g_codes = _codes(edge_index, n)
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
