"""TrackML CSV reader on the real sample event, gzipped and plain, and its error cases."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from gnntrack.conversion.convert import run_convert
from gnntrack.conversion.trackml import read_trackml_event
from gnntrack.io.errors import InputError
from gnntrack.io.event_store import read_events

N_HITS, N_PARTICLES = 5527, 548


@pytest.fixture
def sample(trackml_sample):
    assert (trackml_sample / "event000000001-hits.csv.gz").exists()
    return trackml_sample


@pytest.fixture
def plain_copy(sample, tmp_path):
    """The sample uncompressed, to edit and to test plain CSV."""
    for f in sample.iterdir():
        with gzip.open(f) as src, open(tmp_path / f.name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp_path


def test_sample_event_counts_and_truth(sample):
    ev = read_trackml_event(sample / "event000000001")
    assert ev.key == "0_1" and ev.n_hits == N_HITS and len(ev.particles["pt"]) == N_PARTICLES
    truth = pd.read_csv(sample / "event000000001-truth.csv.gz")
    parts = pd.read_csv(sample / "event000000001-particles.csv.gz")
    noise = int((truth.particle_id == 0).sum())
    assert (ev.hits["particle_index"] == -1).sum() == noise
    assert ev.hit_particle.shape[1] == N_HITS - noise
    # every particle's spacepoint count equals the nhits column of the file
    assert np.array_equal(ev.particles["n_spacepoints"], parts["nhits"].to_numpy())
    assert np.array_equal(ev.particles["particle_id"], parts["particle_id"].to_numpy().astype(np.uint64))
    # hardware and barrel/endcap from volumes
    vol = ev.hits["volume_id"]
    assert np.array_equal(ev.hits["hardware"] == 0, np.isin(vol, [7, 8, 9]))
    assert set(np.unique(ev.hits["barrel_endcap"][np.isin(vol, [8, 13, 17])])) == {0}
    # truth graph: at most n_modules - 1 group steps per particle, edges leave the vertex
    p = ev.particles
    assert ev.truth_edges.shape[1] >= np.sum(np.maximum(p["n_modules"] - 1, 0))
    vtx = np.stack([p["vx"], p["vy"], p["vz"]], 1)[ev.truth_edge_particle]
    xyz = np.stack([ev.hits["x"], ev.hits["y"], ev.hits["z"]], 1)
    d0 = np.linalg.norm(xyz[ev.truth_edges[0]] - vtx, axis=1)
    d1 = np.linalg.norm(xyz[ev.truth_edges[1]] - vtx, axis=1)
    assert np.all(d0 <= d1)
    # some target particles (pT > 1 GeV primaries with >= 3 hits), all of them primaries
    assert 20 < p["is_target"].sum() < N_PARTICLES and np.all(p["is_primary"][p["is_target"]])
    # cluster features from cells: counts and a direction that follows the hit's pseudorapidity
    assert ev.hits["cl1_pixel_count"].min() >= 1
    pix = ev.hits["hardware"] == 0
    assert np.corrcoef(ev.hits["cl1_glob_eta"][pix], ev.hits["eta"][pix])[0, 1] > 0.9


def test_plain_csv_equals_gzipped_and_convert_round_trip(sample, plain_copy, tmp_path):
    a = read_trackml_event(sample / "event000000001-hits.csv.gz")
    b = read_trackml_event(plain_copy / "event000000001", plain_copy / "detectors.csv")
    for table in ("hits", "particles", "clusters"):
        for col, v in getattr(a, table).items():
            assert np.array_equal(v, getattr(b, table)[col], equal_nan=v.dtype.kind == "f"), col
    out = tmp_path / "out" / "trackml.h5"
    run_convert([sample / "event000000001"], out, {"input_format": "trackml"})
    (back,) = read_events(out)
    assert np.array_equal(back.truth_edges, a.truth_edges) and back.n_hits == N_HITS


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("hits", "volume_id"),
        ("particles", "px"),
        ("truth", "particle_id"),
        ("cells", "ch1"),
        ("detectors", "pitch_u"),
    ],
)
def test_missing_column_is_named(plain_copy, kind, column):
    name = "detectors.csv" if kind == "detectors" else f"event000000001-{kind}.csv"
    path = plain_copy / name
    pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        read_trackml_event(plain_copy / "event000000001")
    assert info.value.field == column and info.value.file == str(path) and info.value.event == "0_1"


def test_missing_file_and_unknown_module(plain_copy, tmp_path):
    (plain_copy / "event000000001-truth.csv").unlink()
    with pytest.raises(InputError, match="truth"):
        read_trackml_event(plain_copy / "event000000001")
    out = tmp_path / "none.h5"
    with pytest.raises(InputError):
        run_convert([plain_copy / "event000000001"], out, {"input_format": "trackml"})
    assert not out.exists()


def test_hit_on_unknown_module(plain_copy):
    path = plain_copy / "event000000001-hits.csv"
    hits = pd.read_csv(path)
    hits.loc[3, "module_id"] = 999999
    hits.to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        read_trackml_event(plain_copy / "event000000001")
    assert info.value.field == "module_id"


def test_truth_pointing_at_unknown_particle_is_named(plain_copy):
    path = plain_copy / "event000000001-truth.csv"
    truth = pd.read_csv(path)
    parts = pd.read_csv(plain_copy / "event000000001-particles.csv")
    rows = np.flatnonzero(truth["particle_id"].to_numpy() != 0)[[5, 9, 40]]
    missing = int(parts["particle_id"].max()) + 1  # no such particle
    truth.loc[rows, "particle_id"] = missing
    truth.to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        read_trackml_event(plain_copy / "event000000001")
    err = info.value
    assert err.file == str(path) and err.event == "0_1" and err.field == "particle_id"
    assert f"row {rows[0]} (line {rows[0] + 2})" in str(err) and f"particle_id {missing}" in str(err)
    assert "(3 rows like this)" in str(err) and "event000000001-particles.csv" in str(err)


def test_hit_without_truth_row_is_an_error(plain_copy):
    path = plain_copy / "event000000001-truth.csv"
    truth = pd.read_csv(path)
    lost = int(truth.loc[17, "hit_id"])
    truth.drop(index=[17]).to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        read_trackml_event(plain_copy / "event000000001")
    assert info.value.file == str(path) and info.value.field == "hit_id"
    assert f"hit_id {lost} has no truth row" in str(info.value)


def test_header_only_hits_file_says_no_hits(plain_copy, tmp_path):
    path = plain_copy / "event000000001-hits.csv"
    pd.read_csv(path).iloc[:0].to_csv(path, index=False)
    assert path.read_text().count("\n") == 1  # header only
    with pytest.raises(InputError) as info:
        read_trackml_event(plain_copy / "event000000001")
    assert info.value.file == str(path) and info.value.event == "0_1"
    assert "no hits" in str(info.value)
    out = tmp_path / "out.h5"
    with pytest.raises(InputError, match="no hits"):
        run_convert([plain_copy / "event000000001"], out, {"input_format": "trackml"})
    assert not out.exists()


def test_plain_csv_cut_inside_a_line_is_truncated(plain_copy):
    path = plain_copy / "event000000001-particles.csv"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3])  # the last number loses digits but still parses
    with pytest.raises(InputError, match="truncated") as info:
        read_trackml_event(plain_copy / "event000000001")
    assert info.value.file == str(path)
