"""Track-to-particle matching with the ATLAS, one-way and two-way styles.

A track candidate and a particle share n hits; a hit may be linked to several particles (merged
clusters), so shared counts come from the event's ``hit_particle`` links, not from a single
``particle_index`` per hit. purity = n / track hits, completeness = n / particle hits.

Each style decides two things separately, as acorn does: whether a *track* is matched (it is not a
fake) and whether a *particle* is reconstructed (it counts for the efficiency). The comparisons
are strict (> f), so with f = 0.5 a track matches at most one particle.

``Rates`` sums efficiency / fake / duplicate counts over events; ``truth_cc_tracks`` builds the
truth-CC bound's candidates (connected components on a graph's truth-labelled edges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..track_building.build import TrackBuildingConfig, build_tracks
from ..tracks import Tracks

MATCHING_STYLES = ("ATLAS", "one_way", "two_way")


@dataclass
class MatchPairs:
    """Every (track, particle) pair with at least one shared hit, for one event."""

    n_tracks: int
    n_particles: int
    track_length: np.ndarray  # (T,) spacepoints per track
    particle_hits: np.ndarray  # (P,) spacepoints linked to each particle
    track: np.ndarray  # (M,) track index of the pair
    particle: np.ndarray  # (M,) particle row of the pair
    shared: np.ndarray  # (M,) shared hits

    @property
    def purity(self) -> np.ndarray:
        return self.shared / np.maximum(self.track_length[self.track], 1)

    @property
    def completeness(self) -> np.ndarray:
        return self.shared / np.maximum(self.particle_hits[self.particle], 1)


@dataclass
class StyleMatch:
    """Outcome of one matching style for one event."""

    track_matched: np.ndarray  # (T,) bool: the track is not a fake
    particle_reconstructed: np.ndarray  # (P,) bool
    tracks_per_particle: np.ndarray  # (P,) int: matched tracks pointing at each particle


def filter_tracks(tracks: Tracks, min_length: int) -> Tracks:
    """The candidates with at least ``min_length`` spacepoints."""
    t = tracks.numpy()
    lengths = t.lengths()
    keep = lengths >= min_length
    if keep.all():
        return t
    offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths[keep])
    return Tracks(t.hits[np.repeat(keep, lengths)], offsets)


def match_pairs(tracks: Tracks, hit_particle: np.ndarray, n_hits: int, n_particles: int) -> MatchPairs:
    """Shared-hit counts of every (track, particle) pair of one event."""
    t = tracks.numpy()
    n_tracks = len(t)
    hp = np.asarray(hit_particle, dtype=np.int64).reshape(2, -1)
    valid = (hp[0] >= 0) & (hp[0] < n_hits) & (hp[1] >= 0) & (hp[1] < n_particles)
    codes = np.unique(hp[0, valid] * max(n_particles, 1) + hp[1, valid])  # de-duplicated, sorted by hit
    link_hit, link_part = codes // max(n_particles, 1), codes % max(n_particles, 1)
    particle_hits = np.bincount(link_part, minlength=n_particles).astype(np.int64)
    ptr = np.zeros(n_hits + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(np.bincount(link_hit, minlength=n_hits))

    entry_hits, entry_track = t.hits, t.track_index()
    count = ptr[entry_hits + 1] - ptr[entry_hits]
    total = int(count.sum())
    rep_track = np.repeat(entry_track, count)
    first = np.repeat(ptr[entry_hits], count)
    within = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    rep_part = link_part[first + within]
    pair_code, shared = np.unique(rep_track * max(n_particles, 1) + rep_part, return_counts=True)
    return MatchPairs(
        n_tracks=n_tracks,
        n_particles=n_particles,
        track_length=t.lengths().astype(np.int64),
        particle_hits=particle_hits,
        track=pair_code // max(n_particles, 1),
        particle=pair_code % max(n_particles, 1),
        shared=shared.astype(np.int64),
    )


def apply_style(pairs: MatchPairs, style: str, fraction: float) -> StyleMatch:
    """Matched tracks and reconstructed particles under one matching style."""
    if style not in MATCHING_STYLES:
        raise ValueError(f"unknown matching style {style!r}; choose one of {MATCHING_STYLES}")
    pure = pairs.purity > fraction
    complete = pairs.completeness > fraction
    if style == "ATLAS":
        track_ok = reco_ok = pure
    elif style == "one_way":
        track_ok, reco_ok = pure, complete
    else:
        track_ok = reco_ok = pure & complete
    track_matched = np.zeros(pairs.n_tracks, dtype=bool)
    track_matched[pairs.track[track_ok]] = True
    reconstructed = np.zeros(pairs.n_particles, dtype=bool)
    reconstructed[pairs.particle[reco_ok]] = True
    per_particle = np.bincount(pairs.particle[track_ok], minlength=pairs.n_particles).astype(np.int64)
    return StyleMatch(track_matched, reconstructed, per_particle)


@dataclass
class Rates:
    """Counts behind efficiency, fake rate and duplicate rate (summable over events)."""

    n_target: int = 0
    n_target_reconstructed: int = 0
    n_tracks: int = 0
    n_fake: int = 0
    n_duplicates: int = 0

    def add(self, other: Rates) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    @property
    def efficiency(self) -> float | None:
        return self.n_target_reconstructed / self.n_target if self.n_target else None

    @property
    def fake_rate(self) -> float | None:
        return self.n_fake / self.n_tracks if self.n_tracks else None

    @property
    def duplicate_rate(self) -> float | None:
        return self.n_duplicates / self.n_target_reconstructed if self.n_target_reconstructed else None


def event_rates(match: StyleMatch, target: np.ndarray) -> Rates:
    """Efficiency / fake / duplicate counts of one event for the target particle mask ``target``.

    Duplicates: every matched track beyond the first that points at a reconstructed target particle.
    """
    target = np.asarray(target, dtype=bool)
    reco_target = match.particle_reconstructed & target
    extra = np.maximum(match.tracks_per_particle[reco_target] - 1, 0)
    return Rates(
        n_target=int(target.sum()),
        n_target_reconstructed=int(reco_target.sum()),
        n_tracks=len(match.track_matched),
        n_fake=int((~match.track_matched).sum()),
        n_duplicates=int(extra.sum()),
    )


def truth_cc_tracks(edge_index, y, n_hits: int, min_hits: int) -> Tracks:
    """Connected components (>= ``min_hits`` spacepoints) on the truth-labelled edges (``y``) of a
    graph: the candidates of the truth-CC bound, the best track efficiency any edge classifier
    can reach on that graph."""
    cfg = TrackBuildingConfig(method="cc", min_hits=min_hits, backend="scipy")
    return build_tracks(np.asarray(edge_index)[:, np.asarray(y, dtype=bool)], None, n_hits, cfg)
