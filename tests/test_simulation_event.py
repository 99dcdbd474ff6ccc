"""Whole events with Pythia: schema, reproducibility, secondaries, jets, ROOT output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gnntrack.io.errors import InputError
from gnntrack.io.gnn4itk_schema import (
    CLUSTER_BRANCHES,
    EVENT_BRANCHES,
    JET_BRANCHES,
    PARTICLE_BRANCHES,
    SECONDARY_BARCODE,
    SPACEPOINT_BRANCHES,
)
from gnntrack.simulation import SimulationConfig, event_seed, get_geometry, run_simulate, simulate_event
from gnntrack.simulation.summary import event_summary

DETECTOR = str(Path(__file__).resolve().parents[1] / "config" / "detector" / "itk_like.yaml")


@pytest.fixture(scope="module")
def cfg():
    return SimulationConfig(mu=2.0, detector=DETECTOR)


@pytest.fixture(scope="module")
def geo(cfg):
    return get_geometry(cfg.detector)


@pytest.fixture(scope="module")
def event(cfg, geo):
    return simulate_event(cfg, geo, 7, 3, 1234)


def test_schema_and_units(event):
    for branches in (PARTICLE_BRANCHES, SPACEPOINT_BRANCHES, JET_BRANCHES):
        for name, dtype in branches.items():
            assert event[name].dtype == np.dtype(dtype), name
            assert event[name].ndim == 1
    for name, dtype in CLUSTER_BRANCHES.items():
        if dtype is not str:
            assert event[name].dtype == np.dtype(dtype), name
    assert set(np.unique(event["CLhardware"])) == {"PIXEL", "STRIP"}
    assert event["run_number"] == 7 and event["event_number"] == 3
    assert set(EVENT_BRANCHES) <= set(event)
    n_cl = len(event["CLx"])
    assert len(event["CLparticleLink_barcode"]) == len(event["CLparticleLink_eventIndex"]) == n_cl
    assert np.array_equal(event["CLindex"], np.arange(n_cl))
    assert np.array_equal(event["SPindex"], np.arange(len(event["SPx"])))
    assert event["SPCL1_index"].max() < n_cl and event["SPCL2_index"].max() < n_cl
    # MeV: a ttbar event has particles of tens of GeV; mm: hits inside the tracker
    assert event["Part_pt"].max() > 10_000
    r = np.hypot(event["SPx"], event["SPy"])
    assert r.max() < 1100 and np.abs(event["SPz"]).max() < 3100
    # every linked particle exists in the particle table
    parts = set(zip(event["Part_event_number"].tolist(), event["Part_barcode"].tolist()))
    for s, b in zip(event["CLparticleLink_eventIndex"][:2000], event["CLparticleLink_barcode"][:2000]):
        assert set(zip(s.tolist(), b.tolist())) <= parts


def test_pileup_secondaries_and_jets(event):
    sub = event["Part_event_number"]
    assert sub.min() == 0  # hard scatter present; pile-up sub-events are 1..n
    sec = event["Part_barcode"] >= SECONDARY_BARCODE
    assert sec.sum() > 0  # a ttbar event always has K0S / Lambda decaying in flight
    assert np.all(event["Part_radius"][sec] > 0)
    assert np.all(event["Part_vProdBarcode"][sec] <= -SECONDARY_BARCODE)
    assert np.all(event["Part_vProdNin"][sec] == 1)
    # V0 daughters: pi+ pi- / p pi- pairs, produced at the same vertex
    vb, counts = np.unique(event["Part_vProdBarcode"][sec], return_counts=True)
    assert np.all(counts == 2)
    # the decayed parents are marked as such
    assert np.any(event["Part_status"] == 2)
    # beam spot: primary vertices spread along z (sigma 50 mm), not in x-y
    prim = ~sec
    assert np.median(np.abs(event["Part_vx"][prim])) < 0.05  # sigma_xy = 10 um (+ b/c decays)
    vz = [np.median(event["Part_vz"][prim & (sub == k)]) for k in np.unique(sub)]
    assert np.ptp(vz) > 1.0
    assert len(event["Jet_pt"]) >= 1 and event["Jet_pt"].min() > 20_000
    assert np.all(np.abs(event["Jet_eta"]) < 10)
    s = event_summary(event)
    assert s["n_target"] > 10 and s["sp_per_target_central"] > 7


def test_same_seed_identical_different_seed_different(cfg, geo, event):
    other = simulate_event(cfg, geo, 7, 3, 99)  # another event in between: must not matter
    again = simulate_event(cfg, geo, 7, 3, 1234)
    for name in (*PARTICLE_BRANCHES, *SPACEPOINT_BRANCHES, *CLUSTER_BRANCHES, *JET_BRANCHES):
        assert np.array_equal(again[name], event[name]), name
    assert all(
        np.array_equal(a, b) for a, b in zip(again["CLparticleLink_barcode"], event["CLparticleLink_barcode"])
    )
    assert len(other["SPx"]) != len(event["SPx"]) or not np.array_equal(other["SPx"], event["SPx"])
    assert event_seed(1, 5) == event_seed(1, 5) != event_seed(1, 6) != event_seed(2, 5)


def test_run_simulate_writes_root_shard(tmp_path, cfg):
    uproot = pytest.importorskip("uproot")
    c = {"mu": 1.0, "n_events": 2, "seed": 5, "detector": DETECTOR, "hard_process": "minbias"}
    out = tmp_path / "sim" / "3.root"
    run_simulate(out, c, shard=3)
    assert out.exists() and not list(out.parent.glob(".*tmp*"))
    with uproot.open(out) as f:
        tree = f["GNN4ITk"]
        assert tree.num_entries == 2
        ev_numbers = tree["event_number"].array(library="np")
    assert ev_numbers.tolist() == [6, 7]
    # a shard reproduces byte for byte (same file name: ROOT UUIDs derive from it)
    out2 = tmp_path / "again" / "3.root"
    run_simulate(out2, c, shard=3)
    assert out2.read_bytes() == out.read_bytes()
    with uproot.open(out) as f1, uproot.open(out2) as f2:
        a, b = f1["GNN4ITk"].arrays(library="np"), f2["GNN4ITk"].arrays(library="np")
    assert a.keys() == b.keys()
    for k in a:
        assert all(np.array_equal(x, y) for x, y in zip(a[k], b[k])), k


def test_bad_config_and_detector(tmp_path):
    with pytest.raises(InputError, match="detector"):
        run_simulate(tmp_path / "x.root", {"detector": str(tmp_path / "nope.yaml")}, shard=0)
    assert not (tmp_path / "x.root").exists()
    from gnntrack.config import ConfigError

    with pytest.raises(ConfigError, match="unknown key"):
        run_simulate(tmp_path / "x.root", {"pileup": 3}, shard=0)
    for bad, field in (
        ({"mu": -1.0}, "mu"),
        ({"hard_process": "zz"}, "hard_process"),
        ({"hit_inefficiency": 2.0}, "hit"),
    ):
        with pytest.raises(ConfigError, match=f"simulation.{field}"):
            run_simulate(tmp_path / "x.root", bad, shard=0)
    assert not (tmp_path / "x.root").exists()


def test_event_without_hits_has_empty_typed_branches(geo):
    from gnntrack.simulation.event import simulate_particles
    from gnntrack.simulation.generator import particle_gun

    cfg = SimulationConfig(noise_rate=0.0, detector=DETECTOR)
    ev = simulate_particles(cfg, geo, particle_gun([0.01], [0.0], [0.0]), np.random.default_rng(0))
    assert len(ev["Part_pt"]) == 1 and ev["Part_passed"][0] == 0  # below the pT threshold
    assert len(ev["CLx"]) == len(ev["SPx"]) == len(ev["CLparticleLink_barcode"]) == 0
    assert ev["CLmoduleID"].dtype == np.uint64 and ev["SPCL1_index"].dtype == np.int32
