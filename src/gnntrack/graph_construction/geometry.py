"""Geometric quantities of a hit doublet, shared by module-map building and application.

Building the map and applying it must compute these with the *same* code and dtype, otherwise an
edge that sits exactly on a recorded min/max could fall outside its own window by one rounding
step. Everything here is plain torch, so it runs unchanged on CPU and GPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

#: Doublet quantities used by the GNN4ITk module map (acorn): z-intercept at r=0, phi difference,
#: phi slope dphi/dr, eta difference, and dz/dr.
DOUBLET_FEATURES = ("z0", "dphi", "phi_slope", "deta", "dz_dr")

#: Triplet quantities of the module map's triplet windows (two consecutive doublets a->b, b->c):
#: change of dz/dr and of the phi slope, and the turning angle of the transverse direction
#: (the rotation-invariant analogue of GNN4ITk's diff_dydx). All are invariant under a rotation
#: about the beam axis, like the doublet quantities, so triplet windows can be φ-folded too.
TRIPLET_FEATURES = ("diff_dzdr", "diff_phi_slope", "dalpha")

#: Hit columns needed to build edges (module map or metric learning orientation).
GEOMETRY_COLUMNS = ("r", "phi", "z", "eta")

_MIN_DR = 1e-6  # mm; keeps slopes finite for same-radius doublets (endcap overlaps)


def wrap_phi(dphi: torch.Tensor) -> torch.Tensor:
    """Angle difference mapped to [-pi, pi]."""
    two_pi = 2 * math.pi
    dphi = torch.where(dphi > math.pi, dphi - two_pi, dphi)
    return torch.where(dphi < -math.pi, dphi + two_pi, dphi)


def _at(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    # index_select, not values[index]: on the CPU advanced indexing is several times slower and
    # was 60 % of applying a module map at <mu>=200
    return values.index_select(0, index)


def doublet_dphi(hits: Mapping[str, torch.Tensor], src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """φ difference dst - src in [-π, π] (the ``dphi`` column of ``doublet_features``)."""
    return wrap_phi(_at(hits["phi"], dst) - _at(hits["phi"], src))


def doublet_features(hits: Mapping[str, torch.Tensor], src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(E, len(DOUBLET_FEATURES)) float32 quantities of the doublets src -> dst."""
    r1, r2 = _at(hits["r"], src), _at(hits["r"], dst)
    z1, z2 = _at(hits["z"], src), _at(hits["z"], dst)
    dr = r2 - r1
    dr = torch.where(dr.abs() < _MIN_DR, torch.full_like(dr, _MIN_DR).copysign(dr), dr)
    dz = z2 - z1
    dphi = doublet_dphi(hits, src, dst)
    dz_dr = dz / dr
    z0 = z1 - r1 * dz_dr
    phi_slope = dphi / dr
    deta = _at(hits["eta"], dst) - _at(hits["eta"], src)
    return torch.stack([z0, dphi, phi_slope, deta, dz_dr], dim=1)


def doublet_direction(hits: Mapping[str, torch.Tensor], src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Transverse direction angle atan2(dy, dx) of the doublets src -> dst (from r and φ)."""
    r1, r2 = _at(hits["r"], src), _at(hits["r"], dst)
    p1, p2 = _at(hits["phi"], src), _at(hits["phi"], dst)
    return torch.atan2(r2 * torch.sin(p2) - r1 * torch.sin(p1), r2 * torch.cos(p2) - r1 * torch.cos(p1))


def triplet_features(
    q_in: torch.Tensor, q_out: torch.Tensor, alpha_in: torch.Tensor, alpha_out: torch.Tensor
) -> torch.Tensor:
    """(T, len(TRIPLET_FEATURES)) float32 quantities of the triplets a -> b -> c from the
    ``doublet_features`` (``q_in`` of a -> b, ``q_out`` of b -> c) and ``doublet_direction`` of
    their two doublets. Building and applying the map both go through this function."""
    i_dzdr, i_slope = DOUBLET_FEATURES.index("dz_dr"), DOUBLET_FEATURES.index("phi_slope")
    return torch.stack(
        [
            q_out[:, i_dzdr] - q_in[:, i_dzdr],
            q_out[:, i_slope] - q_in[:, i_slope],
            wrap_phi(alpha_out - alpha_in),
        ],
        dim=1,
    )


def module_ids_as_int64(module_id: np.ndarray) -> np.ndarray:
    """uint64 ATLAS module identifiers reinterpreted as int64 (torch has no full uint64 support)."""
    module_id = np.asarray(module_id)
    if module_id.dtype == np.uint64:
        return module_id.view(np.int64)
    return module_id.astype(np.int64)


def hits_to_tensors(
    hits: Mapping[str, np.ndarray | torch.Tensor],
    columns: tuple[str, ...],
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Torch tensors of the requested hit columns (float32; ``module_id`` as int64) on ``device``."""
    out = {}
    for c in columns:
        v = hits[c]
        if isinstance(v, torch.Tensor):
            out[c] = v.to(device)
            continue
        if c == "module_id":
            out[c] = torch.from_numpy(np.ascontiguousarray(module_ids_as_int64(v))).to(device)
        else:
            out[c] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(device)
    return out


def orient_outward(edge_index: torch.Tensor, hits: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Direct each edge from the hit nearer the beam line (smaller r; smaller |z| on ties) outward,
    and drop duplicate and self edges, so every stage sees one canonical directed edge per pair."""
    if edge_index.numel() == 0:
        return edge_index.reshape(2, 0)
    src, dst = edge_index
    r, z = hits["r"], hits["z"].abs()
    flip = (r[src] > r[dst]) | ((r[src] == r[dst]) & ((z[src] > z[dst]) | ((z[src] == z[dst]) & (src > dst))))
    a = torch.where(flip, dst, src)
    b = torch.where(flip, src, dst)
    keep = a != b
    a, b = a[keep], b[keep]
    n = int(r.shape[0])
    code = torch.unique(a * n + b)
    return torch.stack([code // n, code % n])
