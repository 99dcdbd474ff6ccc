"""Neighbour-search backends: exact radius semantics, k_max cap, and identical edge sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnntrack.graph_construction import neighbours
from gnntrack.graph_construction.neighbours import HAS_FAISS, radius_graph, resolve_backend

BACKENDS = ["brute", "grid", "kdtree"] + (["faiss"] if HAS_FAISS else [])


def _reference(points: torch.Tensor, r: float, k_max: int) -> set[tuple[int, int]]:
    p = points.double().numpy()
    d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    out = set()
    for i in range(len(p)):
        j = np.flatnonzero((d2[i] < r * r) & (np.arange(len(p)) != i))
        j = j[np.lexsort((j, d2[i, j]))][:k_max]  # nearest first, ties by index
        out |= {(i, int(x)) for x in j}
    return out


def _clustered(n_centres: int, per: int, dim: int, spread: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_centres, dim, generator=g)
    pts = centres.repeat_interleave(per, 0) + spread * torch.randn(n_centres * per, dim, generator=g)
    return torch.nn.functional.normalize(pts, dim=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_reference_definition(backend):
    pts = _clustered(20, 15, 4, 0.05, seed=1)
    r, k = 0.2, 5
    got = radius_graph(pts, r, k, backend)
    assert got.dtype == torch.long and got.shape[0] == 2
    assert set(map(tuple, got.T.tolist())) == _reference(pts, r, k)
    assert not bool((got[0] == got[1]).any())


@pytest.mark.parametrize(("dim", "r", "k_max"), [(3, 0.15, 1000), (8, 0.1, 8), (12, 0.3, 3), (8, 2.5, 50)])
def test_backends_agree_exactly(dim, r, k_max):
    n_centres = 15 if r > 2 else 60  # r = 2.5 covers the whole unit sphere: every pair is a candidate
    pts = _clustered(n_centres, 20, dim, 0.03, seed=dim)
    ref = radius_graph(pts, r, k_max, "brute")
    assert ref.shape[1] > 0
    for backend in BACKENDS[1:]:
        assert torch.equal(radius_graph(pts, r, k_max, backend), ref), backend
    # the grid with a fixed number of projected dimensions is exact as well
    for g in (1, 2, 5):
        assert torch.equal(radius_graph(pts, r, k_max, "grid", grid_dims=g), ref)


def test_k_max_keeps_nearest_and_breaks_ties_by_index():
    # query 0 at the origin, four neighbours at equal distance 1 and one at 0.5
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.5, 0.0]])
    for backend in BACKENDS:
        e = radius_graph(pts, 1.01, 3, backend)
        nbrs = e[1, e[0] == 0].tolist()
        assert nbrs == [5, 1, 2], backend  # nearest first, then the lower indices among equals


def test_radius_is_strict_and_chunking_does_not_matter():
    pts = torch.tensor([[0.0], [1.0], [2.0], [2.5]])
    for backend in BACKENDS:
        e = radius_graph(pts, 1.0, 10, backend)  # |0-1| = 1 is not < 1
        assert set(map(tuple, e.T.tolist())) == {(2, 3), (3, 2)}, backend
    big = _clustered(30, 10, 6, 0.05, seed=3)
    for backend in BACKENDS:
        assert torch.equal(
            radius_graph(big, 0.2, 20, backend, chunk_size=997), radius_graph(big, 0.2, 20, "brute")
        )


def test_bad_arguments():
    pts = torch.zeros(5, 3)
    with pytest.raises(ValueError):
        radius_graph(pts, 0.0, 5)
    with pytest.raises(ValueError):
        radius_graph(pts, 1.0, 0)
    with pytest.raises(ValueError):
        radius_graph(pts, 1.0, 5, "octree")
    assert radius_graph(torch.zeros(1, 3), 1.0, 5).shape == (2, 0)
    assert resolve_backend("auto", "cpu") == "kdtree"


@pytest.mark.parametrize("k_max", [1, 2, 5])
def test_exact_ties_at_the_k_max_boundary(k_max):
    """A lattice: every point has 4 neighbours at distance 1, 4 at sqrt(2), ... so the k_max-th
    nearest is tied with the points beyond it (faiss' k-NN pass must fall back, not guess)."""
    g = torch.arange(12, dtype=torch.float32)
    pts = torch.cartesian_prod(g, g)
    ref = _reference(pts, 2.5, k_max)
    for backend in BACKENDS:
        got = radius_graph(pts, 2.5, k_max, backend)
        assert set(map(tuple, got.T.tolist())) == ref, backend


@pytest.mark.parametrize("backend", ["kdtree"] + (["faiss"] if HAS_FAISS else []))
def test_capped_search_is_bounded_and_exact_without_ties(backend):
    """``exact_ties=False``: no fallback to a full ball query. Points without ties give the exact
    graph; a collapsed cloud (every point within r of every other, all tied) still gets at most
    k_max neighbours per query, all within r."""
    pts = _clustered(40, 20, 8, 0.04, seed=7)
    ref = radius_graph(pts, 0.15, 6, "brute")
    assert torch.equal(radius_graph(pts, 0.15, 6, backend, exact_ties=False), ref)
    collapsed = torch.zeros(3000, 4)
    got = radius_graph(collapsed, 0.1, 5, backend, exact_ties=False)
    assert got.shape[1] == 3000 * 5
    assert torch.equal(torch.bincount(got[0], minlength=3000), torch.full((3000,), 5))
    assert not bool((got[0] == got[1]).any())


def test_kdtree_many_chunks_ties_and_float64_match_brute():
    """The k-d tree selects float32 queries row by row in the tree's leaf order, chunk by chunk,
    and sends the queries tied at k_max through the general selector; float64 points take the
    general path. Both give brute force's edges, in its order (query, distance, index)."""
    g = torch.arange(40, dtype=torch.float32)
    lattice = torch.cartesian_prod(g, g)  # 1600 points, ties at every k_max
    for pts, r, k_max in [(lattice, 2.5, 3), (_clustered(150, 20, 8, 0.04, seed=11), 0.15, 7)]:
        ref = radius_graph(pts, r, k_max, "brute")
        for chunk in (1 << 24, 1000):  # one chunk / chunks of 1024 queries
            assert torch.equal(radius_graph(pts, r, k_max, "kdtree", chunk_size=chunk), ref)
        assert torch.equal(
            radius_graph(pts.double(), r, k_max, "kdtree"), radius_graph(pts.double(), r, k_max, "brute")
        )


def test_kdtree_anisotropic_points_in_several_blocks_match_brute():
    """The tree is built in the points' principal frame (a rotation) and queried in blocks, each
    queried and selected by one of the torch threads: points spread along a few oblique directions
    of 12 (like a trained embedding), more of them than one block holds, give brute force's edges
    in its order with one thread and with several (blocks finishing out of order); so do
    duplicated points (ties at distance 0)."""
    g = torch.Generator().manual_seed(5)
    scale = torch.tensor([1.0, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.01, 0.005, 0.005])
    rot, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    flat = (_clustered(1100, 9, 12, 0.05, seed=3) * scale).double() @ rot.T
    pts = flat.float()
    assert len(pts) > 2 * neighbours._PIPELINE_ROWS
    pts = torch.cat([pts, pts[:50]])  # exact duplicates
    threads = torch.get_num_threads()
    try:
        for r, k_max in [(0.08, 6), (0.2, 40)]:
            ref = radius_graph(pts, r, k_max, "brute")
            assert ref.shape[1] > len(pts)
            for n_threads in (1, 3):
                torch.set_num_threads(n_threads)
                assert torch.equal(radius_graph(pts, r, k_max, "kdtree"), ref)
    finally:
        torch.set_num_threads(threads)
