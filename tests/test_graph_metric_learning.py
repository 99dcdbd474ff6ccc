"""Metric learning: a short training improves the radius graph; model file -> graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import SMALL_EMBEDDING as SMALL
from synthetic import make_event

from gnntrack.config import ConfigError, from_dict
from gnntrack.graph_construction import (
    EmbeddingBuilder,
    GraphConstructionConfig,
    MetricLearningConfig,
    MetricLearningTask,
    build_graph_edges,
    run_build_graphs,
    run_train_metric_learning,
)
from gnntrack.graph_construction.metric_learning import make_item
from gnntrack.io.event_store import write_events
from gnntrack.io.graph_store import read_graphs
from gnntrack.models import load_model
from gnntrack.models.embedding import EmbeddingMLP
from gnntrack.training import fit


@pytest.fixture(scope="module")
def events():
    return [make_event(n_particles=50, n_noise=20, seed=s, event_number=s) for s in range(8)]


def test_training_improves_efficiency_at_fixed_radius(events, tmp_path):
    cfg = from_dict(MetricLearningConfig, SMALL)
    items = [make_item(ev, cfg) for ev in events]
    torch.manual_seed(0)
    task = MetricLearningTask(cfg)
    before = task.evaluate(items[6:], torch.device("cpu"))
    result = fit(task, items[:6], items[6:], cfg.train, tmp_path / "ml.pt", "cpu")
    after = task.evaluate(items[6:], torch.device("cpu"))
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    assert after["loss"] < before["loss"]
    assert after["eff"] > before["eff"] + 0.2
    assert after["eff"] > 0.5


def test_embedding_is_normalised_and_config_round_trips():
    m = EmbeddingMLP(emb_dim=5, hidden=16, n_layers=1, r_max=0.3, k_max=7)
    x = torch.randn(10, len(m.node_features))
    out = m(x)
    assert out.shape == (10, 5)
    assert torch.allclose(out.norm(dim=1), torch.ones(10), atol=1e-5)
    again = EmbeddingMLP(**m.config)
    assert again.config == m.config and again.r_max == 0.3 and again.k_max == 7
    with pytest.raises(ConfigError):
        from_dict(MetricLearningConfig, {"backend": "octree"})
    with pytest.raises(ConfigError):
        from_dict(MetricLearningConfig, {"r_max": 0.0})


def test_stage_writes_a_model_that_builds_graphs(events, tmp_path):
    train, val = tmp_path / "train.h5", tmp_path / "val.h5"
    write_events(train, events[:3])
    write_events(val, events[3:4])
    out = tmp_path / "models" / "metric_learning.pt"
    cfg = dict(SMALL, train={"epochs": 2, "progress": "off"})
    summary = run_train_metric_learning([train], [val], out, cfg, device="cpu")
    assert out.exists() and summary["epochs_run"] == 2
    model = load_model(out, "cpu")
    assert model.r_max == SMALL["r_max"] and model.k_max == SMALL["k_max"]
    builder = EmbeddingBuilder(model, device="cpu")
    edges = build_graph_edges(events[4], builder)
    r = events[4].hits["r"]
    assert edges.shape[0] == 2 and np.all(r[edges[0].numpy()] <= r[edges[1].numpy()])
    # backends give the same graph
    grid = EmbeddingBuilder(model, backend="grid", device="cpu").build_edges(events[4].hits)
    assert torch.equal(
        grid, EmbeddingBuilder(model, backend="brute", device="cpu").build_edges(events[4].hits)
    )
    graphs_out = tmp_path / "graphs.h5"
    run_build_graphs(val, graphs_out, GraphConstructionConfig(method="metric_learning", k_max=4), model=out)
    (g,) = read_graphs(graphs_out)
    assert g.key == events[3].key and g.n_hits == events[3].n_hits
    # the k_max override caps each hit's neighbour list: at most k_max edges per hit
    assert 0 < g.n_edges <= g.n_hits * 4 < builder.build_edges(events[3].hits).shape[1]


def test_max_train_events_limits_the_training_events(events, tmp_path, monkeypatch):
    """The first max_train_events events, each repeated samples_per_event times (the epoch's steps)."""
    import gnntrack.graph_construction.metric_learning as ml

    train, val = tmp_path / "train.h5", tmp_path / "val.h5"
    write_events(train, events[:3])
    write_events(val, events[3:4])
    seen = {}
    monkeypatch.setattr(ml, "fit", lambda task, items, *a, **k: seen.setdefault(len(seen), items))
    for limit in (None, 1):
        cfg = dict(SMALL, samples_per_event=2, max_train_events=limit)
        run_train_metric_learning([train], [val], tmp_path / "ml.pt", cfg, device="cpu")
    assert [[it.key for it in items] for items in seen.values()] == [
        [ev.key for ev in events[:3] for _ in range(2)],
        [events[0].key] * 2,
    ]
