"""acorn's PyG format: export of events + graphs to .pyg files, import of acorn's files, errors."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from synthetic import make_event

from gnntrack.cli import main
from gnntrack.io import pyg
from gnntrack.io.errors import InputError
from gnntrack.io.event_store import write_events
from gnntrack.io.graph_store import label_edges, make_graph, read_graphs, write_graphs

# torch_geometric is optional (extra `pyg`); CI installs it, so these run there
needs_pyg = pytest.mark.skipif(
    importlib.util.find_spec("torch_geometric") is None, reason="torch_geometric (extra pyg) not installed"
)


def _graph(event, seed=0, scores=("gnn", "filter")):
    """A candidate graph: all truth edges, some reversed, and random fakes, with scores."""
    rng = np.random.default_rng(seed)
    n = event.n_hits
    ei = np.concatenate([event.truth_edges, event.truth_edges[::-1, :4], rng.integers(0, n, (2, 60))], axis=1)
    return make_graph(ei, event, {s: rng.random(ei.shape[1]).astype(np.float32) for s in scores})


@pytest.fixture
def shard(tmp_path):
    events = [make_event(seed=1, event_number=5), make_event(seed=2, event_number=123)]
    graphs = [_graph(e, seed=i) for i, e in enumerate(events)]
    write_events(tmp_path / "events.h5", events)
    write_graphs(tmp_path / "graphs.h5", graphs, stage="gnn")
    return tmp_path / "events.h5", tmp_path / "graphs.h5", events, graphs


def _assert_same_graph(a, b, scores=("gnn",)):
    assert a.key == b.key and a.n_hits == b.n_hits
    for name in ("edge_index", "y", "y_target", "edge_particle"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for s in scores:
        np.testing.assert_array_equal(a.scores[s], b.scores[s])


@needs_pyg
def test_round_trip_through_pyg_files_keeps_edges_labels_and_scores(shard, tmp_path):
    events_h5, graphs_h5, events, graphs = shard
    paths = pyg.export_pyg(events_h5, graphs_h5, tmp_path / "acorn")
    assert sorted(p.name for p in paths) == ["event000000005.pyg", "event000000123.pyg"]
    keys = pyg.import_pyg([tmp_path / "acorn"], events_h5, tmp_path / "back.h5", stage="gnn")
    assert sorted(keys) == sorted(e.key for e in events)
    back = {g.key: g for g in read_graphs(tmp_path / "back.h5")}
    for a in graphs:
        _assert_same_graph(a, back[a.key])


@needs_pyg
def test_exported_file_has_acorns_attributes_and_labels(shard, tmp_path):
    events_h5, graphs_h5, events, graphs = shard
    path = pyg.export_pyg(events_h5, graphs_h5, tmp_path / "acorn", scores="filter")[1]  # key order
    assert path.name == "event000000005.pyg"
    data = torch.load(path, weights_only=False)  # what acorn does
    ev, g = events[0], graphs[0]
    from torch_geometric.data import Data

    assert isinstance(data, Data) and data.event_id == "000000005" and isinstance(data.config, list)
    for f in pyg.FIELDS:
        assert f.name in data, f.name
    n, t = ev.n_hits, data.track_edges.shape[1]
    assert data.num_nodes == n and data.hit_id.shape == (n,) and data.cluster_r_2.shape == (n,)
    np.testing.assert_array_equal(data.hit_id.numpy(), ev.hits["hit_id"])
    np.testing.assert_array_equal(data.hit_y.numpy(), ev.hits["y"])  # `y` is acorn's edge label
    np.testing.assert_array_equal(data.module_id.numpy().view(np.uint64), ev.hits["module_id"])
    assert set(np.unique(data.region.numpy())) <= {3, 4}  # synthetic barrel: pixel 3, strip 4
    np.testing.assert_array_equal(data.edge_index.numpy(), g.edge_index)
    np.testing.assert_array_equal(data.scores.numpy(), g.scores["filter"])
    # track edges: the unique truth edges, with the particle's features in acorn's units
    np.testing.assert_array_equal(data.track_edges.numpy(), np.unique(ev.truth_edges, axis=1))
    part = ev.truth_edge_particle[np.unique(ev.truth_edges, axis=1, return_index=True)[1]]
    np.testing.assert_allclose(data.pt.numpy(), ev.particles["pt"][part].astype(np.float64) * 1000.0)
    np.testing.assert_array_equal(data.particle_id.numpy(), ev.particles["barcode"][part])  # subevent 0
    assert data.particle_id.shape == data.nhits.shape == data.truth_map.shape == (t,)
    assert not data.redundant_split_edges.any()  # one hit per module and particle here
    # acorn's labels: y is a directed match with a track edge; truth_map points at that edge
    y, tm, ei = data.y.numpy(), data.truth_map.numpy(), data.edge_index.numpy()
    track = set(map(tuple, data.track_edges.numpy().T))
    np.testing.assert_array_equal(y, [tuple(e) in track for e in ei.T])
    assert not y[-64:-60].any() and g.y[-64:-60].all()  # reversed truth edges: true for gnntrack only
    np.testing.assert_array_equal(ei[:, tm], data.track_edges.numpy())


@needs_pyg
def test_prefixed_names(shard, tmp_path):
    events_h5, graphs_h5, _, graphs = shard
    path = pyg.export_pyg(events_h5, graphs_h5, tmp_path / "acorn", prefixed=True)[1]
    data = torch.load(path, weights_only=False)
    for name in ("hit_x", "hit_y", "hit_cluster_r_1", "track_particle_pt", "edge_y", "track_to_edge_map"):
        assert name in data, name
    assert "x" not in data and "y" not in data and "edge_scores" in data
    pyg.import_pyg([path], events_h5, tmp_path / "back.h5", stage="gnn")
    _assert_same_graph(graphs[0], read_graphs(tmp_path / "back.h5")[0])


def _acorn_event(event, edge_index, scores=None, node_order=None):
    """A Data object built as acorn's stages build it: hit features from the hits table, track
    edges with their particle features, then the constructed graph, its directed labels and the
    edge classifier's scores."""
    from torch_geometric.data import Data

    node_order = np.arange(event.n_hits) if node_order is None else node_order
    new_row = np.full(event.n_hits, -1)
    new_row[node_order] = np.arange(len(node_order))
    graph = Data()
    for feature in ("hit_id", "x", "y", "z", "r", "phi", "eta"):
        graph[feature] = torch.from_numpy(np.asarray(event.hits[feature])[node_order])
    track_edges = new_row[np.unique(event.truth_edges, axis=1)]
    track_edges = track_edges[:, (track_edges >= 0).all(0)]
    graph.track_edges = torch.from_numpy(track_edges)
    graph.particle_id = torch.arange(track_edges.shape[1])
    graph.config = [{"stage": "data_reading"}]
    graph.event_id = f"{event.event_number:09}"
    graph.edge_index = torch.from_numpy(new_row[edge_index])  # graph construction overwrites y
    y, truth_map = pyg.directed_match(graph.edge_index.numpy(), track_edges, len(node_order))
    graph.y, graph.truth_map = torch.from_numpy(y), torch.from_numpy(truth_map)
    if scores is not None:
        graph.scores = torch.from_numpy(scores)
    return graph


