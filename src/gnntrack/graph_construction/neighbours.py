"""Fixed-radius neighbour search with a neighbour cap: one interface, several backends.

``radius_graph(points, r, k_max, backend)`` returns every directed pair (i, j), i != j, with
``|x_i - x_j| < r``, keeping for each query i only its ``k_max`` nearest (ties broken by the
smaller index j). Backends differ only in how they find *candidate* pairs:

- ``brute``: chunked all-pairs distances in torch (the baseline; CPU or GPU),
- ``kdtree``: scipy's k-d tree (CPU) built in the points' principal frame: each query's
  k_max + 2 nearest within r, a ball query only for the queries whose k_max-th and
  (k_max + 1)-th neighbours are (nearly) tied, and (float32 points) a selection row by row that
  skips the general selector (``_kdtree_graph``). On a
  trained ⟨μ⟩ = 200 embedding (~120 k points, 12 dimensions, r 0.07, k_max 32) 2.4 CPU-s per
  event against 21 for the grid and 70 for the flat faiss index, one thread, same run
  (benchmarks/metric_learning_kdtree_20261203); the CPU default,
- ``faiss``: exact flat index (range search on CPU, k-NN with escalating k on a faiss GPU build),
- ``grid``:  FRNN-style fixed-radius grid: points binned in cells of side r in a low-dimensional
  orthonormal projection (the G leading principal axes; G chosen by a cost estimate unless given),
  only the 3^G neighbouring cells compared. A projection onto orthonormal axes never increases
  distances, so no pair within r is missed: the grid is exact, not approximate. Only half of the
  stencil is visited (each unordered pair once).

Every backend searches with a slightly enlarged radius and streams its candidates, chunk by
chunk, through the same exact selection (the k-d tree only where float rounding could matter) (``_Selector``: distance recomputed as a sum of squared
differences, strict ``< r``, k_max by (distance, index), at most N * k_max pairs kept between
chunks). That is why all backends return the *same* edge set for the same points, which the tests
check, instead of sets that differ at the rounding boundary, and why memory stays bounded even
for an untrained embedding that puts every point within r of every other one.
"""

from __future__ import annotations

import math

import numpy as np
import torch

BACKENDS = ("auto", "brute", "faiss", "grid", "kdtree")

#: Candidate pairs (or distance-matrix entries) handled at once; bounds peak memory.
DEFAULT_CHUNK = 1 << 24
#: Relative gap between squared distances that float32 rounding cannot bridge: the selector's
#: float32 sum of squared differences is good to ~(D + 2) ulps (~1e-6 for D = 12), the k-d
#: tree's float64 distances to ~1e-16, so the k-d tree trusts its own order beyond this gap.
TIE = 1e-5
#: k-d tree build: sliding-midpoint splits (not medians) and 32 points per leaf. In the principal
#: frame of a trained <mu> = 200 embedding the k_max + 2 query took 0.63 against 0.80 s (113 k
#: points) and 0.83 against 1.08 s (140 k) with scipy's defaults (median splits, 16 per leaf), two
#: threads (benchmarks/metric_learning_search_20261204, tree_probe.json).
_TREE = {"leafsize": 32, "balanced_tree": False}
#: Query rows per block of the k-d tree graph: each block is queried (one tree worker) and selected
#: by one of ``torch.get_num_threads()`` threads; small enough that a block's (rows, k_max + 2)
#: arrays stay in cache and the last blocks keep every thread busy.
_PIPELINE_ROWS = 4096

try:  # faiss is optional (faiss-cpu by default, faiss-gpu where installed)
    import faiss  # type: ignore

    HAS_FAISS = True
    HAS_FAISS_GPU = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
