"""Tracks HDF5 store: round trip, timings, atomicity and clear errors on malformed files."""

import h5py
import numpy as np
import pytest
import torch

from gnntrack.io.errors import InputError
from gnntrack.io.track_store import (
    TrackRecord,
    iter_tracks,
    read_timing,
    read_tracks,
    track_keys,
    write_tracks,
)
from gnntrack.track_building import Tracks


def _records():
    a = TrackRecord(
        key="1_0",
        tracks=Tracks.from_lists([[0, 1, 2], [5, 4, 3, 7]]),
        n_hits=10,
        edge_index=np.array([[0, 1, 3, 4], [1, 2, 4, 5]]),
        scores=np.array([0.9, 0.8, 0.7, 0.6]),
        timing={"build_edges": 0.5, "gnn": 0.25, "total": 0.75},
        run_number=1,
        event_number=0,
    )
    # an event without tracks, given as a dict with torch tensors (the inference path)
    b = {
        "key": "1_1",
        "tracks": Tracks(torch.zeros(0, dtype=torch.long), torch.zeros(1, dtype=torch.long)),
        "n_hits": 3,
    }
    return [a, b]


def test_round_trip(tmp_path):
    path = tmp_path / "tracks.h5"
    write_tracks(path, _records())
    assert track_keys(path) == ["1_0", "1_1"]
    a, b = read_tracks(path)
    assert a.tracks.to_lists() == [[0, 1, 2], [5, 4, 3, 7]]
    np.testing.assert_array_equal(a.edge_index, [[0, 1, 3, 4], [1, 2, 4, 5]])
    np.testing.assert_allclose(a.scores, [0.9, 0.8, 0.7, 0.6], rtol=1e-6)
    assert a.timing == {"build_edges": 0.5, "gnn": 0.25, "total": 0.75}
    assert (a.run_number, a.event_number, a.n_hits) == (1, 0, 10)
    assert len(b.tracks) == 0 and b.edge_index is None and b.timing == {}
    assert [r.key for r in iter_tracks(path, ["1_1"])] == ["1_1"]
    assert read_timing(path)["1_0"]["gnn"] == 0.25


def test_bad_records_leave_no_file(tmp_path):
    path = tmp_path / "tracks.h5"
    bad = TrackRecord(key="1_0", tracks=Tracks.from_lists([[0, 99]]), n_hits=10)
    with pytest.raises(InputError, match="hits"):
        write_tracks(path, [bad])
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="duplicate"):
        write_tracks(path, [bad, bad])


def test_malformed_files_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_tracks(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="HDF5"):
        read_tracks(junk)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "gnntrack-events"
    with pytest.raises(InputError, match="gnntrack-tracks"):
        read_tracks(other)
    path = tmp_path / "tracks.h5"
    write_tracks(path, _records())
    with h5py.File(path, "a") as f:
        del f["tracks/1_0/offsets"]
        f["tracks/1_0/offsets"] = np.array([0, 3, 99])
    with pytest.raises(InputError, match="offsets") as err:
        read_tracks(path)
    assert err.value.event == "1_0" and err.value.field == "offsets"
    with pytest.raises(InputError, match="no such event"):
        read_tracks(path, ["9_9"])
