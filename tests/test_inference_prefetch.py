"""Read-ahead in one-process inference: same tracks, same input errors, no thread left behind."""

from __future__ import annotations

import threading
import time

import h5py
import numpy as np
import pytest
import torch
from synthetic import make_event

from gnntrack.config import ConfigError, from_dict
from gnntrack.inference import InferenceConfig, Pipeline, run_infer
from gnntrack.inference.pipeline import shard_throughput
from gnntrack.inference.prefetch import Prefetcher
from gnntrack.io.errors import InputError
from gnntrack.io.event_store import read_events, write_events
from gnntrack.io.track_store import read_tracks
from gnntrack.models import FilterModel, InteractionGNN, save_model
from gnntrack.models.embedding import EmbeddingMLP


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Five synthetic test events and tiny fresh models (as in test_inference_pipeline)."""
    d = tmp_path_factory.mktemp("prefetch")
    test = [make_event(n_particles=60, n_noise=30, seed=100 + s, event_number=100 + s) for s in range(5)]
    write_events(d / "events.h5", test)
    torch.manual_seed(0)
    save_model(EmbeddingMLP(hidden=32, n_layers=2, r_max=0.4, k_max=12), d / "emb.pt")
    save_model(FilterModel(hidden=32, n_layers=2), d / "filter.pt")
    save_model(InteractionGNN(hidden=16, n_graph_iters=2), d / "gnn.pt")
    return d


def _models(setup):
    return {"embedding": setup / "emb.pt", "filter_model": setup / "filter.pt", "gnn_model": setup / "gnn.pt"}


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gnntrack-")]


CFG = {"filter_cut": 0.3, "track_building": {"score_cut": 0.5, "min_hits": 2}}


def test_prefetch_gives_identical_tracks(setup, tmp_path):
    out = {}
    for depth in (0, 2):
        path = tmp_path / f"tracks{depth}.h5"
        timings = run_infer(
            setup / "events.h5", path, {**CFG, "prefetch": depth}, device="cpu", **_models(setup)
        )
        assert len(timings) == 5 and all(t["data_loading"] > 0 for t in timings)
        out[depth] = read_tracks(path)
    assert [r.key for r in out[0]] == [r.key for r in out[2]]
    for a, b in zip(out[0], out[2], strict=True):
        assert a.tracks.to_lists() == b.tracks.to_lists()
        np.testing.assert_array_equal(a.edge_index, b.edge_index)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert (a.run_number, a.event_number, a.n_hits) == (b.run_number, b.event_number, b.n_hits)
        assert set(a.timing) == set(b.timing)  # the tracks file's timing records are unchanged
    assert not _readers()


@pytest.mark.parametrize("damage", ["missing_column", "nan_coordinate"])
def test_bad_event_raises_the_same_input_error_with_prefetch(setup, tmp_path, damage):
    events = read_events(setup / "events.h5")
    key = events[2].key
    bad = tmp_path / "bad.h5"
    if damage == "nan_coordinate":
        events[2].hits["z"][3] = np.nan
    write_events(bad, events)
    field = "hits/z"
    if damage == "missing_column":
        with h5py.File(bad, "a") as f:
            del f[f"events/{key}/hits/cl1_eta"]
        field = "hits/cl1_eta"
    errors = {}
    for depth in (0, 2):
        out = tmp_path / f"t{depth}.h5"
        with pytest.raises(InputError) as err:
            run_infer(bad, out, {"prefetch": depth}, device="cpu", **_models(setup))
        errors[depth] = err.value
        assert not out.exists()
    a, b = errors[0], errors[2]
    assert (b.file, b.event, b.field) == (str(bad), key, field)
    assert (a.file, a.event, a.field, a.reason) == (b.file, b.event, b.field, b.reason)
    assert not _readers()


def test_stopping_early_leaves_no_reader_thread(setup):
    pipe = Pipeline.from_files({"prefetch": 2}, device="cpu", **_models(setup))
    before = set(threading.enumerate())
    it = pipe.iter_file(setup / "events.h5")
    first = next(it)
    assert first.key == read_events(setup / "events.h5")[0].key
    assert _readers()  # reading ahead
    it.close()
    assert set(threading.enumerate()) <= before and not _readers()
    for _res in pipe.iter_file(setup / "events.h5"):  # a break in a for loop
        break
    assert not _readers()


def test_prefetcher_order_errors_and_close():
    assert list(Prefetcher(lambda: iter(range(7)), depth=2)) == list(range(7))

    def failing():
        yield 1
        raise KeyError("boom")

    p = Prefetcher(failing, depth=1)
    assert next(p) == 1
    with pytest.raises(KeyError, match="boom"):
        next(p)
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield 0
        finally:
            closed.set()

    with Prefetcher(endless, depth=2) as p:
        next(p)
        time.sleep(0.1)  # the reader is blocked on the full queue
    assert closed.is_set() and not _readers()
    with pytest.raises(ValueError):
        Prefetcher(lambda: iter(()), depth=0)


def test_prefetch_setting_default_and_validation(setup):
    assert InferenceConfig().prefetch is None
    assert Pipeline.from_files({}, device="cpu", **_models(setup)).prefetch_depth() == 0
    assert Pipeline.from_files({"prefetch": 3}, device="cpu", **_models(setup)).prefetch_depth() == 3
    with pytest.raises(ConfigError):
        from_dict(InferenceConfig, {"prefetch": -1})
    s = shard_throughput([{"total": 0.1}, {"total": 0.3}], 0.5, prefetch=1)
    assert s.n_events == 2 and s.events_per_s == pytest.approx(4.0) and s.latency_s == pytest.approx(0.2)
    assert "events/s" in s.summary("x")