except ImportError:  # pragma: no cover - faiss-cpu is a dependency
    faiss = None
    HAS_FAISS = False
    HAS_FAISS_GPU = False


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """``auto`` -> the k-d tree on the CPU, faiss-gpu on CUDA when importable, else grid."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown neighbour backend {backend!r}; choose from {BACKENDS}")
    if backend != "auto":
        return backend
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        return "faiss" if HAS_FAISS_GPU else "grid"
    return "kdtree"


def radius_graph(
    points: torch.Tensor,
    r: float,
    k_max: int,
    backend: str = "auto",
    chunk_size: int = DEFAULT_CHUNK,
    grid_dims: int | None = None,
    exact_ties: bool = True,
) -> torch.Tensor:
    """Directed neighbour pairs (2, E) int64 on ``points.device``: row 0 query, row 1 neighbour.

    Edges are sorted by query, then by distance, then by neighbour index.

    ``exact_ties=False`` (``kdtree`` and CPU ``faiss`` only; the others ignore it) caps the
    search: every query takes only a fixed number of nearest candidates (k_max + 2 for the k-d
    tree, 2 (k_max + 1) for faiss) and never falls back to a full ball or range query, so the
    cost stays O(N k_max log N) however the points lie. Where more points than that are tied or
    nearly tied at the k_max-th distance, which of them are kept is then up to the search rather
    than the smaller index. An immature embedding that puts thousands of points within r of each
    other (early metric-learning validation) makes the exact fallback quadratic.
    """
    if points.ndim != 2:
        raise ValueError(f"points must be (N, D), got shape {tuple(points.shape)}")
    if not r > 0:
        raise ValueError(f"radius must be > 0, got {r}")
    if k_max < 1:
        raise ValueError(f"k_max must be >= 1, got {k_max}")
    points = points.detach()
    if not points.is_floating_point():
        points = points.float()
    n = points.shape[0]
    if n < 2:
        return torch.empty(2, 0, dtype=torch.long, device=points.device)
    backend = resolve_backend(backend, points.device)
    # Search radius with slack: the candidate phase may use a numerically cheaper distance.
    scale = float(points.abs().max()) ** 2 * points.shape[1]
    r2 = r * r
    r2_search = r2 * (1 + 1e-3) + 1e-6 * max(scale, 1e-12)
    if backend == "kdtree" and points.dtype == torch.float32 and n < 2**31:
        return _kdtree_graph(points, r2, r2_search, k_max, chunk_size, exact_ties)
    selector = _Selector(points, r2, k_max, chunk_size)
    if backend == "brute":
        chunks = _candidates_brute(points, r2_search, chunk_size)
    elif backend == "faiss":
        if not HAS_FAISS:
            raise RuntimeError("backend 'faiss' requested but faiss is not importable")
        chunks = _candidates_faiss(points, r2_search, chunk_size, k_max, exact_ties)
    elif backend == "kdtree":
        chunks = _candidates_kdtree(points, r2_search, chunk_size, k_max, exact_ties)
    else:
        chunks = _candidates_grid(points, math.sqrt(r2_search), chunk_size, grid_dims)
    for i, j, mirror in chunks:
        selector.add(i, j, mirror)
    return selector.result()


class _Selector:
    """Exact distances, strict radius cut, per-query k_max by (distance, neighbour index).

    Candidates arrive in chunks and only the current k_max best per query are kept between
    chunks, so memory stays bounded by one chunk plus N * k_max pairs however dense the points
    are (an untrained embedding can put every point within r of every other one).
    """

    def __init__(self, points: torch.Tensor, r2: float, k_max: int, chunk_size: int):
        self.points, self.r2, self.k_max = points, r2, k_max
        self.step = max(1, chunk_size // max(points.shape[1], 1))
        self.budget = max(chunk_size, 4 * points.shape[0])
        empty = torch.empty(0, dtype=torch.long, device=points.device)
        self.i, self.j, self.d2 = empty, empty, torch.empty(0, dtype=points.dtype, device=points.device)
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.n_pending = 0

    def add(self, i: torch.Tensor, j: torch.Tensor, mirror: bool = False) -> None:
        """``mirror``: the chunk holds each unordered pair once; the reverse pairs are added."""
        keep = i != j
        i, j = i[keep], j[keep]
        d2 = torch.empty(i.shape[0], dtype=self.points.dtype, device=self.points.device)
        for s in range(0, i.shape[0], self.step):
            d2[s : s + self.step] = (
                (self.points[i[s : s + self.step]] - self.points[j[s : s + self.step]]).pow(2).sum(-1)
            )
        keep = d2 < self.r2
        i, j, d2 = i[keep], j[keep], d2[keep]
        if mirror:
            i, j, d2 = torch.cat([i, j]), torch.cat([j, i]), torch.cat([d2, d2])
        self.pending.append((i, j, d2))
        self.n_pending += i.numel()
        if self.n_pending > self.budget:
            self._reduce()

    def _reduce(self) -> None:
        i = torch.cat([self.i, *[p[0] for p in self.pending]])
        j = torch.cat([self.j, *[p[1] for p in self.pending]])
        d2 = torch.cat([self.d2, *[p[2] for p in self.pending]])
        self.pending, self.n_pending = [], 0
        order = _lexicographic_order(i, d2, j)
        i, j, d2 = i[order], j[order], d2[order]
        if i.numel():
            counts = torch.bincount(i, minlength=self.points.shape[0])
            first = torch.cumsum(counts, 0) - counts
            keep = (torch.arange(i.shape[0], device=i.device) - first[i]) < self.k_max
            i, j, d2 = i[keep], j[keep], d2[keep]
        self.i, self.j, self.d2 = i, j, d2

    def result(self) -> torch.Tensor:
        self._reduce()
        return torch.stack([self.i, self.j])


def _lexicographic_order(i: torch.Tensor, d2: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Permutation sorting the pairs by (query, distance, neighbour): stable sorts, least
    significant key first. float32 distances (the usual case) join the query in one 64-bit key
    (query << 31 | the distance's bit pattern, which orders non-negative floats like their
    values): two integer sorts instead of three sorts, one of them of floats (4x slower)."""
    order = torch.argsort(j, stable=True)
    if d2.dtype == torch.float32 and i.numel() and int(i.max()) < 2**32:
        key = (i << 31) | d2.view(torch.int32).to(torch.int64)
        return order[torch.argsort(key[order], stable=True)]
    order = order[torch.argsort(d2[order], stable=True)]
    return order[torch.argsort(i[order], stable=True)]


