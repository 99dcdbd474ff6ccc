"""Causes of lost target particles on hand-made graphs, one cause per particle."""

from types import SimpleNamespace

import numpy as np

from gnntrack.evaluation.losses import LossBreakdown, classify_event, score_histograms
from gnntrack.track_building import Tracks

# particle p owns hits 5p .. 5p+4 (five hits each)
N_PART = 6
HITS = np.arange(5 * N_PART)
EVENT = SimpleNamespace(n_hits=len(HITS), hit_particle=np.array([HITS, HITS // 5]))


def chain(p):
    h = 5 * p + np.arange(5)
    return np.array([h[:-1], h[1:]])


def test_each_cause_is_found():
    edges, y, ep, s = [], [], [], []

    def add(e, score, part):
        edges.append(e)
        y.extend([part >= 0] * e.shape[1])
        ep.extend([part] * e.shape[1])
        s.extend([score] * e.shape[1])

    add(chain(0), 0.9, 0)  # reconstructed
    add(chain(1)[:, :1], 0.9, 1)  # graph: only one of its four edges exists
    add(chain(2), 0.2, 2)  # below_cut: all edges there, all below the cut
    add(chain(3), 0.9, 3)  # split: edges pass, but the track builder gave two halves (below)
    add(chain(4), 0.9, 4)  # merged: a fake edge joins it to particle 5
    add(chain(5), 0.9, 5)
    add(np.array([[24], [25]]), 0.9, -1)  # fake edge 4 -> 5
    edge_index = np.concatenate(edges, axis=1)
    tracks = Tracks.from_lists([list(range(0, 5)), [15, 16], [18, 19], list(range(20, 30)), [5, 6]])
    target = np.ones(N_PART, bool)
    causes = classify_event(EVENT, edge_index, np.array(y), np.array(ep), np.array(s), 0.5, tracks, target)
    # particle 5 shares the merged candidate: 5 of its 10 hits is not > half, so it is lost too
    assert causes == {1: "graph", 2: "below_cut", 3: "split", 4: "merged", 5: "merged"}

    b = LossBreakdown()
    particles = {"eta": np.array([0.5, 1.5, -2.5, 3.5, 0.1, 0.2]), "pt": np.array([1.5, 3, 7, 20, 1.2, 1.2])}
    b.add(causes, particles, target)
    summ = b.summary()
    assert summ["n_target"] == 6 and summ["n_lost"] == 5 and summ["lost"]["merged"] == 2
    assert summ["lost_fraction_per_abs_eta"]["below_cut"] == [0.0, 0.0, 1.0, 0.0]
    # pT 1-2 GeV holds particles 0, 4 and 5: two of three lost by merging
    assert summ["lost_fraction_per_pt"]["merged"] == [2 / 3, 0.0, 0.0, 0.0]


def test_too_short_when_the_piece_is_below_the_minimum_length():
    # particle 0 with 3 hits: one edge of two passes -> piece of 2 hits: > half but < 3 hits
    event = SimpleNamespace(n_hits=3, hit_particle=np.array([[0, 1, 2], [0, 0, 0]]))
    causes = classify_event(
        event, np.array([[0, 1], [1, 2]]), np.array([True, True]), np.array([0, 0]),
        np.array([0.9, 0.1]), 0.5, Tracks.from_lists([]), np.array([True]),
    )  # fmt: skip
    assert causes == {0: "too_short"}


def test_score_histograms_split_edge_classes():
    h = score_histograms(
        np.array([0.1, 0.9, 0.95, 0.5]), np.array([0, 1, 1, 1]), np.array([0, 1, 0, 1]), bins=2
    )
    assert (
        h["fake"]["counts"] == [1, 0] and h["target"]["counts"] == [0, 2] and h["non_target_true"]["n"] == 1
    )


def test_unmatched_candidates_by_kind():
    from gnntrack.evaluation.losses import classify_fakes

    # particles: 0 target (5 hits), 1 non-target low pT (10 hits), 2 non-target 3 GeV (5 hits)
    hp = np.array([np.arange(20), np.repeat([0, 1, 1, 2], 5)])
    event = SimpleNamespace(n_hits=23, hit_particle=hp, particles={"pt": np.array([5.0, 0.5, 3.0])})
    target = np.array([True, False, False])
    tracks = Tracks.from_lists(
        [
            [0, 1, 2, 3, 4],  # matched (target)
            [5, 6, 7],  # 3 of 10 hits of the low-pT particle: pure fragment
            [15, 16],  # too short, not counted
            [0, 1, 15, 16, 17],  # 3 of 5 from particle 2, 3/5 of its hits: matched
            [20, 21, 22],  # noise only
            [5, 15, 0, 21],  # no particle above half: impure
        ]
    )
    out = classify_fakes(event, tracks, target)
    assert out == {
        "fragment_target": 0,
        "fragment_low_pt": 1,
        "fragment_other": 0,
        "impure": 1,
        "noise": 1,
        "n_tracks": 5,
    }
