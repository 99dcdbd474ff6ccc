"""Regional inference (``InferenceConfig.regions``): the event split into η–φ regions, each run
through graph building, filter and GNN, owned edges merged, tracks built once on the whole event."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import make_event

from gnntrack.edge_classification import RegionConfig
from gnntrack.graph_construction import ModuleMap, build_module_map
from gnntrack.inference import Pipeline
from gnntrack.inference.timing import StageTimer
from gnntrack.models import FilterModel, InteractionGNN

#: margins wide enough that every region holds the whole event as context
WIDE = {"eta_margin": 10.0, "phi_margin": 4.0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The fixture of tests/test_inference_pipeline.py: a module map from six training events,
    three test events with noise, tiny fresh filter and GNN (cuts at their median scores)."""
    train = [make_event(n_particles=60, seed=s, event_number=s) for s in range(6)]
    test = [make_event(n_particles=60, n_noise=30, seed=100 + s, event_number=100 + s) for s in range(3)]
    path = tmp_path_factory.mktemp("regional") / "map.h5"
    build_module_map(train).write(path)
    torch.manual_seed(0)
    models = {
        "module_map": ModuleMap.load(path, "cpu"),
        "filter_model": FilterModel(hidden=32, n_layers=2),
        "gnn_model": InteractionGNN(hidden=16, n_graph_iters=2),
    }
    pipe = Pipeline({"filter_cut": 0.0, "track_building": {"score_cut": 0.0}}, device="cpu", **models)
    with torch.inference_mode():
        ev = pipe.load(test[0].hits)
        pipe.stages[0](ev)
        fcut = float(pipe.stages[1].scores(ev).median())
        pipe.stages[1].cut = fcut
        pipe.stages[1](ev)
        gcut = float(pipe.stages[2].scores(ev).median())
    cfg = {"filter_cut": fcut, "track_building": {"score_cut": gcut, "min_hits": 2}}
    return models, test, cfg


def _run(setup, regions=None):
    models, events, cfg = setup
    pipe = Pipeline(dict(cfg, regions=regions) if regions is not None else cfg, device="cpu", **models)
    if regions is not None:
        pipe.regional = True  # the region machinery even for a 1 x 1 grid
    return pipe, [pipe.run_event(e) for e in events]


def _edges(res) -> set[tuple[int, int]]:
    return set(map(tuple, res.edge_index.T.tolist()))


def _tracks(res) -> list[tuple[int, ...]]:
    return sorted(tuple(sorted(t)) for t in res.tracks.numpy().to_lists())


def test_one_region_equals_whole_event_exactly(setup):
    _, whole = _run(setup)
    _, one = _run(setup, {"n_eta": 1, "n_phi": 1})
    for w, o in zip(whole, one):
        order = torch.argsort(w.edge_index[0] * w.n_hits + w.edge_index[1])
        assert torch.equal(w.edge_index[:, order], o.edge_index)
        assert torch.equal(w.scores[order], o.scores)
        assert _tracks(w) == _tracks(o)
        assert o.n_edges == w.n_edges


def test_2x2_wide_margins_same_edges_and_tracks(setup):
    _, whole = _run(setup)
    _, reg = _run(setup, dict(WIDE, n_eta=2, n_phi=2, eta_min=-1.0, eta_max=1.0))
    n_tracks = 0
    for w, r in zip(whole, reg):
        assert len(w.tracks) > 0
        assert _edges(w) == _edges(r)
        # scores of the same edge agree (sums over neighbours in another order: float rounding)
        ws = dict(zip(map(tuple, w.edge_index.T.tolist()), w.scores.tolist()))
        rs = dict(zip(map(tuple, r.edge_index.T.tolist()), r.scores.tolist()))
        assert max(abs(ws[k] - rs[k]) for k in ws) < 1e-5
        assert _tracks(w) == _tracks(r)
        n_tracks += len(r.tracks)
    assert n_tracks > 0


def test_every_edge_owned_by_exactly_one_region(setup):
    models, events, cfg = setup
    cfg = dict(cfg, filter=False, regions=dict(WIDE, n_eta=2, n_phi=2, eta_min=-1.0, eta_max=1.0))
    pipe = Pipeline(cfg, device="cpu", **models)
    whole = Pipeline(cfg, device="cpu", **models)
    for event in events:
        ev = pipe.load(event.hits)
        with torch.inference_mode():
            masks = pipe.region_masks(ev)
            # the cores partition the hits
            cover = torch.zeros(ev.n_hits, dtype=torch.long)
            for rows, core in masks:
                cover[rows[core]] += 1
            assert torch.all(cover == 1)
            parts = [pipe.run_region(ev, rows, core, StageTimer()) for rows, core in masks]
            owned = torch.cat([p[0] for p in parts], 1)
            pairs = owned[0] * ev.n_hits + owned[1]
            assert pairs.numel() == torch.unique(pairs).numel() > 0  # no edge twice
            ref = whole.load(event.hits)
            whole.graph_builder(ref)
            assert set(map(tuple, owned.T.tolist())) == set(map(tuple, ref.edge_index.T.tolist()))
            # each region scored its owned edges only once, and built fewer than the whole graph
            assert all(p[2] <= ref.edge_index.shape[1] for p in parts)


def test_narrow_margins_lose_edges_but_never_duplicate(setup):
    _, whole = _run(setup)
    _, reg = _run(setup, {"n_eta": 2, "n_phi": 4, "eta_min": -1.0, "eta_max": 1.0, "eta_margin": 0.0,
                          "phi_margin": 0.0})  # fmt: skip
    for w, r in zip(whole, reg):
        pairs = r.edge_index[0] * r.n_hits + r.edge_index[1]
        assert pairs.numel() == torch.unique(pairs).numel()
        assert _edges(r) <= _edges(w)
    assert sum(len(_edges(w) - _edges(r)) for w, r in zip(whole, reg)) > 0  # margin 0 cuts edges


def test_region_config_in_inference_config():
    from gnntrack.config import from_dict
    from gnntrack.inference import InferenceConfig

    cfg = from_dict(InferenceConfig, {"regions": {"n_eta": 4, "n_phi": 4}})
    assert isinstance(cfg.regions, RegionConfig) and cfg.regions.n_regions == 16
    assert InferenceConfig().regions.n_regions == 1  # whole event
    assert np.isclose(cfg.regions.phi_margin, RegionConfig().phi_margin)