def _candidates_brute(points: torch.Tensor, r2: float, chunk_size: int):
    n = points.shape[0]
    rows = max(1, chunk_size // n)
    sq = points.pow(2).sum(-1)
    for s in range(0, n, rows):
        q = points[s : s + rows]
        d2 = sq[s : s + rows, None] + sq[None, :] - 2.0 * (q @ points.T)
        ii, jj = torch.nonzero(d2 < r2, as_tuple=True)
        yield ii + s, jj, False


def _selected_pairs(start: int, sel: np.ndarray, nbr: np.ndarray, device):
    """The (query, neighbour) candidates of one k-NN result chunk (queries from ``start``) where
    ``sel`` (queries x k) is true, as a candidate chunk of ``radius_graph``."""
    qi, col = np.nonzero(sel)
    return (
        torch.from_numpy((start + qi).astype("int64")).to(device),
        torch.from_numpy(nbr[qi, col].astype("int64")).to(device),
        False,
    )


def _candidates_faiss(
    points: torch.Tensor, r2: float, chunk_size: int, k_max: int | None = None, exact_ties: bool = True
):
    """Candidate pairs within ``r2`` (squared) from a flat faiss index on the CPU.

    With ``k_max`` and dense points (a probe of 256 queries finds on average more than
    2 (k_max + 1) points within r), queries first take their 2 (k_max + 1) nearest points: when
    the farthest of those lies outside the radius, or clearly beyond the (k_max + 1)-th (so no point left out
    could rank among the k_max nearest, rounding included), they are complete; only the others go
    through a range search. On a trained embedding few points lie within r and the range search
    is the faster; on an immature one (training, fresh models) every point can be within r of
    thousands of others and the range search returns all of them (validating an early
    metric-learning model at <mu>=60 had not finished after 14 minutes on a 2-core CPU).
    """
    device = points.device
    x = points.to(torch.float32).cpu().contiguous().numpy()
    n, d = x.shape
    if device.type == "cuda" and HAS_FAISS_GPU:
        yield _candidates_faiss_gpu(x, r2, device) + (False,)
        return
    index = faiss.IndexFlatL2(d)
    index.add(x)
    # queries in batches so one batch's result is bounded even if every point is a neighbour
    rows = max(1024, chunk_size // n)
    k = 2 * (k_max + 1) if k_max is not None else n
    if k < n:  # k-NN first only where it pays: probe the density on evenly spaced queries
        probe = x[np.linspace(0, n - 1, min(n, 256)).astype(np.int64)]
        lims, _, _ = index.range_search(probe, r2)
        if lims[-1] <= k * len(probe) and exact_ties:
            k = n
    slack = 1e-6 * float(np.abs(x).max()) ** 2 * d if n else 0.0
    for s in range(0, n, rows):
        xq = x[s : s + rows]
        todo = np.arange(len(xq))
        if k < n:
            dist, nbr = index.search(xq, k)
            last, kth = dist[:, -1], dist[:, k_max]
            if exact_ties:
                complete = (last >= r2) | (last > kth * (1 + 1e-3) + slack)
            else:  # capped: the incomplete queries keep their k nearest as well
                complete = np.ones(len(xq), dtype=bool)
            yield _selected_pairs(s, complete[:, None] & (dist < r2) & (nbr >= 0), nbr, device)
            todo = np.flatnonzero(~complete)
        if todo.size:
            lims, _, nbr = index.range_search(xq[todo], r2)
            counts = torch.from_numpy((lims[1:] - lims[:-1]).astype("int64"))
            i = torch.repeat_interleave(torch.from_numpy(s + todo.astype("int64")), counts)
            yield i.to(device), torch.from_numpy(nbr.astype("int64")).to(device), False


def _principal_axes(points: torch.Tensor) -> torch.Tensor:
    """(D, D) float64 orthonormal principal axes of ``points`` as columns, the largest spread first."""
    centred = points.double() - points.double().mean(0)
    _, vecs = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    return vecs.flip(1)


def _kdtree(points: torch.Tensor):
    """(x, tree): ``points`` in float64 rotated onto their principal axes, and scipy's k-d tree
    over them with this module's build settings (``_TREE``).

    A rotation keeps every distance (to ~1e-16, far inside ``TIE``), so the tree finds the same
    neighbours; but its splits are along the coordinate axes, and a trained embedding lies on a
    sphere whose spread is concentrated along a few directions that are not coordinate axes (on a
    <mu> = 200 event the 7 leading axes of 12 hold 97.5 % of the variance). In that frame the
    tree splits where the points spread and prunes more: with scipy's default tree the k_max + 2
    query took 0.80 against 1.11 s on 113 k points and 1.08 against 1.63 s on 140 k (r 0.155,
    k_max 48, two threads; benchmarks/metric_learning_search_20261204, tree_probe.json).
    """
    from scipy.spatial import cKDTree

    x64 = points.detach().cpu().double()
    x = (x64 @ _principal_axes(x64)).numpy()
    return x, cKDTree(x, **_TREE)


def _ball_pairs(
    tree, xq: np.ndarray, ids: np.ndarray, r: float, workers: int
) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) int64: every point j of ``tree`` within ``r`` of each query ``xq`` (ids ``ids``)."""
    balls = tree.query_ball_point(xq, r, workers=workers, return_sorted=False)
    counts = np.fromiter((len(b) for b in balls), dtype=np.int64, count=len(balls))
    j = np.fromiter((v for b in balls for v in b), dtype=np.int64, count=int(counts.sum()))
    return np.repeat(ids.astype(np.int64), counts), j


def _tree_rows(tree, xq: np.ndarray, k: int, r: float, workers: int, capped: bool, slack: float):
    """The tree's ``k`` nearest points within ``r`` of each query row: (dist, nbr, found,
    complete), all (rows, k) but ``complete`` (rows,). A row is complete when its last neighbour
    is missing (fewer points within r) or clearly farther than the one before (rounding
    included), so no point left out could rank among the k - 2 nearest besides the query;
    ``capped``: every row counts as complete (no ball query afterwards)."""
    dist, nbr = tree.query(xq, k=k, distance_upper_bound=r, workers=workers)
    dist, nbr = dist.reshape(len(xq), k), nbr.reshape(len(xq), k)
    found = np.isfinite(dist)
    if capped:
        complete = np.ones(len(xq), dtype=bool)
    else:
        last, kth = dist[:, -1] ** 2, dist[:, k - 2] ** 2
        complete = ~found[:, -1] | (last > kth * (1 + TIE) + slack)
    return dist, nbr, found, complete


def _candidates_kdtree(points: torch.Tensor, r2: float, chunk_size: int, k_max: int, exact_ties: bool = True):
    """Candidate pairs within ``r2`` (squared) from scipy's k-d tree (float64, CPU).

    Each query takes its k_max + 2 nearest points within r (itself, k_max others and one more):
    when the last of those is missing (fewer points within r) or clearly farther than the
    k_max-th (rounding included), no point left out could rank among the k_max nearest and the
    query is complete. Only the others, ties at the cap, go through a ball query that returns
    every point within r (``exact_ties=False``: they keep their k_max + 2 nearest). The tree
    uses ``torch.get_num_threads()`` workers.
    """
    device = points.device
    x, tree = _kdtree(points)
    n = x.shape[0]
    r = math.sqrt(r2)
    workers = max(1, torch.get_num_threads())
    k = min(n, k_max + 2)
    # The tree's float64 distances of float32 points are exact to ~1e-16; the selector's float32
    # sum of squared differences to ~(D + 2) ulps (differences of nearby floats are exact), so a
    # relative gap of TIE = 1e-5 separates the k_max-th from the next (5 % of the queries of a trained
    # <mu> = 200 embedding fell back to a ball query at 1e-3, 0.5 s of a 1.8 s search).
    slack = 1e-12 * float(np.abs(x).max()) ** 2 * x.shape[1]
    rows = max(1024, chunk_size // k)
    for s in range(0, n, rows):
        xq = x[s : s + rows]
        _, nbr, found, complete = _tree_rows(tree, xq, k, r, workers, k == n or not exact_ties, slack)
        yield _selected_pairs(s, complete[:, None] & found, nbr, device)
        todo = np.flatnonzero(~complete)
        if todo.size:
            i, j = _ball_pairs(tree, xq[todo], s + todo, r, workers)
            yield torch.from_numpy(i).to(device), torch.from_numpy(j).to(device), False


def _kdtree_graph(
    points: torch.Tensor, r2: float, r2_search: float, k_max: int, chunk_size: int, exact_ties: bool
) -> torch.Tensor:
    """``radius_graph`` with the k-d tree for float32 points, without the general selector.

    The tree's k_max + 2 nearest of a query are all of its candidates unless it is (nearly) tied
    at the cap (see ``_candidates_kdtree``), and they are at most k_max + 1 besides the query
    itself, already sorted by the tree's float64 distance. A row is taken as the tree orders it
    (its first k_max candidates) unless float32 rounding could change its order or radius cut:
    two of its distances within a relative ``TIE``, or one within ``TIE`` of r. Those rows are
    recomputed as the selector does (the same float32 expression), cut at r and sorted by one
    64-bit key (distance bits << 32 | neighbour index), the order of ``_lexicographic_order``.
    Queries go to the tree in its own leaf order (neighbouring queries share tree nodes) in
    blocks of ``_PIPELINE_ROWS``, and ``torch.get_num_threads()`` threads each take a whole block,
    its tree query (one worker; the query releases the GIL) and its selection (numpy and torch
    release it for the array work), so no core waits for another: on a trained <mu> = 200
    embedding 1.3x faster on two threads than a thread querying (two tree workers) while the
    main thread selected (benchmarks/metric_learning_search_20261205). Rows are
    scattered back to query order at the end. The queries tied at the cap (ball query) go through
    ``_Selector`` into the same output. The result is the selector's, pair for pair and in the
    same order.
    """
    from concurrent.futures import ThreadPoolExecutor

    device = points.device
    x, tree = _kdtree(points)
    n = x.shape[0]
    order = tree.indices.astype(np.int64)  # queries in leaf order
    r = math.sqrt(r2_search)
    workers = max(1, torch.get_num_threads())
    k = min(n, k_max + 2)
    slack = 1e-12 * float(np.abs(x).max()) ** 2 * x.shape[1]
    pts = points.detach().cpu()
    none = np.iinfo(np.int64).max
    rows = max(1024, min(_PIPELINE_ROWS, chunk_size // k))

    def block(s: int):
        """Query one block of rows and select it: (queries, ranks, keys) parts and tied rows."""
        q = order[s : s + rows]
        dist, nbr, found, complete = _tree_rows(tree, x[q], k, r, 1, k == n or not exact_ties, slack)
        ok = found & complete[:, None] & (nbr != q[:, None])
        # The tree's float64 distances order a row like the selector's float32 ones and
        # decide the radius cut alike unless two of them are within a relative TIE
        # (neighbours, or the query and a duplicate) or one is within TIE of r: those rows
        # are recomputed below. Missing neighbours have distance inf.
        d64 = dist * dist
        loose = (ok & (d64 > r2 * (1 - TIE))).any(1)
        loose |= (found[:, 1:] & (d64[:, 1:] <= d64[:, :-1] * (1 + TIE) + slack)).any(1)
        # the other rows: the first k_max candidates in the tree's order
        fast = ok & ~loose[:, None]
        rank = np.cumsum(fast, axis=1) - 1
        fast &= rank < k_max
        qi, _ = np.nonzero(fast)
        parts = [(q[qi], rank[fast], nbr[fast].astype(np.int64))]
        lo = np.flatnonzero(loose)
        if lo.size:
            ok, q_lo = ok[lo], q[lo]
            qi, col = np.nonzero(ok)
            j = nbr[lo][ok].astype(np.int64)
            diff = pts.index_select(0, torch.from_numpy(q_lo[qi]))
            diff.sub_(pts.index_select(0, torch.from_numpy(j)))
            d2 = diff.pow_(2).sum(-1).numpy()  # the selector's value, bit for bit
            inside = d2 < r2
            key = np.full(ok.shape, none, dtype=np.int64)
            key[qi[inside], col[inside]] = (d2[inside].view(np.int32).astype(np.int64) << 32) | j[inside]
            key.sort(axis=1)
            key = key[:, :k_max]
            qi, rank = np.nonzero(key != none)
            parts.append((q_lo[qi], rank, key[qi, rank]))
        return parts, q[~complete]

    parts_q, parts_rank, parts_key, tied = [], [], [], []
    with ThreadPoolExecutor(workers) as pool:
        for parts, block_tied in pool.map(block, range(0, n, rows)):
            for part_q, part_rank, part_key in parts:
                parts_q.append(part_q)
                parts_rank.append(part_rank)
                parts_key.append(part_key)
            tied.append(block_tied)
    tied = np.concatenate(tied)
    if tied.size:  # ball queries through the general selector
        selector = _Selector(points, r2, k_max, chunk_size)
        xt = x[tied]
        for s in range(0, len(tied), rows):
            i, j = _ball_pairs(tree, xt[s : s + rows], tied[s : s + rows], r, workers)
            selector.add(torch.from_numpy(i).to(device), torch.from_numpy(j).to(device))
        ti, tj = (t.cpu().numpy() for t in selector.result())
        counts = np.bincount(ti, minlength=n)
        parts_q.append(ti)
        parts_rank.append(np.arange(len(ti)) - (np.cumsum(counts) - counts)[ti])
        parts_key.append(tj)
    q = np.concatenate(parts_q)
    counts = np.bincount(q, minlength=n)
    pos = (np.cumsum(counts) - counts)[q] + np.concatenate(parts_rank)
    out = np.empty((2, len(q)), dtype=np.int64)
    out[0, pos] = q
    out[1, pos] = np.concatenate(parts_key) & 0xFFFFFFFF
    return torch.from_numpy(out).to(device)


def _candidates_faiss_gpu(x, r2: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """GPU flat indexes have no range search: k-NN with k doubled until every query's k-th
    neighbour lies outside the radius (so the candidate set is complete); brute force beyond
    faiss' k limit."""
    res = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatL2(res, x.shape[1])
    index.add(x)
    todo = torch.arange(x.shape[0])
    out_i, out_j = [], []
    k = 64
    while todo.numel() and k <= 2048:
        dist, nbr = index.search(x[todo.numpy()], k)
        dist, nbr = torch.from_numpy(dist), torch.from_numpy(nbr)
        complete = (dist[:, -1] >= r2) | (nbr[:, -1] < 0)
        sel = complete[:, None] & (dist < r2) & (nbr >= 0)
        rows, cols = torch.nonzero(sel, as_tuple=True)
        out_i.append(todo[rows])
        out_j.append(nbr[rows, cols])
        todo = todo[~complete]
        k *= 2
    i = torch.cat(out_i).to(device) if out_i else torch.empty(0, dtype=torch.long, device=device)
    j = torch.cat(out_j).to(device) if out_j else torch.empty(0, dtype=torch.long, device=device)
    if todo.numel():  # extremely dense queries: exact brute force against all points
        pts = torch.from_numpy(x).to(device)
        q = pts[todo.to(device)]
        d2 = torch.cdist(q, pts).pow(2)
        ii, jj = torch.nonzero(d2 < r2, as_tuple=True)
        i = torch.cat([i, todo.to(device)[ii]])
        j = torch.cat([j, jj])
    return i, j


