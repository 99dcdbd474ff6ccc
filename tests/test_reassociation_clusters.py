"""Cluster re-association: complete, de-duplicated, radially ordered; CSV + HDF5 outputs."""

import h5py
import numpy as np
import pytest
from synthetic import make_event

from gnntrack.io.errors import InputError
from gnntrack.io.event_store import write_events
from gnntrack.io.track_store import TrackRecord, write_tracks
from gnntrack.reassociation import reassociate_event, run_reassociate
from gnntrack.track_building import Tracks


def _truth_tracks(ev, rng):
    """One candidate per particle, hits in random order, plus a noise-only candidate."""
    pidx = ev.hits["particle_index"]
    tracks = [rng.permutation(np.flatnonzero(pidx == p)) for p in np.unique(pidx[pidx >= 0])]
    tracks.append(np.flatnonzero(pidx < 0)[:4])
    return Tracks.from_lists(tracks)


def test_clusters_complete_radial_and_unique():
    ev = make_event(n_particles=25, n_noise=10, seed=3)
    rng = np.random.default_rng(0)
    tracks = _truth_tracks(ev, rng)
    # make two spacepoints of the first track share a strip cluster, as ghost/overlap spacepoints do
    first = tracks[0]
    ev.hits["cluster_index_2"][first[1]] = ev.hits["cluster_index_1"][first[0]]
    tc = reassociate_event(ev, tracks)
    assert len(tc) == len(tracks)
    cx, cy, cz = (np.asarray(ev.clusters[c], np.float64) for c in ("x", "y", "z"))
    for i, hits in enumerate(tracks):
        rows = tc.cluster_rows[tc.cluster_offsets[i] : tc.cluster_offsets[i + 1]]
        expected = set(ev.hits["cluster_index_1"][hits]) | set(ev.hits["cluster_index_2"][hits])
        expected.discard(-1)
        assert set(rows.tolist()) == expected, "every cluster of every spacepoint, nothing else"
        assert len(rows) == len(set(rows.tolist())), "duplicates removed"
        dist = np.sqrt(cx[rows] ** 2 + cy[rows] ** 2 + cz[rows] ** 2)
        assert np.all(np.diff(dist) >= 0), "ordered by distance from the origin"
        np.testing.assert_allclose(
            tc.cluster_distance[tc.cluster_offsets[i] : tc.cluster_offsets[i + 1]], dist
        )
        sp = tc.hit_rows[tc.hit_offsets[i] : tc.hit_offsets[i + 1]]
        assert sorted(sp.tolist()) == sorted(hits.tolist())
    # strip spacepoints contribute two clusters
    n_strip = int(np.sum(ev.hits["hardware"][tracks[1]] == 1))
    assert tc.cluster_offsets[2] - tc.cluster_offsets[1] == len(tracks[1]) + n_strip


def test_origin_changes_order():
    ev = make_event(n_particles=5, n_noise=0, seed=1, eta_max=2.0)
    hits = np.arange(ev.n_hits)
    far = (0.0, 0.0, 5000.0)
    tc = reassociate_event(ev, Tracks.from_lists([hits]), origin=far)
    rows = tc.cluster_rows
    d = np.sqrt(
        ev.clusters["x"][rows].astype(float) ** 2
        + ev.clusters["y"][rows].astype(float) ** 2
        + (ev.clusters["z"][rows].astype(float) - 5000.0) ** 2
    )
    assert np.all(np.diff(d) >= -1e-6)


def test_run_reassociate_files(tmp_path):
    evs = [make_event(n_particles=15, seed=s, event_number=s) for s in (0, 1)]
    write_events(tmp_path / "events.h5", evs)
    rng = np.random.default_rng(1)
    recs = [TrackRecord(key=evs[0].key, tracks=_truth_tracks(evs[0], rng), n_hits=evs[0].n_hits)]
    recs.append(TrackRecord(key=evs[1].key, tracks=Tracks.empty(), n_hits=evs[1].n_hits))
    write_tracks(tmp_path / "shard7.h5", recs)
    out = tmp_path / "athena"
    run_reassociate(tmp_path / "events.h5", tmp_path / "shard7.h5", out, {"origin": [0.0, 0.0, 0.0]})
    lines = (out / "track_1_0.csv").read_text().splitlines()
    assert len(lines) == len(recs[0].tracks)
    cl_part, sp_part = lines[0].split("|")
    cls = [int(c) for c in cl_part.split(",")]
    sps = [int(s) for s in sp_part.split(",")]
    assert set(sps) == set(evs[0].hits["hit_id"][recs[0].tracks[0]].tolist())
    assert len(cls) >= len(sps)
    assert (out / "track_1_1.csv").read_text() == ""  # an event without tracks still gets its file
    # the events may also come split over several files
    write_events(tmp_path / "ev_a.h5", [evs[1]])
    write_events(tmp_path / "ev_b.h5", [evs[0]])
    out2 = tmp_path / "athena2"
    run_reassociate([tmp_path / "ev_a.h5", tmp_path / "ev_b.h5"], tmp_path / "shard7.h5", out2)
    assert (out2 / "track_1_0.csv").read_text() == (out / "track_1_0.csv").read_text()
    with h5py.File(out / "shard7.h5") as f:
        assert f.attrs["format"] == "gnntrack-reassociated"
        g = f["events/1_0"]
        assert g["offsets"][-1] == len(g["cluster_id"]) and len(g["offsets"]) == len(lines) + 1
        assert g["cluster_id"][: len(cls)].tolist() == cls


def test_mismatched_inputs_raise(tmp_path):
    ev = make_event(n_particles=5, seed=0)
    write_events(tmp_path / "events.h5", [ev])
    write_tracks(tmp_path / "t.h5", [TrackRecord(key="9_9", tracks=Tracks.empty(), n_hits=3)])
    with pytest.raises(InputError, match="missing from the events file"):
        run_reassociate(tmp_path / "events.h5", tmp_path / "t.h5", tmp_path / "out")
    write_tracks(tmp_path / "t.h5", [TrackRecord(key=ev.key, tracks=Tracks.empty(), n_hits=ev.n_hits + 1)])
    with pytest.raises(InputError, match="n_hits"):
        run_reassociate(tmp_path / "events.h5", tmp_path / "t.h5", tmp_path / "out")
    assert not (tmp_path / "out" / "t.h5").exists()
