"""run_evaluate end to end on synthetic events: numbers, bounds, empty events, plots, timing."""

import json

import matplotlib.image as mpimg
import numpy as np
import pytest
from synthetic import make_event

from gnntrack.evaluation import run_evaluate
from gnntrack.evaluation.timing import timing_table
from gnntrack.io.errors import InputError
from gnntrack.io.event_store import write_events
from gnntrack.io.graph_store import make_graph, write_graphs
from gnntrack.io.track_store import TrackRecord, write_tracks
from gnntrack.track_building import Tracks, build_tracks

TIMING = {"data_loading": 0.01, "embedding": 0.02, "build_edges": 0.1, "filtering": 0.05, "gnn": 0.2,
          "labelling": 0.03}  # fmt: skip


def _campaign(tmp_path, n_events=2, empty_last=True):
    """Events, a module-map-like graph (truth minus 5% plus fakes), GNN-like scores, CC tracks."""
    rng = np.random.default_rng(5)
    events = [
        make_event(n_particles=60, n_noise=30, seed=10 + i, event_number=i, eta_max=2.0)
        for i in range(n_events)
    ]
    graphs, recs = [], []
    for i, ev in enumerate(events):
        truth = ev.truth_edges
        keep = rng.random(truth.shape[1]) > 0.05
        ei = np.concatenate([truth[:, keep], rng.integers(0, ev.n_hits, (2, truth.shape[1]))], axis=1)
        g = make_graph(ei, ev)
        g.scores["gnn"] = np.where(g.y, 0.8 + 0.2 * rng.random(g.n_edges), 0.3 * rng.random(g.n_edges))
        graphs.append(g)
        tracks = build_tracks(ei, g.scores["gnn"], ev.n_hits, {"score_cut": 0.5})
        if empty_last and i == n_events - 1:
            tracks = Tracks.empty()
        timing = {**TIMING, "gnn": TIMING["gnn"] * (1 + i)}
        recs.append(TrackRecord(ev.key, tracks, ev.n_hits, ei, g.scores["gnn"], timing, ev.run_number, i))
    write_events(tmp_path / "events.h5", events)
    write_graphs(tmp_path / "graphs.h5", graphs, "gnn")
    write_tracks(tmp_path / "tracks.h5", recs)
    return events, recs


def test_evaluate_numbers_plots_and_empty_event(tmp_path):
    events, recs = _campaign(tmp_path)
    out = tmp_path / "eval"
    cfg = {"formats": ["png"], "target": {"pt": [">", 1.0], "n_spacepoints": [">=", 3]}}
    summary = run_evaluate([tmp_path / "events.h5"], [tmp_path / "tracks.h5"],
                           {"gnn": [tmp_path / "graphs.h5"]}, out, cfg,
                           {"name": "unit", "mu": 0, "sqrt_s": 14})  # fmt: skip
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["events"] == 2 and on_disk["events_without_tracks"] == 1
    atlas = on_disk["tracking"]["ATLAS"]
    n_target = sum(
        int(((ev.particles["pt"] > 1) & (ev.particles["n_spacepoints"] >= 3)).sum()) for ev in events
    )
    assert atlas["efficiency"]["denominator"] == n_target
    # the second event has no tracks: at most the first event's targets are reconstructed
    first = int(((events[0].particles["pt"] > 1) & (events[0].particles["n_spacepoints"] >= 3)).sum())
    assert 0.7 * first <= atlas["efficiency"]["numerator"] <= first
    assert atlas["efficiency"]["lower"] < atlas["efficiency"]["value"] < atlas["efficiency"]["upper"]
    assert atlas["fake_rate"]["denominator"] == len(recs[0].tracks)
    bound = on_disk["truth_cc_bound"]["ATLAS"]["efficiency"]
    assert bound["value"] >= atlas["efficiency"]["value"]
    gnn_edges = on_disk["edges"]["gnn"]
    assert 0.9 <= gnn_edges["efficiency"]["value"] <= 1.0  # 5% of truth edges were dropped
    # the score cut removes the fakes; low-pT true edges are not target edges, so purity is lower
    assert gnn_edges["total_purity"]["value"] == 1.0
    assert gnn_edges["masked_purity"]["value"] == 1.0
    assert gnn_edges["purity"]["value"] < 1.0
    assert on_disk["edges"]["inference"]["efficiency"]["value"] == pytest.approx(
        gnn_edges["efficiency"]["value"]
    )
    for key in ("efficiency_vs_eta", "efficiency_vs_pt", "efficiency_vs_jet_dr", "efficiency_vs_jet_pt"):
        assert sum(on_disk["binned"][key]["total"]) > 0
    rows = {r["stage"]: r for r in on_disk["timing"]}
    assert rows["gnn"]["mean"] == pytest.approx(0.3) and rows["gnn"]["std"] == pytest.approx(0.1414, abs=1e-3)
    assert rows["total"]["mean"] == pytest.approx(sum(TIMING.values()) + 0.1)
    # the scores separate true from fake edges completely (> 0.8 vs < 0.3): AUC 1 for both stages
    for stage in ("gnn", "inference"):
        assert on_disk["edges"][stage]["roc_auc"] == pytest.approx(1.0)
        assert on_disk["edges"][stage]["average_precision"] == pytest.approx(1.0)
    report = (out / "report.md").read_text()
    assert "| ROC AUC |" in report and "| 1.0000 |" in report
    assert "| ATLAS |" in report and "Build edges" in report and "truth" in report.lower()

    expected = ["efficiency_vs_eta", "efficiency_vs_pt", "efficiency_vs_jet_dr", "efficiency_vs_jet_pt",
                "fake_rate_vs_eta", "edges_rz_gnn", "edges_rz_inference", "edges_roc_pr"]  # fmt: skip
    for name in expected:
        png = out / "plots" / f"{name}.png"
        assert png.stat().st_size > 20_000
        img = mpimg.imread(png)
        assert img[..., :3].std() > 0.05, f"{name} looks blank"
    assert summary["plots"] == [f"plots/{n}.png" for n in expected]


