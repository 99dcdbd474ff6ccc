"""phi-symmetric module map: share statistics between module pairs related by a rotation about z.

A data-driven module map needs every module pair crossed by target tracks to appear in the
training sample; GNN4ITk builds its map from ~1e5 events. With a few hundred events most pairs
are seen rarely or never, and the held-out edge efficiency is limited by *pair coverage*, not
by the cuts. All doublet quantities (z0, dphi, phi slope, deta, dz/dr) are invariant under a
rotation about the beam axis, so module pairs with the same two rings (hardware, barrel_endcap,
layer_disk, eta_module) and the same relative phi placement are equivalent up to their exact
module boundaries. This module groups the training pairs in such classes, merges their
statistics, and expands every class back to all concrete module pairs of the two rings with that
relative placement. The result is an ordinary module-pair map (same file, same application).

Relative placement: delta = (j + 1/2)/n_B - (i + 1/2)/n_A (in turns, wrapped to [-1/2, 1/2)) for
module i of ring A and j of ring B, binned in bins of 1/(2 n_B) (at most one j per i and bin; edges offset, see ``_delta_bin``).
Modules are phi-ordered by ``phi_module`` index with n = max index + 1 per ring as seen in the
training hits (per layer in the barrel, where all z-rings share one segmentation); only modules
present in the training hits are enumerated. An underestimated n (a ring whose last modules were
never hit) only makes the classes of that ring less exact; the training pairs themselves are
always kept, so the map never loses what a plain map would hold.

z mirror (``symmetry: phi_z``): detector, beam spot and solenoid field are also symmetric under
z -> -z, which maps a doublet to one with the same dphi and phi slope and negated z0, deta and
dz/dr. Each class (ring A, ring B, bin) is merged with its mirror image (mirror(A), mirror(B),
bin) and expanded to the concrete pairs of both, each side with its statistics in its own
orientation. The mirror ring is found from the training hits, not from index conventions (see
``mirror_rings``); a ring without a valid mirror is not mirrored, so ``phi_z`` only ever adds to
what ``phi`` holds.
"""

from __future__ import annotations

import numpy as np

from ..io.event_store import Event
from .geometry import DOUBLET_FEATURES, module_ids_as_int64

RING_COLUMNS = ("hardware", "barrel_endcap", "layer_disk", "eta_module")

#: doublet quantities that change sign under z -> -z (dphi and the phi slope do not)
Z_ODD_FEATURES = ("z0", "deta", "dz_dr")

#: per-module hit sums kept by ``ModuleCatalogue``: count, r, z, cos phi, sin phi, r^2, z^2, n(z < 0)
_SUM_COLUMNS = 8

#: a ring's mirror must lie closer to the ring's (r, -z) than this fraction of the ring spacing
MIRROR_POSITION_TOLERANCE = 0.5
#: ... and have the same phi phase within this fraction of the module pitch 2 pi / n_phi
MIRROR_PHASE_TOLERANCE = 0.25
#: a ring is its own mirror only if at least this fraction of its hits lies on either side of z = 0
MIN_SELF_MIRROR_SIDE_FRACTION = 0.25
#: rings whose module centres scatter about their phase (mean resultant length below this: the
#: phi_module numbering is not the assumed uniform, increasing one) have no usable phase
MIN_PHASE_COHERENCE = 0.8


