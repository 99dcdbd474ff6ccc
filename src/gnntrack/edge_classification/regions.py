"""η–φ regions of an event for training on a laptop (regional tracking).

A full ⟨μ⟩=200 event is ~10^5 hits and millions of edges; one GNN step on it is slow on a CPU.
Training instead on ``n_eta × n_phi`` regions — each a core bin plus a margin of context hits —
gives the same per-edge task (message passing only sees a few hops) at a fraction of the cost,
and because every model normalises per node/edge (LayerNorm) the trained model is applied to
whole events unchanged.

Edges are kept when both ends lie in the region (core + margin); only edges whose SOURCE hit is
in the core carry loss weight, so every edge is trained once over the set of regions. Edges
longer than the margin that leave their region are not trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import Count, NonNegative


@dataclass
class RegionConfig:
    n_eta: Count = 1
    n_phi: Count = 1
    eta_min: float = -4.0  # inner bin edges; the outermost bins extend to ±inf
    eta_max: float = 4.0
    eta_margin: NonNegative = 0.2
    phi_margin: NonNegative = 0.15  # rad; covers the bending of ~1 GeV tracks between layers

    @property
    def n_regions(self) -> int:
        return self.n_eta * self.n_phi


def _phi_distance(phi: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Angular distance of ``phi`` from the arc [lo, hi) (0 inside), with wrap-around."""
    mid = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    d = np.abs((phi - mid + math.pi) % (2 * math.pi) - math.pi)
    return np.maximum(d - half, 0.0)


def region_masks(eta: np.ndarray, phi: np.ndarray, cfg: RegionConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(hits in region incl. margin, hits in core) boolean masks for every region."""
    eta = np.asarray(eta, np.float64)
    phi = np.asarray(phi, np.float64)
    eta_edges = np.linspace(cfg.eta_min, cfg.eta_max, cfg.n_eta + 1)
    eta_edges[0], eta_edges[-1] = -np.inf, np.inf
    phi_edges = np.linspace(-math.pi, math.pi, cfg.n_phi + 1)
    phi_bin = np.floor((phi + math.pi) / (2 * math.pi) * cfg.n_phi).astype(np.int64) % cfg.n_phi
    out = []
    for i in range(cfg.n_eta):
        lo, hi = eta_edges[i], eta_edges[i + 1]
        eta_core = (eta >= lo) & (eta < hi)
        eta_region = (eta >= lo - cfg.eta_margin) & (eta < hi + cfg.eta_margin)
        for j in range(cfg.n_phi):
            if cfg.n_phi == 1:
                phi_core = np.ones(len(phi), bool)
                phi_region = phi_core
            else:
                phi_core = phi_bin == j
                phi_region = phi_core | (_phi_distance(phi, phi_edges[j], phi_edges[j + 1]) <= cfg.phi_margin)
            out.append((eta_region & phi_region, eta_core & phi_core))
    return out


def region_subgraph(
    edge_index: np.ndarray, region: np.ndarray, core: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Restrict a graph to a region.

    Returns (hit rows of the region, edge positions kept, local edge_index), and the caller
    multiplies loss weights by ``core[edge_index[0, kept]]``.
    """
    nodes = np.flatnonzero(region)
    local = np.full(len(region), -1, np.int64)
    local[nodes] = np.arange(len(nodes))
    kept = (
        np.flatnonzero(region[edge_index[0]] & region[edge_index[1]])
        if edge_index.size
        else np.zeros(0, np.int64)
    )
    return nodes, kept, local[edge_index[:, kept]]
