"""Track matching on hand-built cases: split, merged, noise-only and duplicate tracks, per style."""

import numpy as np
import pytest
from scipy.stats import binom

from gnntrack.evaluation import EvaluationConfig
from gnntrack.metrics.stats import binned_ratio, clopper_pearson
from gnntrack.metrics.tracks import apply_style, event_rates, filter_tracks, match_pairs
from gnntrack.track_building import Tracks

# particles A..E own hits 0-9, 10-19, 20-29, 30-35, 50-55; hits 40-49 are noise
PARTICLE_HITS = {0: range(0, 10), 1: range(10, 20), 2: range(20, 30), 3: range(30, 36), 4: range(50, 56)}
N_HITS = 60


def _links(extra=()):
    pairs = [(h, p) for p, hits in PARTICLE_HITS.items() for h in hits] + list(extra)
    return np.array(pairs, dtype=np.int64).T


TRACKS = Tracks.from_lists(
    [
        list(range(0, 6)),  # T0: first half of a split A (purity 1, completeness 0.6)
        list(range(6, 10)),  # T1: second half of A (purity 1, completeness 0.4)
        list(range(10, 25)),  # T2: B merged with half of C (B: 10/15, 1.0; C: 5/15, 0.5)
        list(range(40, 46)),  # T3: noise only
        list(range(30, 36)),  # T4: D
        [30, 31, 32, 33, 46, 47],  # T5: a duplicate of D with two noise hits (4/6, 4/6)
    ]
)
TARGET = np.ones(5, dtype=bool)


@pytest.mark.parametrize(
    ("style", "eff", "fake", "dup"),
    [
        ("ATLAS", (3, 5), (1, 6), (2, 3)),  # A, B, D reconstructed; extra: T1 on A, T5 on D
        ("one_way", (3, 5), (1, 6), (2, 3)),  # C's completeness 0.5 is not > 0.5
        ("two_way", (3, 5), (2, 6), (1, 3)),  # T1 fails completeness: fake, and A has no duplicate
    ],
)
def test_styles_on_hand_built_event(style, eff, fake, dup):
    pairs = match_pairs(TRACKS, _links(), N_HITS, 5)
    r = event_rates(apply_style(pairs, style, 0.5), TARGET)
    assert (r.n_target_reconstructed, r.n_target) == eff
    assert (r.n_fake, r.n_tracks) == fake
    assert (r.n_duplicates, r.n_target_reconstructed) == dup
    assert r.efficiency == pytest.approx(eff[0] / eff[1])
    assert r.fake_rate == pytest.approx(fake[0] / fake[1])
    assert r.duplicate_rate == pytest.approx(dup[0] / dup[1])


def test_pair_counts_purity_completeness():
    pairs = match_pairs(TRACKS, _links(), N_HITS, 5)
    got = {(int(t), int(p)): (float(pu), float(co)) for t, p, pu, co in
           zip(pairs.track, pairs.particle, pairs.purity, pairs.completeness)}  # fmt: skip
    assert got[(2, 1)] == pytest.approx((10 / 15, 1.0))
    assert got[(2, 2)] == pytest.approx((5 / 15, 0.5))
    assert got[(5, 3)] == pytest.approx((4 / 6, 4 / 6))
    assert not any(t == 3 for t, _ in got), "noise-only track shares no hit"
    np.testing.assert_array_equal(pairs.particle_hits, [10, 10, 10, 6, 6])


def test_shared_hit_counts_for_every_linked_particle():
    # hits 20-24 are merged clusters that also belong to B: T2 is then B's with 15/15 purity
    pairs = match_pairs(TRACKS, _links([(h, 1) for h in range(20, 25)]), N_HITS, 5)
    sel = (pairs.track == 2) & (pairs.particle == 1)
    assert pairs.purity[sel] == pytest.approx([1.0])
    assert pairs.particle_hits[1] == 15


def test_fraction_and_min_length_and_targets():
    pairs = match_pairs(TRACKS, _links(), N_HITS, 5)
    strict = event_rates(apply_style(pairs, "ATLAS", 0.7), TARGET)
    assert strict.n_target_reconstructed == 2  # B's 10/15 purity no longer passes
    short_dropped = filter_tracks(TRACKS, 5)
    assert len(short_dropped) == 5
    r = event_rates(apply_style(match_pairs(short_dropped, _links(), N_HITS, 5), "ATLAS", 0.5), TARGET)
    assert (r.n_fake, r.n_tracks, r.n_duplicates) == (1, 5, 1)
    only_c_e = np.array([False, False, True, False, True])
    r = event_rates(apply_style(pairs, "ATLAS", 0.5), only_c_e)
    assert (r.n_target_reconstructed, r.n_target, r.duplicate_rate) == (0, 2, None)


def test_no_tracks_no_particles():
    pairs = match_pairs(Tracks.empty(), _links(), N_HITS, 5)
    r = event_rates(apply_style(pairs, "two_way", 0.5), TARGET)
    assert (r.n_tracks, r.n_target_reconstructed, r.fake_rate, r.efficiency) == (0, 0, None, 0.0)
    empty = match_pairs(Tracks.empty(), np.zeros((2, 0), np.int64), 0, 0)
    assert event_rates(apply_style(empty, "ATLAS", 0.5), np.zeros(0, bool)).efficiency is None


def test_clopper_pearson_properties():
    lo, hi = clopper_pearson([0, 5, 10], [10, 10, 10])
    assert lo[0] == 0.0 and hi[2] == 1.0
    assert 0 < lo[1] < 0.5 < hi[1] < 1
    # definition: P(X >= 5 | lower) = P(X <= 5 | upper) = (1 - 0.6827) / 2 for X ~ Binomial(10, p)
    tail = (1 - 0.682689492137) / 2
    assert binom.sf(4, 10, lo[1]) == pytest.approx(tail, rel=1e-6)
    assert binom.cdf(5, 10, hi[1]) == pytest.approx(tail, rel=1e-6)
    assert lo[1] == pytest.approx(1 - hi[1])
    lo, hi = clopper_pearson(0, 0)
    assert np.isnan(lo) and np.isnan(hi)
    br = binned_ratio([0.5, 1.5, 1.6, 5.0], [True, False, True, True], [0, 1, 2, 3])
    np.testing.assert_array_equal(br.n, [1, 2, 0])
    np.testing.assert_array_equal(br.k, [1, 1, 0])
    assert np.isnan(br.ratio[2]) and br.to_dict()["ratio"][2] is None


def test_config_validation():
    with pytest.raises(ValueError, match="matching_fraction"):
        EvaluationConfig(matching_fraction=1.5)
    with pytest.raises(ValueError, match="pt_bins"):
        EvaluationConfig(pt_bins=[1.0])