def test_only_empty_event_and_event_target_column(tmp_path):
    ev = make_event(n_particles=10, n_noise=5, seed=3)
    write_events(tmp_path / "events.h5", [ev])
    write_tracks(tmp_path / "tracks.h5", [TrackRecord(ev.key, Tracks.empty(), ev.n_hits)])
    s = run_evaluate([tmp_path / "events.h5"], [tmp_path / "tracks.h5"], {}, tmp_path / "eval",
                     {"target": None, "formats": ["png"]})  # fmt: skip
    eff = s["tracking"]["two_way"]["efficiency"]
    assert eff["denominator"] == int(ev.particles["is_target"].sum()) and eff["numerator"] == 0
    assert s["tracking"]["ATLAS"]["fake_rate"]["value"] is None
    assert s["truth_cc_bound"]["graph"] is None and s["timing"] == []
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["events"] == 1
    assert (tmp_path / "eval" / "plots" / "efficiency_vs_eta.png").exists()


def test_perfect_tracks_are_fully_efficient(tmp_path):
    ev = make_event(n_particles=30, n_noise=10, seed=8)
    pidx = ev.hits["particle_index"]
    truth_tracks = Tracks.from_lists([np.flatnonzero(pidx == p) for p in range(30) if (pidx == p).sum() >= 3])
    write_events(tmp_path / "events.h5", [ev])
    write_tracks(tmp_path / "tracks.h5", [TrackRecord(ev.key, truth_tracks, ev.n_hits, ev.truth_edges)])
    s = run_evaluate([tmp_path / "events.h5"], [tmp_path / "tracks.h5"], None, tmp_path / "eval",
                     {"formats": ["png"], "target": None, "min_track_length": 3})  # fmt: skip
    for style in ("ATLAS", "one_way", "two_way"):
        r = s["tracking"][style]
        assert r["efficiency"]["value"] == 1.0 and r["fake_rate"]["value"] == 0.0
        assert r["duplicate_rate"]["value"] == 0.0
        assert s["truth_cc_bound"][style]["efficiency"]["value"] == 1.0


def test_bad_inputs(tmp_path):
    ev = make_event(n_particles=5, seed=1)
    write_events(tmp_path / "events.h5", [ev])
    write_tracks(tmp_path / "tracks.h5", [TrackRecord("7_7", Tracks.empty(), 4)])
    with pytest.raises(InputError, match="no events file"):
        run_evaluate([tmp_path / "events.h5"], [tmp_path / "tracks.h5"], {}, tmp_path / "eval")
    write_tracks(tmp_path / "tracks.h5", [TrackRecord(ev.key, Tracks.empty(), ev.n_hits)])
    with pytest.raises(InputError, match="unknown column"):
        run_evaluate([tmp_path / "events.h5"], [tmp_path / "tracks.h5"], {}, tmp_path / "eval",
                     {"target": {"charm": True}})  # fmt: skip
    assert not (tmp_path / "eval" / "summary.json").exists()


def test_timing_table_rows():
    rows = timing_table([{"build_edges": 1.0, "gnn": 2.0}, {"build_edges": 3.0, "gnn": 2.0, "extra": 1.0}])
    assert [r["stage"] for r in rows] == ["build_edges", "gnn", "extra", "total"]
    assert rows[0]["mean"] == 2.0 and rows[-1]["mean"] == pytest.approx(4.5)