def _projection(points: torch.Tensor, dims: int) -> torch.Tensor:
    """Orthonormal projection onto the ``dims`` leading principal axes (distance non-increasing)."""
    if dims >= points.shape[1]:
        return points
    return points @ _principal_axes(points)[:, :dims].to(points.dtype)


def _grid_cells(proj: torch.Tensor, r: float):
    """Cell keys of side ``r`` (padded by one cell each side) and the sorted-cell CSR layout."""
    device = proj.device
    g = proj.shape[1]
    cell = torch.floor((proj - proj.min(0).values) / r).long() + 1
    extent = cell.max(0).values + 2
    if float(torch.prod(extent.double())) > 2**62:
        return None
    strides = torch.ones(g, dtype=torch.long, device=device)
    for d in range(g - 2, -1, -1):
        strides[d] = strides[d + 1] * extent[d + 1]
    key = (cell * strides).sum(1)
    order = torch.argsort(key)
    uniq, counts = torch.unique_consecutive(key[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    # Half of the 3^g neighbouring cells (the zero offset and those whose first non-zero
    # component is +1): every unordered pair of points in neighbouring cells is then seen once
    # (same-cell pairs twice, i<j kept later), half the work of the full stencil.
    grids = torch.meshgrid(*[torch.tensor([-1, 0, 1], device=device)] * g, indexing="ij")
    stencil = torch.stack([m.reshape(-1) for m in grids], 1)
    nonzero = stencil != 0
    first = torch.where(
        nonzero.any(1), nonzero.float().argmax(1), torch.zeros(len(stencil), dtype=torch.long, device=device)
    )
    sign = stencil.gather(1, first[:, None]).squeeze(1)
    half = (sign > 0) | ~nonzero.any(1)
    offsets = (stencil[half] * strides).sum(1)
    return key, order, uniq, counts, starts, offsets


def _cell_ranges(key, uniq, counts, starts, offsets, s: int, e: int):
    """For queries s..e-1 and each neighbouring-cell offset: (start, count) in sorted order."""
    nb_key = key[s:e, None] + offsets[None, :]
    pos = torch.searchsorted(uniq, nb_key).clamp_(max=uniq.numel() - 1)
    found = uniq[pos] == nb_key
    zero = torch.zeros_like(pos)
    return torch.where(found, starts[pos], zero), torch.where(found, counts[pos], zero)


_COST_SAMPLE = 4096


def _grid_cost(cells, n: int) -> float:
    """Work estimate of one grid layout: cell look-ups plus candidate pairs to check, measured on
    an evenly strided sample of queries (the choice only affects speed, never the result)."""
    key, _, uniq, counts, starts, offsets = cells
    step = max(1, n // _COST_SAMPLE)
    sample_key = key[::step]
    _, ct = _cell_ranges(sample_key, uniq, counts, starts, offsets, 0, sample_key.numel())
    return (float(ct.sum()) + 4.0 * sample_key.numel() * offsets.numel()) * n / sample_key.numel()


def _candidates_grid(
    points: torch.Tensor, r: float, chunk_size: int, grid_dims: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    device = points.device
    n, dim = points.shape
    if grid_dims is None:
        # pick the number of projected dimensions with the least estimated work
        max_dims = min(dim, 6)
        proj_all = _projection(points, max_dims)
        best, best_cost = None, math.inf
        for g in range(1, max_dims + 1):
            cells = _grid_cells(proj_all[:, :g], r)
            if cells is None:
                break
            cost = _grid_cost(cells, n)
            if cost < best_cost:
                best, best_cost = cells, cost
            elif cost > 1.5 * best_cost:
                break
        cells = best
    else:
        cells = _grid_cells(_projection(points, max(1, min(grid_dims, dim))), r)
    if cells is None:
        raise ValueError("grid too fine for int64 cell keys; use fewer grid_dims or a larger radius")
    key, order, uniq, counts, starts, offsets = cells
    n_off = offsets.numel()
    s = 0
    rows = max(1, chunk_size // n_off)
    while s < n:
        # expand queries s..e-1 so that each chunk holds at most ~chunk_size candidate pairs
        e = min(n, s + rows)
        st, ct = _cell_ranges(key, uniq, counts, starts, offsets, s, e)
        cum = torch.cumsum(ct.sum(1), 0)
        e_fit = int(torch.searchsorted(cum, torch.tensor(chunk_size, device=device), right=True))
        e_fit = max(e_fit, 1)
        st, ct = st[:e_fit].reshape(-1), ct[:e_fit].reshape(-1)
        q = torch.arange(s, s + e_fit, device=device).repeat_interleave(n_off).repeat_interleave(ct)
        seg_first = torch.cumsum(ct, 0) - ct
        local = torch.arange(int(ct.sum()), device=device) - seg_first.repeat_interleave(ct)
        j = order[st.repeat_interleave(ct) + local]
        # same-cell pairs appear in both orders; cross-cell pairs once
        same_cell = key[q] == key[j]
        keep = ~same_cell | (q < j)
        yield q[keep], j[keep], True
        s += e_fit
