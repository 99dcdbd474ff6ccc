"""Track building: CC on a score cut, minimum length, walkthrough splitting a fork."""

import numpy as np
import pytest
import torch

from gnntrack.config import ConfigError
from gnntrack.track_building import TrackBuildingConfig, Tracks, build_tracks


def _chain(hits):
    return [[a, b] for a, b in zip(hits[:-1], hits[1:])]


def _fork_graph():
    """Trunk 0-1-2-3 splits at hit 3 into branches 4-5-6 (score 0.9) and 7-8-9 (score 0.8).

    A separate clean chain 10-11-12 and a 2-hit stub 13-14 complete the event; one fake edge
    (score 0.2) joins the clean chain to hit 15.
    """
    edges, scores = [], []
    for e in _chain([0, 1, 2, 3]):
        edges.append(e), scores.append(0.95)
    for e in _chain([3, 4, 5, 6]):
        edges.append(e), scores.append(0.9)
    for e in _chain([3, 7, 8, 9]):
        edges.append(e), scores.append(0.8)
    for e in _chain([10, 11, 12]):
        edges.append(e), scores.append(0.99)
    edges.append([13, 14]), scores.append(0.9)
    edges.append([12, 15]), scores.append(0.2)
    return np.array(edges).T, np.array(scores, np.float32), 16


def test_cc_merges_fork_and_applies_cuts():
    ei, sc, n = _fork_graph()
    tracks = build_tracks(ei, sc, n, {"method": "cc", "score_cut": 0.5, "min_hits": 3})
    assert tracks.to_lists() == [list(range(10)), [10, 11, 12]]
    loose = build_tracks(ei, sc, n, TrackBuildingConfig(score_cut=0.1, min_hits=2))
    assert loose.to_lists() == [list(range(10)), [10, 11, 12, 15], [13, 14]]
    np.testing.assert_array_equal(loose.lengths(), [10, 4, 2])
    np.testing.assert_array_equal(loose.offsets, [0, 10, 14, 16])


def test_walkthrough_splits_fork():
    ei, sc, n = _fork_graph()
    cfg = TrackBuildingConfig(method="walkthrough", score_cut=0.5, min_hits=3)
    tracks = build_tracks(ei, sc, n, cfg)
    # the walk follows the best branch from the innermost hit; the other branch becomes its own track
    assert tracks.to_lists() == [[0, 1, 2, 3, 4, 5, 6], [7, 8, 9], [10, 11, 12]]
    used = np.concatenate(tracks.to_lists())
    assert len(used) == len(set(used.tolist())), "a hit was used twice"
    # with the weaker branch scoring higher, the walk switches branches
    sc2 = sc.copy()
    sc2[3:6], sc2[6:9] = 0.7, 0.9
    tracks2 = build_tracks(ei, sc2, n, cfg)
    assert tracks2.to_lists()[0] == [0, 1, 2, 3, 7, 8, 9]


def test_walkthrough_separates_tracks_merged_by_a_fake_edge():
    """Two particles 0-1-2-3 and 4-5-6-7, one fake edge 1->6 above the cut: CC returns one merged
    8-hit candidate, the walkthrough the two tracks."""
    edges = _chain([0, 1, 2, 3]) + _chain([4, 5, 6, 7]) + [[1, 6]]
    ei, sc = np.array(edges).T, np.array([0.9] * 6 + [0.6], np.float32)
    cc = build_tracks(ei, sc, 8, {"method": "cc", "score_cut": 0.5})
    assert [sorted(t) for t in cc.to_lists()] == [list(range(8))]
    walk = build_tracks(ei, sc, 8, {"method": "walkthrough", "score_cut": 0.5})
    assert sorted(map(sorted, walk.to_lists())) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_walkthrough_orders_simple_chain_along_edges():
    # a chain whose hit indices are not in edge order: 5 -> 2 -> 9 -> 0
    ei = np.array([[2, 5, 9], [9, 2, 0]])
    tracks = build_tracks(ei, np.ones(3), 10, {"method": "walkthrough", "min_hits": 3})
    assert tracks.to_lists() == [[5, 2, 9, 0]]


@pytest.mark.parametrize("method", ["cc", "walkthrough"])
def test_torch_input_gives_same_tracks(method):
    ei, sc, n = _fork_graph()
    cfg = TrackBuildingConfig(method=method, score_cut=0.5, min_hits=3, backend="torch")
    ref = build_tracks(ei, sc, n, cfg).to_lists()
    got = build_tracks(torch.from_numpy(ei), torch.from_numpy(sc), n, cfg)
    assert isinstance(got.hits, torch.Tensor) and isinstance(got.offsets, torch.Tensor)
    assert got.to_lists() == ref


def test_empty_and_no_scores():
    empty = build_tracks(np.zeros((2, 0), np.int64), np.zeros(0), 0)
    assert len(empty) == 0 and empty.to_lists() == []
    no_edges = build_tracks(np.zeros((2, 0), np.int64), None, 50, {"backend": "torch"})
    assert len(no_edges) == 0
    all_pass = build_tracks(np.array([[0, 1], [1, 2]]), None, 3)
    assert all_pass.to_lists() == [[0, 1, 2]]
    t = build_tracks(torch.zeros((2, 0), dtype=torch.long), torch.zeros(0), 0)
    assert len(t) == 0


def test_cugraph_request_falls_back_on_cpu():
    ei, sc, n = _fork_graph()
    with pytest.warns(UserWarning, match="cugraph"):
        got = build_tracks(torch.from_numpy(ei), torch.from_numpy(sc), n, {"backend": "cugraph"})
    assert got.to_lists() == build_tracks(ei, sc, n).to_lists()


def test_bad_input_and_config():
    with pytest.raises(ValueError, match="scores"):
        build_tracks(np.array([[0], [1]]), np.zeros(2), 2)
    with pytest.raises(ValueError, match="outside"):
        build_tracks(np.array([[0], [4]]), np.ones(1), 2)
    with pytest.raises(ConfigError, match="method"):
        build_tracks(np.array([[0], [1]]), np.ones(1), 2, {"method": "dbscan"})
    with pytest.raises(ConfigError, match="unknown"):
        build_tracks(np.array([[0], [1]]), np.ones(1), 2, {"scorecut": 0.3})


def test_tracks_container():
    t = Tracks.from_lists([[3, 1], [], [7, 8, 9]])
    assert len(t) == 3 and t[2].tolist() == [7, 8, 9] and t[-1].tolist() == [7, 8, 9]
    np.testing.assert_array_equal(t.track_index(), [0, 0, 2, 2, 2])
    with pytest.raises(IndexError):
        t[3]
