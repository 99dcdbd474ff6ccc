"""HGNN track building: GMPool pooling, training through the shared loop, model files, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnntrack.config import ConfigError, from_dict
from gnntrack.models import load_model
from gnntrack.models.hgnn import HGNN, adaptive_cut
from gnntrack.track_building import TrackBuildingConfig, build_tracks
from gnntrack.track_building.hgnn import HGNNConfig, HGNNItem, HGNNTask, hgnn_tracks, majority_particle
from gnntrack.track_building.stage import TrackBuilder
from gnntrack.training import fit

FEATURES = ["r", "phi", "z", "eta"]


def _hits(r, phi, z):
    r, phi, z = (np.asarray(v, dtype=np.float32) for v in (r, phi, z))
    eta = np.arcsinh(z / r).astype(np.float32)
    return {"x": r * np.cos(phi), "y": r * np.sin(phi), "r": r, "phi": phi, "z": z, "eta": eta}


def _model(**kw) -> HGNN:
    torch.manual_seed(0)
    model = HGNN(node_features=FEATURES, hidden=8, n_iters=1, **kw)
    with torch.no_grad():  # similarity correction 0: GMPool cuts on the GNN scores themselves
        model.similarity[-1].weight.zero_()
        model.similarity[-1].bias.zero_()
    return model.eval()


def _forward(model, hits, edge_index, scores, pool_cut):
    from gnntrack.io.features import node_features

    x = torch.from_numpy(node_features(hits, model.node_features, model.feature_scales))
    with torch.no_grad():
        return model(x, torch.as_tensor(edge_index), torch.as_tensor(scores, dtype=torch.float32), pool_cut)


def test_gmpool_two_chains_give_two_super_nodes():
    r = [100, 200, 300, 400] * 2
    hits = _hits(r, [0.1] * 4 + [1.5] * 4, [10, 20, 30, 40] * 2)
    ei = np.array([[0, 1, 2, 4, 5, 6], [1, 2, 3, 5, 6, 7]])
    out = _forward(_model(), hits, ei, np.full(6, 0.9), pool_cut=0.5)
    assert out.n_super == 2
    sn = out.supernode.numpy()
    assert len(set(sn[:4])) == 1 and len(set(sn[4:])) == 1 and sn[0] != sn[4]
    # every hit is a candidate of its own super-node; no pair crosses between unlinked chains
    pairs = set(zip(out.pair_hit.tolist(), out.pair_super.tolist()))
    assert pairs == {(i, int(sn[i])) for i in range(8)}


def test_gmpool_fork_splits_at_the_weak_edge_and_offers_the_branch_both_super_nodes():
    # 0-1-2-3 strong, 1->4->5 branch joined by a weak edge
    hits = _hits([100, 200, 300, 400, 300, 400], [0.1, 0.1, 0.1, 0.1, 0.12, 0.14], [10, 20, 30, 40, 31, 42])
    ei = np.array([[0, 1, 2, 1, 4], [1, 2, 3, 4, 5]])
    out = _forward(_model(), hits, ei, np.array([0.9, 0.9, 0.9, 0.2, 0.9]), pool_cut=0.5)
    sn = out.supernode.numpy()
    assert out.n_super == 2 and len(set(sn[:4])) == 1 and sn[4] == sn[5] != sn[0]
    pairs = set(zip(out.pair_hit.tolist(), out.pair_super.tolist()))
    # the super-graph links the two: every hit may join the other super-node too
    assert (4, int(sn[0])) in pairs and (5, int(sn[0])) in pairs and (0, int(sn[4])) in pairs


def test_adaptive_cut_finds_the_valley():
    rng = np.random.default_rng(0)
    prob = np.r_[rng.uniform(0.0, 0.15, 500), rng.uniform(0.85, 1.0, 500), [0.62]]
    assert 0.15 < adaptive_cut(prob) < 0.85
    assert adaptive_cut(np.zeros(0)) == 0.5


def test_majority_particle():
    sn = np.array([0, 0, 0, 1, 1, 2])
    part = np.array([3, 3, 5, -1, -1, 7])
    assert majority_particle(sn, part, 4).tolist() == [3, -1, 7, -1]


def _synthetic_item(seed: int = 0) -> tuple[HGNNItem, dict]:
    """Six helix-like tracks over 8 layers, noise hits and fake edges with GNN-like scores."""
    rng = np.random.default_rng(seed)
    n_tracks, n_layers = 6, 8
    r, phi, z, particle = [], [], [], []
    for k in range(n_tracks):
        phi0, eta, curv = 0.05 * k, rng.uniform(-1, 1), rng.uniform(-2e-4, 2e-4)
        for layer in range(n_layers):
            rr = 60.0 * (layer + 1)
            r.append(rr)
            phi.append(phi0 + curv * rr)
            z.append(rr * np.sinh(eta))
            particle.append(k)
    for _ in range(6):  # noise
        r.append(60.0 * rng.integers(1, n_layers + 1))
        phi.append(rng.uniform(0, 0.3))
        z.append(rng.uniform(-300, 300))
        particle.append(-1)
    n = len(r)
    hits = _hits(r, phi, z)
    src, dst, score = [], [], []
    for k in range(n_tracks):
        for layer in range(n_layers - 1):
            i = k * n_layers + layer
            src.append(i)
            dst.append(i + 1)
            score.append(rng.uniform(0.5, 1.0))
            if k + 1 < n_tracks:  # a fake edge to the neighbouring track
                src.append(i)
                dst.append(i + n_layers + 1)
                score.append(rng.uniform(0.05, 0.7))
    for j in range(n_tracks * n_layers, n):  # noise linked to a random hit
        src.append(int(rng.integers(0, n_tracks * n_layers)))
        dst.append(j)
        score.append(rng.uniform(0.05, 0.6))
    ei = np.array([src, dst], dtype=np.int64)
    particle = np.array(particle, dtype=np.int64)
    hit_particle = np.stack([np.flatnonzero(particle >= 0), particle[particle >= 0]])
    from gnntrack.io.features import node_features

    model = _model()
    item = HGNNItem(
        key="0_0",
        x=torch.from_numpy(node_features(hits, model.node_features, model.feature_scales)),
        edge_index=torch.from_numpy(ei),
        score=torch.tensor(score, dtype=torch.float32),
        nodes=np.arange(n),
        n_hits=n,
        particle=particle,
        is_target=np.ones(n_tracks, dtype=bool),
        hit_particle=hit_particle,
    )
    return item, {"hits": hits, "edge_index": ei, "scores": np.array(score, np.float32)}


def test_training_lowers_the_loss_and_the_model_file_round_trips(tmp_path):
    item, raw = _synthetic_item()
    cfg = HGNNConfig(node_features=FEATURES, hidden=8, n_iters=1, pool_cut=0.5)
    torch.manual_seed(0)
    task = HGNNTask(cfg, HGNN(cfg), min_hits=3)
    opt = torch.optim.Adam(task.model.parameters(), lr=0.01)
    losses = []
    for _ in range(45):
        loss = task.loss(item, torch.device("cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]

    # the shared loop trains it further and writes the model file
    cfg.train.epochs, cfg.train.lr, cfg.train.progress = 2, 1e-4, "off"
    out_file = tmp_path / "hgnn.pt"
    summary = fit(task, [item], [item], cfg.train, out_file, "cpu")
    assert {"val_eff", "val_fake", "val_dup"} <= set(summary["history"][-1])
    assert summary["history"][-1]["val_eff"] > 0.5

    loaded = load_model(out_file)
    assert isinstance(loaded, HGNN) and loaded.node_features == tuple(FEATURES)
    a = _forward(task.model.eval(), raw["hits"], raw["edge_index"], raw["scores"], 0.5)
    b = _forward(loaded, raw["hits"], raw["edge_index"], raw["scores"], 0.5)
    torch.testing.assert_close(a.pair_logit, b.pair_logit)

    # track building from the file: build_tracks with method hgnn
    tb = TrackBuildingConfig(method="hgnn", min_hits=3, hgnn=HGNNConfig(pool_cut=0.5))
    tracks = build_tracks(
        raw["edge_index"], raw["scores"], item.n_hits, tb, hits=raw["hits"], hgnn_model=out_file
    )
    assert len(tracks) >= 1 and all(len(t) >= 3 for t in tracks)
    direct = hgnn_tracks(raw["edge_index"], raw["scores"], item.n_hits, raw["hits"], tb.hgnn, loaded)
    assert len(direct) >= len(tracks)
    hits_t = {k: torch.from_numpy(v) for k, v in raw["hits"].items()}
    ei_t, sc_t = torch.from_numpy(raw["edge_index"]), torch.from_numpy(raw["scores"])
    as_torch = build_tracks(ei_t, sc_t, item.n_hits, tb, hits=hits_t, hgnn_model=loaded)
    assert as_torch.numpy().to_lists() == tracks.to_lists()


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"track_building\.hgnn\.assign_cut"):
        from_dict(TrackBuildingConfig, {"method": "hgnn", "hgnn": {"assign_cut": 2}}, "track_building")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(TrackBuildingConfig, {"hgnn": {"asign_cut": 0.5}}, "track_building")
    with pytest.raises(ConfigError, match="not one of"):
        from_dict(TrackBuildingConfig, {"method": "hgnnn"}, "track_building")
    ei, scores = np.array([[0, 1], [1, 2]]), np.array([0.9, 0.9])
    hits = _hits([100, 200, 300], [0.1] * 3, [1, 2, 3])
    with pytest.raises(ConfigError, match="needs a trained HGNN model file"):
        build_tracks(ei, scores, 3, {"method": "hgnn"}, hits=hits)
    from gnntrack.io.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        build_tracks(ei, scores, 3, {"method": "hgnn"}, hits=hits, hgnn_model=tmp_path / "no.pt")
    with pytest.raises(ConfigError, match="needs a trained HGNN"):
        TrackBuilder(TrackBuildingConfig(method="hgnn", score_cut=0.5))
    with pytest.raises(ValueError, match="node_features must include"):
        HGNN(node_features=["r", "z"])


def test_gnn_working_point_with_hgnn_track_building_scans_walkthrough_candidates():
    from gnntrack.gnn.working_point import _track_building

    tb = _track_building({"method": "hgnn", "min_hits": 4, "min_pt": 0.9})
    assert (tb.method, tb.min_hits, tb.min_pt) == ("walkthrough", 4, 0.9)
