"""The GNN's edge score cut, chosen on validation events and stored with the model.

A score cut is a physics choice, not a constant: the best cut moves with the loss weights (a
classifier trained with down-weighted fake edges scores everything higher), with training time
and with pile-up. After training, the validation graphs are scored once, track candidates are
built at every cut of a grid, and the cut is chosen by ``criterion``:

- ``two_way``: the highest cut whose two-way (double-majority) track efficiency is within
  ``tolerance`` of the best cut's. This is what the campaign's headline optimises: a cut too low
  merges particles through fake edges, one too high splits them. Between the two the efficiency
  is often flat to a few 0.0001 over a wide range of cuts while the fake rate keeps falling with
  the cut, so the highest cut of that plateau is taken, not the noisy maximum.
- ``masked_purity``: the lowest cut whose kept edges reach ``purity`` (masked purity: target
  edges over target + fake edges), i.e. the most efficient edge selection at a stated purity.
- ``fixed``: ``score_cut`` as configured (no scan; the scan is still recorded when events are given).

Track candidates are built exactly as inference builds them (``inference.track_building``:
method, minimum length, candidate pT cut), so the cut is chosen for the tracks users get. The
result (cut, criterion, the track-building settings and the per-cut scan) is written into the
model file under ``working_point``; inference and evaluation use it unless their config sets a cut
explicitly. In the workflow this is its own rule after training, so changing the track building
re-chooses the cut without retraining.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..conditions import DEFAULT_TARGET, select
from ..config import Count, Probability, ProperFraction, from_dict
from ..edge_classification.data import iter_event_graphs
from ..metrics.edges import efficiency_at_masked_purity, working_point
from ..metrics.tracks import Rates, apply_style, event_rates, match_pairs
from ..track_building import TrackBuildingConfig, build_tracks

DEFAULT_CUTS = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: the track-building settings a working point was chosen with (recorded in the model file)
TRACK_SETTINGS = ("method", "walk_score_cut", "min_hits", "min_pt", "bfield")


@dataclass
class WorkingPointConfig:
    """How the GNN's score cut is chosen after training (see module docstring)."""

    criterion: Literal["two_way", "masked_purity", "fixed"] = "two_way"
    purity: Probability = 0.95  # masked_purity criterion
    tolerance: ProperFraction = 0.002  # two_way criterion: efficiency below the best still on the plateau
    cuts: list[Probability] = field(default_factory=lambda: list(DEFAULT_CUTS))
    max_events: Count | None = 10  # validation events scanned


def score_events(model, event_files, graph_files, device="cpu", max_events: int | None = None):
    """Yield (event, graph, scores) of validation events (shards paired by position), scored by
    the inference chain's ``EdgeClassifier`` stage."""
    from ..edge_classification import EdgeClassifier, event_data

    model.eval()
    stage = EdgeClassifier("gnn", model, cut=0.5)
    device = torch.device(device)
    for event, graph in iter_event_graphs(event_files, graph_files, ("hits", "particles"), max_events):
        ev = stage(event_data(event.hits, graph, model, device))
        yield event, graph, ev.scores("gnn").cpu().numpy()


def _target(event) -> np.ndarray:
    return select(event.particles, DEFAULT_TARGET, n=len(event.particles["pt"]))


def _track_building(track_building) -> TrackBuildingConfig:
    if track_building is None:
        return TrackBuildingConfig()
    if not isinstance(track_building, TrackBuildingConfig):
        track_building = from_dict(TrackBuildingConfig, track_building, "inference.track_building")
    if track_building.method == "hgnn":
        # the HGNN reads the GNN's scores above its own loose cut, not the GNN's edge cut: the
        # cut (still used by the edge-level metrics) is chosen with the walkthrough's candidates
        track_building = dataclasses.replace(track_building, method="walkthrough")
    return track_building


def scan_cuts(scored: Sequence, cfg: WorkingPointConfig, track_building=None) -> list[dict]:
    """Per cut: two-way and ATLAS track efficiency and fake rate, ATLAS duplicate rate, edge
    efficiency and masked purity.

    Candidates are built with ``track_building`` (a ``TrackBuildingConfig`` or its dict; None =
    the defaults) at each cut of the grid.
    """
    base = _track_building(track_building)
    rows = []
    for cut in cfg.cuts:
        two, atlas = Rates(), Rates()
        tb = dataclasses.replace(base, score_cut=float(cut))
        for event, graph, scores in scored:
            tracks = build_tracks(
                graph.edge_index, scores, event.n_hits, tb, hits=getattr(event, "hits", None)
            )
            target = _target(event)
            pairs = match_pairs(tracks, event.hit_particle, event.n_hits, len(target))
            two.add(event_rates(apply_style(pairs, "two_way", 0.5), target))
            atlas.add(event_rates(apply_style(pairs, "ATLAS", 0.5), target))
        s = np.concatenate([x[2] for x in scored]) if scored else np.zeros(0)
        y = np.concatenate([x[1].y for x in scored]) if scored else np.zeros(0, bool)
        yt = np.concatenate([x[1].y_target for x in scored]) if scored else np.zeros(0, bool)
        wp = working_point(s, y, yt, cut)
        rows.append(
            {
                "cut": float(cut),
                "two_way_efficiency": two.efficiency,
                "two_way_fake_rate": two.fake_rate,
                "atlas_efficiency": atlas.efficiency,
                "atlas_fake_rate": atlas.fake_rate,
                "atlas_duplicate_rate": atlas.duplicate_rate,
                "edge_efficiency": wp["efficiency"],
                "edge_masked_purity": wp["masked_purity"],
            }
        )
    return rows


def choose_working_point(
    model,
    event_files: Sequence[str | Path],
    graph_files: Sequence[str | Path],
    cfg: WorkingPointConfig,
    default_cut: float,
    device="cpu",
    track_building=None,
) -> dict:
    """The model's working point from its validation events (see module docstring)."""
    tb = _track_building(track_building)
    settings = {k: getattr(tb, k) for k in TRACK_SETTINGS}
    scored = list(score_events(model, event_files, graph_files, device, cfg.max_events))
    if not scored:
        return {"score_cut": float(default_cut), "criterion": "fixed", "n_events": 0, "scan": [],
                "track_building": settings}  # fmt: skip
    scan = scan_cuts(scored, cfg, tb) if cfg.criterion != "masked_purity" else []
    if cfg.criterion == "two_way":
        top = max(r["two_way_efficiency"] or 0.0 for r in scan)
        cut = max(r["cut"] for r in scan if (r["two_way_efficiency"] or 0.0) >= top - cfg.tolerance)
    elif cfg.criterion == "masked_purity":
        s = np.concatenate([x[2] for x in scored])
        y = np.concatenate([x[1].y for x in scored])
        yt = np.concatenate([x[1].y_target for x in scored])
        _, cut = efficiency_at_masked_purity(s, y, yt, cfg.purity)
        cut = float(cut)
    else:
        cut = float(default_cut)
    return {
        "score_cut": float(cut),
        "criterion": cfg.criterion,
        "n_events": len(scored),
        "track_building": settings,
        "scan": scan,
    }
