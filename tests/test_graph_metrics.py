"""Graph metrics on graphs whose right answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import make_event

from gnntrack.io.event_store import write_events
from gnntrack.io.graph_store import make_graph, write_graphs
from gnntrack.metrics import graph_metrics


@pytest.fixture(scope="module")
def event():
    return make_event(n_particles=60, n_noise=30, seed=4)


def test_truth_graph_is_fully_efficient(event):
    g = make_graph(event.truth_edges, event)
    m = graph_metrics([g], [event])
    target = np.asarray(event.particles["is_target"], bool)
    tgt_edge = target[event.truth_edge_particle]
    assert m["efficiency"] == 1.0
    assert m["purity"] == pytest.approx(tgt_edge.mean())
    assert m["masked_purity"] == 1.0  # only true edges: the non-target ones are masked out
    assert m["true_purity"] == 1.0
    assert m["edges_per_event"] == event.truth_edges.shape[1]
    # every target particle has >= 3 hits on one chain: truth-CC reconstructs all of them
    assert m["truth_cc"]["efficiency"] == 1.0 and m["truth_cc"]["n_target"] == int(target.sum())
    assert sum(m["efficiency_vs_pt"]["n_edges"]) == m["n_target_truth_edges"] == int(tgt_edge.sum())


def test_missing_edges_and_fakes(event, tmp_path):
    target = np.asarray(event.particles["is_target"], bool)
    tgt_edge = target[event.truth_edge_particle]
    first_tgt = np.flatnonzero(tgt_edge)[0]
    keep = np.ones(event.truth_edges.shape[1], bool)
    keep[first_tgt] = False  # drop one target edge: its particle splits in two pieces
    noise = np.flatnonzero(event.hits["particle_index"] < 0)
    fakes = np.stack([noise[:5], noise[5:10]])
    edges = np.concatenate([event.truth_edges[:, keep][::-1], fakes], axis=1)  # reversed direction too
    ev_file, g_file = tmp_path / "ev.h5", tmp_path / "g.h5"
    write_events(ev_file, [event])
    write_graphs(g_file, [make_graph(edges, event)], stage="test")
    m = graph_metrics(g_file, [ev_file])
    n_t = int(tgt_edge.sum())
    n_true_kept = int(keep.sum())
    assert m["efficiency"] == pytest.approx((n_t - 1) / n_t)
    assert m["purity"] == pytest.approx((n_t - 1) / edges.shape[1])
    assert m["masked_purity"] == pytest.approx((n_t - 1) / (n_t - 1 + 5))
    assert m["true_purity"] == pytest.approx(n_true_kept / edges.shape[1])
    assert m["truth_cc"]["n_reconstructed"] <= m["truth_cc"]["n_target"]
    eff_pt = np.array(m["efficiency_vs_pt"]["efficiency"], float)
    assert np.nanmin(eff_pt) < 1.0 <= np.nanmax(eff_pt)
    assert len(m["efficiency_vs_eta"]["efficiency"]) == len(m["efficiency_vs_eta"]["bins"]) - 1


def test_empty_graph(event):
    g = make_graph(np.zeros((2, 0), np.int64), event)
    m = graph_metrics([g], [event])
    assert m["efficiency"] == 0.0 and m["purity"] is None and m["truth_cc"]["efficiency"] == 0.0
