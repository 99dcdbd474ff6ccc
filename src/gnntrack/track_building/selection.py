"""Candidate selection: a transverse-momentum estimate of every track candidate and a cut on it.

The pipeline looks for charged particles above a pT threshold (the target selection), but the GNN
also links hits of softer particles: a sub-GeV particle curls up and leaves many short, pure
fragments, each of which is a track candidate no target can match. A tracking physicist removes
those with a cut on the candidate's own pT estimate, as a track finder does with its seed pT cut.

The estimate is a circle fit in the transverse plane constrained to pass through the beam line
(primary particles do): x² + y² + D·x + E·y = 0 fitted to the candidate's spacepoints by linear
least squares, radius R = √(D² + E²) / 2 and pT = 0.3 · B · R (GeV, tesla, metres). Hits on a
line through the beam line give an infinite radius (pT = inf). Candidates from secondary
vertices far from the beam line get a biased estimate; they are not targets.

One implementation serves numpy and torch candidates (torch on any device, for the GPU chain).
"""

from __future__ import annotations

import numpy as np
import torch

from ..tracks import Tracks

GEV_PER_TESLA_METRE = 0.299792458  # pT [GeV] = 0.2998 * B [T] * R [m]


def candidate_pt(tracks: Tracks, x, y, bfield: float) -> np.ndarray | torch.Tensor:
    """Beam-line-constrained circle-fit pT (GeV) of every candidate; x, y in mm; B in tesla.

    Returns an array of the tracks' kind (numpy, or a torch tensor on the tracks' device).
    """
    as_numpy = isinstance(tracks.hits, np.ndarray)
    hits = torch.as_tensor(tracks.hits)
    offsets = torch.as_tensor(tracks.offsets)
    device = hits.device
    n = len(offsets) - 1
    if n == 0:
        out = torch.zeros(0, dtype=torch.float64, device=device)
        return out.numpy() if as_numpy else out
    xs = torch.as_tensor(x, device=device).to(torch.float64)[hits]
    ys = torch.as_tensor(y, device=device).to(torch.float64)[hits]
    track = torch.repeat_interleave(torch.arange(n, device=device), offsets[1:] - offsets[:-1])
    rr = xs * xs + ys * ys

    def tsum(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, track, v)

    sxx, sxy, syy = tsum(xs * xs), tsum(xs * ys), tsum(ys * ys)
    bx, by = -tsum(xs * rr), -tsum(ys * rr)
    det = sxx * syy - sxy * sxy
    d = (syy * bx - sxy * by) / det
    e = (sxx * by - sxy * bx) / det
    radius_mm = 0.5 * torch.sqrt(d * d + e * e)
    # collinear with the beam line (det ~ 0 relative to the moments): a straight track
    straight = ~torch.isfinite(radius_mm) | (det.abs() <= 1e-12 * (sxx * syy).clamp_min(1e-300))
    pt = GEV_PER_TESLA_METRE * float(bfield) * radius_mm / 1000.0
    pt = torch.where(straight, torch.full_like(pt, float("inf")), pt)
    return pt.cpu().numpy() if as_numpy else pt


def select_tracks(tracks: Tracks, keep) -> Tracks:
    """The candidates where ``keep`` (bool per candidate) is true, in their order."""
    if isinstance(tracks.hits, np.ndarray):
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            return tracks
        lengths = np.diff(tracks.offsets)
        offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths[keep])
        return Tracks(tracks.hits[np.repeat(keep, lengths)], offsets)
    keep = torch.as_tensor(keep, dtype=torch.bool, device=tracks.hits.device)
    lengths = tracks.offsets[1:] - tracks.offsets[:-1]
    offsets = torch.zeros(int(keep.sum()) + 1, dtype=torch.long, device=tracks.hits.device)
    offsets[1:] = torch.cumsum(lengths[keep], 0)
    return Tracks(tracks.hits[torch.repeat_interleave(keep, lengths)], offsets)


def select_min_pt(tracks: Tracks, x, y, min_pt: float, bfield: float) -> Tracks:
    """The candidates whose circle-fit pT is at least ``min_pt`` GeV."""
    return select_tracks(tracks, candidate_pt(tracks, x, y, bfield) >= float(min_pt))
