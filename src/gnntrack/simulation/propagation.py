"""Analytic helix propagation through the detector surfaces, vectorised over all particles.

In a uniform solenoid field ``B`` along z a charged particle moves on a helix of transverse radius
``R[m] = pT[GeV] / (0.3 B[T])``. From any state (position, momentum) the next crossing of every
cylinder and disk has a closed form, so the simulation advances *all* particles one crossing per
step: solve for the next intersection with every surface, keep the nearest one along the path,
move there, record it, apply a multiple-scattering kick (Highland formula with the surface's
x/X0 at the actual incidence angle) and re-parametrise the helix from the kicked momentum.

Loopers come out naturally: a low-pT particle crosses the same cylinder twice per turn until
it has used ``max_turns`` turns. Charged long-lived particles (Sigma, Xi, Omega) stop at their
sampled decay length along the helix; their decay points are returned for the caller to create
the daughters.

Helix parametrisation (h = -sign(qB), turning angle t >= 0, psi = phi0 + h t)::

    x(t) = Cx + h R sin(psi),  y(t) = Cy - h R cos(psi),  z(t) = z0 + R t cot(theta)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gnntrack.simulation.geometry import ENVELOPE, Geometry

#: pT[GeV] = C_LIGHT * B[T] * R[mm]
C_LIGHT = 0.299792458e-3
TWO_PI = 2.0 * np.pi
_EPS_T = 1e-9
_FAST_PATH = True  # switch for tests: the fast path must give exactly the full search's result


@dataclass
class TrackState:
    """Starting states of the particles to propagate (GeV, mm)."""

    index: np.ndarray  # caller's particle index
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    charge: np.ndarray
    mass: np.ndarray
    decay_length: np.ndarray  # remaining 3-D path before decay (inf: stable)

    @classmethod
    def from_particles(cls, p, decay_length: np.ndarray | None = None) -> TrackState:
        """States of every particle of a table with vx..pz, charge, mass (e.g. ``particle_gun``)."""
        n = len(p.px)
        return cls(
            index=np.arange(n),
            x=p.vx,
            y=p.vy,
            z=p.vz,
            px=p.px,
            py=p.py,
            pz=p.pz,
            charge=p.charge,
            mass=p.mass,
            decay_length=np.full(n, np.inf) if decay_length is None else decay_length,
        )


@dataclass
class Crossings:
    """Surface crossings in the order they happen for each particle."""

    index: np.ndarray  # caller's particle index
    surface: np.ndarray
    step: np.ndarray  # crossing number along the particle's path
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    px: np.ndarray  # momentum at the crossing, before the scattering kick
    py: np.ndarray
    pz: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class Decays:
    """Points where charged long-lived particles decayed in flight."""

    index: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray


def helix_radius(pt: np.ndarray, bfield: float) -> np.ndarray:
    """Transverse radius (mm) of a unit-charge track of ``pt`` GeV in ``bfield`` T."""
    return np.asarray(pt) / (C_LIGHT * bfield)


def highland(p: np.ndarray, beta: np.ndarray, charge: np.ndarray, x_x0: np.ndarray) -> np.ndarray:
    """RMS plane scattering angle (rad) after material ``x_x0`` (PDG Highland formula)."""
    x = np.maximum(x_x0, 1e-12)
    q2 = charge**2
    corr = np.maximum(1.0 + 0.038 * np.log(x * q2 / np.maximum(beta, 1e-6) ** 2), 0.0)
    return 0.0136 / np.maximum(beta * p, 1e-9) * np.abs(charge) * np.sqrt(x) * corr


def _cylinder_t(geo, pi, cj, z, phi0, cot, R, h, Cn, D, alpha, last, multi_turn: bool) -> np.ndarray:
    """Turning angle to the next crossing of cylinder ``cj`` by particle ``pi`` (inf: none).

    ``multi_turn``: if the crossing of this turn is outside the layer's z range, look for the
    first later turn that brings the particle into it (loopers drifting along z).
    """
    hp, Rp = h[pi], R[pi]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (geo.cyl_r[cj] ** 2 - D[pi] ** 2) / (2.0 * hp * Rp * Cn[pi]) - hp
    reach = np.abs(s) <= 1.0  # the helix's radial range includes the cylinder
    a = np.arcsin(np.clip(s, -1.0, 1.0))
    al, p0, cotp, zp = alpha[pi], phi0[pi], cot[pi], z[pi]
    half_z = geo.cyl_half_z[cj]
    is_last = geo.cyl_index[cj] == last[pi]
    t_all = np.full(len(pi), np.inf)
    roots = []
    for root in (al + a, al + np.pi - a):
        t = np.mod(hp * (root - p0), TWO_PI)
        bad = ~reach | (t < _EPS_T) | (is_last & (t > TWO_PI - _EPS_T))
        roots.append(np.where(bad, np.inf, t))
    if not multi_turn:
        # first crossing only (the one on the current radial leg); invalid if outside in z
        t = np.minimum(*roots)
        with np.errstate(invalid="ignore"):
            zt = zp + Rp * t * cotp
        return np.where(np.abs(zt) <= half_z, t, np.inf)
    for t in roots:
        bad = ~np.isfinite(t)
        t = np.where(bad, 0.0, t)
        zt = zp + Rp * t * cotp
        out = np.abs(zt) > half_z
        if out.any():
            o = np.flatnonzero(out)
            zo, dz, hz = zt[o], TWO_PI * Rp[o] * cotp[o], half_z[o]
            with np.errstate(divide="ignore", invalid="ignore"):
                need = np.ceil(np.where(zo > hz, (zo - hz) / -dz, (-hz - zo) / dz))
            ok = np.isfinite(need) & (need > 0) & (np.abs(zo + need * dz) <= hz)
            t[o] = np.where(ok, t[o] + TWO_PI * np.where(ok, need, 0.0), np.inf)
        t_all = np.minimum(t_all, np.where(bad, np.inf, t))
    return t_all


def _next_cylinder(geo, x, y, z, phi0, cot, R, h, Cx, Cy, last, t_limit):
    """Turning angle and surface of the next cylinder crossing (inf where none).

    Fast path: a particle moving outwards (inwards) first meets the nearest larger (smaller)
    cylinder if it reaches it inside the layer's z range, before any other cylinder; only the
    particles for which that does not hold try every cylinder.
    """
    n = len(x)
    best = np.full(n, np.inf)
    which = np.full(n, -1, np.int64)
    ncyl = len(geo.cyl_r)
    if ncyl == 0 or n == 0:
        return best, which
    hR = h * R
    Cn = np.hypot(Cx, Cy)
    # sin(psi - alpha) = (rho^2 - Cn^2 - R^2) / (2 h R Cn) = (rho^2 - D^2) / (2 h R Cn) - h with
    # D = Cn - R computed without cancelling two large numbers (stiff tracks have R >> rho)
    D = (x * x + y * y - 2.0 * hR * (x * np.sin(phi0) - y * np.cos(phi0))) / (Cn + R)
    alpha = np.arctan2(Cy, Cx)
    args = (z, phi0, cot, R, h, Cn, D, alpha, last)
    order = np.argsort(geo.cyl_r)
    rs = geo.cyl_r[order]
    r0 = np.hypot(x, y)
    outward = x * np.cos(phi0) + y * np.sin(phi0) > 0
    # (1 um tolerance: r0 of a particle sitting on the surface it just crossed is rounded)
    j = np.where(outward, np.searchsorted(rs, r0 + 1e-3, "right"), np.searchsorted(rs, r0 - 1e-3, "left") - 1)
    j_ok = np.clip(j, 0, ncyl - 1)
    j = np.where(geo.cyl_index[order[j_ok]] == last, np.where(outward, j + 1, j - 1), j)
    has = (j >= 0) & (j < ncyl) & _FAST_PATH
    rows = np.flatnonzero(has)
    cand = order[j[rows]]
    t_fast = _cylinder_t(geo, rows, cand, *args, multi_turn=False)
    ok = np.isfinite(t_fast)
    r_ok = rows[ok]
    best[r_ok] = np.where(t_fast[ok] <= t_limit[r_ok], t_fast[ok], np.inf)
    which[r_ok] = np.where(np.isfinite(best[r_ok]), geo.cyl_index[cand[ok]], -1)
    slow = np.ones(n, bool)
    slow[r_ok] = False
    rows = np.flatnonzero(slow)
    if len(rows) == 0:
        return best, which
    pi = np.repeat(rows, ncyl)
    cj = np.tile(np.arange(ncyl), len(rows))
    t_all = _cylinder_t(geo, pi, cj, *args, multi_turn=True)
    t_all = np.where(t_all > t_limit[pi], np.inf, t_all)
    np.minimum.at(best, pi, t_all)
    win = np.isfinite(t_all) & (t_all == best[pi])
    which[pi[win]] = geo.cyl_index[cj[win]]
    return best, which


def _next_disk(geo, z, phi0, cot, R, h, Cx, Cy, last, t_limit):
    """Turning angle and surface of the next disk crossing (inf where none), t < t_limit only."""
    n = len(z)
    best = np.full(n, np.inf)
    which = np.full(n, -1, np.int64)
    if len(geo.disk_z) == 0:
        return best, which
    # a particle only reaches the disks on the side it moves towards: half the work
    pis, djs = [], []
    for sign in (1.0, -1.0):
        rows = np.flatnonzero(cot * sign > 0)
        cols = np.flatnonzero(geo.disk_z * sign > 0)
        if len(rows) == 0 or len(cols) == 0:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (geo.disk_z[cols][None, :] - z[rows, None]) / (R[rows] * cot[rows])[:, None]
        cand = (t > _EPS_T) & (t < t_limit[rows, None]) & (geo.disk_index[cols][None, :] != last[rows, None])
        r_, c_ = np.nonzero(cand)
        pis.append(rows[r_])
        djs.append(cols[c_])
    pi = np.concatenate(pis) if pis else np.zeros(0, np.int64)
    dj = np.concatenate(djs) if djs else np.zeros(0, np.int64)
    if len(pi) == 0:
        return best, which
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = (geo.disk_z[dj] - z[pi]) / (R[pi] * cot[pi])
    psi = phi0[pi] + h[pi] * tc
    hR = h[pi] * R[pi]
    xd = Cx[pi] + hR * np.sin(psi)
    yd = Cy[pi] - hR * np.cos(psi)
    rd = np.hypot(xd, yd)
    good = (rd >= geo.disk_r_min[dj]) & (rd <= geo.disk_r_max[dj])
    pi, dj, tc = pi[good], dj[good], tc[good]
    order = np.lexsort((tc, pi))
    pi, dj, tc = pi[order], dj[order], tc[order]
    first = np.ones(len(pi), bool)
    first[1:] = pi[1:] != pi[:-1]
    best[pi[first]] = tc[first]
    which[pi[first]] = geo.disk_index[dj[first]]
    return best, which


def propagate(
    geo: Geometry,
    state: TrackState,
    rng: np.random.Generator,
    max_turns: float = 3.0,
    max_steps: int = 500,
    multiple_scattering: bool = True,
) -> tuple[Crossings, Decays]:
    """Follow charged particles from ``state`` through all surfaces; see the module docstring."""
    B = geo.bfield
    x, y, z = state.x.astype(np.float64), state.y.astype(np.float64), state.z.astype(np.float64)
    px, py, pz = state.px.astype(np.float64), state.py.astype(np.float64), state.pz.astype(np.float64)
    q = state.charge.astype(np.float64)
    mass = state.mass.astype(np.float64)
    s_dec = state.decay_length.astype(np.float64).copy()
    idx = state.index
    n = len(idx)
    t_used = np.zeros(n)
    last = np.full(n, -1, np.int64)
    step = np.zeros(n, np.int64)
    active = np.flatnonzero((q != 0) & (np.hypot(px, py) > 0))
    out: dict[str, list] = {k: [] for k in Crossings.__dataclass_fields__}
    dec: dict[str, list] = {k: [] for k in Decays.__dataclass_fields__}
    t_max = TWO_PI * max_turns
    surf_disk = geo.is_disk
    for _ in range(max_steps):
        if len(active) == 0:
            break
        a = active
        pt = np.hypot(px[a], py[a])
        p = np.sqrt(pt**2 + pz[a] ** 2)
        R = pt / (C_LIGHT * B * np.abs(q[a]))
        h = -np.sign(q[a] * B)
        phi0 = np.arctan2(py[a], px[a])
        cot = pz[a] / pt
        Cx = x[a] - h * R * np.sin(phi0)
        Cy = y[a] + h * R * np.cos(phi0)
        t_rem = t_max - t_used[a]
        t_c, s_c = _next_cylinder(geo, x[a], y[a], z[a], phi0, cot, R, h, Cx, Cy, last[a], t_rem)
        t_d, s_d = _next_disk(geo, z[a], phi0, cot, R, h, Cx, Cy, last[a], np.minimum(t_rem, t_c))
        use_d = t_d < t_c
        t_hit = np.where(use_d, t_d, t_c)
        surf = np.where(use_d, s_d, s_c)
        # leaving the envelope (outer cylinder, or the end planes) ends the particle's path
        with np.errstate(divide="ignore", invalid="ignore"):
            t_z = (np.sign(cot) * geo.envelope_z - z[a]) / (R * cot)
        t_z = np.where(np.isfinite(t_z) & (t_z > 0), t_z, np.inf)
        t_hit = np.where((surf == ENVELOPE) | (t_z < t_hit), np.inf, t_hit)
        t_dec = s_dec[a] * pt / (R * p)
        decays = t_dec < np.minimum(t_hit, t_rem)
        t_next = np.where(decays, t_dec, t_hit)
        moving = np.isfinite(t_next) & (t_next <= t_rem)
        # move to the next point
        psi = phi0 + h * np.where(moving, t_next, 0.0)
        nx = np.where(moving, Cx + h * R * np.sin(psi), x[a])
        ny = np.where(moving, Cy - h * R * np.cos(psi), y[a])
        nz = np.where(moving, z[a] + R * np.where(moving, t_next, 0.0) * cot, z[a])
        npx = np.where(moving, pt * np.cos(psi), px[a])
        npy = np.where(moving, pt * np.sin(psi), py[a])
        x[a], y[a], z[a], px[a], py[a] = nx, ny, nz, npx, npy
        tn = np.where(moving, t_next, 0.0)
        t_used[a] += tn
        s_dec[a] -= tn * R * p / pt
        # decays in flight inside the envelope
        inside = (np.hypot(nx, ny) < geo.envelope_r) & (np.abs(nz) < geo.envelope_z)
        dmask = moving & decays & inside
        if dmask.any():
            d = a[dmask]
            for k, arr in (("index", idx[d]), ("x", x[d]), ("y", y[d]), ("z", z[d])):
                dec[k].append(arr)
            for k, arr in (("px", px[d]), ("py", py[d]), ("pz", pz[d])):
                dec[k].append(arr)
        hit = moving & ~decays
        h_idx = a[hit]
        hs = surf[hit]
        if len(h_idx):
            step[h_idx] += 1
            for k, arr in (
                ("index", idx[h_idx]),
                ("surface", hs),
                ("step", step[h_idx]),
                ("x", x[h_idx]),
                ("y", y[h_idx]),
                ("z", z[h_idx]),
                ("px", px[h_idx]),
                ("py", py[h_idx]),
                ("pz", pz[h_idx]),
            ):
                out[k].append(arr.copy())
            last[h_idx] = hs
            x0 = geo.x0[hs]
            if multiple_scattering and np.any(x0 > 0):
                _scatter(rng, h_idx, hs, x0, surf_disk, x, y, px, py, pz, q, mass)
        active = h_idx
    cr = Crossings(
        **{
            k: (
                np.concatenate(v)
                if v
                else np.zeros(0, np.int64 if k in ("index", "surface", "step") else float)
            )
            for k, v in out.items()
        }
    )
    dc = Decays(
        **{
            k: (np.concatenate(v) if v else np.zeros(0, np.int64 if k == "index" else float))
            for k, v in dec.items()
        }
    )
    return cr, dc


def _scatter(rng, i, surf, x0, surf_disk, x, y, px, py, pz, q, mass) -> None:
    """Kick the momenta of particles ``i`` that just crossed surfaces ``surf`` (in place)."""
    ux, uy, uz = px[i], py[i], pz[i]
    p = np.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / p, uy / p, uz / p
    r = np.hypot(x[i], y[i])
    cos_n = np.where(surf_disk[surf], np.abs(uz), np.abs(ux * x[i] + uy * y[i]) / r)
    cos_inc = np.maximum(cos_n, 0.05)
    beta = p / np.sqrt(p * p + mass[i] ** 2)
    theta0 = highland(p, beta, q[i], x0 / cos_inc)
    # orthonormal basis perpendicular to the direction: e1 = u x z / |.|, e2 = u x e1
    ut = np.hypot(ux, uy)
    safe = ut > 1e-9
    e1x = np.where(safe, uy / np.where(safe, ut, 1.0), 1.0)
    e1y = np.where(safe, -ux / np.where(safe, ut, 1.0), 0.0)
    e2x, e2y, e2z = uy * 0.0 - uz * e1y, uz * e1x, ux * e1y - uy * e1x
    k1, k2 = rng.standard_normal((2, len(i))) * theta0
    nx, ny, nz = ux + k1 * e1x + k2 * e2x, uy + k1 * e1y + k2 * e2y, uz + k2 * e2z
    norm = p / np.sqrt(nx * nx + ny * ny + nz * nz)
    px[i], py[i], pz[i] = nx * norm, ny * norm, nz * norm
