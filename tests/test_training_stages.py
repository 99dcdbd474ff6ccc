"""Edge-classifier stages on synthetic events: train filter and GNN, apply, score, clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from synthetic import make_event

from gnntrack.edge_classification import run_score_graphs
from gnntrack.edge_filter import FilterConfig, run_apply_filter, run_train_filter
from gnntrack.gnn import GNNConfig, run_train_gnn
from gnntrack.io.errors import InputError
from gnntrack.io.event_store import write_events
from gnntrack.io.graph_store import make_graph, read_graphs, write_graphs
from gnntrack.models import load_model
from gnntrack.models.registry import read_model_info

# tiny models: one thread avoids oversubscribing the shared CI/laptop cores
torch.set_num_threads(1)


def candidate_edges(event, max_dphi: float = 0.25, max_deta: float = 0.3) -> np.ndarray:
    """A loose layer-to-next-layer doublet graph (stand-in for graph construction)."""
    h = event.hits
    layer = h["layer_disk"].astype(np.int64) + 5 * h["hardware"].astype(np.int64)
    src, dst = [], []
    for lay in range(int(layer.max())):
        a, b = np.flatnonzero(layer == lay), np.flatnonzero(layer == lay + 1)
        if not len(a) or not len(b):
            continue
        dphi = np.abs((h["phi"][b][None] - h["phi"][a][:, None] + np.pi) % (2 * np.pi) - np.pi)
        deta = np.abs(h["eta"][b][None] - h["eta"][a][:, None])
        i, j = np.nonzero((dphi < max_dphi) & (deta < max_deta))
        src.append(a[i])
        dst.append(b[j])
    return np.stack([np.concatenate(src), np.concatenate(dst)]).astype(np.int64)


def write_shard(tmp_path, name: str, seeds, n_particles=60, n_noise=40):
    events = [
        make_event(n_particles=n_particles, n_noise=n_noise, seed=s, event_number=s, pt_range=(0.5, 10.0))
        for s in seeds
    ]
    ef, gf = tmp_path / f"events_{name}.h5", tmp_path / f"graphs_{name}.h5"
    write_events(ef, events)
    write_graphs(gf, [make_graph(candidate_edges(ev), ev) for ev in events], stage="test")
    return ef, gf


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    return {"train": write_shard(tmp, "train", [1, 2, 3]), "val": write_shard(tmp, "val", [10, 11])}


SMALL_TRAIN = {"epochs": 15, "lr": 1e-2, "progress": "off", "monitor": "masked_auc", "mode": "max"}


def test_filter_trains_applies_and_cuts(shards, tmp_path):
    (tr_e, tr_g), (va_e, va_g) = shards["train"], shards["val"]
    cfg = {"hidden": 32, "n_layers": 2, "train": SMALL_TRAIN, "score_cut": 0.2, "max_edges_per_step": 800}
    summary = run_train_filter([tr_e], [tr_g], [va_e], [va_g], tmp_path / "filter.pt", cfg, device="cpu")
    hist = summary["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert summary["best_metric"] > 0.9  # AUC: geometry separates helix doublets from random ones

    out = tmp_path / "filtered.h5"
    metrics = run_apply_filter(va_e, va_g, tmp_path / "filter.pt", out, cfg, device="cpu")
    before, after = read_graphs(va_g), read_graphs(out)
    assert [g.key for g in before] == [g.key for g in after]
    for b, a in zip(before, after):
        assert a.n_edges < b.n_edges
        assert np.all(a.scores["filter"] >= 0.2) and np.all(np.isfinite(a.scores["filter"]))
    assert metrics["edges_out"] == sum(a.n_edges for a in after)
    assert metrics["efficiency"] > 0.9 and metrics["true_purity"] > np.mean(
        np.concatenate([b.y for b in before])
    )
    with h5py.File(out) as f:
        assert f.attrs["stage"] == "filter"


def test_filter_cut_at_target_efficiency_is_stored_and_applied(shards, tmp_path):
    """With target_efficiency the model stores the highest cut keeping that fraction of the
    validation target edges, and apply_filter (config cut ignored) keeps exactly that."""
    (tr_e, tr_g), (va_e, va_g) = shards["train"], shards["val"]
    train = {**SMALL_TRAIN, "epochs": 3}
    cfg = {"hidden": 16, "n_layers": 1, "train": train, "target_efficiency": 0.97, "max_edges_per_step": 800}
    summary = run_train_filter([tr_e], [tr_g], [va_e], [va_g], tmp_path / "filter.pt", cfg, device="cpu")
    wp = read_model_info(tmp_path / "filter.pt")["working_point"]
    assert wp == summary["working_point"] and wp["criterion"] == "target_efficiency"
    assert wp["efficiency"] >= 0.97 and wp["score_cut"] > 0
    out = tmp_path / "filtered.h5"
    metrics = run_apply_filter(va_e, va_g, tmp_path / "filter.pt", out, {"score_cut": 0.9}, device="cpu")
    assert metrics["score_cut"] == wp["score_cut"] and metrics["efficiency"] == wp["efficiency"] >= 0.97
    assert all(np.all(g.scores["filter"] >= wp["score_cut"]) for g in read_graphs(out))


def test_gnn_trains_on_regions_and_scores_full_events(shards, tmp_path):
    (tr_e, tr_g), (va_e, va_g) = shards["train"], shards["val"]
    cfg = GNNConfig(hidden=16, n_graph_iters=2, n_node_layers=1, n_edge_layers=1)
    cfg.train.__dict__.update(SMALL_TRAIN)
    cfg.regions.n_eta, cfg.regions.n_phi = 2, 2
    summary = run_train_gnn([tr_e], [tr_g], [va_e], [va_g], tmp_path / "gnn.pt", cfg, device="cpu")
    assert summary["n_train_items"] > 3  # events were cut into regions
    assert summary["history"][-1]["train_loss"] < summary["history"][0]["train_loss"]
    assert summary["best_metric"] > 0.8

    model = load_model(tmp_path / "gnn.pt")
    assert model.node_features == tuple(cfg.node_features)
    out = tmp_path / "scored.h5"
    metrics = run_score_graphs(va_e, va_g, tmp_path / "gnn.pt", out, "gnn", device="cpu")
    scored = read_graphs(out)
    assert all(g.n_edges == b.n_edges for g, b in zip(scored, read_graphs(va_g)))
    assert all(np.all(np.isfinite(g.scores["gnn"])) for g in scored)
    assert metrics["masked_auc"] == pytest.approx(summary["best_metric"], abs=1e-4)


def test_mismatched_inputs_are_input_errors(shards, tmp_path):
    (tr_e, tr_g), (va_e, va_g) = shards["train"], shards["val"]
    with pytest.raises(InputError, match="no such event"):
        run_score_graphs(tr_e, va_g, FilterConfigModel(), tmp_path / "x.h5", device="cpu")
    with pytest.raises(InputError, match="pair by shard"):
        run_train_filter(
            [tr_e, va_e], [tr_g], [va_e], [va_g], tmp_path / "f.pt", {"train": {"epochs": 1}}, "cpu"
        )
    with pytest.raises(InputError, match="does not exist"):
        run_apply_filter(va_e, va_g, tmp_path / "missing.pt", tmp_path / "y.h5", FilterConfig(), device="cpu")
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()


def FilterConfigModel():
    from gnntrack.models import FilterModel

    return FilterModel(FilterConfig(hidden=8, n_layers=1))


def test_event_without_edges_is_skipped_not_averaged(tmp_path):
    ev, ev2 = make_event(seed=1), make_event(seed=2, event_number=1)
    write_events(tmp_path / "e.h5", [ev, ev2])
    graphs = [make_graph(np.zeros((2, 0), np.int64), ev), make_graph(candidate_edges(ev2), ev2)]
    write_graphs(tmp_path / "g.h5", graphs, stage="test")
    cfg = {"hidden": 8, "n_graph_iters": 1, "train": {"epochs": 2, "progress": "off"}}
    files = ([tmp_path / "e.h5"], [tmp_path / "g.h5"])
    summary = run_train_gnn(*files, *files, tmp_path / "gnn.pt", cfg, "cpu")
    assert all(h["skipped_steps"] == 1 for h in summary["history"])
    metrics = run_score_graphs(tmp_path / "e.h5", tmp_path / "g.h5", tmp_path / "gnn.pt", tmp_path / "s.h5")
    assert [g.n_edges for g in read_graphs(tmp_path / "s.h5")] == [0, graphs[1].n_edges]
    assert metrics["n_events"] == 2 and np.isfinite(metrics["efficiency"])
