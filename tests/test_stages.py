"""Stage objects: the one-process chain is a list of them, and the files path calls the same ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import make_event

from gnntrack.edge_classification import EdgeClassifier
from gnntrack.event_data import EventData, feature_spec
from gnntrack.graph_construction import GraphBuilder, ModuleMap, build_module_map, make_builder
from gnntrack.graph_construction.build import GraphConstructionConfig
from gnntrack.inference import Pipeline
from gnntrack.inference.timing import StageTimer
from gnntrack.models import FilterModel, InteractionGNN
from gnntrack.track_building import TrackBuildingConfig, build_tracks
from gnntrack.track_building.stage import TrackBuilder


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    train = [make_event(n_particles=40, seed=s, event_number=s) for s in range(4)]
    event = make_event(n_particles=40, n_noise=20, seed=50, event_number=50)
    path = tmp_path_factory.mktemp("stages") / "map.h5"
    build_module_map(train).write(path)
    torch.manual_seed(0)
    return (
        ModuleMap.load(path, "cpu"),
        FilterModel(hidden=16, n_layers=2),
        InteractionGNN(hidden=8, n_graph_iters=1),
        event,
    )


def test_event_data_drops_edges_with_their_data():
    ev = EventData("k", 0, 0, 4, torch.device("cpu"))
    ev.set_graph(torch.tensor([[0, 1, 2], [1, 2, 3]]), label=torch.tensor([1.0, 0.0, 1.0]))
    ev.keep_edges(torch.tensor([True, False, True]))
    assert ev.edge_index.tolist() == [[0, 2], [1, 3]] and ev.edge_data["label"].tolist() == [1.0, 1.0]


def test_pipeline_is_the_list_of_stage_objects(parts):
    mm, filt, gnn, event = parts
    pipe = Pipeline({"filter_cut": 0.4, "track_building": {"score_cut": 0.5}}, module_map=mm, filter_model=filt,
                    gnn_model=gnn, device="cpu")  # fmt: skip
    kinds = [type(s) for s in pipe.stages]
    assert kinds == [GraphBuilder, EdgeClassifier, EdgeClassifier, TrackBuilder]
    assert [s.name for s in pipe.stages[1:3]] == ["filter", "gnn"] and pipe.stages[1].prune
    timer = StageTimer()
    res = pipe.run_tensors(pipe.load(event.hits, event.key), timer)
    assert {"build_edges", "filtering", "gnn", "labelling"} <= {k for k, v in timer.seconds.items() if v >= 0}

    # the same objects, called one by one on a fresh event, give the same result
    ev = pipe.load(event.hits, event.key)
    for stage in pipe.stages:
        stage(ev)
    assert torch.equal(ev.edge_index, res.edge_index)
    assert [t.tolist() for t in ev.tracks.numpy()] == [t.tolist() for t in res.tracks.numpy()]
    # the filter kept exactly its passing edges, and track building used the GNN's scores
    built = pipe.stages[0](pipe.load(event.hits, event.key))
    kept = pipe.stages[1].passes(pipe.stages[1].scores(built))
    assert ev.n_edges["filter"] == int(kept.sum()) < built.edge_index.shape[1]
    direct = build_tracks(ev.edge_index, ev.scores("gnn"), ev.n_hits, TrackBuildingConfig(score_cut=0.5))
    assert [t.tolist() for t in direct.numpy()] == [t.tolist() for t in ev.tracks.numpy()]


def test_files_path_builds_graphs_with_the_graph_builder(parts):
    mm, _, _, event = parts
    builder = make_builder(GraphConstructionConfig(), module_map=mm, device="cpu")
    assert isinstance(builder, GraphBuilder)
    assert torch.equal(builder.build_edges(event.hits), mm.build_edges(event.hits))


def test_edge_classifier_scores_only_touched_hits_exactly(parts):
    mm, filt, gnn, event = parts
    ev = EventData.from_hits(event.hits, (), [feature_spec(gnn)], "cpu")
    ev.set_graph(mm.build_edges(event.hits))
    assert torch.unique(ev.edge_index).numel() < ev.n_hits  # isolated hits exist
    got = EdgeClassifier("gnn", gnn, 0.5).scores(ev)
    with torch.inference_mode():
        full = torch.sigmoid(gnn(ev.node_features(gnn), ev.edge_index))
    np.testing.assert_allclose(got.numpy(), full.numpy(), rtol=1e-5, atol=1e-6)
    chunked = EdgeClassifier("filter", filt, 0.5, chunk_size=7).scores(
        _with_graph(event, filt, ev.edge_index)
    )
    whole = EdgeClassifier("filter", filt, 0.5).scores(_with_graph(event, filt, ev.edge_index))
    np.testing.assert_allclose(chunked.numpy(), whole.numpy(), rtol=1e-5, atol=1e-6)


def _with_graph(event, model, edge_index):
    ev = EventData.from_hits(event.hits, (), [feature_spec(model)], "cpu")
    ev.set_graph(edge_index)
    return ev


def test_track_builder_needs_a_resolved_cut():
    with pytest.raises(ValueError, match="resolved score cut"):
        TrackBuilder(TrackBuildingConfig())
