"""Models: edge features, filter and interaction GNN, losses, metrics, regions, model files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synthetic import make_event

from gnntrack.config import ConfigError, from_dict
from gnntrack.edge_classification.regions import RegionConfig, region_masks, region_subgraph
from gnntrack.io.errors import InputError
from gnntrack.io.features import DEFAULT_NODE_FEATURES, DEFAULT_SCALES, node_features
from gnntrack.metrics.edges import roc_auc, working_point
from gnntrack.models import FilterModel, InteractionGNN, load_model, save_model
from gnntrack.models.edge_features import EDGE_FEATURES, EdgeFeatures
from gnntrack.models.losses import LossConfig, WeightRule, edge_weights, weighted_bce

torch.set_num_threads(1)
F = len(DEFAULT_NODE_FEATURES)

MODELS = [
    lambda: FilterModel(hidden=16, n_layers=2),
    lambda: InteractionGNN(hidden=16, n_graph_iters=2),
    lambda: InteractionGNN(
        hidden=16, n_graph_iters=3, recurrent=False, aggregation="mean", checkpointing=True
    ),
    # acorn-style steps: unshared, initial encodings concatenated, no residual, edge-latent decoder
    lambda: InteractionGNN(
        hidden=16, n_graph_iters=3, recurrent=False, concat_inputs=True, residual=False, decoder="edge"
    ),
    lambda: InteractionGNN(hidden=16, n_graph_iters=2, concat_inputs=True, edge_first=True),
]


@pytest.mark.parametrize("make", MODELS)
def test_finite_scores_on_empty_and_isolated(make):
    model = make().eval()
    x = torch.randn(10, F)
    assert model(x, torch.zeros((2, 0), dtype=torch.long)).shape == (0,)
    out = model(x, torch.tensor([[0, 1], [1, 2]]))  # nodes 3..9 isolated
    assert out.shape == (2,) and torch.all(torch.isfinite(out))
    # coincident hits (dr = 0, dphi = 0): slopes must stay finite
    x[4] = x[5]
    assert torch.all(torch.isfinite(model(x, torch.tensor([[4], [5]]))))
    # gradients flow and are finite in training mode (checkpointing active for the last model)
    model.train()
    model(x, torch.tensor([[0, 1, 4], [1, 2, 5]])).sum().backward()
    assert all(torch.all(torch.isfinite(p.grad)) for p in model.parameters() if p.grad is not None)


PHI_COLUMNS = ["phi", "cl1_phi", "cl2_phi", "cl1_glob_phi", "cl2_glob_phi"]


@pytest.mark.parametrize("cls", [FilterModel, InteractionGNN])
def test_encoder_exclude_makes_scores_rotation_invariant(cls):
    """Without the absolute azimuth columns in the encoder, rotating a whole event in φ leaves
    every score unchanged (edge features only use φ differences); with them, it does not."""
    ev = make_event(n_particles=40, seed=4)
    x = torch.from_numpy(node_features(ev.hits))
    ei = torch.from_numpy(ev.truth_edges)
    rotated = x.clone()
    for c in PHI_COLUMNS:
        i = DEFAULT_NODE_FEATURES.index(c)
        phi = rotated[:, i].double() * math.pi + 1.3  # stored as phi / pi
        rotated[:, i] = (torch.remainder(phi + math.pi, 2 * math.pi) - math.pi).float() / math.pi
    torch.manual_seed(0)
    invariant = cls(encoder_exclude=PHI_COLUMNS, hidden=16).eval()
    torch.manual_seed(0)
    plain = cls(hidden=16).eval()
    with torch.no_grad():
        torch.testing.assert_close(invariant(x, ei), invariant(rotated, ei), atol=1e-4, rtol=0)
        assert not torch.allclose(plain(x, ei), plain(rotated, ei), atol=1e-3)
    assert invariant.config["encoder_exclude"] == PHI_COLUMNS
    with pytest.raises(ValueError, match="unknown node feature"):
        cls(encoder_exclude=["not_a_column"])


@pytest.mark.parametrize("kind", ["gnn", "filter", "embedding"])
def test_model_takes_its_config_dataclass(kind):
    """Hyper-parameters are declared once, in the model's config dataclass: the stage section
    extends it, and a model built from the stage config, the model config or keywords is the
    same model (a stage config's own settings are not part of the model's)."""
    import dataclasses

    from gnntrack.edge_filter import FilterConfig
    from gnntrack.gnn import GNNConfig
    from gnntrack.graph_construction import MetricLearningConfig
    from gnntrack.models import EmbeddingMLP, EmbeddingMLPConfig, FilterModelConfig, InteractionGNNConfig

    model_cls, config_cls, stage_cls, stage_only = {
        "gnn": (InteractionGNN, InteractionGNNConfig, GNNConfig, {"score_cut": 0.3}),
        "filter": (FilterModel, FilterModelConfig, FilterConfig, {"chunk_size": 7}),
        "embedding": (EmbeddingMLP, EmbeddingMLPConfig, MetricLearningConfig, {"margin": 0.2}),
    }[kind]
    assert model_cls.config_class is config_cls and issubclass(stage_cls, config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    # every model setting is a stage setting, first and in the same order (the campaign stays flat)
    assert [f.name for f in dataclasses.fields(stage_cls)][: len(names)] == names
    small = {"hidden": 8, "n_graph_iters": 1} if kind == "gnn" else {"hidden": 8, "n_layers": 1}
    rest = {k: v for k, v in small.items() if k != "hidden"}
    builds = [
        lambda: model_cls(stage_cls(**small, **stage_only)),
        lambda: model_cls(config_cls(hidden=8), **rest),  # a config with keyword overrides
        lambda: model_cls(**small),
    ]
    models = []
    for build in builds:
        torch.manual_seed(3)
        models.append(build())
    first = models[0]
    assert set(first.config) == {*names, "feature_scales"} and first.config["hidden"] == 8
    for other in models[1:]:
        assert other.config == first.config
        assert all(
            torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values())
        )
    again = model_cls(**first.config)  # a model file's config rebuilds the model
    assert again.config == first.config
    with pytest.raises(TypeError, match="unknown setting"):
        model_cls(hiden=8)
    with pytest.raises(TypeError, match="config must be"):
        model_cls(["r", "phi", "z"])  # the old positional node_features


def test_pair_mlp_equals_mlp_on_concatenation():
    from gnntrack.models.mlp import PairMLP, make_mlp

    torch.manual_seed(2)
    net = PairMLP(*make_mlp(2 * 8 + 3, 16, 4, 2))
    h, e = torch.randn(50, 8), torch.randn(200, 3)
    src, dst = torch.randint(0, 50, (2, 200))
    ref = torch.nn.Sequential(*net)(torch.cat([h[src], h[dst], e], dim=1))
    torch.testing.assert_close(net.pairs(h, src, dst, e), ref, atol=1e-5, rtol=1e-5)
    assert list(net.state_dict()) == list(torch.nn.Sequential(*make_mlp(19, 16, 4, 2)).state_dict())


def test_gnn_is_equivariant_under_node_relabelling():
    torch.manual_seed(1)
    model = InteractionGNN(hidden=16, n_graph_iters=3).eval()
    x = torch.randn(30, F)
    ei = torch.randint(0, 30, (2, 80))
    perm = torch.randperm(30)
    inv = torch.argsort(perm)
    a = model(x, ei)
    b = model(x[perm], inv[ei])  # same graph, hits stored in another order
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # direction matters (separate incoming/outgoing aggregation): reversing edges changes scores
    assert not torch.allclose(a, model(x, ei.flip(0)), atol=1e-4)


def test_edge_features_physics():
    ev = make_event(n_particles=5, n_noise=0, seed=3)
    names = DEFAULT_NODE_FEATURES
    x = torch.from_numpy(node_features(ev.hits, names))
    feats = EdgeFeatures(names, {n: s for n, s in zip(names, [1000.0, math.pi, 1000.0, 1.0])}, EDGE_FEATURES)
    ei = torch.from_numpy(ev.truth_edges)
    f = feats(x, ei).numpy()
    h = ev.hits
    s, d = ev.truth_edges
    np.testing.assert_allclose(f[:, 0], (h["r"][d] - h["r"][s]) / 100.0, rtol=1e-4)  # dr per 10 cm
    np.testing.assert_allclose(f[:, 2], (h["z"][d] - h["z"][s]) / 100.0, rtol=1e-4, atol=1e-5)
    assert np.all(np.abs(f[:, 1]) <= 10 * math.pi)  # dphi per 0.1 rad, wrapped
    # phi wrap-around: hits at +3.1 and -3.1 rad are 0.083 rad apart, not 6.2
    xw = torch.zeros(2, F)
    xw[:, 0] = torch.tensor([0.1, 0.2])
    xw[:, 1] = torch.tensor([3.1, -3.1]) / math.pi
    dphi = feats(xw, torch.tensor([[0], [1]]))[0, 1].item() / 10.0
    assert dphi == pytest.approx(2 * math.pi - 6.2, abs=1e-5)
    with pytest.raises(ValueError, match="unknown edge feature"):
        EdgeFeatures(names, {}, ["dr", "kink"])
    with pytest.raises(ValueError, match="need node feature"):
        EdgeFeatures(["eta"], {}, ["dr"])


@pytest.mark.parametrize("pt,charge,z_vertex", [(1.0, 1, 30.0), (2.5, -1, -80.0), (10.0, 1, 0.0)])
def test_z0_and_curvature_of_helix_doublets(pt, charge, z_vertex):
    """Doublets of a helix from (0, 0, z_vertex): curvature = q 0.3 B / pT, z0 = the vertex z."""
    b_field, cot_theta = 2.0, 0.7
    radius_m = pt / (0.3 * b_field)
    r = np.array([39.0, 99.0, 160.0, 228.0, 291.0])  # mm, pixel barrel layers
    arc = 2 * radius_m * 1000 * np.arcsin(r / (2 * radius_m * 1000))  # transverse path length, mm
    hits = {
        "r": r,
        "phi": 0.4 + charge * np.arcsin(r / (2 * radius_m * 1000)),
        "z": z_vertex + arc * cot_theta,
        "x": r,  # only its length is read
    }
    names = ("r", "phi", "z")
    x = torch.from_numpy(node_features(hits, names))
    ei = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    f = EdgeFeatures(names, DEFAULT_SCALES, ["z0", "curvature"])(x, ei).numpy()
    np.testing.assert_allclose(f[:, 1], charge * 0.3 * b_field / pt, rtol=1e-3)
    # the straight doublet line misses the vertex by the sagitta-induced arc/chord difference only
    np.testing.assert_allclose(f[:, 0] * 100.0, z_vertex, atol=1.0)  # z0 per 10 cm -> mm


def test_loss_weights_simple_and_rules():
    ev = make_event(n_particles=30, n_noise=10, seed=4)
    ei = ev.truth_edges[:, :20]
    y = np.r_[np.ones(20, bool), np.zeros(5, bool)]
    ep = np.r_[ev.truth_edge_particle[:20], -np.ones(5, np.int64)]
    yt = y & np.r_[ev.particles["is_target"][ep[:20]], np.zeros(5, bool)]
    w = edge_weights(
        y, yt, ep, ev.particles, LossConfig(target_weight=2.0, non_target_weight=0.0, fake_weight=0.5)
    )
    assert np.all(w[yt] == 2.0) and np.all(w[y & ~yt] == 0.0) and np.all(w[~y] == 0.5)
    rules = LossConfig(
        weighting=[
            WeightRule(0.1, {"y": False}),
            WeightRule(0.0, {"y": True}),
            WeightRule(3.0, {"y": True, "pt": [">", 2.0], "abs_eta": ["<", 4.0]}),
        ]
    )
    w = edge_weights(y, yt, ep, ev.particles, rules)
    pt = np.r_[ev.particles["pt"][ep[:20]], np.full(5, np.nan)]
    assert (
        np.all(w[~y] == pytest.approx(0.1))
        and np.all(w[y & (pt > 2)] == 3.0)
        and np.all(w[y & (pt <= 2)] == 0)
    )
    assert len(ei[0]) == 20


def test_weighted_bce():
    logits = torch.tensor([10.0, -10.0, 0.0], requires_grad=True)
    loss = weighted_bce(logits, torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 0.0]))
    assert loss.item() == pytest.approx(4.54e-5, rel=1e-2)  # the 0-weight wrong edge does not count
    empty = weighted_bce(logits[:0], torch.zeros(0), torch.zeros(0))
    assert empty.item() == 0.0 and empty.requires_grad


def test_focal_loss_weighs_confident_edges_less():
    """gamma 0 is the plain BCE; gamma > 0 scales each edge's BCE by (1 - p_t)^gamma: a confidently
    right edge (p_t 0.99) counts ~1e-4 of its BCE at gamma 2, an edge at p = 0.5 a quarter."""
    logits = torch.tensor([4.6, -4.6, 0.0, 2.0])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])  # right, right, undecided, wrong
    w = torch.ones(4)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    assert weighted_bce(logits, labels, w, 0.0).item() == pytest.approx(bce.mean().item())
    p_true = torch.sigmoid(torch.where(labels > 0, logits, -logits))
    expect = (bce * (1 - p_true) ** 2).mean()
    focal = weighted_bce(logits, labels, w, 2.0)
    assert focal.item() == pytest.approx(expect.item(), rel=1e-6)
    # per edge: the wrong edge keeps most of its loss, the confident right ones almost none
    per = [
        weighted_bce(logits[i : i + 1], labels[i : i + 1], w[:1], 2.0).item() / bce[i].item()
        for i in range(4)
    ]
    assert per[0] < 1e-3 and per[1] < 1e-3 and per[2] == pytest.approx(0.25) and per[3] > 0.75
    cfg = from_dict(LossConfig, {"focal_gamma": 2}, "loss")
    assert cfg.focal_gamma == 2.0
    with pytest.raises(ConfigError, match="focal_gamma"):
        from_dict(LossConfig, {"focal_gamma": -1}, "loss")


def test_auc_and_working_point():
    rng = np.random.default_rng(0)
    s = np.round(rng.random(300), 2)  # many ties
    y = rng.random(300) < 0.3 + 0.4 * s
    pos, neg = s[y], s[~y]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
        len(pos) * len(neg)
    )
    assert roc_auc(s, y) == pytest.approx(brute)
    assert roc_auc(np.r_[0.1, 0.9], np.r_[False, True]) == 1.0
    assert math.isnan(roc_auc(s, np.ones(300, bool)))
    wp = working_point(
        np.array([0.9, 0.8, 0.2, 0.7, 0.1]),
        np.array([True, True, True, False, True]),
        np.array([True, False, True, False, True]),
        0.5,
    )
    assert wp["efficiency"] == pytest.approx(1 / 3)  # one of three target edges kept
    assert wp["purity"] == pytest.approx(1 / 3)  # kept: target, true non-target, fake
    assert wp["true_purity"] == pytest.approx(2 / 3)
    assert wp["masked_purity"] == pytest.approx(1 / 2)  # the non-target true edge is ignored


def test_regions_cover_each_edge_once():
    ev = make_event(n_particles=80, n_noise=30, seed=5, eta_max=2.0)
    eta, phi = ev.hits["eta"], ev.hits["phi"]
    cfg = RegionConfig(n_eta=3, n_phi=4, eta_min=-1.0, eta_max=1.0, eta_margin=0.3, phi_margin=0.4)
    masks = region_masks(eta, phi, cfg)
    assert len(masks) == 12
    cores = np.stack([c for _, c in masks])
    assert np.all(cores.sum(0) == 1)  # every hit in exactly one core
    ei = ev.truth_edges
    counted = np.zeros(ei.shape[1], int)
    for region, core in masks:
        nodes, kept, local = region_subgraph(ei, region, core)
        assert np.array_equal(nodes[local], ei[:, kept])
        counted[kept[core[ei[0, kept]]]] += 1
    assert np.all(counted <= 1) and counted.mean() > 0.95  # track edges are short: nearly all trained once


def test_model_file_roundtrip_and_errors(tmp_path):
    model = InteractionGNN(hidden=8, n_graph_iters=1, feature_scales={"r": 500.0}).eval()
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt", "cpu")
    assert isinstance(loaded, InteractionGNN) and not loaded.training
    assert loaded.node_features == model.node_features and loaded.feature_scales["r"] == 500.0
    x, ei = torch.randn(5, F), torch.tensor([[0, 1], [1, 2]])
    torch.testing.assert_close(loaded(x, ei), model(x, ei))
    (tmp_path / "bad.pt").write_bytes((tmp_path / "m.pt").read_bytes()[:200])
    with pytest.raises(InputError, match="bad.pt"):
        load_model(tmp_path / "bad.pt")
    torch.save(
        {"format": "gnntrack-model", "class": "os:system", "config": {}, "state_dict": {}}, tmp_path / "e.pt"
    )
    with pytest.raises(InputError, match="not a gnntrack model"):
        load_model(tmp_path / "e.pt")


def test_model_file_cannot_choose_code_to_run(tmp_path):
    """A file naming any callable but a registered model class, or a config the class's
    constructor does not declare, is refused before anything is called."""
    marker = tmp_path / "pwned"
    payload = {
        "format": "gnntrack-model",
        "class": "gnntrack.cli:yaml.unsafe_load",
        "config": {"stream": f'!!python/object/apply:os.system ["touch {marker}"]'},
        "state_dict": {},
    }
    for cls in ("gnntrack.cli:yaml.unsafe_load", "gnntrack.models.registry:save_checkpoint", "builtins:eval"):
        torch.save({**payload, "class": cls}, tmp_path / "x.pt")
        with pytest.raises(InputError, match="not a gnntrack model") as err:
            load_model(tmp_path / "x.pt")
        assert "x.pt" in str(err.value)
    assert not marker.exists()

    good = FilterModel(hidden=8, n_layers=1)
    save_model(good, tmp_path / "f.pt")
    clean = torch.load(tmp_path / "f.pt", weights_only=True)
    assert clean["class"] == "FilterModel"
    cases = {
        "unknown key": ({"stream": "x"}, "unknown key"),
        "wrong kind": ({"hidden": "8"}, "not an integer"),
        "huge size": ({"hidden": 10**9}, "outside"),
        "nan": ({"dropout": float("nan")}, "finite"),
        "bad scales": ({"feature_scales": {"r": "x"}}, "mapping of names"),
        "config object": ({"config": {"hidden": 8}}, "unknown key"),  # the dataclass argument itself
    }
    for change, message in cases.values():
        torch.save({**clean, "config": {**clean["config"], **change}}, tmp_path / "c.pt")
        with pytest.raises(InputError, match=message):
            load_model(tmp_path / "c.pt")
    # files written before the closed table named the class by its module path
    torch.save({**clean, "class": "gnntrack.models.filter:FilterModel"}, tmp_path / "old.pt")
    assert isinstance(load_model(tmp_path / "old.pt"), FilterModel)


def test_input_standardisation_is_fitted_and_saved(tmp_path):
    model = FilterModel(hidden=8, n_layers=1)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(100, F, generator=g) * 300 + 50 for _ in range(3)]  # badly scaled inputs
    model.fit_input_normalisation(xs)
    z = model.normalise(torch.cat(xs))
    torch.testing.assert_close(z.mean(0), torch.zeros(F), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(F), atol=1e-4, rtol=0)
    save_model(model, tmp_path / "f.pt")
    loaded = load_model(tmp_path / "f.pt")
    assert torch.equal(loaded.x_mean, model.x_mean) and torch.equal(loaded.x_std, model.x_std)


def test_model_file_with_wrong_weights_is_input_error(tmp_path):
    model = FilterModel(hidden=8, n_layers=1)
    save_model(model, tmp_path / "f.pt")
    payload = torch.load(tmp_path / "f.pt", weights_only=True)
    payload["config"]["hidden"] = 16  # weights of another architecture
    torch.save(payload, tmp_path / "g.pt")
    with pytest.raises(InputError, match="do not fit"):
        load_model(tmp_path / "g.pt")
    payload = torch.load(tmp_path / "f.pt", weights_only=True)
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items() if not k.startswith("x_")}
    torch.save(payload, tmp_path / "old.pt")  # written before input standardisation existed
    assert torch.equal(load_model(tmp_path / "old.pt").x_std, torch.ones(F))


@pytest.mark.parametrize(
    "variant",
    [
        {"recurrent": True},
        {"recurrent": False},
        {"recurrent": False, "concat_inputs": True, "edge_first": True},
    ],
)
def test_gradient_checkpointing_gives_identical_gradients(variant):
    x, ei = torch.randn(60, F), torch.randint(0, 60, (2, 200))
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(1)
        model = InteractionGNN(hidden=16, n_graph_iters=3, checkpointing=ckpt, **variant)
        model(x, ei).square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_model_file_digest_catches_flipped_weights(tmp_path):
    """A byte flipped inside the stored weights is an InputError, never a silently other model."""
    import zipfile

    model = FilterModel(hidden=8, n_layers=1)
    save_model(model, tmp_path / "f.pt")
    raw = bytearray((tmp_path / "f.pt").read_bytes())
    with zipfile.ZipFile(tmp_path / "f.pt") as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = (
        info.header_offset
        + 30
        + int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    )
    start += int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    raw[start + info.file_size // 2] ^= 0x10  # one bit of one float
    (tmp_path / "bad.pt").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="does not match its digest") as err:
        load_model(tmp_path / "bad.pt")
    assert "bad.pt" in str(err.value)
    # a payload saved by a bare torch.save (as files before digests) loads unverified
    torch.save(torch.load(tmp_path / "f.pt", weights_only=True), tmp_path / "old.pt")
    x = torch.randn(4, F)
    ei = torch.tensor([[0, 1], [2, 3]])
    torch.testing.assert_close(load_model(tmp_path / "old.pt")(x, ei), model.eval()(x, ei))


def test_training_checkpoint_digest_round_trips(tmp_path):
    """Checkpoints (optimizer, scheduler, scaler, RNG and loop state) verify after torch.load."""
    from gnntrack.models.registry import load_checkpoint, model_payload, save_checkpoint
    from gnntrack.training.checkpoint import rng_state

    model = FilterModel(hidden=8, n_layers=1)
    opt = torch.optim.Adam(model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    payload = model_payload(
        model,
        metrics={"val_auc": float("nan")},
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        rng=rng_state(),
        loop_state={"epoch": 1, "history": [{"train_loss": math.inf}], "best": None},
    )
    save_checkpoint(payload, tmp_path / "last.pt")
    back = load_checkpoint(tmp_path / "last.pt")
    assert back["optimizer"]["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
