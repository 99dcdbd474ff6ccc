"""Truth matching of spacepoints to particles and the truth graph, vectorised.

At <mu>=200 an event has ~10^4 particles and ~10^5 spacepoints, so nothing here loops over
particles or hits in Python: links are CSR arrays and every step is a sort, a search or a
repeat.

Conventions:
- a pixel spacepoint carries every particle linked to its cluster (merged clusters: several);
- a strip spacepoint carries a particle only when BOTH of its clusters link to it (otherwise it
  is a ghost or a fake and carries none);
- truth graph: per particle, its spacepoints ordered by 3-D distance from the production vertex
  and grouped by module (a group sits at its nearest spacepoint, as acorn's module-wise truth);
  every spacepoint of a group connects to every spacepoint of the next group, inner -> outer.
"""

from __future__ import annotations

import numpy as np


def particle_keys(subevent: np.ndarray, barcode: np.ndarray) -> np.ndarray:
    """One int64 per particle identity (sub-event index, barcode)."""
    return (np.asarray(subevent, np.int64) << np.int64(32)) + (np.asarray(barcode, np.int64) & 0xFFFFFFFF)


def link_particles(
    link_subevent: np.ndarray, link_barcode: np.ndarray, part_subevent: np.ndarray, part_barcode: np.ndarray
) -> np.ndarray:
    """Particle row of each truth link, -1 where the (sub-event, barcode) is not in the particle table.

    ATLAS dumps link clusters to particles that may have been dropped from the particle list
    (e.g. below the dump's pT threshold); such links carry no truth.
    """
    keys = particle_keys(part_subevent, part_barcode)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    want = particle_keys(link_subevent, link_barcode)
    if len(sorted_keys) == 0:
        return np.full(len(want), -1, np.int64)
    pos = np.clip(np.searchsorted(sorted_keys, want), 0, len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == want, order[pos], -1).astype(np.int64)


