"""Crossings -> pixel/strip clusters -> spacepoints, the way the ATLAS reconstruction sees them.

Each crossing deposits charge along its path through the sensor thickness; the cells (pixels)
or strips under that path form a cluster whose position is the digital centroid of the cells.
Deposits of different particles that touch on the same sensor merge into one cluster linked to
all of them (the main source of shared hits in dense jets). Strip modules are two sensors with
strips rotated by +/-stereo; a strip spacepoint is built from *every* pair of side-0/side-1
clusters of one module that is compatible within the strip length, so busy modules produce
ghost spacepoints exactly like real data. Noise clusters (no particle link) are added at a
configurable rate per sensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from gnntrack.simulation.geometry import HARDWARE_CODE, Geometry, Surface, module_id

#: electron-hole pairs per mm of silicon (most probable ~ 80 per um)
PAIRS_PER_MM = 80_000.0
NOISE_BARCODE = -1


@dataclass
class Deposits:
    """Energy deposits (crossings that fired), one row each."""

    surface: np.ndarray
    subevent: np.ndarray
    barcode: np.ndarray  # NOISE_BARCODE for noise
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    dx: np.ndarray  # unit direction
    dy: np.ndarray
    dz: np.ndarray


def _moyal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Standard Moyal (Landau approximation) variates: -ln(chi2_1)."""
    return -np.log(np.maximum(rng.standard_normal(n) ** 2, 1e-300))


def _merge_groups(key: np.ndarray, a_lo, a_hi, b_lo, b_hi) -> np.ndarray:
    """Cluster label of each deposit: same key and touching cell ranges in both axes merge."""
    n = len(key)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((a_lo, key))
    k, alo, ahi, blo, bhi = key[order], a_lo[order], a_hi[order], b_lo[order], b_hi[order]
    rows, cols = [], []
    reach = ahi.copy()  # only pairs with a_lo[j] <= a_hi[i] + 1 can touch
    alive = np.arange(n)
    d = 1
    while len(alive):
        alive = alive[alive + d < n]
        j = alive + d
        alive_mask = (k[j] == k[alive]) & (alo[j] <= reach[alive] + 1)
        alive, j = alive[alive_mask], j[alive_mask]
        touch = (alo[j] <= ahi[alive] + 1) & (blo[j] <= bhi[alive] + 1) & (blo[alive] <= bhi[j] + 1)
        rows.append(alive[touch])
        cols.append(j[touch])
        d += 1
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    _, lab_sorted = connected_components(graph, directed=False)
    labels = np.empty(n, np.int64)
    labels[order] = lab_sorted
    return labels


