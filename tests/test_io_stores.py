"""Event and graph stores: exact round-trip, truth labels of edges, and clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from synthetic import make_event

from gnntrack.io.errors import InputError
from gnntrack.io.event_store import read_events, write_events
from gnntrack.io.graph_store import label_edges, make_graph, read_graphs, write_graphs


def test_event_round_trip_is_exact(tmp_path):
    events = [make_event(seed=1, event_number=0), make_event(seed=2, event_number=1)]
    path = tmp_path / "shard.h5"
    write_events(path, events)
    back = read_events(path)
    assert [e.key for e in back] == [e.key for e in events]
    for a, b in zip(events, back):
        for table in ("hits", "clusters", "particles", "jets"):
            for col, arr in getattr(a, table).items():
                got = getattr(b, table)[col]
                assert got.dtype == np.asarray(arr).dtype, col
                np.testing.assert_array_equal(got, arr)
        np.testing.assert_array_equal(a.truth_edges, b.truth_edges)
        np.testing.assert_array_equal(a.hit_particle, b.hit_particle)


def test_partial_read_returns_only_the_requested_columns(tmp_path):
    ev = make_event(n_particles=20, seed=3)
    write_events(tmp_path / "e.h5", [ev], compression="lzf")
    (part,) = read_events(
        tmp_path / "e.h5", tables=("hits",), columns={"hits": ["r", "phi", "absent"]}, truth=False
    )
    assert sorted(part.hits) == ["phi", "r"]  # an absent name is skipped, not an error
    np.testing.assert_array_equal(part.hits["r"], ev.hits["r"])
    assert part.particles == {} and part.truth_edges.shape == (2, 0) and part.hit_particle.shape == (2, 0)
    (full,) = read_events(tmp_path / "e.h5")
    np.testing.assert_array_equal(full.truth_edges, ev.truth_edges)


def test_label_edges_marks_truth_in_both_directions():
    ev = make_event(seed=3)
    truth = ev.truth_edges
    fake = np.array([[truth[0, 0]], [truth[0, 0]]])  # self-loop is never true
    edge_index = np.concatenate([truth[:, :5], truth[::-1, 5:10], fake], axis=1)
    y, y_target, edge_particle = label_edges(edge_index, ev)
    assert y[:10].all() and not y[10]
    np.testing.assert_array_equal(edge_particle[:5], ev.truth_edge_particle[:5])
    assert edge_particle[10] == -1
    np.testing.assert_array_equal(y_target[:10], ev.particles["is_target"][edge_particle[:10]])


def test_graph_round_trip(tmp_path):
    ev = make_event(seed=4)
    g = make_graph(
        ev.truth_edges, ev, scores={"gnn": np.linspace(0, 1, ev.truth_edges.shape[1], dtype=np.float32)}
    )
    write_graphs(tmp_path / "g.h5", [g], stage="test")
    (back,) = read_graphs(tmp_path / "g.h5")
    np.testing.assert_array_equal(back.edge_index, g.edge_index)
    assert back.y.all()
    np.testing.assert_allclose(back.scores["gnn"], g.scores["gnn"], rtol=0, atol=0)


def test_failed_write_leaves_no_file(tmp_path):
    ev = make_event(seed=5)
    ev.hits["x"] = object()  # h5py cannot store this
    path = tmp_path / "shard.h5"
    with pytest.raises(TypeError):
        write_events(path, [ev])
    assert list(tmp_path.iterdir()) == []


def test_wrong_file_type_names_the_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(InputError, match="other.h5"):
        read_events(path)


def test_validate_names_the_field():
    ev = make_event(seed=6)
    ev.hits["z"] = ev.hits["z"].copy()
    ev.hits["z"][3] = np.nan
    with pytest.raises(InputError, match="hits/z"):
        ev.validate()
