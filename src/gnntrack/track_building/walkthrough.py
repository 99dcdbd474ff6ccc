"""The walkthrough half of acorn's "CC and walk" track building.

Connected components alone merge two tracks as soon as one wrong edge survives the score cut.
Components that are simple chains (every hit has at most one incoming and one outgoing edge)
cannot hide a merge and are taken as they are; the others contain a junction, and there each
track is walked hit by hit from a starting hit along its best-scoring outward edge, so a fork
splits into one track per branch. Every hit is used by at most one track.
"""

from __future__ import annotations

import heapq

import numpy as np


def walk_tracks(
    edge_index: np.ndarray, scores: np.ndarray, n_hits: int, nodes: np.ndarray, min_score: float
) -> list[np.ndarray]:
    """Walk tracks through the subgraph induced by ``nodes`` on edges with score > ``min_score``.

    Start hits are taken in topological order of the directed graph (edges point away from the
    beam), so a walk starts at the innermost unused hit of its branch. At each step the walk takes
    the highest-scoring outgoing edge to a hit that no track has used yet. Returns the walked hit
    sequences, including short ones (the caller applies the length cut).
    """
    in_set = np.zeros(n_hits, dtype=bool)
    in_set[nodes] = True
    keep = (scores > min_score) & in_set[edge_index[0]] & in_set[edge_index[1]]
    src, dst, sc = edge_index[0, keep], edge_index[1, keep], scores[keep]
    # CSR adjacency, each hit's outgoing edges sorted by decreasing score (ties: smaller target)
    order = np.lexsort((dst, -sc, src))
    src, dst = src[order], dst[order]
    ptr = np.zeros(n_hits + 1, dtype=np.int64)
    np.add.at(ptr, src + 1, 1)
    ptr = np.cumsum(ptr)

    start_order = _topological_order(src, dst, n_hits, np.sort(nodes))
    used = np.zeros(n_hits, dtype=bool)
    ptr_l, dst_l = ptr.tolist(), dst.tolist()
    tracks = []
    for start in start_order:
        if used[start]:
            continue
        track = [start]
        used[start] = True
        node = start
        while True:
            nxt = -1
            for j in range(ptr_l[node], ptr_l[node + 1]):
                if not used[dst_l[j]]:
                    nxt = dst_l[j]
                    break
            if nxt < 0:
                break
            used[nxt] = True
            track.append(nxt)
            node = nxt
        tracks.append(np.asarray(track, dtype=np.int64))
    return tracks


def _topological_order(src: np.ndarray, dst: np.ndarray, n_hits: int, nodes: np.ndarray) -> list[int]:
    """Kahn's order of ``nodes`` (smallest index first among ready hits); nodes left on cycles follow."""
    indeg = np.zeros(n_hits, dtype=np.int64)
    np.add.at(indeg, dst, 1)
    ptr = np.zeros(n_hits + 1, dtype=np.int64)
    np.add.at(ptr, src + 1, 1)
    ptr = np.cumsum(ptr)
    # adjacency sorted by source already (src is sorted by the caller's lexsort)
    dst_l, ptr_l, indeg_l = dst.tolist(), ptr.tolist(), indeg.tolist()
    ready = [int(n) for n in nodes if indeg_l[n] == 0]
    heapq.heapify(ready)
    out, seen = [], np.zeros(n_hits, dtype=bool)
    while ready:
        n = heapq.heappop(ready)
        out.append(n)
        seen[n] = True
        for j in range(ptr_l[n], ptr_l[n + 1]):
            m = dst_l[j]
            indeg_l[m] -= 1
            if indeg_l[m] == 0:
                heapq.heappush(ready, m)
    if len(out) < len(nodes):
        out.extend(int(n) for n in nodes if not seen[n])
    return out
