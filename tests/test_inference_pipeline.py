"""One-process inference: output file, equality with the stage-by-stage files path, variants, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from synthetic import make_event

from gnntrack.config import ConfigError, from_dict
from gnntrack.edge_classification import run_score_graphs
from gnntrack.edge_filter import run_apply_filter
from gnntrack.graph_construction import build_module_map, run_build_graphs
from gnntrack.inference import InferenceConfig, Pipeline, run_infer
from gnntrack.inference.timing import STAGES
from gnntrack.io.errors import InputError
from gnntrack.io.event_store import read_events, write_events
from gnntrack.io.features import node_features
from gnntrack.io.graph_store import read_graphs
from gnntrack.io.track_store import read_tracks
from gnntrack.models import FilterModel, InteractionGNN, load_model, save_model
from gnntrack.models.embedding import EmbeddingMLP
from gnntrack.track_building import build_tracks


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three test events, a module map from six training events, tiny fresh models."""
    d = tmp_path_factory.mktemp("infer")
    train = [make_event(n_particles=60, seed=s, event_number=s) for s in range(6)]
    test = [make_event(n_particles=60, n_noise=30, seed=100 + s, event_number=100 + s) for s in range(3)]
    write_events(d / "events.h5", test)
    build_module_map(train).write(d / "map.h5")
    torch.manual_seed(0)
    save_model(EmbeddingMLP(hidden=32, n_layers=2, r_max=0.4, k_max=12), d / "emb.pt")
    save_model(FilterModel(hidden=32, n_layers=2), d / "filter.pt")
    save_model(InteractionGNN(hidden=16, n_graph_iters=2), d / "gnn.pt")
    return d


def _pipe(setup, method="metric_learning", **cfg):
    kw = {"module_map": setup / "map.h5"} if method == "module_map" else {"embedding": setup / "emb.pt"}
    return Pipeline.from_files(
        cfg, filter_model=setup / "filter.pt", gnn_model=setup / "gnn.pt", device="cpu", **kw
    )


def _median_cuts(pipe: Pipeline, event) -> tuple[float, float]:
    """Cuts at the median filter and GNN scores of a fresh model, so both stages keep ~half the edges."""
    hits = event.hits
    with torch.inference_mode():
        ev = pipe.load(hits, event.key)
        from gnntrack.inference.timing import StageTimer

        edges = pipe.build_graph(ev, StageTimer())
        x = torch.from_numpy(
            node_features(hits, pipe.filter_model.node_features, pipe.filter_model.feature_scales)
        )
        fs = torch.sigmoid(pipe.filter_model(x, edges))
        fcut = float(fs.median())
        kept = edges[:, fs >= fcut]
        gs = torch.sigmoid(pipe.gnn_model(x, kept))
    return fcut, float(gs.median())


@pytest.fixture(scope="module")
def cuts(setup):
    ev = read_events(setup / "events.h5")[0]
    return {m: _median_cuts(_pipe(setup, m), ev) for m in ("metric_learning", "module_map")}


@pytest.mark.parametrize("method", ["metric_learning", "module_map"])
def test_run_infer_equals_stage_by_stage_path(setup, cuts, tmp_path, method):
    fcut, gcut = cuts[method]
    tb = {"score_cut": gcut, "min_hits": 2}
    cfg = {"filter_cut": fcut, "track_building": tb}
    models = {"module_map": setup / "map.h5"} if method == "module_map" else {"embedding": setup / "emb.pt"}
    timings = run_infer(
        setup / "events.h5",
        tmp_path / "tracks.h5",
        cfg,
        filter_model=setup / "filter.pt",
        gnn_model=setup / "gnn.pt",
        device="cpu",
        **models,
    )
    # the files path: build_graphs -> apply_filter -> score_graphs -> build_tracks
    run_build_graphs(
        setup / "events.h5",
        tmp_path / "graphs.h5",
        {"method": method},
        module_map=models.get("module_map"),
        model=models.get("embedding"),
        device="cpu",
    )
    run_apply_filter(
        setup / "events.h5", tmp_path / "graphs.h5", setup / "filter.pt", tmp_path / "filtered.h5",
        {"score_cut": fcut}, device="cpu",
    )  # fmt: skip
    run_score_graphs(
        setup / "events.h5", tmp_path / "filtered.h5", setup / "gnn.pt", tmp_path / "scored.h5", "gnn", "cpu"
    )
    graphs = {g.key: g for g in read_graphs(tmp_path / "scored.h5")}
    records = read_tracks(tmp_path / "tracks.h5")
    assert [r.key for r in records] == [e.key for e in read_events(setup / "events.h5", tables=())]
    n_tracks = 0
    for rec, timing in zip(records, timings):
        g = graphs[rec.key]
        assert g.n_edges > 0
        np.testing.assert_array_equal(rec.edge_index, g.edge_index)
        np.testing.assert_allclose(rec.scores, g.scores["gnn"], rtol=0, atol=1e-6)
        expected = build_tracks(g.edge_index, g.scores["gnn"], g.n_hits, tb)
        assert rec.tracks.to_lists() == expected.to_lists()
        n_tracks += len(rec.tracks)
        assert set(STAGES) | {"total"} <= set(rec.timing)
        assert rec.timing["total"] == pytest.approx(sum(rec.timing[s] for s in STAGES))
        assert (rec.timing["embedding"] > 0) == (method == "metric_learning")
        assert rec.timing == pytest.approx(timing)
        assert np.all((rec.scores >= 0) & (rec.scores <= 1))
    assert n_tracks > 0  # the comparison is not vacuous