class ModuleCatalogue:
    """Modules seen in the training hits with their ring and phi index, and per-module hit sums
    (count, r, z, cos phi, sin phi, r^2, z^2, hits at z < 0) for the ring positions of the z
    mirror."""

    def __init__(self):
        self._parts: list[np.ndarray] = []
        self._sum_ids: list[np.ndarray] = []
        self._sums: list[np.ndarray] = []

    def add(self, event: Event) -> None:
        h = event.hits
        ids = module_ids_as_int64(h["module_id"])
        rows = np.stack(
            [ids] + [np.asarray(h[c], np.int64) for c in (*RING_COLUMNS, "phi_module")],
            axis=1,
        )
        self._parts.append(np.unique(rows, axis=0))
        if len(self._parts) > 32:
            self._parts = [np.unique(np.concatenate(self._parts), axis=0)]
        if len(ids) and all(c in h for c in ("r", "z", "phi")):
            r, z, phi = (np.asarray(h[c], np.float64) for c in ("r", "z", "phi"))
            values = np.stack(
                [np.ones_like(r), r, z, np.cos(phi), np.sin(phi), r * r, z * z, (z < 0).astype(np.float64)],
                axis=1,
            )
            self._add_sums(ids, values)

    def _add_sums(self, ids: np.ndarray, values: np.ndarray) -> None:
        uid, inv = np.unique(ids, return_inverse=True)
        inv = inv.reshape(-1)
        sums = np.stack([np.bincount(inv, weights=v, minlength=len(uid)) for v in values.T], axis=1)
        self._sum_ids.append(uid)
        self._sums.append(sums)
        if len(self._sum_ids) > 32:
            ids, values = np.concatenate(self._sum_ids), np.concatenate(self._sums)
            self._sum_ids, self._sums = [], []
            self._add_sums(ids, values)

    def module_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """(module ids (K,) sorted, sums (K, 8): hit count, r, z, cos phi, sin phi, r^2, z^2, n(z<0))."""
        if not self._sum_ids:
            return np.zeros(0, np.int64), np.zeros((0, _SUM_COLUMNS))
        if len(self._sum_ids) > 1:
            ids, values = np.concatenate(self._sum_ids), np.concatenate(self._sums)
            self._sum_ids, self._sums = [], []
            self._add_sums(ids, values)
        return self._sum_ids[0], self._sums[0]

    def rows(self) -> np.ndarray:
        """(M, 6) module id, hardware, barrel_endcap, layer_disk, eta_module, phi_module; one row
        per module sorted by id (first occurrence wins if a module id appeared with other attributes)."""
        rows = np.unique(np.concatenate(self._parts), axis=0) if self._parts else np.zeros((0, 6), np.int64)
        _, first = np.unique(rows[:, 0], return_index=True)
        return rows[first]

    def table(self):
        """(module (M,), ring (M,), phi index (M,), n_phi per ring (R,)) sorted by module."""
        rows = self.rows()
        _, ring = np.unique(rows[:, 1:5], axis=0, return_inverse=True)
        ring = ring.reshape(-1)
        pm = rows[:, 5]
        n_phi = np.zeros(ring.max() + 1 if len(ring) else 0, np.int64)
        np.maximum.at(n_phi, ring, pm + 1)
        # Barrel: every z-ring of a layer has the same phi segmentation, so take the largest
        # index seen anywhere in the layer (robust when a ring's last module was never hit).
        barrel = rows[:, 2] == 0
        if barrel.any():
            _, layer = np.unique(rows[barrel][:, [1, 3]], axis=0, return_inverse=True)
            layer = layer.reshape(-1)
            layer_n = np.zeros(layer.max() + 1, np.int64)
            np.maximum.at(layer_n, layer, pm[barrel] + 1)
            n_phi[ring[barrel]] = layer_n[layer]
        return rows[:, 0], ring, pm, n_phi


def z_parity() -> np.ndarray:
    """(F,) +1 / -1 per ``DOUBLET_FEATURES``: how each quantity transforms under z -> -z."""
    return np.array([-1.0 if f in Z_ODD_FEATURES else 1.0 for f in DOUBLET_FEATURES])


