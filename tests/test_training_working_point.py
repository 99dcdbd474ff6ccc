"""The GNN's working point: chosen on validation tracks, stored in the model file, used downstream."""

from types import SimpleNamespace

import numpy as np
import pytest

from gnntrack.gnn.working_point import WorkingPointConfig, scan_cuts
from gnntrack.io.errors import InputError
from gnntrack.metrics.edges import efficiency_at_masked_purity
from gnntrack.models import InteractionGNN, load_model, save_model
from gnntrack.track_building import TrackBuildingConfig, build_tracks
from gnntrack.track_building.build import resolve_score_cut


def _two_particles():
    """Particle 0 on hits 0-3, particle 1 on hits 4-7; edge (2,3) weak, a fake edge (2,6) at 0.5."""
    edges = np.array([[0, 1, 2, 4, 5, 6, 2], [1, 2, 3, 5, 6, 7, 6]])
    scores = np.array([0.9, 0.9, 0.35, 0.9, 0.9, 0.9, 0.5], np.float32)
    y = np.array([1, 1, 1, 1, 1, 1, 0], bool)
    particles = {
        "pt": np.array([5.0, 5.0]),
        "eta": np.array([0.1, 0.2]),
        "abs_eta": np.array([0.1, 0.2]),
        "is_primary": np.array([True, True]),
        "pdg_id": np.array([211, -211]),
        "abs_pdg_id": np.array([211, 211]),
        "radius": np.array([0.0, 0.0]),
        "n_spacepoints": np.array([4, 4]),
    }
    event = SimpleNamespace(
        n_hits=8, hit_particle=np.array([np.arange(8), np.repeat([0, 1], 4)]), particles=particles
    )
    graph = SimpleNamespace(edge_index=edges, y=y, y_target=y.copy())
    return [(event, graph, scores)]


def test_two_way_scan_finds_the_cut_between_merging_and_splitting():
    rows = {r["cut"]: r for r in scan_cuts(_two_particles(), WorkingPointConfig(cuts=[0.3, 0.45, 0.6, 0.95]))}
    # 0.3: the fake edge merges both particles into one 8-hit candidate (purity 0.5, not > 0.5)
    assert rows[0.3]["two_way_efficiency"] == 0.0
    # 0.45: the weak true edge is gone but the fake one joins 0-1-2 to particle 1: only particle 1
    assert rows[0.45]["two_way_efficiency"] == 0.5
    # 0.6: fake edge cut, both reconstructed (particle 0 from 3 of its 4 hits)
    assert rows[0.6]["two_way_efficiency"] == 1.0 and rows[0.6]["two_way_fake_rate"] == 0.0
    assert rows[0.95]["two_way_efficiency"] == 0.0  # no edges, no candidates


def test_chosen_cut_is_stored_and_used_by_inference(tmp_path, monkeypatch):
    from gnntrack.gnn import working_point as wp

    scored = _two_particles()
    monkeypatch.setattr(wp, "score_events", lambda *a, **k: iter(scored))
    cfg = WorkingPointConfig(cuts=[0.3, 0.6, 0.7, 0.8])
    chosen = wp.choose_working_point(None, [], [], cfg, default_cut=0.5)
    assert chosen["score_cut"] == 0.8  # 0.6-0.8 tie at efficiency 1: the highest cut wins
    assert [r["cut"] for r in chosen["scan"]] == [0.3, 0.6, 0.7, 0.8]

    model = InteractionGNN(hidden=8, n_graph_iters=1)
    save_model(model, tmp_path / "gnn.pt", working_point=chosen)
    loaded = load_model(tmp_path / "gnn.pt")
    assert loaded.score_cut == 0.8
    # an unset track-building cut resolves to the model's, a configured one wins
    assert resolve_score_cut(TrackBuildingConfig(), loaded).score_cut == 0.8
    assert resolve_score_cut(TrackBuildingConfig(score_cut=0.3), loaded).score_cut == 0.3
    assert resolve_score_cut(TrackBuildingConfig(), model).score_cut == 0.5  # no stored point


def test_bad_stored_working_point_is_input_error(tmp_path):
    model = InteractionGNN(hidden=8, n_graph_iters=1)
    save_model(model, tmp_path / "gnn.pt", working_point={"score_cut": 3.0})
    with pytest.raises(InputError, match="working point"):
        load_model(tmp_path / "gnn.pt")


def test_efficiency_at_masked_purity_ignores_non_target_true_edges():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([1, 1, 1, 0, 1, 0], bool)
    yt = np.array([1, 0, 1, 0, 1, 0], bool)  # edge 1 is a true edge of a non-target particle
    eff, cut = efficiency_at_masked_purity(scores, y, yt, 0.75)
    # masked: 0.9 T, 0.7 T, 0.6 F, 0.5 T, 0.4 F -> top 4 have purity 3/4
    assert (eff, cut) == (1.0, 0.5)
    eff, cut = efficiency_at_masked_purity(scores, y, yt, 0.99)
    assert eff == pytest.approx(2 / 3) and cut == 0.7


def test_build_tracks_without_cut_uses_the_default():
    tracks = build_tracks(np.array([[0, 1], [1, 2]]), np.array([0.6, 0.4]), 3, {"min_hits": 2})
    assert len(tracks) == 1  # 0.6 passes the default 0.5, 0.4 does not


def test_cut_at_efficiency_keeps_the_requested_fraction():
    from gnntrack.metrics.edges import cut_at_efficiency

    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    yt = np.array([1, 0, 1, 1, 0, 1, 0], bool)  # target scores 0.9 0.7 0.6 0.4
    assert cut_at_efficiency(scores, yt, 0.75) == 0.6  # 3 of 4 pass score >= 0.6
    assert cut_at_efficiency(scores, yt, 0.76) == 0.4
    assert cut_at_efficiency(scores, yt, 1.0) == 0.4
    kept = scores >= cut_at_efficiency(scores, yt, 0.5)
    assert (kept & yt).sum() == 2 and kept.sum() == 3


def test_two_way_criterion_takes_the_highest_cut_of_the_efficiency_plateau(monkeypatch):
    from gnntrack.gnn import working_point as wp

    effs = {0.05: 0.9826, 0.15: 0.9822, 0.3: 0.9815, 0.35: 0.9799, 0.5: 0.97}
    rows = [{"cut": c, "two_way_efficiency": e} for c, e in effs.items()]
    monkeypatch.setattr(wp, "score_events", lambda *a, **k: iter(_two_particles()))
    monkeypatch.setattr(wp, "scan_cuts", lambda *a, **k: rows)
    cfg = WorkingPointConfig(cuts=list(effs))
    assert wp.choose_working_point(None, [], [], cfg, 0.5)["score_cut"] == 0.3  # within 0.002 of 0.9826
    cfg.tolerance = 0.0
    assert wp.choose_working_point(None, [], [], cfg, 0.5)["score_cut"] == 0.05  # the maximum itself
    cfg.tolerance = 0.003
    assert wp.choose_working_point(None, [], [], cfg, 0.5)["score_cut"] == 0.35
