"""Truth links of spacepoints and the truth graph against a plain-Python reference."""

from __future__ import annotations

import numpy as np
from test_io_rawgen import make_raw_event

from gnntrack.conversion.convert import event_from_gnn4itk
from gnntrack.conversion.truth import (
    build_truth_graph,
    first_particle,
    hit_particle_links,
    link_particles,
    particle_counts,
    vertex_distance,
)


def _reference_graph(hit_particle, module, dist):
    """acorn's module-wise truth, one particle at a time (slow, obviously right)."""
    edges = set()
    for p in np.unique(hit_particle[1]):
        links = np.flatnonzero(hit_particle[1] == p)
        links = links[np.argsort(dist[links], kind="stable")]
        groups: dict = {}
        for k in links:
            groups.setdefault(int(module[hit_particle[0][k]]), []).append(int(hit_particle[0][k]))
        seq = list(groups.values())
        for a, b in zip(seq[:-1], seq[1:]):
            edges |= {(i, j, int(p)) for i in a for j in b}
    return edges


def test_pixel_strip_and_ghost_links():
    # clusters: 0 -> (p0, p1) merged, 1 -> p1, 2 -> p0, 3 -> none, 4 -> unknown particle
    link_count = np.array([2, 1, 1, 0, 1])
    link_particle = np.array([0, 1, 1, 0, -1])
    cl1 = np.array([0, 1, 0, 3, 4, 2])
    cl2 = np.array([-1, 2, 2, -1, -1, 0])
    hp = hit_particle_links(cl1, cl2, link_count, link_particle)
    pairs = {tuple(x) for x in hp.T.tolist()}
    # hit 0 pixel merged: both; hit 1 strip p1/p0: ghost; hit 2 strip (p0,p1)&(p0): p0;
    # hit 3 noise; hit 4 unknown particle; hit 5 strip (p0)&(p0,p1): p0
    assert pairs == {(0, 0), (0, 1), (2, 0), (5, 0)}
    assert first_particle(hp, 6).tolist() == [0, -1, 0, -1, -1, 0]


def test_link_particles_maps_subevent_and_barcode():
    rows = link_particles(
        np.array([0, 1, 1, 2]), np.array([5, 5, 200001, 5]), np.array([1, 0, 1]), np.array([5, 5, 200001])
    )
    assert rows.tolist() == [1, 0, 2, -1]


def test_truth_graph_matches_reference_and_orders_by_distance():
    raw = make_raw_event(seed=5, n_particles=150, merge_distance=6.0)
    ev = event_from_gnn4itk(raw)
    hits, parts = ev.hits, ev.particles
    xyz = np.stack([hits["x"], hits["y"], hits["z"]], 1)
    vtx = np.stack([parts["vx"], parts["vy"], parts["vz"]], 1)
    dist = vertex_distance(xyz, vtx, ev.hit_particle)
    got = {tuple(x) for x in np.vstack([ev.truth_edges, ev.truth_edge_particle[None]]).T.tolist()}
    assert got == _reference_graph(ev.hit_particle, hits["module_id"], dist)
    assert len(got) == ev.truth_edges.shape[1]  # no duplicates
    # inner -> outer along the particle, never within one module
    v = vtx[ev.truth_edge_particle]
    d_src = np.linalg.norm(xyz[ev.truth_edges[0]] - v, axis=1)
    d_dst = np.linalg.norm(xyz[ev.truth_edges[1]] - v, axis=1)
    assert np.all(d_src <= d_dst)
    assert np.all(hits["module_id"][ev.truth_edges[0]] != hits["module_id"][ev.truth_edges[1]])
    # helices outward from the beam line in a barrel: edges go to larger radius
    assert np.mean(hits["r"][ev.truth_edges[1]] > hits["r"][ev.truth_edges[0]]) > 0.99


def test_module_groups_connect_all_to_all():
    # one particle: hits 0,1 on module A (double hit), 2 on B, 3,4 on C; hit 5 on A again but farther
    hp = np.array([[0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 0]])
    module = np.array([10, 10, 20, 30, 30, 10], np.uint64)
    dist = np.array([1.0, 1.5, 2.0, 3.0, 3.1, 9.0])
    edges, ep = build_truth_graph(hp, module, dist)
    # module A sits at its nearest hit: groups A{0,1,5} -> B{2} -> C{3,4}
    assert {tuple(e) for e in edges.T.tolist()} == {(0, 2), (1, 2), (5, 2), (2, 3), (2, 4)}
    assert np.all(ep == 0)
    n_sp, n_mod = particle_counts(hp, module, 2)
    assert n_sp.tolist() == [6, 0] and n_mod.tolist() == [3, 0]


def test_counts_and_single_hit_particles_make_no_edges():
    hp = np.array([[0, 1, 2], [0, 1, 1]])
    module = np.array([1, 2, 3], np.uint64)
    edges, ep = build_truth_graph(hp, module, np.array([1.0, 1.0, 2.0]))
    assert edges.T.tolist() == [[1, 2]] and ep.tolist() == [1]
    empty, _ = build_truth_graph(np.zeros((2, 0), np.int64), module, np.zeros(0))
    assert empty.shape == (2, 0)