def _csr_gather(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``rows``, all positions offsets[row]..offsets[row+1]: (owner index, position)."""
    counts = offsets[rows + 1] - offsets[rows]
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    first = np.repeat(offsets[rows] - (np.cumsum(counts) - counts), counts)
    return owner, first + np.arange(total, dtype=np.int64)


def hit_particle_links(
    cl1_row: np.ndarray, cl2_row: np.ndarray, link_count: np.ndarray, link_particle: np.ndarray
) -> np.ndarray:
    """(2, L) int64 (hit row, particle row) pairs: every truth link of every spacepoint.

    ``link_count`` is the number of links of each cluster row and ``link_particle`` the particle
    row of each link, cluster-major (-1 for unknown particles, dropped). Order: by hit, then by
    the link order of the hit's first cluster (so the first pair of a hit is its main particle).
    """
    cl1_row = np.asarray(cl1_row, np.int64)
    cl2_row = np.asarray(cl2_row, np.int64)
    link_particle = np.asarray(link_particle, np.int64)
    n_clusters = len(link_count)
    link_cluster = np.repeat(np.arange(n_clusters, dtype=np.int64), np.asarray(link_count, np.int64))
    valid = link_particle >= 0
    link_cluster, link_particle = link_cluster[valid], link_particle[valid]
    offsets = np.zeros(n_clusters + 1, np.int64)
    np.cumsum(np.bincount(link_cluster, minlength=n_clusters), out=offsets[1:])
    if len(cl1_row) == 0 or len(link_particle) == 0:
        return np.zeros((2, 0), np.int64)
    n_part = np.int64(link_particle.max() + 1)

    hit, pos = _csr_gather(offsets, cl1_row)
    particle = link_particle[pos]
    # strip spacepoints: the particle must also be linked to the second cluster
    c2 = cl2_row[hit]
    strip = c2 >= 0
    if strip.any():
        cl_codes = np.sort(link_cluster * n_part + link_particle)
        want = c2[strip] * n_part + particle[strip]
        at = np.clip(np.searchsorted(cl_codes, want), 0, len(cl_codes) - 1)
        keep = np.ones(len(hit), bool)
        keep[strip] = cl_codes[at] == want
        hit, particle = hit[keep], particle[keep]
    # a cluster may link the same particle twice: keep the first
    _, first = np.unique(hit * n_part + particle, return_index=True)
    first.sort()
    return np.stack([hit[first], particle[first]])


def vertex_distance(hit_xyz: np.ndarray, vertex_xyz: np.ndarray, hit_particle: np.ndarray) -> np.ndarray:
    """3-D distance of each (hit, particle) link's spacepoint from that particle's production vertex."""
    d = np.asarray(hit_xyz, np.float64)[hit_particle[0]] - np.asarray(vertex_xyz, np.float64)[hit_particle[1]]
    return np.sqrt(np.einsum("ij,ij->i", d, d))


def _module_groups(hit_particle: np.ndarray, hit_module: np.ndarray, distance: np.ndarray):
    """Links sorted into (particle, module) groups ordered by distance: (links, group sizes, group particle)."""
    hit, particle = hit_particle
    _, module = np.unique(np.asarray(hit_module)[hit], return_inverse=True)
    module = module.reshape(-1).astype(np.int64)
    n_mod = np.int64(module.max() + 1) if len(module) else np.int64(1)
    order = np.lexsort((distance, particle))  # by particle, then distance from its vertex
    group_code = (particle * n_mod + module)[order]
    _, first, inverse = np.unique(group_code, return_index=True, return_inverse=True)
    # group rank = position of the group's nearest spacepoint in the (particle, distance) order
    rank_of_group = np.empty(len(first), np.int64)
    rank_of_group[np.argsort(first, kind="stable")] = np.arange(len(first))
    rank = rank_of_group[inverse.reshape(-1)]
    within = np.lexsort((np.arange(len(order)), rank))  # stable: keeps distance order inside a group
    links = order[within]
    sizes = np.bincount(rank, minlength=len(first))
    group_particle = particle[links[np.cumsum(sizes) - sizes]] if len(links) else np.zeros(0, np.int64)
    return links, sizes, group_particle


def build_truth_graph(
    hit_particle: np.ndarray, hit_module: np.ndarray, distance: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """True edges (2, E) int64 inner -> outer and their particle rows (E,).

    ``hit_particle``: (2, L) links; ``hit_module``: module id of every hit row; ``distance``:
    (L,) distance of each link's hit from its particle's production vertex.
    """
    hit_particle = np.asarray(hit_particle, np.int64)
    if hit_particle.shape[1] == 0:
        return np.zeros((2, 0), np.int64), np.zeros(0, np.int64)
    links, sizes, group_particle = _module_groups(hit_particle, hit_module, np.asarray(distance, np.float64))
    starts = np.cumsum(sizes) - sizes
    pair = np.flatnonzero(group_particle[:-1] == group_particle[1:])  # group k -> k + 1, same particle
    a, b = sizes[pair], sizes[pair + 1]
    n_edges = a * b
    total = int(n_edges.sum())
    which = np.repeat(np.arange(len(pair)), n_edges)
    t = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n_edges) - n_edges, n_edges)
    src_link = links[starts[pair][which] + t // b[which]]
    dst_link = links[starts[pair + 1][which] + t % b[which]]
    hit = hit_particle[0]
    edges = np.stack([hit[src_link], hit[dst_link]])
    return edges, hit_particle[1][src_link]


def particle_counts(
    hit_particle: np.ndarray, hit_module: np.ndarray, n_particles: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n_spacepoints, n_modules) of every particle row."""
    hit, particle = np.asarray(hit_particle, np.int64)
    n_sp = np.bincount(particle, minlength=n_particles).astype(np.int32)
    if len(hit) == 0:
        return n_sp, np.zeros(n_particles, np.int32)
    _, module = np.unique(np.asarray(hit_module)[hit], return_inverse=True)
    code = np.sort(particle * np.int64(module.max() + 1) + module.reshape(-1))
    code = code[np.r_[True, code[1:] != code[:-1]]]  # distinct (particle, module)
    n_mod = np.bincount(code // np.int64(module.max() + 1), minlength=n_particles).astype(np.int32)
    return n_sp, n_mod


def first_particle(hit_particle: np.ndarray, n_hits: int) -> np.ndarray:
    """Particle row of each hit's first truth link, -1 for noise, ghosts and fakes."""
    out = np.full(n_hits, -1, np.int64)
    hit, particle = np.asarray(hit_particle, np.int64)
    uniq, first = np.unique(hit, return_index=True)
    out[uniq] = particle[first]
    return out
