"""Candidate selection: the circle-fit pT estimate and the min_pt cut of track building."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gnntrack.gnn.working_point import WorkingPointConfig, choose_working_point, scan_cuts
from gnntrack.track_building import TrackBuildingConfig, Tracks, build_tracks
from gnntrack.track_building.selection import GEV_PER_TESLA_METRE, candidate_pt

RADII = np.array([33.0, 71.0, 115.0, 157.0, 205.0, 290.0, 400.0, 560.0, 760.0, 1000.0])


def helix_xy(pt: float, charge: int, phi0: float, bfield: float = 2.0, radii=RADII, noise=0.0, seed=0):
    """Transverse positions at the given radii of a particle from the beam line (circle through 0)."""
    rho = pt / (GEV_PER_TESLA_METRE * bfield) * 1000.0  # mm
    # a circle through the origin reaches radius r at turning angle 2 asin(r / 2 rho)
    alpha = 2.0 * np.arcsin(np.clip(radii / (2.0 * rho), -1, 1))
    cx, cy = rho * np.cos(phi0 + charge * np.pi / 2), rho * np.sin(phi0 + charge * np.pi / 2)
    ang = np.arctan2(-cy, -cx) - charge * alpha
    x, y = cx + rho * np.cos(ang), cy + rho * np.sin(ang)
    rng = np.random.default_rng(seed)
    return x + noise * rng.normal(size=len(x)), y + noise * rng.normal(size=len(y))


@pytest.mark.parametrize("pt", [0.5, 1.0, 3.0, 20.0])
@pytest.mark.parametrize("charge", [-1, 1])
def test_circle_fit_recovers_the_transverse_momentum(pt, charge):
    diameter = 2 * pt / (GEV_PER_TESLA_METRE * 2.0) * 1000.0  # mm; the loop turns back there
    radii = np.array([r for r in RADII if r < 0.9 * diameter])
    x, y = helix_xy(pt, charge, phi0=0.7, radii=radii, noise=0.02, seed=int(pt * 10))
    assert np.allclose(np.hypot(x, y), radii, atol=0.1)  # the helper puts hits at the radii
    tracks = Tracks(np.arange(len(x)), np.array([0, len(x)]))
    est = candidate_pt(tracks, x, y, 2.0)
    assert est[0] == pytest.approx(pt, rel=0.03)
    # the field scales the estimate
    assert candidate_pt(tracks, x, y, 4.0)[0] == pytest.approx(2 * est[0])


def test_straight_track_through_the_beam_line_has_infinite_pt():
    r = RADII[:5]
    tracks = Tracks(np.arange(5), np.array([0, 5]))
    assert np.isinf(candidate_pt(tracks, r * np.cos(1.1), r * np.sin(1.1), 2.0)[0])


def _two_candidates():
    """Hits 0-5: a 0.6 GeV particle; hits 6-11: a 5 GeV particle; chained by edges."""
    x1, y1 = helix_xy(0.6, 1, 0.3, radii=RADII[:6])
    x2, y2 = helix_xy(5.0, -1, 2.0, radii=RADII[:6])
    x, y = np.r_[x1, x2], np.r_[y1, y2]
    src = np.r_[np.arange(0, 5), np.arange(6, 11)]
    return np.array([src, src + 1]), x, y


def test_min_pt_drops_the_soft_candidate_numpy_and_torch():
    edges, x, y = _two_candidates()
    scores = np.full(edges.shape[1], 0.9, np.float32)
    for method in ("cc", "walkthrough"):
        all_tracks = build_tracks(edges, scores, 12, {"method": method})
        assert len(all_tracks) == 2
        cfg = {"method": method, "min_pt": 0.9}
        kept = build_tracks(edges, scores, 12, cfg, hits={"x": x, "y": y})
        assert len(kept) == 1 and set(kept[0].tolist()) == set(range(6, 12))
        # torch tensors (the inference chain's path) give the same candidates, as tensors
        kept_t = build_tracks(
            torch.from_numpy(edges), torch.from_numpy(scores), 12, cfg,
            hits={"x": torch.from_numpy(x), "y": torch.from_numpy(y)},
        )  # fmt: skip
        assert isinstance(kept_t.hits, torch.Tensor)
        assert [t.tolist() for t in kept_t.numpy()] == [t.tolist() for t in kept]
    with pytest.raises(ValueError, match="min_pt needs"):
        build_tracks(edges, scores, 12, {"min_pt": 0.9})


def test_working_point_is_chosen_with_the_campaigns_track_building(monkeypatch):
    from gnntrack.gnn import working_point as wp

    edges, x, y = _two_candidates()
    particles = {
        "pt": np.array([0.6, 5.0]), "eta": np.zeros(2), "abs_eta": np.zeros(2),
        "is_primary": np.array([True, True]), "pdg_id": np.array([211, 211]),
        "abs_pdg_id": np.array([211, 211]), "radius": np.zeros(2), "n_spacepoints": np.array([6, 6]),
    }  # fmt: skip
    event = SimpleNamespace(
        n_hits=12,
        hit_particle=np.array([np.arange(12), np.repeat([0, 1], 6)]),
        particles=particles,
        hits={"x": x, "y": y},
    )
    y_edge = np.ones(edges.shape[1], bool)
    graph = SimpleNamespace(edge_index=edges, y=y_edge, y_target=np.r_[np.zeros(5, bool), np.ones(5, bool)])
    scored = [(event, graph, np.full(edges.shape[1], 0.9, np.float32))]
    cfg = WorkingPointConfig(cuts=[0.5])
    # the scan builds candidates with the given settings: the target (5 GeV) survives a 0.9 GeV
    # cut, not a 6 GeV one or a 7-hit minimum
    assert scan_cuts(scored, cfg)[0]["two_way_efficiency"] == 1.0
    assert scan_cuts(scored, cfg, TrackBuildingConfig(min_pt=0.9))[0]["two_way_efficiency"] == 1.0
    assert scan_cuts(scored, cfg, TrackBuildingConfig(min_pt=6.0))[0]["two_way_efficiency"] == 0.0
    assert scan_cuts(scored, cfg, {"min_hits": 7})[0]["two_way_efficiency"] == 0.0
    monkeypatch.setattr(wp, "score_events", lambda *a, **k: iter(scored))
    chosen = choose_working_point(
        None, [], [], cfg, 0.5, track_building={"method": "walkthrough", "min_pt": 0.9}
    )
    assert chosen["track_building"]["min_pt"] == 0.9 and chosen["track_building"]["method"] == "walkthrough"
