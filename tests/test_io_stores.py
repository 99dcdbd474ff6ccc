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


# ------------------------------------------------------------------------- content digests
def _two_events(path, compression="lzf"):
    events = [make_event(n_particles=10, seed=s, event_number=s) for s in (7, 8)]
    write_events(path, events, compression=compression)
    return events


def test_changed_value_is_named_by_event_and_field_and_partial_reads_check_only_what_they_read(tmp_path):
    path = tmp_path / "e.h5"
    events = _two_events(path)
    key = events[0].key
    with h5py.File(path, "r+") as f:
        f[f"events/{key}/hits/x"][3] += 1.0  # a silently different value, not a broken file
    with pytest.raises(InputError, match="does not match its digest") as err:
        read_events(path)
    assert err.value.event == key and err.value.field == "hits/x" and str(path) in str(err.value)
    # reading other columns of that event, or the other event, reads nothing damaged
    (part,) = read_events(path, [key], tables=("hits",), columns={"hits": ["r", "z"]}, truth=False)
    np.testing.assert_array_equal(part.hits["r"], events[0].hits["r"])
    (other,) = read_events(path, [events[1].key])
    np.testing.assert_array_equal(other.hits["x"], events[1].hits["x"])


def test_changed_attribute_or_member_is_detected(tmp_path):
    path = tmp_path / "e.h5"
    events = _two_events(path)
    key = events[1].key
    bad = tmp_path / "attr.h5"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        f[f"events/{key}"].attrs["event_number"] = 99
    with pytest.raises(InputError, match="does not match its digest") as err:
        read_events(bad, [key])
    assert err.value.event == key
    read_events(bad, [events[0].key])  # the other event is intact
    bad = tmp_path / "member.h5"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        f[f"events/{key}/hits"].move("cl1_eta", "cl1_eta_renamed")
    with pytest.raises(InputError, match="cl1_eta") as err:
        read_events(bad, [key], tables=("hits",), columns={"hits": ["r"]})  # its table is checked
    assert err.value.event == key and err.value.field == "hits/cl1_eta"
    read_events(bad, [key], tables=("particles",))  # a read that does not touch the hits table


def test_damaged_compressed_chunk_is_an_input_error(tmp_path):
    path = tmp_path / "e.h5"
    events = _two_events(path, compression="gzip")
    key = events[0].key
    with h5py.File(path, "r") as f:
        info = f[f"events/{key}/hits/z"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[info.byte_offset + info.size // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        read_events(path)
    assert err.value.event == key and err.value.field == "hits/z" and str(path) in str(err.value)


def _strip_digests(path):
    with h5py.File(path, "r+") as f:
        groups = [f]
        f.visititems(lambda _n, o: groups.append(o) if isinstance(o, h5py.Group) else None)
        for g in groups:
            for name in ("digest", "manifest"):
                if name in g.attrs:
                    del g.attrs[name]


def test_files_without_digests_still_read(tmp_path, caplog):
    """Files written before digests existed read as before (unverified, a debug log line)."""
    path = tmp_path / "old.h5"
    events = _two_events(path)
    _strip_digests(path)
    with caplog.at_level("DEBUG", logger="gnntrack.io.hdf5"):
        back = read_events(path)
    assert "unverified" in caplog.text
    assert [e.key for e in back] == [e.key for e in events] and back[0].attrs == {}
    np.testing.assert_array_equal(back[1].hits["x"], events[1].hits["x"])
    g = make_graph(events[0].truth_edges, events[0])
    write_graphs(tmp_path / "g.h5", [g], stage="test")
    _strip_digests(tmp_path / "g.h5")
    np.testing.assert_array_equal(read_graphs(tmp_path / "g.h5")[0].edge_index, g.edge_index)


def test_graph_and_tracks_files_are_checked(tmp_path):
    from gnntrack.io.track_store import TrackRecord, read_timing, read_tracks, write_tracks
    from gnntrack.tracks import Tracks

    ev = make_event(seed=9)
    g = make_graph(ev.truth_edges, ev, scores={"gnn": np.linspace(0, 1, ev.truth_edges.shape[1])})
    write_graphs(tmp_path / "g.h5", [g], stage="test")
    with h5py.File(tmp_path / "g.h5", "r+") as f:
        f[f"graphs/{ev.key}/scores/gnn"][0] = 0.5
    with pytest.raises(InputError, match="does not match its digest") as err:
        read_graphs(tmp_path / "g.h5")
    assert err.value.event == ev.key and err.value.field == "scores/gnn"

    rec = TrackRecord(key=ev.key, tracks=Tracks(np.array([0, 1, 2]), np.array([0, 3])), n_hits=ev.n_hits)
    rec.timing = {"total": 1.5}
    write_tracks(tmp_path / "t.h5", [rec])
    assert read_timing(tmp_path / "t.h5") == {ev.key: {"total": 1.5}}
    with h5py.File(tmp_path / "t.h5", "r+") as f:
        f[f"timing/{ev.key}"].attrs["total"] = 0.1
    with pytest.raises(InputError, match="does not match its digest") as err:
        read_tracks(tmp_path / "t.h5")
    assert err.value.event == ev.key and err.value.field == "timing"


def test_dataset_written_around_the_sealed_writer_is_refused(tmp_path):
    from gnntrack.io.hdf5 import SealedWriter

    with h5py.File(tmp_path / "x.h5", "w") as f:
        w = SealedWriter(f)
        g = w.group(f, "events")
        w.dataset(g, "a", np.arange(3))
        g.create_dataset("b", data=np.arange(3))
        with pytest.raises(ValueError, match="without a digest"):
            w.seal()
