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
"""

from __future__ import annotations

import numpy as np

from ..io.event_store import Event
from .geometry import module_ids_as_int64

RING_COLUMNS = ("hardware", "barrel_endcap", "layer_disk", "eta_module")


class ModuleCatalogue:
    """Modules seen in the training hits with their ring and phi index."""

    def __init__(self):
        self._parts: list[np.ndarray] = []

    def add(self, event: Event) -> None:
        h = event.hits
        rows = np.stack(
            [module_ids_as_int64(h["module_id"])]
            + [np.asarray(h[c], np.int64) for c in (*RING_COLUMNS, "phi_module")],
            axis=1,
        )
        self._parts.append(np.unique(rows, axis=0))
        if len(self._parts) > 32:
            self._parts = [np.unique(np.concatenate(self._parts), axis=0)]

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


def _delta_bin(pm_a, n_a, pm_b, n_b) -> np.ndarray:
    """Bin of the relative placement. delta * 2 n_B has fractional parts in steps of 1/n_A, so
    the bin edges are shifted by half a step (1/(2 n_A)): no value sits on an edge, and a pair
    and its rotated copy can never round into different bins."""
    delta = (pm_b + 0.5) / n_b - (pm_a + 0.5) / n_a
    delta = delta - np.floor(delta + 0.5)  # wrap to [-1/2, 1/2)
    return np.floor(delta * 2 * n_b + 0.5 / n_a).astype(np.int64)


def symmetrise(pairs: np.ndarray, stats: dict[str, np.ndarray], catalogue: ModuleCatalogue):
    """Expand pair statistics to all rotation-equivalent pairs.

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
    f = stats["min"].shape[1]
    merged = {
        "count": np.bincount(cls, weights=stats["count"][known], minlength=c).astype(np.int64),
        "min": np.full((c, f), np.inf, np.float32),
        "max": np.full((c, f), -np.inf, np.float32),
        "sum": np.zeros((c, f)),
        "sumsq": np.zeros((c, f)),
    }
    np.minimum.at(merged["min"], cls, stats["min"][known])
    np.maximum.at(merged["max"], cls, stats["max"][known])
    np.add.at(merged["sum"], cls, stats["sum"][known])
    np.add.at(merged["sumsq"], cls, stats["sumsq"][known])

    # expand: for every class and every phi index i of ring A, the j of ring B in the class bin
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
    out_cls = cand_cls[e]
    keep = src_mod != dst_mod
    new_pairs = np.stack([src_mod[keep], dst_mod[keep]], 1)
    out_cls = out_cls[keep]
    out = {k: v[out_cls] for k, v in merged.items()}
    # pairs outside the catalogue survive unchanged
    unknown = ~known
    if unknown.any():
        new_pairs = np.concatenate([new_pairs, pairs[unknown]])
        out = {k: np.concatenate([out[k], stats[k][unknown]]) for k in out}
    uniq, first = np.unique(new_pairs, axis=0, return_index=True)
    return uniq, {k: v[first] for k, v in out.items()}


#: module columns that name a layer (barrel) or disk (endcap) side, without the z/eta ring
LAYER_COLUMNS = ("hardware", "barrel_endcap", "layer_disk")


def width_prior(
    pairs: np.ndarray, count: np.ndarray, width: np.ndarray, catalogue: ModuleCatalogue, min_count: int = 20
) -> np.ndarray:
    """(P, F) typical window width of each pair's layer pair, for widening rarely seen pairs.

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
    ia = np.searchsorted(modules, pairs[:, 0]).clip(max=max(len(modules) - 1, 0))
    ib = np.searchsorted(modules, pairs[:, 1]).clip(max=max(len(modules) - 1, 0))
    known = (len(modules) > 0) & (modules[ia] == pairs[:, 0]) & (modules[ib] == pairs[:, 1])
    key = np.full((len(pairs), 6), -1, np.int64)
    key[known] = np.concatenate([layer_of[ia[known]], layer_of[ib[known]]], axis=1)
    _, group = np.unique(key, axis=0, return_inverse=True)
    group = group.reshape(-1)
    good = (count >= min_count) & known
    fallback = np.median(width[good], axis=0) if good.any() else np.median(width, axis=0)
    prior[:] = fallback
    for g in np.unique(group[good]):
        sel = group == g
        prior[sel] = np.median(width[sel & good], axis=0)
    return prior
