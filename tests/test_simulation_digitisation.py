"""Digitisation: cluster centroids, merged clusters, strip spacepoints with ghosts, noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gnntrack.simulation import SimulationConfig, load_geometry
from gnntrack.simulation.event import simulate_particles
from gnntrack.simulation.generator import particle_gun
from gnntrack.simulation.propagation import TrackState, propagate
from gnntrack.simulation.summary import spacepoint_truth

DETECTOR = Path(__file__).resolve().parents[1] / "config" / "detector" / "itk_like.yaml"
CLEAN = SimulationConfig(noise_rate=0.0, hit_inefficiency=0.0, multiple_scattering=False)


@pytest.fixture(scope="module")
def geo():
    return load_geometry(DETECTOR)


def _links(ev):
    return [
        tuple(zip(s.tolist(), b.tolist()))
        for s, b in zip(ev["CLparticleLink_eventIndex"], ev["CLparticleLink_barcode"])
    ]


def test_cluster_centroid_within_one_pitch(geo):
    rng = np.random.default_rng(4)
    n = 60  # well separated tracks: no merging
    p = particle_gun(rng.uniform(2, 50, n), rng.uniform(-3.5, 3.5, n), np.linspace(-3.1, 3.1, n))
    ev = simulate_particles(CLEAN, geo, p, rng)
    st = TrackState.from_particles(p)
    cr, _ = propagate(geo, st, rng, multiple_scattering=False)
    cr_sens = geo.sensitive[cr.surface]
    links = _links(ev)
    assert all(len(x) == 1 for x in links)
    bc = np.array([x[0][1] for x in links])
    checked = 0
    for si in np.unique(cr.surface[cr_sens]):
        s = geo.surfaces[si]
        sel = cr.surface == si
        true = geo.locate(s, cr.x[sel], cr.y[sel], cr.z[sel])
        true_bc = cr.index[sel] + 1
        cl = np.flatnonzero(
            (ev["CLlayer_disk"] == s.layer_disk)
            & (ev["CLbarrel_endcap"] == s.barrel_endcap)
            & (ev["CLside"] == s.side)
            & (ev["CLhardware"] == s.hardware)
        )
        for i in cl:
            j = np.flatnonzero(true_bc == bc[i])
            assert len(j) == 1
            if s.is_strip:
                m_true = true.u[j[0]] * np.cos(s.stereo) + true.v[j[0]] * np.sin(s.stereo)
                assert abs(ev["CLloc_phi"][i] - m_true) <= s.pitch_u
            else:
                assert abs(ev["CLloc_phi"][i] - true.u[j[0]]) <= s.pitch_u
                assert abs(ev["CLloc_eta"][i] - true.v[j[0]]) <= s.pitch_v
                # and the global position is the crossing point, to within a cell
                xyz = np.array([ev["CLx"][i], ev["CLy"][i], ev["CLz"][i]])
                xyz_true = np.array([cr.x[sel][j[0]], cr.y[sel][j[0]], cr.z[sel][j[0]]])
                assert np.linalg.norm(xyz - xyz_true) <= np.hypot(s.pitch_u, s.pitch_v)
                # cell count grows with the track's inclination (longer path in the sensor)
                assert ev["CLpixel_count"][i] >= 1
            checked += 1
    assert checked == len(ev["CLx"]) > 500
    pix = ev["CLhardware"] == "PIXEL"
    # inclined (high |eta|) barrel tracks give longer clusters along z than central ones
    b0 = pix & (ev["CLbarrel_endcap"] == 0) & (ev["CLlayer_disk"] == 1)
    eta_cl = np.arcsinh(ev["CLz"][b0] / np.hypot(ev["CLx"][b0], ev["CLy"][b0]))
    cnt = ev["CLpixel_count"][b0]
    assert cnt[np.abs(eta_cl) > 1.2].mean() > cnt[np.abs(eta_cl) < 0.3].mean()


def test_nearby_particles_merge_into_one_cluster(geo):
    # two stiff tracks 20 um apart in phi at the innermost layer share pixels
    p = particle_gun(np.array([100.0, 100.0]), np.array([0.5, 0.5]), np.array([0.3, 0.3 + 0.02 / 34.0]))
    ev = simulate_particles(CLEAN, geo, p, np.random.default_rng(0))
    links = _links(ev)
    l0 = (ev["CLlayer_disk"] == 0) & (ev["CLbarrel_endcap"] == 0) & (ev["CLhardware"] == "PIXEL")
    i = np.flatnonzero(l0)
    assert len(i) == 1 and sorted(links[i[0]]) == [(0, 1), (0, 2)]
    # at the outer strip layers they are resolved (~ 0.6 mm apart at r = 1 m)
    outer = (ev["CLlayer_disk"] == 3) & (ev["CLbarrel_endcap"] == 0) & (ev["CLhardware"] == "STRIP")
    assert outer.sum() == 4 and all(len(links[k]) == 1 for k in np.flatnonzero(outer))


def test_strip_spacepoints_true_and_ghost(geo):
    # two particles through the same strip module (same phi module, different z in the module)
    # -> 2 clusters per side -> 4 pairs: 2 true spacepoints and 2 ghosts
    s0 = [s for s in geo.surfaces if s.hardware == "STRIP" and s.kind == "cylinder" and s.layer_disk == 1][0]
    L = 2 * s0.half_z / s0.n_z
    k = s0.n_z // 2 + 3
    z_c = -s0.half_z + (k + 0.5) * L
    zs = np.array([z_c - 0.2 * L, z_c + 0.2 * L])
    eta = np.arcsinh(zs / s0.ur)
    # 0.5 mm apart in phi: closer than L tan(stereo), so the crossed combinations are compatible
    phi = 0.5 * 2 * np.pi / s0.n_phi[0] + np.array([0.0, 0.5 / s0.ur])
    p = particle_gun(np.array([500.0, 500.0]), eta, phi)
    ev = simulate_particles(CLEAN, geo, p, np.random.default_rng(0))
    links = _links(ev)
    strip_sp = np.flatnonzero(ev["SPCL2_index"] >= 0)
    in_layer = [i for i in strip_sp if ev["CLlayer_disk"][ev["SPCL1_index"][i]] == 1]
    assert len(in_layer) == 4
    sp, key = spacepoint_truth(ev)
    true_sp = set(sp.tolist())
    n_true = 0
    for i in in_layer:
        a, b = links[ev["SPCL1_index"][i]], links[ev["SPCL2_index"][i]]
        same = a == b
        assert same == (i in true_sp)
        n_true += same
        r = np.hypot(ev["SPx"][i], ev["SPy"][i])
        assert r == pytest.approx(s0.ur, abs=1e-6)
        if same:  # a true spacepoint sits on its particle's track in z
            z_true = s0.ur * np.sinh(eta[a[0][1] - 1])
            assert abs(ev["SPz"][i] - z_true) < 2.0
    assert n_true == 2
    # pixel spacepoints are their clusters
    pix = ev["SPCL2_index"] < 0
    np.testing.assert_array_equal(ev["SPx"][pix], ev["CLx"][ev["SPCL1_index"][pix]])
    assert np.all(ev["SPisOverlap"][pix] == -1) and np.all(np.isin(ev["SPisOverlap"][~pix], [0, 1]))
    assert np.all(ev["SPisOverlap"][in_layer] == 0)


def test_row_boundary_gives_eta_overlap_spacepoint(geo):
    """The two sensors are a few mm apart: at a row edge the sides see different rows."""
    s0 = [s for s in geo.surfaces if s.hardware == "STRIP" and s.kind == "cylinder" and s.layer_disk == 1][0]
    L = 2 * s0.half_z / s0.n_z
    z_edge = -s0.half_z + (s0.n_z // 2 + 10) * L
    p = particle_gun(np.array([200.0]), np.array([np.arcsinh(z_edge / s0.ur)]), np.array([0.05]))
    ev = simulate_particles(CLEAN, geo, p, np.random.default_rng(0))
    cl = np.flatnonzero(
        (ev["CLhardware"] == "STRIP") & (ev["CLbarrel_endcap"] == 0) & (ev["CLlayer_disk"] == 1)
    )
    assert len(cl) == 2 and ev["CLeta_module"][cl[0]] != ev["CLeta_module"][cl[1]]
    sp = np.flatnonzero(np.isin(ev["SPCL1_index"], cl) & (ev["SPCL2_index"] >= 0))
    assert len(sp) == 1 and ev["SPisOverlap"][sp[0]] == 1
    assert ev["SPz"][sp[0]] == pytest.approx(z_edge, abs=2.0)


def test_noise_clusters_have_no_links(geo):
    cfg = SimulationConfig(noise_rate=0.01, hit_inefficiency=0.0)
    p = particle_gun(np.array([10.0]), np.array([0.0]), np.array([0.0]))
    ev = simulate_particles(cfg, geo, p, np.random.default_rng(3))
    links = _links(ev)
    n_noise = sum(len(x) == 0 for x in links)
    assert n_noise == pytest.approx(0.01 * geo.n_modules, rel=0.35)
    ids = set(geo.modules()["module_id"].tolist())
    assert set(ev["CLmoduleID"].tolist()) <= ids
    # hit inefficiency removes clusters
    many = particle_gun(np.full(50, 10.0), np.zeros(50), np.linspace(-3, 3, 50))
    ineff = simulate_particles(
        SimulationConfig(noise_rate=0.0, hit_inefficiency=0.5), geo, many, np.random.default_rng(3)
    )
    full = simulate_particles(CLEAN, geo, many, np.random.default_rng(3))
    assert (
        0.35
        < sum(len(x) for x in ineff["CLparticleLink_barcode"])
        / sum(len(x) for x in full["CLparticleLink_barcode"])
        < 0.65
    )
