"""Where efficiency is lost: every target particle that is not reconstructed, by cause.

For a particle with n spacepoints (matching fraction f, minimum track length m), the causes are
checked in the order the pipeline could lose it; the first that applies is its cause:

- ``graph``: the graph's true edges of the particle do not connect more than f·n of its hits
  (a missing edge in graph construction; no edge classifier could recover it);
- ``below_cut``: they do, but its true edges that pass the edge score cut do not (the classifier
  split the particle);
- ``too_short``: the largest piece that passes has more than f·n hits but fewer than m
  (candidates that short are dropped);
- ``split``: the passing edges hold it together, yet no candidate holds more than f·n of its
  hits (the track builder split it, e.g. the walkthrough at a junction);
- ``merged``: a candidate holds more than f·n of its hits but is not pure (fake edges above the
  cut joined hits of other particles);
- ``other``: none of the above (a candidate holds it and is pure, but matching still failed,
  e.g. hits shared by several particles).

``LossBreakdown`` sums the causes over events, overall and per |η| and pT bin; ``score_histograms``
gives the edge-score distributions of target, non-target true and fake edges; ``classify_fakes``
says what the candidates two-way matching leaves unmatched are: pure fragments (more than f of
their hits from one particle, but not more than f of that particle's hits) of a target particle,
of a non-target particle below ``pt_low`` GeV or of another non-target particle, impure candidates,
or noise only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..metrics.tracks import apply_style, filter_tracks, match_pairs

CAUSES = ("graph", "below_cut", "too_short", "split", "merged", "other")
FAKE_KINDS = ("fragment_target", "fragment_low_pt", "fragment_other", "impure", "noise")
ABS_ETA_BINS = (0.0, 1.0, 2.0, 3.0, 4.0)
PT_BINS = (1.0, 2.0, 5.0, 10.0, float("inf"))  # GeV


def _largest_piece(hits: np.ndarray, edges: np.ndarray) -> int:
    """Hits in the largest connected piece of ``hits`` joined by ``edges`` (2, k) (hit ids)."""
    if len(hits) == 0:
        return 0
    if edges.shape[1] == 0:
        return 1
    local = np.searchsorted(hits, edges)
    n = len(hits)
    adj = coo_matrix((np.ones(edges.shape[1]), (local[0], local[1])), shape=(n, n))
    _, labels = connected_components(adj, directed=False)
    return int(np.bincount(labels).max())


def classify_event(
    event,
    edge_index: np.ndarray,
    y: np.ndarray,
    edge_particle: np.ndarray,
    scores: np.ndarray,
    cut: float,
    tracks,
    target: np.ndarray,
    fraction: float = 0.5,
    min_hits: int = 3,
) -> dict[int, str]:
    """Cause (one of ``CAUSES``) for every target particle the two-way matching misses.

    ``edge_index``/``y``/``edge_particle``/``scores``: the scored graph (truth label, particle row
    of a true edge, GNN score); ``tracks``: the event's candidates; ``target``: particle mask.
    """
    n_particles = len(target)
    tracks = filter_tracks(tracks, min_hits)
    pairs = match_pairs(tracks, event.hit_particle, event.n_hits, n_particles)
    reco = apply_style(pairs, "two_way", fraction).particle_reconstructed
    lost = np.flatnonzero(np.asarray(target, bool) & ~reco)
    if len(lost) == 0:
        return {}
    hp = np.asarray(event.hit_particle)
    y = np.asarray(y, bool)
    ep = np.asarray(edge_particle)
    passed = np.asarray(scores) > cut
    t = tracks.numpy()
    track_of_hit_rows = np.repeat(np.arange(len(t)), t.lengths())
    causes = {}
    for p in lost:
        hits = np.unique(hp[0, hp[1] == p])
        n = len(hits)
        own = y & (ep == p)
        need = fraction * n
        in_graph = _largest_piece(hits, edge_index[:, own])
        if in_graph <= need:
            causes[int(p)] = "graph"
            continue
        above = _largest_piece(hits, edge_index[:, own & passed])
        if above <= need:
            causes[int(p)] = "below_cut"
            continue
        if above < min_hits:
            causes[int(p)] = "too_short"
            continue
        on = np.isin(t.hits, hits)
        shared = np.bincount(track_of_hit_rows[on], minlength=len(t)) if len(t) else np.zeros(0, int)
        best = int(np.argmax(shared)) if len(shared) else -1
        if best < 0 or shared[best] <= need:
            causes[int(p)] = "split"
        elif shared[best] <= fraction * t.lengths()[best]:
            causes[int(p)] = "merged"
        else:
            causes[int(p)] = "other"
    return causes


def _bin(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    return np.clip(np.digitize(values, edges[1:-1]), 0, len(edges) - 2)


class LossBreakdown:
    """Counts of lost target particles by cause, overall and per |η| and pT bin (summable)."""

    def __init__(self, eta_bins: Sequence[float] = ABS_ETA_BINS, pt_bins: Sequence[float] = PT_BINS):
        self.eta_bins, self.pt_bins = tuple(eta_bins), tuple(pt_bins)
        self.n_target = 0
        self.n_target_eta = np.zeros(len(eta_bins) - 1, np.int64)
        self.n_target_pt = np.zeros(len(pt_bins) - 1, np.int64)
        self.by_eta = {c: np.zeros(len(eta_bins) - 1, np.int64) for c in CAUSES}
        self.by_pt = {c: np.zeros(len(pt_bins) - 1, np.int64) for c in CAUSES}

    def add(self, causes: dict[int, str], particles: dict, target: np.ndarray) -> None:
        abs_eta = np.abs(np.asarray(particles["eta"], float))
        pt = np.asarray(particles["pt"], float)
        tgt = np.flatnonzero(target)
        self.n_target += len(tgt)
        np.add.at(self.n_target_eta, _bin(abs_eta[tgt], self.eta_bins), 1)
        np.add.at(self.n_target_pt, _bin(pt[tgt], self.pt_bins), 1)
        for p, cause in causes.items():
            self.by_eta[cause][_bin(abs_eta[[p]], self.eta_bins)[0]] += 1
            self.by_pt[cause][_bin(pt[[p]], self.pt_bins)[0]] += 1

    def summary(self) -> dict:
        def frac(k, n):
            return [float(a) / float(b) if b else None for a, b in zip(np.atleast_1d(k), np.atleast_1d(n))]

        total = {c: int(v.sum()) for c, v in self.by_eta.items()}
        return {
            "n_target": self.n_target,
            "n_lost": int(sum(total.values())),
            "lost": total,
            "lost_fraction": {c: (v / self.n_target if self.n_target else None) for c, v in total.items()},
            "abs_eta_bins": list(self.eta_bins),
            "pt_bins_gev": [b if np.isfinite(b) else None for b in self.pt_bins],
            "n_target_per_abs_eta": self.n_target_eta.tolist(),
            "n_target_per_pt": self.n_target_pt.tolist(),
            "lost_fraction_per_abs_eta": {c: frac(v, self.n_target_eta) for c, v in self.by_eta.items()},
            "lost_fraction_per_pt": {c: frac(v, self.n_target_pt) for c, v in self.by_pt.items()},
        }


def score_histograms(scores, y, y_target, bins: int = 50) -> dict:
    """Normalised GNN score distributions of target, non-target true and fake edges."""
    scores, y, y_target = np.asarray(scores), np.asarray(y, bool), np.asarray(y_target, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = {"bin_edges": edges.tolist()}
    for name, mask in (("target", y_target), ("non_target_true", y & ~y_target), ("fake", ~y)):
        counts, _ = np.histogram(scores[mask], edges)
        out[name] = {"n": int(mask.sum()), "counts": counts.tolist()}
    return out


def classify_fakes(
    event, tracks, target: np.ndarray, fraction: float = 0.5, min_hits: int = 3, pt_low: float = 1.0
) -> dict[str, int]:
    """Counts of the candidates (>= ``min_hits``) two-way matching leaves unmatched, by kind."""
    tracks = filter_tracks(tracks, min_hits)
    n_particles = len(target)
    pairs = match_pairs(tracks, event.hit_particle, event.n_hits, n_particles)
    matched = apply_style(pairs, "two_way", fraction).track_matched
    out = dict.fromkeys(FAKE_KINDS, 0)
    pt = np.asarray(event.particles["pt"], float)
    best = np.full(pairs.n_tracks, -1)
    if len(pairs.track):
        order = np.lexsort((-pairs.shared, pairs.track))  # per track, most shared first
        first = order[np.r_[True, pairs.track[order][1:] != pairs.track[order][:-1]]]
        best[pairs.track[first]] = first
    for t in np.flatnonzero(~matched):
        i = best[t]
        if i < 0:
            out["noise"] += 1
        elif pairs.purity[i] <= fraction:
            out["impure"] += 1
        else:
            p = pairs.particle[i]
            kind = (
                "fragment_target"
                if target[p]
                else ("fragment_low_pt" if pt[p] < pt_low else "fragment_other")
            )
            out[kind] += 1
    out["n_tracks"] = int(pairs.n_tracks)
    return out