def _run_all(pipe: Pipeline, events):
    return [pipe.run_event(ev) for ev in events]


def test_neighbour_backends_and_cc_backends_give_identical_results(setup, cuts):
    events = read_events(setup / "events.h5")
    fcut, gcut = cuts["metric_learning"]
    base = {"filter_cut": fcut, "track_building": {"score_cut": gcut, "min_hits": 2, "backend": "scipy"}}
    ref = _run_all(_pipe(setup, neighbour_backend="brute", **base), events)
    assert sum(len(r.tracks) for r in ref) > 0
    for backend in ("faiss", "grid", "kdtree"):
        for r, o in zip(ref, _run_all(_pipe(setup, neighbour_backend=backend, **base), events)):
            assert torch.equal(r.edge_index, o.edge_index), backend
            assert torch.equal(r.scores, o.scores)
            assert r.tracks.to_lists() == o.tracks.to_lists()
    cfg = dict(base, track_building=dict(base["track_building"], backend="torch"))
    for r, o in zip(ref, _run_all(_pipe(setup, neighbour_backend="grid", **cfg), events)):
        assert r.tracks.to_lists() == o.tracks.to_lists()


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
def test_graph_runtimes_reproduce_fp32_tracks(setup, cuts, runtime):
    events = read_events(setup / "events.h5")
    fcut, gcut = cuts["metric_learning"]
    base = {"filter_cut": fcut, "track_building": {"score_cut": gcut, "min_hits": 2}}
    ref = _run_all(_pipe(setup, **base), events)
    other = _run_all(_pipe(setup, runtime=runtime, **base), events)
    for r, o in zip(ref, other):
        assert torch.equal(r.edge_index, o.edge_index)
        assert torch.allclose(r.scores, o.scores, rtol=0, atol=1e-5)
        assert r.tracks.to_lists() == o.tracks.to_lists()


#: Documented tolerance of bf16 autocast (docs/performance.md), on the same graph as fp32: mean
#: |Δ score| <= 0.01, 99th percentile <= 0.05, and at most 2 % of the edge decisions at the cut flip.
BF16_MEAN_TOL, BF16_Q99_TOL, BF16_MAX_FLIPS = 0.01, 0.05, 0.02


