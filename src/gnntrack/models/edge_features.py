"""Geometric edge features computed inside the models from their own node-feature columns.

Computing them in ``forward`` keeps exported models self-contained: C++ inference passes only
the node matrix and the edge list. Coordinates are recovered from the scaled columns named
``r``, ``phi``, ``z`` (and ``eta``, else derived from r and z); features, directed
source -> target, each brought to O(1) on true edges (a true doublet spans ~0.1 m and a few
10 mrad; unscaled, these differences would be drowned by the O(1) node features at the first
LayerNorm and the classifier would learn them very slowly):

- ``dr``, ``dz`` in units of 10 cm, ``dphi`` (wrapped to [-π, π)) and ``deta`` in units of 0.1,
- ``phi_slope`` = dφ/dr (rad/m), ``rphi_slope`` = ⟨r⟩ dφ/dr (dimensionless), both clamped,
- optional (not in the default list): ``z0``, the doublet's z at r = 0 in units of 10 cm, and
  ``curvature``, the signed inverse radius (1/m) of the circle through the beam line and both
  hits in the transverse plane, 2 sin(dφ)/chord, ~0.6/m at pT = 1 GeV in 2 T; both clamped.
  They are functions of the others, given explicitly because the beam-spot constraint and the
  pT a doublet implies are what separate true from fake doublets in the dense barrel, and an
  MLP learns such products and ratios only slowly.

The slopes use dφ·dr/(dr²+ε) instead of a division so that same-radius edges (endcap disks)
give 0, not inf/NaN, and the graph exports without branches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

EDGE_FEATURES = ("dr", "dphi", "dz", "deta", "phi_slope", "rphi_slope")
ALL_EDGE_FEATURES = (*EDGE_FEATURES, "z0", "curvature")
_SLOPE_CLAMP = 10.0
_EPS_M2 = 1e-6  # (1 mm)^2 in m^2
_DELTA_UNIT = 10.0  # dr, dz per 10 cm; dphi, deta per 0.1


class EdgeFeatures(nn.Module):
    """(E, len(names)) edge features from node matrix ``x`` and ``edge_index``."""

    def __init__(
        self, node_features: Sequence[str], feature_scales: Mapping[str, float], names: Sequence[str]
    ):
        super().__init__()
        self.names = tuple(names)
        unknown = [n for n in self.names if n not in ALL_EDGE_FEATURES]
        if unknown:
            raise ValueError(f"unknown edge feature(s) {unknown}; choose from {list(ALL_EDGE_FEATURES)}")
        nf = list(node_features)
        need = ["r", "phi", "z"] if self.names else []
        missing = [c for c in need if c not in nf]
        if missing:
            raise ValueError(f"edge features need node feature column(s) {missing}; have {nf}")
        idx = [nf.index(c) for c in need] + ([nf.index("eta")] if "eta" in nf and self.names else [])
        # scales that turn the stored columns back into m, rad, eta
        to_phys = [feature_scales.get(c, 1.0) * f for c, f in zip(need, (1e-3, 1.0, 1e-3))]
        if len(idx) == 4:
            to_phys.append(feature_scales.get("eta", 1.0))
        self.register_buffer("idx", torch.tensor(idx, dtype=torch.long), persistent=False)
        sel = [ALL_EDGE_FEATURES.index(n) for n in self.names]
        self.register_buffer("sel", torch.tensor(sel, dtype=torch.long), persistent=False)
        self.n_out = len(sel)
        self.eps = _EPS_M2
        self.slope_clamp = _SLOPE_CLAMP
        self.delta_unit = _DELTA_UNIT
        self.register_buffer("to_phys", torch.tensor(to_phys, dtype=torch.float32), persistent=False)
        self.has_eta = len(idx) == 4
        self.need_extra = any(n not in EDGE_FEATURES for n in self.names)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        if self.n_out == 0:
            return x.new_zeros((edge_index.shape[1], 0))
        c = x.index_select(1, self.idx).float() * self.to_phys
        if not self.has_eta:
            c = torch.cat([c, torch.asinh(c[:, 2] / c[:, 0].clamp_min(1e-6)).unsqueeze(1)], dim=1)
        src, dst = edge_index[0], edge_index[1]
        # both ends' (r, phi, z, eta) gathered once each (index_select: faster than [idx] on a CPU)
        cs, cd = c.index_select(0, src), c.index_select(0, dst)
        r1, r2 = cs[:, 0], cd[:, 0]
        dr = r2 - r1
        dphi = cd[:, 1] - cs[:, 1]
        dphi = dphi - (2 * math.pi) * torch.round(dphi / (2 * math.pi))
        dz = cd[:, 2] - cs[:, 2]
        deta = cd[:, 3] - cs[:, 3]
        lim = self.slope_clamp
        slope = (dphi * dr / (dr * dr + self.eps)).clamp(-lim, lim)
        rphi = (0.5 * (r2 + r1) * slope).clamp(-lim, lim)
        u = self.delta_unit
        feats = [dr * u, dphi * u, dz * u, deta * u, slope, rphi]  # ALL_EDGE_FEATURES order
        if self.need_extra:
            z0 = (cs[:, 2] - r1 * dz * dr / (dr * dr + self.eps)).mul(u).clamp(-lim, lim)
            chord2 = r1 * r1 + r2 * r2 - 2 * r1 * r2 * torch.cos(dphi)
            curv = (2 * torch.sin(dphi) * chord2.clamp_min(0).sqrt() / (chord2 + self.eps)).clamp(-lim, lim)
            feats += [z0, curv]
        return torch.stack(feats, dim=1).index_select(1, self.sel).to(x.dtype)
