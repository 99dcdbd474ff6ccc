"""Settings of the evaluation stage."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from ..conditions import DEFAULT_TARGET
from ..config import Count, NonNegative, Positive, Probability, ProperFraction
from ..metrics.tracks import MATCHING_STYLES

__all__ = ["MATCHING_STYLES", "EvaluationConfig"]


@dataclass
class EvaluationConfig:
    """What counts as a target, a match and a track; binning of the plots.

    target: particle selection (``gnntrack.conditions`` syntax) of the particles whose efficiency
        is measured; None uses the events' own ``is_target`` column (the convert-time selection).
    matching_style: style used for plots and the headline numbers (all styles go to summary.json):
        ``ATLAS``: a track matches a particle when purity > f; the particle is then reconstructed.
        ``one_way``: a track is matched (not fake) when purity > f; a particle is reconstructed
            when some track has completeness > f (acorn's one-way matching).
        ``two_way``: double majority, purity > f and completeness > f, for both.
    matching_fraction: f above.
    min_track_length: candidates with fewer spacepoints are ignored everywhere.
    score_cuts: stage name -> edge score cut applied to ``scores/<stage>`` (or the tracks file's
        scores for stage ``inference``) before edge-level metrics; ``gnn`` and ``inference``
        default to the GNN model's stored working point; other stages not listed use all edges.
    eta_bins / pt_bins (GeV, log-spaced when log_pt) / jet_dr_bins / jet_pt_bins (GeV): plot bins.
    jet_dr_max: efficiency vs jet pT uses only particles within this Delta R of their nearest jet.
    rz_bins: (n_r, n_z) bins of the 2-D edge efficiency/purity maps.
    formats: figure file formats.
    """

    target: dict[str, Any] | None = field(default_factory=lambda: copy.deepcopy(DEFAULT_TARGET))
    matching_style: Literal["ATLAS", "one_way", "two_way"] = "ATLAS"
    matching_fraction: ProperFraction = 0.5
    min_track_length: Count = 3
    score_cuts: dict[str, Probability] = field(default_factory=dict)
    eta_bins: list[float] = field(default_factory=lambda: [-4.0 + 0.4 * i for i in range(21)])
    pt_bins: list[Positive] = field(
        default_factory=lambda: [1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 20.0, 50.0, 100.0]
    )
    jet_dr_bins: list[NonNegative] = field(
        default_factory=lambda: [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0]
    )
    jet_pt_bins: list[NonNegative] = field(
        default_factory=lambda: [20.0, 40.0, 60.0, 80.0, 100.0, 150.0, 200.0, 300.0, 500.0]
    )
    jet_dr_max: Positive = 0.4
    rz_bins: list[Count] = field(default_factory=lambda: [25, 60])
    formats: list[Literal["png", "pdf", "svg"]] = field(default_factory=lambda: ["png", "pdf"])

    def __post_init__(self) -> None:
        if not 0.0 <= self.matching_fraction < 1.0:
            raise ValueError(f"matching_fraction must be in [0, 1), got {self.matching_fraction}")
        for name in ("eta_bins", "pt_bins", "jet_dr_bins", "jet_pt_bins"):
            edges = getattr(self, name)
            if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
                raise ValueError(f"{name} must be at least two increasing bin edges, got {edges}")
        if len(self.rz_bins) != 2 or min(self.rz_bins) < 1:
            raise ValueError(f"rz_bins must be two positive bin counts, got {self.rz_bins}")
        bad = set(self.formats) - {"png", "pdf", "svg"}
        if bad:
            raise ValueError(f"unsupported plot format(s) {sorted(bad)}")