@needs_pyg
def test_acorn_built_file_imports_to_the_expected_graph(tmp_path):
    ev = make_event(seed=7, event_number=42)
    write_events(tmp_path / "events.h5", [ev])
    rng = np.random.default_rng(3)
    keep = np.sort(rng.permutation(ev.n_hits)[: ev.n_hits - 30])  # a hard cut removed 30 hits
    ei = np.concatenate([ev.truth_edges, rng.integers(0, ev.n_hits, (2, 80))], axis=1)
    ei = ei[:, np.isin(ei, keep).all(0)]
    scores = rng.random(ei.shape[1]).astype(np.float32)
    data = _acorn_event(ev, ei, scores, node_order=keep)
    folder = tmp_path / "gnn" / "testset"
    folder.mkdir(parents=True)
    torch.save(data, folder / "event000000042.pyg")
    torch.save(
        _acorn_event(make_event(seed=8, event_number=43), ei[:, :3]), folder / "event000000043.pyg"
    )  # other shard
    assert pyg.import_pyg([folder], tmp_path / "events.h5", tmp_path / "g.h5") == [ev.key]
    (g,) = read_graphs(tmp_path / "g.h5")
    y, y_target, edge_particle = label_edges(ei, ev)
    np.testing.assert_array_equal(g.edge_index, ei)
    np.testing.assert_array_equal(g.y, y)
    np.testing.assert_array_equal(g.y_target, y_target)
    np.testing.assert_array_equal(g.edge_particle, edge_particle)
    np.testing.assert_array_equal(g.scores["acorn"], scores)
    assert g.n_hits == ev.n_hits

    # acorn's edge-classifier stage saves a one-event batch: refused by the safe load, read with trust
    from torch_geometric.data import Batch

    torch.save(Batch.from_data_list([data]), folder / "event000000042.pyg")
    with pytest.raises(InputError, match="trust-pickle") as err:
        pyg.import_pyg([folder], tmp_path / "events.h5", tmp_path / "g2.h5")
    assert "event000000042.pyg" in str(err.value)
    pyg.import_pyg([folder], tmp_path / "events.h5", tmp_path / "g2.h5", trust=True)
    np.testing.assert_array_equal(read_graphs(tmp_path / "g2.h5")[0].scores["acorn"], scores)


