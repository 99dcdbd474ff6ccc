"""Detector description: unique module ids, local frames, coverage of |eta| < 4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gnntrack.config import ConfigError
from gnntrack.simulation import SimulationConfig, load_geometry
from gnntrack.simulation.event import simulate_particles
from gnntrack.simulation.generator import particle_gun
from gnntrack.simulation.propagation import TrackState, propagate

DETECTOR = Path(__file__).resolve().parents[1] / "config" / "detector" / "itk_like.yaml"


@pytest.fixture(scope="module")
def geo():
    return load_geometry(DETECTOR)


def test_module_ids_unique_and_fields_in_range(geo):
    m = geo.modules()
    assert len(m["module_id"]) == geo.n_modules > 10_000
    assert len(np.unique(m["module_id"])) == len(m["module_id"])
    assert set(np.unique(m["barrel_endcap"])) == {-2, 0, 2}
    assert set(np.unique(m["side"])) == {0, 1}
    # dense module numbering is a permutation of 0..n-1
    assert np.array_equal(np.sort(m["module"]), np.arange(geo.n_modules))


def test_layout_matches_design(geo):
    pix = sorted({s.r for s in geo.surfaces if s.hardware == "PIXEL" and s.kind == "cylinder"})
    assert pix == [34.0, 99.0, 160.0, 228.0, 291.0]
    strip = sorted({s.ur for s in geo.surfaces if s.hardware == "STRIP" and s.kind == "cylinder"})
    assert strip == [405.0, 562.0, 762.0, 1000.0]
    strip_z = sorted({abs(s.z) for s in geo.surfaces if s.hardware == "STRIP" and s.kind == "disk"})
    assert strip_z[0] > 1500 and strip_z[-1] < 3010 and len(strip_z) == 12  # 6 disks x 2 sides
    stereo = {round(abs(s.stereo), 3) for s in geo.surfaces if s.hardware == "STRIP"}
    assert stereo == {0.026, 0.02}


@pytest.mark.parametrize("kind", ["cylinder", "disk"])
def test_locate_to_global_round_trip(geo, kind):
    rng = np.random.default_rng(3)
    for s in [s for s in geo.surfaces if s.sensitive and s.kind == kind][:6]:
        phi = rng.uniform(-np.pi, np.pi, 200)
        if kind == "cylinder":
            x, y, z = s.r * np.cos(phi), s.r * np.sin(phi), rng.uniform(-s.half_z, s.half_z, 200)
        else:
            r = rng.uniform(s.r_min, s.r_max, 200)
            x, y, z = r * np.cos(phi), r * np.sin(phi), np.full(200, s.z)
        loc = geo.locate(s, x, y, z)
        width, vlo, vhi = geo.module_extent(s, loc.module)
        if kind == "cylinder":
            assert np.all(np.abs(loc.u) <= width / 2 + 1e-9)
        else:  # |u| <= r sin(dphi / 2) with dphi = 2 pi / n_phi of the ring = width / r_centre
            r_c = geo.module_centre(s, loc.module)[1]
            assert np.all(np.abs(loc.u) <= np.hypot(x, y) * np.sin(0.5 * width / r_c) + 1e-9)
        # planar endcap modules: a ring's edge is a circle, the module edge a straight line
        tol = 1e-9 if kind == "cylinder" else s.r_max * (1 - np.cos(np.pi / s.n_phi.min()))
        assert np.all((loc.v >= vlo - tol) & (loc.v <= vhi + tol))
        gx, gy, gz = geo.to_global(s, loc.module, loc.u, loc.v)
        np.testing.assert_allclose(np.c_[gx, gy, gz], np.c_[x, y, z], atol=1e-6)


def _expected_layers(geo, eta, phi):
    """Sensitive surfaces a straight line from the origin passes through (geometry only)."""
    theta = 2 * np.arctan(np.exp(-eta))
    n = 0
    for s in geo.surfaces:
        if not s.sensitive:
            continue
        if s.kind == "cylinder":
            n += abs(s.r / np.tan(theta)) <= s.half_z
        elif np.sign(s.z) == np.sign(np.cos(theta)):
            r = abs(s.z * np.tan(theta))
            n += s.r_min <= r <= s.r_max
    return n


def test_surfaces_tile_eta_4(geo):
    """Stiff tracks at many (eta, phi) cross exactly the expected surfaces, >= 6 everywhere."""
    eta = np.repeat(np.linspace(-3.95, 3.95, 41), 7)
    phi = np.tile(np.linspace(-3.1, 3.1, 7), 41)
    p = particle_gun(np.full(len(eta), 5000.0), eta, phi)
    state = TrackState.from_particles(p)
    cr, _ = propagate(geo, state, np.random.default_rng(0), multiple_scattering=False)
    sens = geo.sensitive[cr.surface]
    got = np.bincount(cr.index[sens], minlength=len(p))
    want = np.array([_expected_layers(geo, e, f) for e, f in zip(eta, phi)])
    assert np.array_equal(got, want)
    assert want.min() >= 6
    # and the crossings become clusters on modules that exist
    ev = simulate_particles(
        SimulationConfig(noise_rate=0.0, hit_inefficiency=0.0), geo, p, np.random.default_rng(0)
    )
    ids = set(geo.modules()["module_id"].tolist())
    assert set(ev["CLmoduleID"].tolist()) <= ids
    assert len(ev["CLx"]) == sens.sum()


def test_bad_detector_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_geometry(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "pixel: {thickness: 0.15, pitch_u: 0.05, pitch_v: 0.05, endcap: [{z: 500.0, rings: [[60.0, 40.0, 12]]}]}\n"
    )
    with pytest.raises(ConfigError, match=r"pixel.endcap\[0\].*rings"):
        load_geometry(bad)