class Digitiser:
    """Turns deposits into the GNN4ITk cluster and spacepoint branches."""

    def __init__(
        self,
        geo: Geometry,
        noise_rate: float = 0.0,
        strip_tolerance: float = 1.0,
        strip_gap_tolerance: float = 0.0,
    ):
        self.geo = geo
        self.noise_rate = noise_rate
        self.strip_tolerance = strip_tolerance
        self.strip_gap_tolerance = strip_gap_tolerance

    def _strip_extension(self, s0: Surface) -> float:
        """Extra strip length (mm) accepted for spacepoints of the double-sided module ``s0``.

        A track inclined by alpha (in phi) crosses the two sensors ``gap * tan(alpha)`` apart
        across the strips, which moves the intersection of the two strip lines by that over
        2 sin(stereo) along them. Like ATLAS/Acts' strip-length gap tolerance, intersections this
        far beyond the strip ends are accepted for tan(alpha) up to ``strip_gap_tolerance``.
        """
        s1 = self.geo.surfaces[s0.partner]
        gap = abs(s0.r - s1.r) if s0.kind == "cylinder" else abs(s0.z - s1.z)
        return self.strip_tolerance + self.strip_gap_tolerance * gap / (2.0 * abs(np.sin(s0.stereo)))

    # ------------------------------------------------------------------ noise
    def noise(self, rng: np.random.Generator) -> Deposits:
        """Noise deposits: Poisson(noise_rate) per sensitive module, uniform on the module."""
        geo = self.geo
        n = rng.poisson(self.noise_rate * geo.n_modules) if self.noise_rate > 0 else 0
        module = np.sort(rng.integers(0, max(geo.n_modules, 1), n))
        offsets = np.array([s.module_offset for s in geo.surfaces])
        counts = np.array([s.n_modules for s in geo.surfaces])
        surf_of = np.searchsorted(offsets + counts, module, side="right")
        parts = []
        for si in np.unique(surf_of):
            s = geo.surfaces[si]
            m = module[surf_of == si]
            width, vlo, vhi = geo.module_extent(s, m)
            u = (rng.random(len(m)) - 0.5) * width
            v = vlo + rng.random(len(m)) * (vhi - vlo)
            x, y, z = geo.to_global(s, m, u, v)
            nrm = geo.module_normal(s, m)
            parts.append((np.full(len(m), si), x, y, z, nrm))
        if not parts:
            e = np.zeros(0)
            return Deposits(
                np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32), e, e, e, e, e, e
            )
        surf = np.concatenate([p[0] for p in parts])
        nrm = np.concatenate([p[4] for p in parts])
        return Deposits(
            surface=surf,
            subevent=np.zeros(len(surf), np.int32),
            barcode=np.full(len(surf), NOISE_BARCODE, np.int32),
            x=np.concatenate([p[1] for p in parts]),
            y=np.concatenate([p[2] for p in parts]),
            z=np.concatenate([p[3] for p in parts]),
            dx=nrm[:, 0],
            dy=nrm[:, 1],
            dz=nrm[:, 2],
        )

    # ------------------------------------------------------------------ clusters
    def clusters(self, dep: Deposits, rng: np.random.Generator) -> dict[str, np.ndarray | list]:
        """Cluster branches (``CL*``) plus internal columns (prefixed ``_``) for spacepoints."""
        tables = []
        for si in np.unique(dep.surface):
            s = self.geo.surfaces[si]
            sel = np.flatnonzero(dep.surface == si)
            tables.append(self._surface_clusters(s, dep, sel, rng))
        if not tables:  # no hit at all: empty columns of the right types
            first = next(s for s in self.geo.surfaces if s.sensitive)
            tables.append(self._surface_clusters(first, dep, np.zeros(0, np.int64), rng))
        return _concat_tables(tables)

    def _surface_clusters(self, s: Surface, dep: Deposits, sel: np.ndarray, rng) -> dict:
        geo = self.geo
        loc = geo.locate(s, dep.x[sel], dep.y[sel], dep.z[sel])
        d = np.stack([dep.dx[sel], dep.dy[sel], dep.dz[sel]], axis=1)
        du, dv, dn = (d * loc.e_u).sum(1), (d * loc.e_v).sum(1), (d * loc.e_n).sum(1)
        dn_abs = np.maximum(np.abs(dn), 0.05)  # grazing tracks: cap the path at 20x the thickness
        half_t = 0.5 * s.thickness
        su, sv = half_t * du / dn_abs, half_t * dv / dn_abs
        path = s.thickness * np.sqrt(1.0 + (du**2 + dv**2) / dn_abs**2)
        charge = PAIRS_PER_MM * path * np.maximum(1.0 + 0.12 * _moyal(rng, len(sel)), 0.3)
        if s.is_strip:
            ca, sa = np.cos(s.stereo), np.sin(s.stereo)
            m = loc.u * ca + loc.v * sa
            sm = np.abs(su * ca + sv * sa)
            a_lo = np.floor((m - sm) / s.pitch_u).astype(np.int64)
            a_hi = np.floor((m + sm) / s.pitch_u).astype(np.int64)
            b_lo = b_hi = np.zeros(len(sel), np.int64)
        else:
            su, sv = np.abs(su), np.abs(sv)
            a_lo = np.floor((loc.u - su) / s.pitch_u).astype(np.int64)
            a_hi = np.floor((loc.u + su) / s.pitch_u).astype(np.int64)
            b_lo = np.floor((loc.v - sv) / s.pitch_v).astype(np.int64)
            b_hi = np.floor((loc.v + sv) / s.pitch_v).astype(np.int64)
        ncell = (a_hi - a_lo) + (b_hi - b_lo) + 1  # cells a straight path traverses
        label = _merge_groups(loc.module, a_lo, a_hi, b_lo, b_hi)
        nc = int(label.max()) + 1 if len(label) else 0
        # order clusters by module then first cell, so output does not depend on deposit order
        first = np.full(nc, np.iinfo(np.int64).max)
        np.minimum.at(first, label, np.arange(len(label)))
        cl_mod = loc.module[first]
        lo_a = np.full(nc, np.iinfo(np.int64).max)
        np.minimum.at(lo_a, label, a_lo)
        hi_a = np.full(nc, np.iinfo(np.int64).min)
        np.maximum.at(hi_a, label, a_hi)
        lo_b = np.full(nc, np.iinfo(np.int64).max)
        np.minimum.at(lo_b, label, b_lo)
        hi_b = np.full(nc, np.iinfo(np.int64).min)
        np.maximum.at(hi_b, label, b_hi)
        rank = np.lexsort((lo_b, lo_a, cl_mod))
        relabel = np.empty(nc, np.int64)
        relabel[rank] = np.arange(nc)
        label = relabel[label]
        cl_mod, lo_a, hi_a, lo_b, hi_b = cl_mod[rank], lo_a[rank], hi_a[rank], lo_b[rank], hi_b[rank]
        q = np.bincount(label, weights=charge, minlength=nc)
        cells = np.bincount(label, weights=ncell, minlength=nc)
        bbox = (hi_a - lo_a + 1) * (hi_b - lo_b + 1)
        cells = np.minimum(cells, bbox).astype(np.int32)
        # digital centroid of the union of cells (bounding box centre)
        a_c = 0.5 * (lo_a + hi_a + 1) * s.pitch_u
        len_a = (hi_a - lo_a + 1) * s.pitch_u
        if s.is_strip:
            ca, sa = np.cos(s.stereo), np.sin(s.stereo)
            u_c, v_c = a_c * ca, a_c * sa  # strip centre line point nearest the module centre
            len_b = np.zeros(nc)
            loc_phi, loc_eta = a_c, np.zeros(nc)
        else:
            b_c = 0.5 * (lo_b + hi_b + 1) * s.pitch_v
            len_b = (hi_b - lo_b + 1) * s.pitch_v
            u_c, v_c = a_c, b_c
            loc_phi, loc_eta = a_c, b_c
        x, y, z = geo.to_global(s, cl_mod, u_c, v_c)
        normal = geo.module_normal(s, cl_mod)
        # direction estimated from the cluster size in cells (as the ATLAS dumps do, so it is
        # quantised: one-cell clusters read as ~pitch/thickness), pointing away from the beam line
        t = s.thickness
        ldir = np.stack([len_a, len_b, np.full(nc, t)], axis=1)
        ldir /= np.linalg.norm(ldir, axis=1)[:, None]
        phi_c, _ = geo.module_centre(s, cl_mod)
        e_u = np.stack([-np.sin(phi_c), np.cos(phi_c), np.zeros(nc)], axis=1)
        if s.kind == "cylinder":
            sign_v = np.where(z >= 0, 1.0, -1.0)
            e_v = np.tile([0.0, 0.0, 1.0], (nc, 1)) * sign_v[:, None]
            e_n = normal
        else:
            e_v = np.stack([np.cos(phi_c), np.sin(phi_c), np.zeros(nc)], axis=1)
            e_n = normal  # already points away from the interaction point
            sign_v = np.ones(nc)
        gdir = ldir[:, 0:1] * e_u + ldir[:, 1:2] * e_v + ldir[:, 2:3] * e_n
        g_eta = np.arcsinh(gdir[:, 2] / np.maximum(np.hypot(gdir[:, 0], gdir[:, 1]), 1e-12))
        g_phi = np.arctan2(gdir[:, 1], gdir[:, 0])
        # particle links of each cluster: unique (subevent, barcode) of its deposits, noise excluded
        sub, bc = dep.subevent[sel], dep.barcode[sel]
        real = bc != NOISE_BARCODE
        trip = np.unique(np.stack([label[real], sub[real], bc[real]], axis=1), axis=0)
        n_links = np.bincount(trip[:, 0], minlength=nc) if len(trip) else np.zeros(nc, np.int64)
        mid = np.asarray(
            module_id(
                HARDWARE_CODE[s.hardware],
                s.barrel_endcap,
                s.layer_disk,
                *self._eta_phi(s, cl_mod),
                s.side,
            ),
            np.uint64,
        )
        eta_mod, phi_mod = self._eta_phi(s, cl_mod)
        return {
            "CLhardware": np.full(nc, s.hardware),
            "CLx": x,
            "CLy": y,
            "CLz": z,
            "CLbarrel_endcap": np.full(nc, s.barrel_endcap, np.int32),
            "CLlayer_disk": np.full(nc, s.layer_disk, np.int32),
            "CLeta_module": eta_mod.astype(np.int32),
            "CLphi_module": phi_mod.astype(np.int32),
            "CLside": np.full(nc, s.side, np.int32),
            "CLmoduleID": mid,
            "CLpixel_count": cells,
            "CLcharge_count": np.round(q).astype(np.int32),
            "CLloc_eta": loc_eta,
            "CLloc_phi": loc_phi,
            "CLloc_direction1": ldir[:, 0],
            "CLloc_direction2": ldir[:, 1],
            "CLloc_direction3": ldir[:, 2],
            "CLglob_eta": g_eta,
            "CLglob_phi": g_phi,
            "CLeta_angle": np.arctan2(len_b, t) * sign_v,
            "CLphi_angle": np.arctan2(len_a, t),
            "CLnorm_x": normal[:, 0],
            "CLnorm_y": normal[:, 1],
            "CLnorm_z": normal[:, 2],
            "_link_n": n_links.astype(np.int64),
            "_link_sub": trip[:, 1].astype(np.int32) if len(trip) else np.zeros(0, np.int32),
            "_link_bc": trip[:, 2].astype(np.int32) if len(trip) else np.zeros(0, np.int32),
            "_surface": np.full(nc, s.index, np.int64),
            "_module": cl_mod,
            "_measure": a_c,  # strip: coordinate across the strips of this side
        }

    def _eta_phi(self, s: Surface, module: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = module - s.module_offset
        if s.kind == "cylinder":
            nphi = int(s.n_phi[0])
            return local // nphi - s.n_z // 2, local % nphi
        ring_offset = np.concatenate([[0], np.cumsum(s.n_phi)])
        ring = np.searchsorted(ring_offset, local, side="right") - 1
        return ring, local - ring_offset[ring]

    # ------------------------------------------------------------------ spacepoints
    def spacepoints(self, cl: dict) -> dict[str, np.ndarray]:
        """Pixel spacepoints (one per cluster) then strip spacepoints (all compatible pairs).

        A barrel track crosses the two sensors of a strip module ``side_gap * cot(theta)`` apart in
        z, so near a row boundary its side-1 cluster is in the neighbouring row: as in ATLAS, the
        side-1 clusters of the eta-neighbour rows are paired too, near the shared edge only, and
        those spacepoints are flagged ``SPisOverlap = 1`` (eta overlap).
        """
        geo = self.geo
        is_pix = cl["CLhardware"] == "PIXEL"
        pix = np.flatnonzero(is_pix)
        sp_x, sp_y, sp_z = [cl["CLx"][pix]], [cl["CLy"][pix]], [cl["CLz"][pix]]
        c1, c2, ovl = [pix], [np.full(len(pix), -1, np.int64)], [np.full(len(pix), -1, np.int64)]
        surf = cl["_surface"]
        side = cl["CLside"]
        strip0 = np.flatnonzero(~is_pix & (side == 0))
        strip1 = np.flatnonzero(~is_pix & (side == 1))
        # side-1 module index mapped onto the side-0 surface's numbering -> common pairing key
        partner_offset = np.array(
            [geo.surfaces[s.partner].module_offset if s.partner >= 0 else 0 for s in geo.surfaces]
        )
        own_offset = np.array([s.module_offset for s in geo.surfaces])
        is_barrel = np.array([s.kind == "cylinder" for s in geo.surfaces])
        n_phi0 = np.array([int(s.n_phi[0]) if len(s.n_phi) else 1 for s in geo.surfaces])
        n_z = np.array([s.n_z for s in geo.surfaces])
        row_len = np.array([2 * s.half_z / s.n_z if s.n_z else 0.0 for s in geo.surfaces])
        sin1 = np.sin(np.array([s.stereo for s in geo.surfaces]))
        local1 = cl["_module"][strip1] - own_offset[surf[strip1]]
        cand_i, cand_k, cand_m, cand_d = [], [], [], []
        for delta in (0, -1, 1):
            sf = surf[strip1]
            row = local1 // n_phi0[sf] - delta  # row of the side-0 module this cluster is paired with
            ok = np.ones(len(strip1), bool) if delta == 0 else is_barrel[sf] & (row >= 0) & (row < n_z[sf])
            key = local1 - delta * n_phi0[sf] + partner_offset[sf]
            # measured coordinate expressed in the frame of the side-0 row (v shifts by delta * L)
            m = cl["_measure"][strip1] + delta * row_len[sf] * sin1[sf]
            cand_i.append(strip1[ok])
            cand_k.append(key[ok])
            cand_m.append(m[ok])
            cand_d.append(np.full(ok.sum(), delta))
        ci, ck, cm, cd = (np.concatenate(a) for a in (cand_i, cand_k, cand_m, cand_d))
        order = np.lexsort((cm, ck))
        ci, ck, cm, cd = ci[order], ck[order], cm[order], cd[order]
        comp1 = ck.astype(np.float64) * 1e4 + cm
        # |m0 - m1| = 2 |v| sin(stereo) <= 2 sin(stereo) (L/2 + tol): a window in m1 around m0
        stereo = np.array([abs(s.stereo) for s in geo.surfaces])
        _, vlo, vhi = self._extent_of(strip0, cl)
        st0 = stereo[surf[strip0]]
        ext = np.array(
            [self._strip_extension(s) if s.is_strip and s.partner >= 0 else 0.0 for s in geo.surfaces]
        )
        w = 2.0 * np.sin(st0) * (np.maximum(-vlo, vhi) + ext[surf[strip0]] + self._max_shift)
        key0 = cl["_module"][strip0]
        base = key0.astype(np.float64) * 1e4 + cl["_measure"][strip0]
        lo = np.searchsorted(comp1, base - w, side="left")
        hi = np.searchsorted(comp1, base + w, side="right")
        cnt = hi - lo
        i0 = np.repeat(strip0, cnt)
        pos = np.repeat(lo - np.cumsum(np.concatenate([[0], cnt[:-1]])), cnt) + np.arange(cnt.sum())
        same = np.repeat(key0, cnt) == ck[pos]
        i0, pos = i0[same], pos[same]
        if len(i0):
            x, y, z, good = self._strip_position(cl, i0, cm[pos], cd[pos])
            sp_x.append(x[good])
            sp_y.append(y[good])
            sp_z.append(z[good])
            c1.append(i0[good])
            c2.append(ci[pos][good])
            ovl.append(np.where(cd[pos][good] != 0, 1, 0))
        cl1, cl2 = np.concatenate(c1), np.concatenate(c2)
        n_sp = len(cl1)
        return {
            "SPindex": np.arange(n_sp, dtype=np.int32),
            "SPx": np.concatenate(sp_x),
            "SPy": np.concatenate(sp_y),
            "SPz": np.concatenate(sp_z),
            "SPCL1_index": cl1.astype(np.int32),
            "SPCL2_index": cl2.astype(np.int32),
            "SPisOverlap": np.concatenate(ovl).astype(np.int32),
        }

    @property
    def _max_shift(self) -> float:
        """Largest z offset between the two sides of a barrel strip module (gap * cot(theta))."""
        gaps = [
            abs(s.r - self.geo.surfaces[s.partner].r) * s.half_z / min(s.r, self.geo.surfaces[s.partner].r)
            for s in self.geo.surfaces
            if s.is_strip and s.kind == "cylinder" and s.partner >= 0
        ]
        return max(gaps, default=0.0)

    def _extent_of(self, idx: np.ndarray, cl: dict):
        out_w, out_lo, out_hi = np.zeros(len(idx)), np.zeros(len(idx)), np.zeros(len(idx))
        surf = cl["_surface"][idx]
        for si in np.unique(surf):
            sel = surf == si
            w, lo, hi = self.geo.module_extent(self.geo.surfaces[si], cl["_module"][idx[sel]])
            out_w[sel], out_lo[sel], out_hi[sel] = w, lo, hi
        return out_w, out_lo, out_hi

    def _strip_position(self, cl: dict, i0: np.ndarray, m1_all: np.ndarray, delta: np.ndarray):
        """Global position of side-0/side-1 cluster pairs; mask of pairs within the strip length.

        ``m1_all`` is the side-1 measurement in the side-0 row's frame; for eta-neighbour pairs
        (``delta`` = +-1) the crossing must lie near the shared row edge, within the z offset
        the side gap allows at this track angle.
        """
        geo = self.geo
        n = len(i0)
        x, y, z = np.zeros(n), np.zeros(n), np.zeros(n)
        good = np.zeros(n, bool)
        surf0 = cl["_surface"][i0]
        for si in np.unique(surf0):
            sel = np.flatnonzero(surf0 == si)
            s0 = geo.surfaces[si]
            tol = self._strip_extension(s0)
            s1 = geo.surfaces[s0.partner]
            a0, a1 = s0.stereo, s1.stereo
            m0, m1 = cl["_measure"][i0[sel]], m1_all[sel]
            det = np.sin(a1 - a0)  # solve m_k = u cos(a_k) + v sin(a_k)
            u = (m0 * np.sin(a1) - m1 * np.sin(a0)) / det
            v = (m1 * np.cos(a0) - m0 * np.cos(a1)) / det
            mod = cl["_module"][i0[sel]]
            _, vlo, vhi = geo.module_extent(s0, mod)
            mid = 0.5 * (s0.r + s1.r) if s0.kind == "cylinder" else 0.5 * (s0.z + s1.z)
            x[sel], y[sel], z[sel] = geo.to_global(s0, mod, u, v, at=mid)
            d = delta[sel]
            inside = (v >= vlo - tol) & (v <= vhi + tol)
            if s0.kind == "cylinder":
                shift = abs(s1.r - s0.r) * np.abs(z[sel]) / mid  # z offset between the sides
                edge = np.where(d > 0, vhi, vlo)
                near_edge = np.abs(v - edge) <= 0.5 * shift + tol
                good[sel] = np.where(d == 0, inside, near_edge)
            else:
                good[sel] = inside
        return x, y, z, good


def _concat_tables(tables: list[dict]) -> dict:
    keys = tables[0].keys()
    return {k: np.concatenate([t[k] for t in tables]) for k in keys}