def _decisive(model):
    """A copy of ``model`` with its output layer scaled x30: scores spread towards 0 and 1 like a
    trained classifier's, instead of the fresh model's narrow band around 0.5."""
    import copy

    m = copy.deepcopy(model)
    last = [x for x in m.modules() if isinstance(x, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(30.0)
        last.bias.zero_()
    return m


def test_bf16_autocast_within_documented_tolerance(setup):
    ev = read_events(setup / "events.h5")[0]
    p = _pipe(setup)
    filt, gnn = _decisive(p.filter_model), _decisive(p.gnn_model)
    common = {"filter_cut": 0.5, "track_building": {"score_cut": 0.5, "min_hits": 2}}
    p32 = Pipeline(common, embedding=p.embedding, filter_model=filt, gnn_model=gnn, device="cpu")
    p16 = Pipeline(
        dict(common, amp="bf16"), embedding=p.embedding, filter_model=filt, gnn_model=gnn, device="cpu"
    )
    r32, r16 = p32.run_event(ev), p16.run_event(ev)
    assert r32.n_edges["gnn"] > 0 and len(r16.tracks) > 0
    # same graph: score both with each precision
    for runner32, runner16, model in ((p32._runners["filter"], p16._runners["filter"], filt),
                                      (p32._runners["gnn"], p16._runners["gnn"], gnn)):  # fmt: skip
        x = torch.from_numpy(node_features(ev.hits, model.node_features, model.feature_scales))
        a = torch.sigmoid(runner32(x, r32.edge_index))
        b = torch.sigmoid(runner16(x, r32.edge_index))
        d = (a - b).abs()
        assert float(d.mean()) <= BF16_MEAN_TOL
        assert float(d.quantile(0.99)) <= BF16_Q99_TOL
        assert float(((a > 0.5) != (b > 0.5)).float().mean()) <= BF16_MAX_FLIPS
        assert float(d.max()) > 0  # bf16 really ran


def test_missing_hit_column_is_an_input_error_and_leaves_no_output(setup, tmp_path):
    src = setup / "events.h5"
    bad = tmp_path / "bad.h5"
    events = read_events(src)
    write_events(bad, events)
    with h5py.File(bad, "a") as f:
        del f[f"events/{events[1].key}/hits/cl1_eta"]
    out = tmp_path / "tracks.h5"
    with pytest.raises(InputError) as err:
        run_infer(bad, out, {}, embedding=setup / "emb.pt", gnn_model=setup / "gnn.pt", device="cpu")
    assert err.value.field == "hits/cl1_eta" and err.value.event == events[1].key
    assert not out.exists() and not list(tmp_path.glob(".tracks.h5*"))


def test_corrupt_model_file_is_an_input_error(setup, tmp_path):
    bad = tmp_path / "gnn.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError) as err:
        run_infer(
            setup / "events.h5",
            tmp_path / "t.h5",
            {},
            embedding=setup / "emb.pt",
            gnn_model=bad,
            device="cpu",
        )
    assert str(bad) in str(err.value)


def test_filter_off_and_config_validation(setup):
    events = read_events(setup / "events.h5")[:1]
    res = _pipe(setup, filter=False).run_event(events[0])
    assert res.n_edges["build_edges"] == res.n_edges["filtering"]
    assert res.timing["filtering"] == 0.0
    with pytest.raises(ConfigError):
        from_dict(InferenceConfig, {"filter_cutt": 0.2})
    with pytest.raises(ConfigError):
        from_dict(InferenceConfig, {"filter_cut": 1.5})
    with pytest.raises(ConfigError):
        from_dict(InferenceConfig, {"runtime": "onnx", "amp": "bf16"})
    with pytest.raises(ValueError, match="exactly one"):
        Pipeline(gnn_model=InteractionGNN(hidden=8, n_graph_iters=1), device="cpu")


def test_pipeline_builds_tracks_at_the_models_stored_cut(setup, tmp_path):
    """An unset track-building cut is the GNN's stored working point; a configured one wins."""
    model = load_model(setup / "gnn.pt")
    save_model(model, tmp_path / "gnn_wp.pt", working_point={"score_cut": 0.37, "criterion": "two_way"})
    kw = {"module_map": setup / "map.h5", "filter_model": setup / "filter.pt", "device": "cpu"}
    pipe = Pipeline.from_files({}, gnn_model=tmp_path / "gnn_wp.pt", **kw)
    assert pipe.cfg.track_building.score_cut == 0.37
    over = Pipeline.from_files({"track_building": {"score_cut": 0.6}}, gnn_model=tmp_path / "gnn_wp.pt", **kw)
    assert over.cfg.track_building.score_cut == 0.6
    assert Pipeline.from_files({}, gnn_model=setup / "gnn.pt", **kw).cfg.track_building.score_cut == 0.5
    event = read_events(setup / "events.h5")[0]
    res = pipe.run_event(event)
    ei, scores = res.edge_index.cpu().numpy(), res.scores.cpu().numpy()
    expected = build_tracks(ei, scores, event.n_hits, {"score_cut": 0.37})
    assert sorted(map(tuple, res.tracks.numpy().to_lists())) == sorted(map(tuple, expected.to_lists()))
