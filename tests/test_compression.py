"""Compression of the edge classifiers: magnitude pruning (global, per layer, whole hidden units)
with learning-rate rewinding through the shared loop, int8 QAT and int8 CPU inference; the
compressed models save, load and export like any other."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from test_inference_pipeline import _pipe, setup  # noqa: F401 - setup is a fixture
from test_training_stages import write_shard

from gnntrack.config import ConfigError, from_dict
from gnntrack.edge_classification.compression import (
    disable_fake_quant,
    enable_fake_quant,
    round_sparsity,
)
from gnntrack.edge_filter import FilterConfig, run_train_filter
from gnntrack.export.export import _sample_inputs, export_model
from gnntrack.gnn import GNNConfig, run_train_gnn
from gnntrack.inference import InferenceConfig
from gnntrack.io.errors import InputError
from gnntrack.io.event_store import read_events
from gnntrack.io.features import node_features
from gnntrack.models import FilterModel, InteractionGNN, load_model, save_model
from gnntrack.models.compression import (
    MaskKeeper,
    apply_masks,
    latent_importance,
    linear_flops,
    linear_layers,
    magnitude_masks,
    prune_latent,
    prune_units,
    quantize_int8,
    weight_sparsity,
)
from gnntrack.models.registry import read_model_info

torch.set_num_threads(1)

GNN = {"hidden": 16, "n_graph_iters": 2}
TRAIN = {"epochs": 2, "lr": 5e-3, "progress": "off", "monitor": "masked_auc", "mode": "max"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compression")
    return {"train": write_shard(tmp, "train", [1, 2]), "val": write_shard(tmp, "val", [10])}


def _train_gnn(shards, out, **gnn):
    (te, tg), (ve, vg) = shards["train"], shards["val"]
    cfg = {**GNN, "train": TRAIN, **gnn}
    return run_train_gnn([te], [tg], [ve], [vg], out, cfg, device="cpu", choose_cut=False)


def _graph_inputs(model, shards):
    ef, gf = shards["val"]
    return _sample_inputs(model, ef, gf)


def _scores(model, inputs):
    with torch.no_grad():
        return torch.sigmoid(model(*inputs)).numpy()


# -- masks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_masks_reach_the_sparsity(scope):
    torch.manual_seed(0)
    model = InteractionGNN(**GNN)
    masks = magnitude_masks(model, 0.7, scope)
    layers = linear_layers(model)
    total = sum(layers[n].weight.numel() for n in masks)
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert pruned == round(0.7 * total)
    per_layer = {n: float((~m).float().mean()) for n, m in masks.items()}
    if scope == "layer":
        for n, frac in per_layer.items():
            assert abs(frac - 0.7) <= 1.0 / layers[n].weight.numel() + 1e-9, n
        # the pruned weights are the smallest of their layer
        for n, m in masks.items():
            w = layers[n].weight.detach().abs()
            assert w[~m].max() <= w[m].min()
    else:
        # one threshold over all layers: layers end at different sparsities
        assert max(per_layer.values()) - min(per_layer.values()) > 0.05
        kept = torch.cat([layers[n].weight.detach().abs()[m] for n, m in masks.items()])
        dropped = torch.cat([layers[n].weight.detach().abs()[~m] for n, m in masks.items()])
        assert dropped.max() <= kept.min()


def test_round_sparsity_schedule_ends_at_target():
    values = [round_sparsity(0.8, r, 4) for r in range(1, 5)]
    assert values == sorted(values)
    assert values[-1] == pytest.approx(0.8)
    # the same fraction of the remaining weights each round
    remaining = [1 - v for v in [0.0, *values]]
    ratios = [b / a for a, b in zip(remaining, remaining[1:])]
    assert max(ratios) - min(ratios) < 1e-12


def test_mask_keeper_keeps_pruned_weights_zero_through_optimiser_steps():
    torch.manual_seed(0)
    model = FilterModel(hidden=16, n_layers=2)
    masks = magnitude_masks(model, 0.5, "global")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    keeper = MaskKeeper(model, masks).attach(opt)
    x = torch.randn(30, model.n_node_features)
    ei = torch.randint(0, 30, (2, 80))
    for _ in range(5):
        opt.zero_grad()
        model(x, ei).pow(2).mean().backward()
        opt.step()
    layers = linear_layers(model)
    for n, m in masks.items():
        assert torch.all(layers[n].weight[~m] == 0), n
        assert torch.any(layers[n].weight[m] != 0), n
    keeper.detach()
    opt.zero_grad()
    model(x, ei).pow(2).mean().backward()
    opt.step()
    assert any(torch.any(layers[n].weight[~m] != 0) for n, m in masks.items())


# -- structured ----------------------------------------------------------------------------------


def test_prune_units_narrows_every_hidden_block_and_saves(tmp_path):
    torch.manual_seed(0)
    model = InteractionGNN(hidden=16, n_graph_iters=2, recurrent=False).eval()
    small = prune_units(model, 0.5, 16)
    widths = small.config["widths"]
    # every hidden block of every MLP (2 layers each: node/edge encoder, 2 steps x 2, decoder)
    assert len(widths) == 2 * 7 and set(widths.values()) == {8}
    assert sum(p.numel() for p in small.parameters()) < 0.6 * sum(p.numel() for p in model.parameters())
    x = torch.randn(40, small.n_node_features)
    ei = torch.randint(0, 40, (2, 120))
    assert linear_flops(small, 40, 120) < linear_flops(model, 40, 120)
    save_model(small, tmp_path / "s.pt")
    loaded = load_model(tmp_path / "s.pt")
    assert loaded.config["widths"] == widths
    torch.testing.assert_close(_scores(loaded, (x, ei)), _scores(small, (x, ei)), rtol=0, atol=0)
    # a second round prunes relative to the original width, keeps the most important units
    smaller = prune_units(small, 0.75, 16)
    assert set(smaller.config["widths"].values()) == {4}


def test_prune_units_keeps_the_most_important_units():
    torch.manual_seed(0)
    model = FilterModel(hidden=8, n_layers=2, layer_norm=False)
    with torch.no_grad():
        model.net[2].weight[:, 3] = 0.0  # unit 3 of block 0 sends nothing: least important
        model.net[2].weight[:, 5] *= 100.0  # unit 5 of block 0: most important
    small = prune_units(model, 0.5, 8)
    w0 = small.net[0].weight
    kept = [int(torch.nonzero((model.net[0].weight == row).all(1))[0]) for row in w0]
    assert 5 in kept and 3 not in kept and len(kept) == 4


@pytest.mark.parametrize(
    "layout",
    [
        {},
        {"concat_inputs": True, "recurrent": False},
        {"decoder": "edge", "edge_first": True},
        {"concat_inputs": True, "decoder": "edge", "aggregation": "mean"},
    ],
)
def test_prune_latent_removes_unread_channels_without_changing_the_function(layout):
    """Latent channels no Linear reads carry nothing: cutting them (and their producers' rows)
    must give the same scores, whatever the step layout; they are the least important."""
    torch.manual_seed(0)
    model = InteractionGNN(hidden=8, n_graph_iters=2, layer_norm=False, **layout).eval()
    dead = [1, 2, 5, 6]  # node and edge latent channels nothing reads
    hidden = 8
    with torch.no_grad():
        for mlp in (
            model.edge_encoder,
            model.decoder,
            *[m for s in model.steps for m in (s.node_net, s.edge_net)],
        ):
            w = mlp[0].weight
            for b in range(w.shape[1] // hidden):  # (the edge encoder's feature tail is < hidden wide)
                w[:, [b * hidden + ch for ch in dead]] = 0.0
    imp = latent_importance(model)
    live = [i for i in range(hidden) if i not in dead]
    for k in "ne":
        assert float(imp[k][dead].max()) == 0.0 and float(imp[k][live].min()) > 0
    small = prune_latent(model, 0.5)
    assert small.config["hidden"] == 4
    assert set(small.config["widths"].values()) == {8}  # hidden blocks keep their width
    x = torch.randn(30, model.n_node_features)
    ei = torch.randint(0, 30, (2, 90))
    np.testing.assert_allclose(_scores(small, (x, ei)), _scores(model, (x, ei)), atol=1e-6, rtol=0)


def test_prune_latent_with_units_gives_the_narrow_architecture(tmp_path):
    torch.manual_seed(0)
    model = InteractionGNN(hidden=16, n_graph_iters=2).eval()
    small = prune_units(prune_latent(model, 0.5, 16), 0.5, 16)
    narrow = InteractionGNN(hidden=8, n_graph_iters=2)
    assert small.config["hidden"] == 8 and small.config["widths"] == {}
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in narrow.parameters())
    save_model(small, tmp_path / "s.pt")
    x = torch.randn(40, small.n_node_features)
    ei = torch.randint(0, 40, (2, 120))
    torch.testing.assert_close(_scores(load_model(tmp_path / "s.pt"), (x, ei)), _scores(small, (x, ei)))
    with pytest.raises(ValueError, match="InteractionGNN"):
        prune_latent(FilterModel(hidden=8), 0.5)


def test_widths_config_is_checked():
    with pytest.raises(ValueError, match="no hidden block"):
        InteractionGNN(hidden=8, widths={"decoder.6": 4})
    with pytest.raises(ValueError, match="positive"):
        FilterModel(hidden=8, widths={"net.0": 0})


# -- through the training stages -----------------------------------------------------------------


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_gnn_pruning_reaches_target_and_model_exports(shards, tmp_path, scope):
    out = tmp_path / "gnn.pt"
    prune = {"target_sparsity": 0.6, "rounds": 2, "scope": scope}
    summary = _train_gnn(shards, out, compression={"prune": prune}, train={**TRAIN, "scheduler": "cosine"})
    model = load_model(out)
    sp = weight_sparsity(model)
    info = read_model_info(out)["compression"]
    assert [r["sparsity"] for r in info["rounds"]] == pytest.approx(
        [round_sparsity(0.6, r, 2) for r in (1, 2)]
    )
    assert info["linear_sparsity"] == pytest.approx(sp["global"])
    if scope == "global":
        assert sp["global"] == pytest.approx(0.6, abs=1e-3)
    else:
        for name, frac in sp["layers"].items():
            n = linear_layers(model)[name].weight.numel()
            assert abs(frac - 0.6) <= 1.0 / n + 1e-9, name
    # each round trains its epochs with the learning rate rewound to the start of the schedule
    assert summary["epochs_run"] == TRAIN["epochs"]
    lrs = []
    for r in (1, 2):
        with open(tmp_path / f"gnn.pt.prune{r}.metrics.csv") as fh:
            lrs.append([float(row["lr"]) for row in csv.DictReader(fh)])
    assert len(lrs[0]) == len(lrs[1]) == TRAIN["epochs"]
    assert lrs[1][0] == lrs[0][0] > lrs[0][-1]
    # the same masks in every stored round: round-2 zeroes include round-1 zeroes
    r1 = load_model(tmp_path / "gnn.pt.prune1")
    for name, lin in linear_layers(r1).items():
        assert torch.all(linear_layers(model)[name].weight[lin.weight == 0] == 0)
    inputs = _graph_inputs(model, shards)
    report = export_model(model, "gnn", tmp_path / "export", inputs)
    assert report["passed"]


def test_latent_gnn_pruning_through_the_stage_exports_and_quantises(shards, tmp_path):
    out = tmp_path / "gnn.pt"
    prune = {"target_sparsity": 0.5, "rounds": 2, "structured": True, "latent": True}
    _train_gnn(shards, out, compression={"prune": prune})
    model = load_model(out)
    assert model.config["hidden"] == 8 and model.config["widths"] == {}
    info = read_model_info(out)["compression"]
    assert info["prune"]["latent"] is True
    assert [load_model(tmp_path / f"gnn.pt.prune{r}").config["hidden"] for r in (1, 2)] == [
        round(16 * (1 - round_sparsity(0.5, 1, 2))),
        8,
    ]
    inputs = _graph_inputs(model, shards)
    report = export_model(model, "gnn", tmp_path / "export", inputs)
    assert report["passed"] and report["onnx_max_abs_diff"] < 1e-4
    q = quantize_int8(model)
    assert np.max(np.abs(_scores(q, inputs[0]) - _scores(model, inputs[0]))) < 0.2


def test_structured_gnn_pruning_saves_a_narrower_model(shards, tmp_path):
    out = tmp_path / "gnn.pt"
    _train_gnn(shards, out, compression={"prune": {"target_sparsity": 0.5, "rounds": 2, "structured": True}})
    dense = InteractionGNN(**GNN)
    model = load_model(out)
    assert set(model.config["widths"].values()) == {8}
    assert sum(p.numel() for p in model.parameters()) < 0.6 * sum(p.numel() for p in dense.parameters())
    info = read_model_info(out)
    assert info["config"]["widths"] == model.config["widths"]
    assert info["compression"]["prune"]["structured"] is True
    report = export_model(model, "gnn", tmp_path / "export", _graph_inputs(model, shards))
    assert report["passed"] and report["onnx_max_abs_diff"] < 1e-4


def test_filter_pruning_through_its_stage(shards, tmp_path):
    (te, tg), (ve, vg) = shards["train"], shards["val"]
    out = tmp_path / "filter.pt"
    cfg = {
        "hidden": 16,
        "n_layers": 2,
        "train": TRAIN,
        "compression": {"prune": {"target_sparsity": 0.5, "rounds": 1}},
    }
    run_train_filter([te], [tg], [ve], [vg], out, cfg, device="cpu")
    assert weight_sparsity(load_model(out))["global"] == pytest.approx(0.5, abs=1e-3)


def test_init_from_starts_from_the_trained_weights(shards, tmp_path):
    base = tmp_path / "base.pt"
    _train_gnn(shards, base)
    trained = load_model(base)
    out = tmp_path / "tuned.pt"
    (te, tg), (ve, vg) = shards["train"], shards["val"]
    cfg = {**GNN, "train": {**TRAIN, "lr": 1e-12, "epochs": 1}, "init_from": str(base)}
    run_train_gnn([te], [tg], [ve], [vg], out, cfg, device="cpu", choose_cut=False)
    tuned = load_model(out)
    for (k, a), b in zip(trained.state_dict().items(), tuned.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)
    with pytest.raises(InputError, match="does not fit"):
        run_train_gnn([te], [tg], [ve], [vg], tmp_path / "x.pt", {**cfg, "hidden": 8}, device="cpu",
                      choose_cut=False)  # fmt: skip


def test_compression_config_is_validated():
    with pytest.raises(ConfigError, match="target_sparsity"):
        from_dict(GNNConfig, {"compression": {"prune": {"target_sparsity": 1.0}}})
    with pytest.raises(ConfigError, match="scope"):
        from_dict(FilterConfig, {"compression": {"prune": {"scope": "row"}}})
    with pytest.raises(ConfigError, match="latent needs structured"):
        from_dict(GNNConfig, {"compression": {"prune": {"target_sparsity": 0.5, "latent": True}}})


# -- int8 ----------------------------------------------------------------------------------------

#: largest |int8 score - fake-quant score| accepted on the sample graphs (sigmoid scores): the
#: fake quantisation rounds like torch.ao's kernels, but accumulates in float
INT8_TOLERANCE = 0.05


def test_qat_then_int8_matches_the_fake_quant_model(shards, tmp_path):
    out = tmp_path / "gnn.pt"
    _train_gnn(shards, out, compression={"qat": True})
    info = read_model_info(out)["compression"]
    assert info["qat"] is True and info["bits"] == 8
    model = load_model(out)
    inputs = _graph_inputs(model, shards)
    fake = load_model(out)
    enable_fake_quant(fake)
    q = quantize_int8(model)
    for inp in inputs:
        s_fake, s_q, s_fp = _scores(fake, inp), _scores(q, inp), _scores(model, inp)
        assert np.max(np.abs(s_q - s_fake)) < INT8_TOLERANCE
        assert np.max(np.abs(s_q - s_fp)) > 0  # int8 really computes differently
    disable_fake_quant(fake)
    torch.testing.assert_close(_scores(fake, inputs[0]), _scores(model, inputs[0]), rtol=0, atol=0)


def test_int8_model_keeps_its_modules_quantised_and_scripts(shards, tmp_path):
    torch.manual_seed(0)
    model = InteractionGNN(**GNN).eval()
    q = quantize_int8(model)
    kinds = {type(m).__module__ for m in q.modules()}
    assert any("quantized" in k for k in kinds)
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    inputs = _graph_inputs(model, shards)
    ts = torch.jit.script(q)
    path = tmp_path / "q.ts.pt"
    torch.jit.save(ts, str(path))
    loaded = torch.jit.load(str(path))
    for inp in inputs:
        np.testing.assert_allclose(_scores(loaded, inp), _scores(q, inp), atol=1e-6, rtol=0)


def _quantised(model) -> bool:
    return any("quantized" in type(m).__module__ for m in model.modules()) and not any(
        type(m) is torch.nn.Linear for m in model.modules()
    )


def test_inference_int8_setting_runs_the_quantised_models(setup):  # noqa: F811 - the fixture
    ev = read_events(setup / "events.h5")[0]
    p32, p8 = _pipe(setup), _pipe(setup, int8=True)
    assert _quantised(p8.gnn_model) and _quantised(p8.filter_model)
    assert not _quantised(p32.gnn_model)
    r32, r8 = p32.run_event(ev), p8.run_event(ev)
    assert r8.n_edges["build_edges"] == r32.n_edges["build_edges"]
    # same graph, both precisions: int8 computes differently but close
    x = torch.from_numpy(node_features(ev.hits, p32.gnn_model.node_features, p32.gnn_model.feature_scales))
    a = torch.sigmoid(p32._runners["gnn"](x, r32.edge_index))
    b = torch.sigmoid(p8._runners["gnn"](x, r32.edge_index))
    assert float((a - b).abs().max()) > 0 and float((a - b).abs().mean()) < INT8_TOLERANCE
    with pytest.raises(ConfigError, match="int8"):
        from_dict(InferenceConfig, {"int8": True, "runtime": "onnx"})


def test_linear_flops_counts_per_edge_and_per_node_work():
    f = FilterModel(hidden=8, n_layers=2)
    n_in = f.net[0].in_features
    assert linear_flops(f, 100, 1000) == 2 * 1000 * (n_in * 8 + 8 * 8 + 8 * 1)
    g = InteractionGNN(hidden=4, n_graph_iters=3, n_node_layers=1, n_edge_layers=1, edge_features=["dr"])
    h, n, e, nf = 4, 10, 50, g.n_encoder_features
    node_enc = nf * h + h * h
    # a PairMLP's first layer: its two node blocks once per node, its edge block once per edge
    edge_enc = 2 * h * h * n + 1 * h * e + h * h * e
    node_net = (3 * h * h + h * h) * n
    edge_net = 2 * h * h * n + h * h * e + h * h * e
    decoder = 2 * h * h * n + h * h * e + h * 1 * e
    expected = 2 * (node_enc * n + edge_enc + 3 * (node_net + edge_net) + decoder)
    assert linear_flops(g, n, e) == expected
    # sparse counting sees the zeroes, dense counting does not
    apply_masks(g, magnitude_masks(g, 0.5))
    assert linear_flops(g, n, e) == expected
    assert linear_flops(g, n, e, sparse=True) < 0.6 * expected
