"""Every edge and track metric, defined once and shared by training, graph construction,
inference benchmarks and evaluation.

- ``edges``: edge efficiency / purity / masked purity (per-edge labels: ``working_point``; edge
  lists against the truth graph: ``EdgeCounts``; torch: ``target_edge_counts``), efficiency at a
  masked purity, the cut at an efficiency, ROC AUC, target truth edges;
- ``tracks``: track-to-particle matching (ATLAS, one-way, two-way), efficiency / fake /
  duplicate rates, the truth-CC bound's candidates;
- ``graphs``: the quality report of constructed graphs (edge and truth-CC numbers over events);
- ``stats``: binomial ratios with Clopper-Pearson intervals (imported on use: needs scipy).

This package depends only on numpy, torch and the low-level ``io`` and ``track_building``
modules, never on the stages that use it.
"""

from .edges import (
    EdgeCounts,
    cut_at_efficiency,
    edge_codes,
    edge_efficiency_per_truth,
    efficiency_at_masked_purity,
    roc_auc,
    select_scored,
    target_edge_counts,
    truth_target_edges,
    working_point,
)
from .graphs import graph_metrics, label_and_measure, truth_cc_counts
from .tracks import (
    MATCHING_STYLES,
    MatchPairs,
    Rates,
    StyleMatch,
    apply_style,
    event_rates,
    filter_tracks,
    match_pairs,
    truth_cc_tracks,
)

__all__ = [
    "MATCHING_STYLES",
    "EdgeCounts",
    "MatchPairs",
    "Rates",
    "StyleMatch",
    "apply_style",
    "cut_at_efficiency",
    "edge_codes",
    "edge_efficiency_per_truth",
    "efficiency_at_masked_purity",
    "event_rates",
    "filter_tracks",
    "graph_metrics",
    "label_and_measure",
    "match_pairs",
    "roc_auc",
    "select_scored",
    "target_edge_counts",
    "truth_cc_counts",
    "truth_cc_tracks",
    "truth_target_edges",
    "working_point",
]
