"""Helix propagation: radius, ordering of crossings, loopers, multiple scattering, decays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gnntrack.simulation import load_geometry
from gnntrack.simulation.decays import MASS, decay_length, two_body_decay
from gnntrack.simulation.generator import particle_gun
from gnntrack.simulation.propagation import TrackState, helix_radius, highland, propagate

DETECTOR = Path(__file__).resolve().parents[1] / "config" / "detector" / "itk_like.yaml"


@pytest.fixture(scope="module")
def geo():
    return load_geometry(DETECTOR)


def _state(p, decay=None):
    return TrackState.from_particles(p, decay)


def test_helix_radius_and_ordered_crossings(geo):
    pt = np.array([0.8, 1.0, 2.0, 5.0])
    p = particle_gun(pt, np.full(4, 0.3), np.full(4, 0.7), charge=np.array([1.0, -1.0, 1.0, -1.0]))
    cr, _ = propagate(geo, _state(p), np.random.default_rng(1), max_turns=0.45, multiple_scattering=False)
    for i in range(4):
        s = cr.index == i
        x, y, z = cr.x[s], cr.y[s], cr.z[s]
        R = helix_radius(pt[i], geo.bfield)
        assert pytest.approx(pt[i] / (0.3 * geo.bfield) * 1000.0, rel=2e-3) == R
        # all crossings lie on one circle of radius R through the production point (the origin):
        # centre at distance R from the origin, perpendicular to the initial direction
        h = -np.sign(p.charge[i])
        cx, cy = -h * R * np.sin(0.7), h * R * np.cos(0.7)
        np.testing.assert_allclose(np.hypot(x - cx, y - cy), R, rtol=1e-9)
        # ordered along the path: step numbers increase, z grows (pz > 0) and radius grows (< half turn)
        assert np.all(np.diff(cr.step[s]) == 1)
        assert np.all(np.diff(z) > 0)
        assert np.all(np.diff(np.hypot(x, y)) > 0)
        # the helix bends the right way: positive particles turn clockwise in B along +z
        dphi = np.angle(np.exp(1j * (np.arctan2(y, x) - 0.7)))
        assert np.all(np.sign(dphi[1:]) == -np.sign(p.charge[i]))


def test_loopers_cross_the_same_layer_repeatedly(geo):
    # pT = 0.25 GeV: R ~ 417 mm, stays inside r = 834 mm and curls back through the pixels
    p = particle_gun(np.array([0.25]), np.array([0.02]), np.array([0.3]))
    cr, _ = propagate(geo, _state(p), np.random.default_rng(1), max_turns=3.0, multiple_scattering=False)
    l0 = [s.index for s in geo.surfaces if s.hardware == "PIXEL" and s.kind == "cylinder" and s.r == 34.0][0]
    n_l0 = int((cr.surface == l0).sum())
    assert n_l0 >= 5  # out and back in, three turns
    r = np.hypot(cr.x, cr.y)
    assert r.max() < 2 * helix_radius(0.25, geo.bfield) + 1
    # more turns -> more crossings; the path stops at max_turns
    cr1, _ = propagate(geo, _state(p), np.random.default_rng(1), max_turns=1.0, multiple_scattering=False)
    assert 0 < len(cr1) < len(cr)


def test_multiple_scattering_width_follows_highland(geo):
    n = 3000
    p = particle_gun(np.full(n, 1.0), np.zeros(n), np.zeros(n), charge=np.ones(n))
    rng = np.random.default_rng(5)
    cr_ms, _ = propagate(geo, _state(p), rng, max_turns=0.3, multiple_scattering=True)
    cr_no, _ = propagate(geo, _state(p), rng, max_turns=0.3, multiple_scattering=False)
    first_strip = [s.index for s in geo.surfaces if s.hardware == "STRIP" and s.kind == "cylinder"][0]
    a = cr_ms.surface == first_strip
    b = cr_no.surface == first_strip
    dz = cr_ms.z[a] - cr_no.z[b][0]
    assert abs(dz.mean()) < 0.1
    assert 0.05 < dz.std() < 2.0  # scattered, by a plausible amount
    # Highland: 1 GeV, beta = 1, x/X0 = 1% -> 13.6 MeV * 0.1 * (1 + 0.038 ln 0.01)
    assert highland(np.array([1.0]), np.array([1.0]), np.array([1.0]), np.array([0.01]))[0] == pytest.approx(
        0.0136 * 0.1 * (1 + 0.038 * np.log(0.01))
    )


def test_charged_long_lived_particles_decay_on_their_path(geo):
    p = particle_gun(np.full(50, 3.0), np.zeros(50), np.linspace(-3, 3, 50), pdg=3312, mass=MASS[3312])
    flight = np.full(50, 200.0)  # mm of path before the decay
    cr, dec = propagate(geo, _state(p, flight), np.random.default_rng(0), multiple_scattering=False)
    assert len(dec.index) == 50
    r = np.hypot(dec.x, dec.y)
    assert np.all((r > 150) & (r < 200.01))  # path length 200 mm along a curved track
    # no crossing beyond the decay point
    assert np.hypot(cr.x, cr.y).max() <= r.max() + 1e-6


def test_two_body_decays_conserve_four_momentum():
    rng = np.random.default_rng(2)
    n = 500
    pdg = rng.choice([310, 3122, -3122, 3312, 3334], n)
    mass = np.array([MASS[abs(int(x))] for x in pdg])
    p3 = rng.normal(0, 3, (n, 3))
    e = np.sqrt((p3**2).sum(1) + mass**2)
    parent, dpdg, dp = two_body_decay(pdg, np.c_[p3, e], rng)
    m_d = np.array([MASS[abs(int(x))] for x in dpdg])
    e_d = np.sqrt((dp**2).sum(1) + m_d**2)
    np.testing.assert_allclose(np.bincount(parent, weights=e_d, minlength=n), e, rtol=1e-9)
    for k in range(3):
        np.testing.assert_allclose(np.bincount(parent, weights=dp[:, k], minlength=n), p3[:, k], atol=1e-9)
    # charge conservation for the charged channels, e.g. K0S -> pi+ pi-, Lambda-bar -> p-bar pi+
    q = {211: 1, -211: -1, 2212: 1, -2212: -1, 321: 1, -321: -1}
    qd = np.array([q.get(int(x), 0) for x in dpdg])
    charge_parent = {310: 0, 3122: 0, -3122: 0, 3312: -1, 3334: -1}
    want = np.array([charge_parent[int(x)] for x in pdg])
    charged_final = ~np.isin(np.abs(dpdg), [3122, 3322, 3312])  # hyperon daughters decay again
    ok = np.bincount(parent, weights=charged_final, minlength=n) == 2
    np.testing.assert_array_equal(np.bincount(parent, weights=qd, minlength=n)[ok], want[ok])
    # decay length: mean = beta gamma c tau
    L = decay_length(np.full(20000, 310), np.full(20000, 1.0), np.full(20000, MASS[310]), rng)
    assert L.mean() == pytest.approx(1.0 / MASS[310] * 26.844, rel=0.03)


def test_fast_cylinder_search_equals_full_search(geo, monkeypatch):
    """The nearest-cylinder shortcut must not change any crossing (loopers, stiff, displaced)."""
    import gnntrack.simulation.propagation as prop

    rng = np.random.default_rng(11)
    n = 400
    p = particle_gun(
        np.exp(rng.uniform(np.log(0.1), np.log(100.0), n)),
        rng.uniform(-4.2, 4.2, n),
        rng.uniform(-np.pi, np.pi, n),
        charge=rng.choice([-1.0, 1.0], n),
    )
    p.vx, p.vy, p.vz = rng.normal(0, 30, n), rng.normal(0, 30, n), rng.normal(0, 200, n)
    out = {}
    for fast in (True, False):
        monkeypatch.setattr(prop, "_FAST_PATH", fast)
        cr, _ = propagate(geo, _state(p), np.random.default_rng(3), max_turns=2.0)
        out[fast] = cr
    assert len(out[True]) == len(out[False]) > 3 * n
    for k in ("index", "surface", "step"):
        np.testing.assert_array_equal(getattr(out[True], k), getattr(out[False], k))
    np.testing.assert_allclose(out[True].z, out[False].z, atol=1e-9)