@needs_pyg
@pytest.mark.parametrize("missing", ["edge_index", "hit_id"])
def test_missing_attribute_names_file_and_field(tmp_path, missing):
    ev = make_event(seed=7, event_number=42)
    write_events(tmp_path / "events.h5", [ev])
    data = _acorn_event(ev, ev.truth_edges)
    del data[missing]
    torch.save(data, tmp_path / "event000000042.pyg")
    with pytest.raises(InputError) as err:
        pyg.import_pyg([tmp_path / "event000000042.pyg"], tmp_path / "events.h5", tmp_path / "g.h5")
    e = err.value
    assert e.field == missing and e.file.endswith("event000000042.pyg") and "missing attribute" in str(e)
    assert not (tmp_path / "g.h5").exists()


@needs_pyg
def test_bad_values_are_named(tmp_path):
    ev = make_event(seed=7, event_number=42)
    write_events(tmp_path / "events.h5", [ev])
    f = tmp_path / "event000000042.pyg"
    data = _acorn_event(ev, ev.truth_edges, scores=np.zeros(3, np.float32))
    torch.save(data, f)
    with pytest.raises(InputError, match="3 scores for") as err:
        pyg.import_pyg([f], tmp_path / "events.h5", tmp_path / "g.h5")
    assert err.value.field == "scores"
    data = _acorn_event(ev, ev.truth_edges)
    data.hit_id = data.hit_id + 10_000
    torch.save(data, f)
    with pytest.raises(InputError, match="not spacepoints of the event") as err:
        pyg.import_pyg([f], tmp_path / "events.h5", tmp_path / "g.h5")
    assert err.value.field == "hit_id"
    data = _acorn_event(ev, ev.truth_edges)
    data.event_id = "000000041"
    torch.save(data, f)
    with pytest.raises(InputError, match="does not match the file name") as err:
        pyg.import_pyg([f], tmp_path / "events.h5", tmp_path / "g.h5")
    f.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="not a readable .pyg file"):
        pyg.import_pyg([f], tmp_path / "events.h5", tmp_path / "g.h5")


@needs_pyg
def test_export_refuses_an_unknown_score_stage(shard, tmp_path):
    events_h5, graphs_h5, _, _ = shard
    with pytest.raises(InputError, match="no scores of stage 'gnnx'") as err:
        pyg.export_pyg(events_h5, graphs_h5, tmp_path / "acorn", scores="gnnx")
    assert err.value.field == "scores/gnnx"


@needs_pyg
def test_command_line_export_and_import(shard, tmp_path, capsys):
    events_h5, graphs_h5, _, graphs = shard
    out = tmp_path / "acorn"
    assert main(["export-pyg", str(events_h5), str(graphs_h5), "-o", str(out), "--scores", "gnn"]) == 0
    assert main(["import-pyg", str(out), "--events", str(events_h5), "-o", str(tmp_path / "g.h5")]) == 0
    back = {g.key: g for g in read_graphs(tmp_path / "g.h5")}
    for a in graphs:
        np.testing.assert_array_equal(a.scores["gnn"], back[a.key].scores["acorn"])
    capsys.readouterr()
    assert main(["import-pyg", str(tmp_path / "nothing"), "--events", str(events_h5), "-o", "x.h5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing" in err and err.startswith("gnntrack import-pyg: error:")


def test_without_torch_geometric_one_clear_error(shard, tmp_path, monkeypatch, capsys):
    events_h5, graphs_h5, _, _ = shard
    for name in list(sys.modules):
        if name == "torch_geometric" or name.startswith("torch_geometric."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch_geometric", None)  # import fails as if absent
    with pytest.raises(pyg.MissingDependencyError, match=r"torch_geometric.*gnntrack\[pyg\]"):
        pyg.export_pyg(events_h5, graphs_h5, tmp_path / "acorn")
    assert main(["export-pyg", str(events_h5), str(graphs_h5), "-o", str(tmp_path / "acorn")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "torch_geometric" in err and "pip install" in err
    assert not (tmp_path / "acorn").exists()