def mirror_stats(stats: dict[str, np.ndarray], flip: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Statistics of the z-mirrored doublets (rows where ``flip``, default all): count and sumsq
    unchanged, sum negated and [min, max] -> [-max, -min] for the z-odd features."""
    odd = z_parity() < 0
    rows = np.ones(len(stats["count"]), bool) if flip is None else np.asarray(flip, bool)
    sel = rows[:, None] & odd[None, :]
    out = dict(stats)
    out["min"] = np.where(sel, -stats["max"], stats["min"])
    out["max"] = np.where(sel, -stats["min"], stats["max"])
    out["sum"] = np.where(sel, -stats["sum"], stats["sum"])
    return out


def ring_geometry(catalogue: ModuleCatalogue) -> dict[str, np.ndarray]:
    """Per ring of ``catalogue.table()``: ring key columns (R, 4) (``RING_COLUMNS``), n_phi, hit
    count, mean r and z, rms radius of the hits about (r, z) ("spread"), fraction of the hits at
    z < 0 ("neg_fraction"), phi phase and its coherence.

    The phase is the hit-weighted circular mean of (module centre phi - 2 pi (phi_module + 1/2) /
    n_phi), i.e. where module 0 starts; coherence is the mean resultant length of that average (~1
    when the phi_module numbering is uniform and increasing with phi, ~0 when it is not)."""
    modules, ring, pm, n_phi = catalogue.table()
    rows = catalogue.rows()
    n_ring = len(n_phi)
    keys = np.zeros((n_ring, len(RING_COLUMNS)), np.int64)
    keys[ring] = rows[:, 1:5]
    ids, sums = catalogue.module_sums()
    s = np.zeros((len(modules), _SUM_COLUMNS))
    if len(ids) and len(modules):
        pos = np.searchsorted(ids, modules).clip(max=len(ids) - 1)
        found = ids[pos] == modules
        s[found] = sums[pos[found]]
    per_ring = np.stack([np.bincount(ring, weights=v, minlength=n_ring) for v in s.T], axis=1)
    count = per_ring[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        r, z = per_ring[:, 1] / count, per_ring[:, 2] / count
        spread = np.sqrt(np.maximum(per_ring[:, 5] / count - r * r + per_ring[:, 6] / count - z * z, 0.0))
        offset = 2 * np.pi * (pm + 0.5) / n_phi[ring]
        co, so = np.cos(offset), np.sin(offset)
        c = np.bincount(ring, weights=s[:, 3] * co + s[:, 4] * so, minlength=n_ring)
        sn = np.bincount(ring, weights=s[:, 4] * co - s[:, 3] * so, minlength=n_ring)
        coherence = np.hypot(c, sn) / count
        neg_fraction = per_ring[:, 7] / count
    return {
        "key": keys,
        "n_phi": n_phi,
        "count": count,
        "r": r,
        "z": z,
        "spread": spread,
        "neg_fraction": neg_fraction,
        "phase": np.arctan2(sn, c),
        "coherence": np.nan_to_num(coherence),
    }


def mirror_rings(catalogue: ModuleCatalogue, return_reasons: bool = False):
    """(R,) index of each ring's z-mirror ring in ``catalogue.table()`` order, -1 where none.

    Found geometrically from the training hits (eta_module numbering differs between ATLAS
    ntuples and the built-in simulation). The mirror of ring A is the ring B of the same hardware
    and layer_disk, barrel_endcap -> -barrel_endcap, nearest to A's mirror image (r_A, -z_A), and
    it is accepted when

    * the match is mutual (A is also the ring nearest to B's mirror image);
    * the mismatch |(r_A - r_B, z_A + z_B)| is below ``MIRROR_POSITION_TOLERANCE`` x the ring
      spacing, the distance from A (or B, the smaller) to the nearest other ring of its own
      layer/disk: the mirror image is then unambiguously closer to B than to any other ring
      (a layer/disk with a single ring uses the rms radius of its hits about the ring centre
      instead). The ring centres are means of the training hits, with a statistical error of
      spread / sqrt(count) each (strip space points scatter well beyond their module in z), so
      the tolerance widens to 3 sigma of the mismatch where that is larger, up to 1.5 x the base
      (3/4 of the ring spacing);
    * both have the same n_phi, a coherent phase (``MIN_PHASE_COHERENCE``) and phases that agree
      within ``MIRROR_PHASE_TOLERANCE`` x the module pitch, so the relative-placement bins of
      the two sides describe the same geometry.

    A barrel ring at z ~ 0 can be its own mirror if, besides, at least
    ``MIN_SELF_MIRROR_SIDE_FRACTION`` of its hits lie on either side of z = 0 (a ring next to z = 0
    whose true mirror is missing has its hit centre near z = 0 too when only its inner end is
    illuminated). With ``return_reasons`` also returns an (R,) string array: "ok", "no
    candidate", "not mutual", "position", "n_phi", "phase".
    """
    g = ring_geometry(catalogue)
    n_ring = len(g["n_phi"])
    mirror = np.full(n_ring, -1, np.int64)
    reason = np.full(n_ring, "no candidate", dtype=object)
    if n_ring == 0:
        return (mirror, reason) if return_reasons else mirror
    key = g["key"]
    valid = g["count"] > 0
    rz = np.stack([g["r"], g["z"]], axis=1)
    layer = key[:, [0, 1, 2]]  # hardware, barrel_endcap, layer_disk
    spacing = np.full(n_ring, np.inf)
    for lay in np.unique(layer[valid], axis=0):
        idx = np.flatnonzero(valid & (layer == lay).all(1))
        if len(idx) > 1:
            d = np.linalg.norm(rz[idx, None, :] - rz[None, idx, :], axis=2)
            np.fill_diagonal(d, np.inf)
            spacing[idx] = d.min(1)
    base = np.where(np.isfinite(spacing), MIRROR_POSITION_TOLERANCE * spacing, g["spread"])
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.nan_to_num(g["spread"] ** 2 / g["count"])  # variance of the ring centre
    nearest = np.full(n_ring, -1, np.int64)
    distance = np.full(n_ring, np.inf)
    for i in np.flatnonzero(valid):
        hw, be, ld = layer[i]
        cand = np.flatnonzero(valid & (layer[:, 0] == hw) & (layer[:, 1] == -be) & (layer[:, 2] == ld))
        if len(cand) == 0:
            continue
        d = np.hypot(rz[cand, 0] - rz[i, 0], rz[cand, 1] + rz[i, 1])
        nearest[i], distance[i] = cand[np.argmin(d)], d.min()
    for i in np.flatnonzero(nearest >= 0):
        j = nearest[i]
        pitch = 2 * np.pi / g["n_phi"][i]
        dphase = np.angle(np.exp(1j * (g["phase"][i] - g["phase"][j])))
        if nearest[j] != i:
            reason[i] = "not mutual"
        elif distance[i] > _position_tolerance(min(base[i], base[j]), np.sqrt(var[i] + var[j])) or (
            i == j and min(g["neg_fraction"][i], 1 - g["neg_fraction"][i]) < MIN_SELF_MIRROR_SIDE_FRACTION
        ):
            reason[i] = "position"
        elif g["n_phi"][i] != g["n_phi"][j]:
            reason[i] = "n_phi"
        elif (
            min(g["coherence"][i], g["coherence"][j]) < MIN_PHASE_COHERENCE
            or abs(dphase) > MIRROR_PHASE_TOLERANCE * pitch
        ):
            reason[i] = "phase"
        else:
            mirror[i], reason[i] = j, "ok"
    return (mirror, reason) if return_reasons else mirror


def _position_tolerance(base: float, sigma: float) -> float:
    """Largest accepted ring/mirror mismatch: ``base``, widened to 3 ``sigma`` (the statistical
    error of the mismatch) but at most to 1.5 x ``base``."""
    return max(base, min(3.0 * sigma, 1.5 * base))


def _delta_bin(pm_a, n_a, pm_b, n_b) -> np.ndarray:
    """Bin of the relative placement. delta * 2 n_B has fractional parts in steps of 1/n_A, so
    the bin edges are shifted by half a step (1/(2 n_A)): no value sits on an edge, and a pair
    and its rotated copy can never round into different bins."""
    delta = (pm_b + 0.5) / n_b - (pm_a + 0.5) / n_a
    delta = delta - np.floor(delta + 0.5)  # wrap to [-1/2, 1/2)
    return np.floor(delta * 2 * n_b + 0.5 / n_a).astype(np.int64)


def symmetrise(
    pairs: np.ndarray, stats: dict[str, np.ndarray], catalogue: ModuleCatalogue, z_mirror: bool = False
):
    """Expand pair statistics to all rotation-equivalent pairs (and z-mirrored ones: ``z_mirror``).

    ``pairs`` (P, 2) int64 module ids; ``stats``: count (P,), min/max/sum/sumsq (P, F).
    Returns (pairs', stats') with classes merged and expanded. Pairs whose modules are not in the
    catalogue are kept as they are.
    """
    modules, ring, pm, n_phi = catalogue.table()
    if len(pairs) == 0 or len(modules) == 0:
        return pairs, stats
    ia = np.searchsorted(modules, pairs[:, 0]).clip(max=len(modules) - 1)
    ib = np.searchsorted(modules, pairs[:, 1]).clip(max=len(modules) - 1)
    known = (modules[ia] == pairs[:, 0]) & (modules[ib] == pairs[:, 1])
    ra, rb = ring[ia[known]], ring[ib[known]]
    pa, pb = pm[ia[known]], pm[ib[known]]
    bins = _delta_bin(pa, n_phi[ra], pb, n_phi[rb])
    classes, cls = np.unique(np.stack([ra, rb, bins], 1), axis=0, return_inverse=True)
    cls = cls.reshape(-1)
    c = len(classes)
    merged = _group_stats({k: v[known] for k, v in stats.items()}, cls, c)
    if z_mirror:
        classes, merged = _merge_z_mirror(classes, merged, mirror_rings(catalogue))

    out_cls, src_mod, dst_mod = _expand_classes(classes, modules, ring, pm, n_phi)
    new_pairs = np.stack([src_mod, dst_mod], 1)
    out = {k: v[out_cls] for k, v in merged.items()}
    # pairs outside the catalogue survive unchanged
    unknown = ~known
    if unknown.any():
        new_pairs = np.concatenate([new_pairs, pairs[unknown]])
        out = {k: np.concatenate([out[k], stats[k][unknown]]) for k in out}
    uniq, first = np.unique(new_pairs, axis=0, return_index=True)
    return uniq, {k: v[first] for k, v in out.items()}


def _expand_classes(classes: np.ndarray, modules, ring, pm, n_phi):
    """Concrete module pairs of pair classes (ring A, ring B, bin) (``catalogue.table()`` arrays).

    Returns (class row, source module, destination module) for every catalogue module i of ring
    A and j of ring B whose relative placement falls in the class bin (no pair of a module with
    itself)."""
    c = len(classes)
    # for every class and every phi index i of ring A, the j of ring B in the class bin
    ca, cb, cbin = classes[:, 0], classes[:, 1], classes[:, 2]
    n_a, n_b = n_phi[ca], n_phi[cb]
    rep = np.repeat(np.arange(c), n_a)
    i = np.arange(len(rep)) - np.repeat(np.cumsum(n_a) - n_a, n_a)
    x = n_b[rep] * (i + 0.5) / n_a[rep] + cbin[rep] / 2.0 - 0.5
    cand_cls, cand_i, cand_j = [], [], []
    for shift in (-1, 0, 1):
        j = np.ceil(x).astype(np.int64) + shift
        j = np.mod(j, n_b[rep])
        ok = _delta_bin(i, n_a[rep], j, n_b[rep]) == cbin[rep]
        cand_cls.append(rep[ok])
        cand_i.append(i[ok])
        cand_j.append(j[ok])
    cand_cls, cand_i, cand_j = (np.concatenate(a) for a in (cand_cls, cand_i, cand_j))
    key = np.unique(np.stack([cand_cls, cand_i, cand_j], 1), axis=0)
    cand_cls, cand_i, cand_j = key[:, 0], key[:, 1], key[:, 2]
    # (ring, phi index) -> catalogue modules (CSR over modules sorted by ring, phi index)
    order = np.lexsort((pm, ring))
    rp = ring[order] * (n_phi.max() + 1) + pm[order]
    src_lo = np.searchsorted(rp, ca[cand_cls] * (n_phi.max() + 1) + cand_i, side="left")
    src_hi = np.searchsorted(rp, ca[cand_cls] * (n_phi.max() + 1) + cand_i, side="right")
    dst_lo = np.searchsorted(rp, cb[cand_cls] * (n_phi.max() + 1) + cand_j, side="left")
    dst_hi = np.searchsorted(rp, cb[cand_cls] * (n_phi.max() + 1) + cand_j, side="right")
    n_src, n_dst = src_hi - src_lo, dst_hi - dst_lo
    n_prod = n_src * n_dst
    e = np.repeat(np.arange(len(cand_cls)), n_prod)
    local = np.arange(len(e)) - np.repeat(np.cumsum(n_prod) - n_prod, n_prod)
    src_mod = modules[order[src_lo[e] + local // np.maximum(n_dst[e], 1)]]
    dst_mod = modules[order[dst_lo[e] + local % np.maximum(n_dst[e], 1)]]
    keep = src_mod != dst_mod
    return cand_cls[e][keep], src_mod[keep], dst_mod[keep]


def _ranges(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query, (index of the query, position in ``sorted_keys``) of every equal key."""
    lo = np.searchsorted(sorted_keys, queries, side="left")
    n = np.searchsorted(sorted_keys, queries, side="right") - lo
    q = np.repeat(np.arange(len(queries)), n)
    return q, lo[q] + np.arange(len(q)) - np.repeat(np.cumsum(n) - n, n)


def symmetrise_triplets(triplets: np.ndarray, stats: dict[str, np.ndarray], catalogue: ModuleCatalogue):
    """``symmetrise`` for module triplets (A, B, C): φ rotation only (no z mirror).

    A class is (ring A, ring B, ring C, bin of A -> B, bin of B -> C) (relative placements as for
    pairs). Each class is expanded to every concrete triplet: the concrete pairs of its A -> B
    class joined on the middle module with the concrete pairs of its B -> C class. Triplets whose
    modules are not in the catalogue are kept as they are.
    """
    modules, ring, pm, n_phi = catalogue.table()
    if len(triplets) == 0 or len(modules) == 0:
        return triplets, stats
    idx = np.searchsorted(modules, triplets).clip(max=len(modules) - 1)
    known = (modules[idx] == triplets).all(1)
    ia, ib, ic = idx[known].T
    ra, rb, rc = ring[ia], ring[ib], ring[ic]
    b_ab = _delta_bin(pm[ia], n_phi[ra], pm[ib], n_phi[rb])
    b_bc = _delta_bin(pm[ib], n_phi[rb], pm[ic], n_phi[rc])
    classes, cls = np.unique(np.stack([ra, rb, rc, b_ab, b_bc], 1), axis=0, return_inverse=True)
    merged = _group_stats({k: v[known] for k, v in stats.items()}, cls.reshape(-1), len(classes))
    ab, ab_of = np.unique(classes[:, [0, 1, 3]], axis=0, return_inverse=True)
    bc, bc_of = np.unique(classes[:, [1, 2, 4]], axis=0, return_inverse=True)
    ab_of, bc_of = ab_of.reshape(-1), bc_of.reshape(-1)
    # concrete A -> B pairs of each triplet class
    e1_cls, e1_a, e1_b = _expand_classes(ab, modules, ring, pm, n_phi)
    o1 = np.argsort(e1_cls, kind="stable")
    t, r1 = _ranges(e1_cls[o1], ab_of)
    a_mod, b_mod = e1_a[o1[r1]], e1_b[o1[r1]]
    # joined with the concrete B -> C pairs of the class starting at the same middle module
    e2_cls, e2_b, e2_c = _expand_classes(bc, modules, ring, pm, n_phi)
    m = len(modules)
    key2 = e2_cls * m + np.searchsorted(modules, e2_b)
    o2 = np.argsort(key2, kind="stable")
    q, r2 = _ranges(key2[o2], bc_of[t] * m + np.searchsorted(modules, b_mod))
    new = np.stack([a_mod[q], b_mod[q], e2_c[o2[r2]]], 1)
    out = {k: v[t[q]] for k, v in merged.items()}
    unknown = ~known
    if unknown.any():
        new = np.concatenate([new, triplets[unknown]])
        out = {k: np.concatenate([out[k], stats[k][unknown]]) for k in out}
    uniq, first = np.unique(new, axis=0, return_index=True)
    return uniq, {k: v[first] for k, v in out.items()}


def _group_stats(stats: dict[str, np.ndarray], group: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """Pair statistics merged per group: counts, sums and sums of squares added, min/max taken."""
    f = stats["min"].shape[1]
    out = {
        "count": np.bincount(group, weights=stats["count"], minlength=n_groups).astype(np.int64),
        "min": np.full((n_groups, f), np.inf, np.float32),
        "max": np.full((n_groups, f), -np.inf, np.float32),
        "sum": np.zeros((n_groups, f)),
        "sumsq": np.zeros((n_groups, f)),
    }
    np.minimum.at(out["min"], group, stats["min"])
    np.maximum.at(out["max"], group, stats["max"])
    np.add.at(out["sum"], group, stats["sum"])
    np.add.at(out["sumsq"], group, stats["sumsq"])
    return out


def _merge_z_mirror(classes: np.ndarray, merged: dict[str, np.ndarray], mirror: np.ndarray):
    """Merge every class (A, B, bin) with its z mirror (mirror(A), mirror(B), bin).

    The canonical member of a mirror couple is the lexicographically smaller triple; the other
    member's statistics are flipped (``mirror_stats``) into its orientation before merging. Returns
    the classes to expand, each mirrored couple as both members with the statistics in their own
    orientation; a class that is its own mirror (both rings at z ~ 0) gets the symmetrised
    statistics (same count, the mean of its statistics and their mirror image). Classes with a
    ring without mirror are returned unchanged.
    """
    ma, mb = mirror[classes[:, 0]], mirror[classes[:, 1]]
    ok = (ma >= 0) & (mb >= 0)
    if not ok.any():
        return classes, merged
    mclasses = classes.copy()
    mclasses[ok, 0], mclasses[ok, 1] = ma[ok], mb[ok]
    # canonical member: lexicographically smaller of the class and its mirror
    diff = mclasses != classes
    first = np.argmax(diff, axis=1)
    rows = np.arange(len(classes))
    flip = ok & diff.any(1) & (mclasses[rows, first] < classes[rows, first])
    canon = np.where(flip[:, None], mclasses, classes)
    oriented = mirror_stats(merged, flip)
    keys, inv = np.unique(canon, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    k = len(keys)
    out = _group_stats(oriented, inv, k)
    # per canonical class: mirrorable? its own mirror?
    k_ok = np.zeros(k, bool)
    k_ok[inv[ok]] = True
    k_mirror = keys.copy()
    k_mirror[k_ok, 0], k_mirror[k_ok, 1] = mirror[keys[k_ok, 0]], mirror[keys[k_ok, 1]]
    self_mirror = k_ok & (k_mirror == keys).all(1)
    if self_mirror.any():
        sym = mirror_stats(out, self_mirror)
        out["min"] = np.minimum(out["min"], sym["min"])
        out["max"] = np.maximum(out["max"], sym["max"])
        out["sum"] = 0.5 * (out["sum"] + sym["sum"])
    partner = k_ok & ~self_mirror
    flipped = mirror_stats({name: v[partner] for name, v in out.items()})
    all_classes = np.concatenate([keys, k_mirror[partner]])
    all_stats = {name: np.concatenate([out[name], flipped[name]]) for name in out}
    return all_classes, all_stats


#: module columns that name a layer (barrel) or disk (endcap) side, without the z/eta ring
LAYER_COLUMNS = ("hardware", "barrel_endcap", "layer_disk")


def width_prior(
    pairs: np.ndarray, count: np.ndarray, width: np.ndarray, catalogue: ModuleCatalogue, min_count: int = 20
) -> np.ndarray:
    """(P, F) typical window width of each pair's layer pair, for widening rarely seen pairs.

    ``pairs`` may also be (T, 3) module triplets: the prior is then their layer triplet's.

    The [min, max] of n training doublets covers a new doublet with probability (n-1)/(n+1):
    a pair seen 1-5 times has a window far narrower than its true one (on the default campaign
    such pairs lost 20-100 % of their held-out target edges). Pairs of the same two layers/disks
    have windows of similar width (set by the beam spot, the pT threshold and the layer
    spacing), so the median width over the well-populated pairs (count >= ``min_count``) of the
    same layer pair is a prior for the width of a rare one; layer pairs without any such pair
    take the median over all well-populated pairs.
    """
    rows = catalogue.rows()
    modules, layer_of = rows[:, 0], rows[:, 1:4]  # hardware, barrel_endcap, layer_disk
    prior = np.zeros(width.shape, np.float32)
    if len(pairs) == 0:
        return prior
    known = np.zeros(len(pairs), bool)
    idx = np.zeros(pairs.shape, np.int64)
    if len(modules):
        idx = np.searchsorted(modules, pairs).clip(max=len(modules) - 1)
        known = (modules[idx] == pairs).all(1)
    key = np.full((len(pairs), 3 * pairs.shape[1]), -1, np.int64)
    key[known] = layer_of[idx[known]].reshape(int(known.sum()), -1)
    _, group = np.unique(key, axis=0, return_inverse=True)
    group = group.reshape(-1)
    good = (count >= min_count) & known
    fallback = np.median(width[good], axis=0) if good.any() else np.median(width, axis=0)
    prior[:] = fallback
    if good.any():
        g, med = _group_median(group[good], width[good])
        pos = np.searchsorted(g, group).clip(max=len(g) - 1)
        has = g[pos] == group
        prior[has] = med[pos[has]]
    return prior


def _group_median(group: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct groups (G,), per-group median of each column of ``values`` (G, F))."""
    g, n = np.unique(group, return_counts=True)
    start = np.cumsum(n) - n
    lo, hi = start + (n - 1) // 2, start + n // 2
    out = np.zeros((len(g), values.shape[1]), values.dtype)
    for f in range(values.shape[1]):  # a few features
        v = values[np.lexsort((values[:, f], group)), f]
        out[:, f] = (v[lo] + v[hi]) / 2  # as np.median
    return g, out
