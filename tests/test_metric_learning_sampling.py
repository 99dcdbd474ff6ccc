"""Metric learning on samples of hits: what a sample holds, and that training on samples works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import SMALL_EMBEDDING, make_event

from gnntrack.config import ConfigError, from_dict
from gnntrack.graph_construction import MetricLearningConfig, MetricLearningTask
from gnntrack.graph_construction.metric_learning import make_item, restrict_truth, sample_hits
from gnntrack.training import fit


def _eta_phi_d2(item, centre):
    dphi = np.remainder(item.phi.numpy() - item.phi.numpy()[centre] + np.pi, 2 * np.pi) - np.pi
    return (item.eta.numpy() - item.eta.numpy()[centre]) ** 2 + dphi**2


def test_sample_is_a_region_around_a_target_hit_plus_random_hits_and_its_truth_edges():
    cfg = from_dict(MetricLearningConfig, {"sample_hits": 50, "sample_random_hits": 10})
    item = make_item(make_event(n_particles=60, n_noise=40, seed=3), cfg)
    n = item.x.shape[0]
    assert n > 200
    target_hits = set(item.target_truth.reshape(-1).tolist())
    for seed in range(5):
        nodes = sample_hits(item, cfg, torch.Generator().manual_seed(seed))
        ids = nodes.tolist()
        assert ids == sorted(set(ids)) and ids[0] >= 0 and ids[-1] < n
        assert 50 <= len(ids) <= 60
        # some target hit is the centre: its 50 nearest hits in (eta, phi) all belong to the sample
        members = set(ids)
        assert any(
            set(np.argsort(_eta_phi_d2(item, c), kind="stable")[:50].tolist()) <= members
            for c in members & target_hits
        )
        # the sample's truth edges: exactly the truth edges with both ends in it, renumbered
        local = {h: k for k, h in enumerate(ids)}
        truth, weight = restrict_truth(item, nodes)
        got = sorted(zip(truth[0].tolist(), truth[1].tolist(), weight.tolist()))
        want = sorted(
            (local[a], local[b], w)
            for a, b, w in zip(item.truth[0].tolist(), item.truth[1].tolist(), item.truth_weight.tolist())
            if a in members and b in members
        )
        assert got == want and len(got) > 0
    # a small event is used whole
    small = from_dict(MetricLearningConfig, {"sample_hits": n, "sample_random_hits": 0})
    assert torch.equal(sample_hits(item, small), torch.arange(n))
    assert restrict_truth(item, torch.arange(n))[0] is item.truth


def test_training_on_samples_raises_held_out_efficiency(tmp_path):
    cfg = from_dict(
        MetricLearningConfig,
        {**SMALL_EMBEDDING, "sample_hits": 120, "sample_random_hits": 20},
    )
    events = [make_event(n_particles=50, n_noise=20, seed=s, event_number=s) for s in range(8)]
    items = [make_item(ev, cfg) for ev in events]
    assert all(item.x.shape[0] > 3 * 140 for item in items)  # every step trains on a sample
    torch.manual_seed(0)
    task = MetricLearningTask(cfg)
    before = task.evaluate(items[6:], torch.device("cpu"))
    train = [item for item in items[:6] for _ in range(4)]  # 4 samples per event and epoch
    fit(task, train, items[6:], cfg.train, tmp_path / "ml.pt", "cpu")
    after = task.evaluate(items[6:], torch.device("cpu"))
    # measured: 0.64 -> 0.97 (untrained: the radius graph of a random embedding)
    assert after["eff"] > before["eff"] + 0.25, (before, after)
    assert after["eff"] > 0.9, after


def test_positive_margin_frees_true_pairs_already_inside_it():
    """``positive_margin`` m: a true pair costs relu(d - m)^2 instead of d^2, so pairs closer
    than m neither cost nor pull; the negatives' term is unchanged. m must lie in [0, margin)."""
    base = {**SMALL_EMBEDDING, "sample_hits": 120, "sample_random_hits": 20}
    item = make_item(make_event(n_particles=50, n_noise=20, seed=4), from_dict(MetricLearningConfig, base))
    torch.manual_seed(0)
    model = MetricLearningTask(from_dict(MetricLearningConfig, base)).model

    def loss(m, scale=1.0):
        cfg = from_dict(MetricLearningConfig, {**base, "positive_margin": m})
        task = MetricLearningTask(cfg, model)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
            out = float(task._loss(item, torch.device("cpu"), torch.Generator().manual_seed(3)))
            for p in model.parameters():
                p.div_(scale)
        return out

    full, half, most = loss(0.0), loss(0.1), loss(0.19)
    assert full > half > most > 0  # less of each true pair's distance is paid
    # a collapsed embedding (every hit at the same point): true pairs cost nothing with a
    # positive margin, the negatives all sit at d = 0 and cost margin^2 each
    collapsed = loss(0.1, scale=0.0)
    assert abs(collapsed - 0.2**2) < 1e-4, collapsed
    for bad in (-0.01, 0.2, 0.3):
        with pytest.raises(ConfigError, match="positive_margin"):
            from_dict(MetricLearningConfig, {**base, "positive_margin": bad})
