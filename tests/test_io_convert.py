"""ROOT -> HDF5 events conversion: exact round-trip, physics content, config, all-or-nothing."""

from __future__ import annotations

import numpy as np
import pytest
from test_io_rawgen import make_raw_event

from gnntrack.config import ConfigError
from gnntrack.conversion.convert import ConvertConfig, event_from_gnn4itk, nearest_jet, run_convert
from gnntrack.conversion.root_reader import iter_gnn4itk
from gnntrack.io.errors import InputError
from gnntrack.io.event_store import CLUSTER_FEATURES, TABLES, read_events
from gnntrack.io.root_writer import write_gnn4itk


@pytest.fixture
def root_shard(tmp_path):
    path = tmp_path / "sim" / "0.root"
    write_gnn4itk(
        path, [make_raw_event(seed=s, event_number=s, n_particles=120, merge_distance=6.0) for s in range(2)]
    )
    return path


def test_convert_round_trip_is_exact(root_shard, tmp_path):
    out = tmp_path / "events" / "0.h5"
    info = run_convert([root_shard], out, {"compression": "gzip"})
    assert info["n_events"] == 2
    expected = [event_from_gnn4itk(raw, source=str(root_shard)) for raw in iter_gnn4itk(root_shard)]
    back = read_events(out)
    assert [e.key for e in back] == ["42_0", "42_1"]
    for a, b in zip(expected, back):
        for table in TABLES:
            ta, tb = getattr(a, table), getattr(b, table)
            assert set(ta) == set(tb)
            for col in ta:
                assert ta[col].dtype == tb[col].dtype, (table, col)
                assert np.array_equal(ta[col], tb[col], equal_nan=ta[col].dtype.kind == "f"), (table, col)
        for name in ("truth_edges", "truth_edge_particle", "hit_particle"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
        assert b.attrs["source"] == "0.root"


def test_event_content_units_and_features():
    raw = make_raw_event(seed=4, n_particles=150, merge_distance=6.0)
    ev = event_from_gnn4itk(raw)
    p, h, c = ev.particles, ev.hits, ev.clusters
    assert np.allclose(p["pt"], raw["Part_pt"] * 1e-3)  # MeV -> GeV
    assert np.allclose(np.hypot(p["px"], p["py"]), p["pt"], rtol=1e-5)
    assert np.allclose(h["r"], np.hypot(h["x"], h["y"]))
    assert np.allclose(h["eta"], -np.log(np.tan(np.arctan2(h["r"], h["z"]) / 2)))
    assert np.array_equal(p["is_primary"], raw["Part_barcode"] < 200000)
    # hit -> cluster rows and both clusters' features
    assert np.array_equal(c["cluster_id"][h["cluster_index_1"]], raw["SPCL1_index"])
    strip = h["cluster_index_2"] >= 0
    assert np.array_equal(strip, h["hardware"] == 1)
    for f in CLUSTER_FEATURES:
        assert np.array_equal(h[f"cl2_{f}"][~strip], h[f"cl1_{f}"][~strip])
    assert np.array_equal(h["cl2_z"][strip], c["z"][h["cluster_index_2"][strip]].astype(np.float32))
    assert np.allclose(h["z"][strip], (h["cl1_z"][strip] + h["cl2_z"][strip]) / 2)
    # counts, targets and the truth graph agree
    assert np.array_equal(p["n_spacepoints"], np.bincount(ev.hit_particle[1], minlength=len(p["pt"])))
    tgt = p["is_primary"] & (np.abs(p["pdg_id"]) != 11) & (p["pt"] > 1) & (p["n_spacepoints"] >= 3)
    tgt &= (p["radius"] < 260) & (np.abs(p["eta"]) < 4)
    assert np.array_equal(p["is_target"], tgt) and tgt.sum() > 10
    edges_per_particle = np.bincount(ev.truth_edge_particle, minlength=len(p["pt"]))
    single = p["n_modules"] == p["n_spacepoints"]
    assert np.array_equal(edges_per_particle[single], np.maximum(p["n_modules"][single] - 1, 0))
    # noise/ghosts have no particle; matched hits carry one of their links
    assert (h["particle_index"] == -1).sum() > 0
    linked = h["particle_index"] >= 0
    assert set(zip(np.flatnonzero(linked), h["particle_index"][linked])) <= set(zip(*ev.hit_particle))


def test_nearest_jet():
    dr, pt = nearest_jet(
        np.array([0.0, 1.0, 0.0]),
        np.array([3.1, 0.0, -1.0]),
        np.array([0.0, 1.2]),
        np.array([-3.1, 0.1]),
        np.array([50.0, 30.0]),
    )
    assert np.allclose(dr, [2 * np.pi - 6.2, np.hypot(0.2, 0.1), np.hypot(1.2, 1.1)], atol=1e-3)
    assert pt.tolist() == [50.0, 30.0, 30.0]
    dr, pt = nearest_jet(np.zeros(2), np.zeros(2), np.zeros(0), np.zeros(0), np.zeros(0))
    assert np.all(np.isinf(dr)) and np.all(np.isnan(pt))


def test_event_jets_in_gev():
    ev = event_from_gnn4itk(make_raw_event(seed=2))
    assert np.allclose(ev.jets["pt"], [85.0, 40.0])
    assert np.all(np.isfinite(ev.particles["jet_dr"])) and set(np.unique(ev.particles["jet_pt"])) <= {
        85.0,
        40.0,
    }


def test_target_selection_from_config():
    raw = make_raw_event(seed=3, n_particles=100)
    loose = event_from_gnn4itk(raw, ConvertConfig(target={"pt": [">", 0.5]}))
    assert np.array_equal(loose.particles["is_target"], loose.particles["pt"] > 0.5)
    with pytest.raises(ConfigError, match="unknown particle column"):
        ConvertConfig(target={"ptt": [">", 1]})
    with pytest.raises(ConfigError, match="unknown condition operator"):
        ConvertConfig(target={"pt": ["~", 1]})
    with pytest.raises(ConfigError, match="compression"):
        ConvertConfig(compression="zstd")
    with pytest.raises(ConfigError, match="unknown key"):
        run_convert([], "x.h5", {"target_selection": {}})


def test_bad_input_leaves_no_output(root_shard, tmp_path):
    out = tmp_path / "events" / "bad.h5"
    with pytest.raises(InputError) as info:
        run_convert([root_shard, tmp_path / "missing.root"], out)
    assert info.value.file.endswith("missing.root")
    assert not out.exists() and not list(out.parent.glob("*"))
    dup = tmp_path / "dup.root"
    write_gnn4itk(dup, [make_raw_event(seed=9, event_number=1)])
    with pytest.raises(InputError) as info:
        run_convert([root_shard, dup], out)
    assert info.value.event == "42_1" and info.value.field == "event_number"
    assert not out.exists()
    empty = tmp_path / "empty.root"
    write_gnn4itk(empty, [])
    with pytest.raises(InputError, match="no events"):
        run_convert([empty], out)
    assert not out.exists()
