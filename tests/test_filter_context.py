"""The edge filter with a context round (``FilterModel(context_hidden=...)``): starts from the
per-edge filter exactly, chunked two-pass scoring equals whole-event scoring, model files, export,
int8, pruning and cost accounting know its networks, and the filter stage trains it in two phases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_training_stages import SMALL_TRAIN, write_shard

from gnntrack.edge_classification.shards import init_weights
from gnntrack.edge_classification.stage import EdgeClassifier
from gnntrack.edge_classification.task import edge_logits
from gnntrack.edge_filter import FilterConfig, run_apply_filter, run_train_filter
from gnntrack.event_data import EventData, feature_spec
from gnntrack.export import run_export
from gnntrack.io.errors import InputError
from gnntrack.io.graph_store import read_graphs
from gnntrack.models import FilterModel, load_model, save_model
from gnntrack.models.compression import QuantPairMLP, linear_flops, prune_units, quantize_int8
from gnntrack.models.registry import load_checkpoint, read_model_info, save_checkpoint

torch.set_num_threads(1)

SMALL = {"hidden": 16, "n_layers": 2}
CONTEXT = {**SMALL, "context_hidden": 8}


def _graph(n_nodes=60, n_edges=700, seed=0):
    """Random node features and a random edge list with repeated endpoints (hits of many edges)."""
    g = torch.Generator().manual_seed(seed)
    model = FilterModel(**SMALL)
    x = torch.rand(n_nodes, model.n_node_features, generator=g) * 2 + 0.1
    return x, torch.randint(0, n_nodes, (2, n_edges), generator=g)


def _trained_context_filter(seed=1, **settings) -> FilterModel:
    """A context filter whose correction is not zero (as after training)."""
    torch.manual_seed(seed)
    model = FilterModel(**{**CONTEXT, **settings}).eval()
    with torch.no_grad():
        model.edge_net[-1].weight.normal_(0, 0.5)
        model.edge_net[-1].bias.fill_(0.3)
    return model


def _median_score() -> float:
    """The median per-edge score of ``_trained_context_filter()`` on ``_graph()``: a
    ``context_min_score`` that leaves half of the edges out of the context round."""
    x, ei = _graph()
    with torch.no_grad():
        return float(torch.sigmoid(_trained_context_filter().edge_pass(x, ei)[1]).median())


def test_context_filter_starts_from_the_per_edge_filter(tmp_path):
    """Initialised from a trained per-edge filter of the same settings, the context filter gives
    its logits exactly (zero-initialised correction); a changed correction changes them."""
    torch.manual_seed(0)
    per_edge = FilterModel(**SMALL).eval()
    save_model(per_edge, tmp_path / "per_edge.pt")
    ctx = FilterModel(**CONTEXT).eval()
    init_weights(ctx, tmp_path / "per_edge.pt")
    x, ei = _graph()
    with torch.no_grad():
        torch.testing.assert_close(ctx(x, ei), per_edge(x, ei), rtol=0, atol=0)
        ctx.edge_net[-1].bias.fill_(0.5)
        assert float((ctx(x, ei) - per_edge(x, ei)).abs().min()) > 0.4
    assert sum(p.numel() for p in ctx.parameters()) > sum(p.numel() for p in per_edge.parameters())


def test_context_uses_the_neighbourhood_and_a_per_edge_filter_does_not():
    """Removing other edges of a hit changes a context filter's logit of an edge it keeps, never a
    per-edge filter's."""
    x, ei = _graph()
    ctx = _trained_context_filter()
    torch.manual_seed(0)
    per_edge = FilterModel(**SMALL).eval()
    half = ei[:, : ei.shape[1] // 2]
    with torch.no_grad():
        torch.testing.assert_close(per_edge(x, ei)[: half.shape[1]], per_edge(x, half), rtol=0, atol=1e-6)
        assert float((ctx(x, ei)[: half.shape[1]] - ctx(x, half)).abs().max()) > 1e-3


@pytest.mark.parametrize("precut", [False, True])
@pytest.mark.parametrize("chunk", [1, 97, 350, 699, 700, 5000])
def test_chunked_scoring_equals_whole_event(chunk, precut):
    """Two passes over chunks give the whole-event logits (to float summation order), through
    the model, the training loop's ``edge_logits`` and the pipeline's ``EdgeClassifier`` stage."""
    x, ei = _graph()
    model = _trained_context_filter(context_min_score=_median_score() if precut else 0.0)
    with torch.no_grad():
        whole = model(x, ei)
        torch.testing.assert_close(model.chunked_logits(x, ei, chunk), whole, rtol=0, atol=2e-5)
        torch.testing.assert_close(edge_logits(model, x, ei, chunk), whole, rtol=0, atol=2e-5)
    ev = EventData("k", 0, 0, x.shape[0], torch.device("cpu"), features={feature_spec(model): x})
    ev.set_graph(ei)
    scores = EdgeClassifier("filter", model, cut=0.5, chunk_size=chunk).scores(ev)
    torch.testing.assert_close(scores, torch.sigmoid(whole), rtol=0, atol=1e-5)


def test_context_min_score_leaves_rejected_edges_alone():
    """Edges whose per-edge score is below ``context_min_score`` keep the per-edge logit; the
    others get the correction of a context round run on them alone."""
    x, ei = _graph()
    q = _median_score()
    model = _trained_context_filter(context_min_score=q)
    every = _trained_context_filter()  # same weights, every edge in the context round
    with torch.no_grad():
        per_edge = model.edge_pass(x, ei)[1]
        out = model(x, ei)
        low = torch.sigmoid(per_edge) < q
        assert 0.4 < float(low.float().mean()) < 0.6
        torch.testing.assert_close(out[low], per_edge[low], rtol=0, atol=0)
        torch.testing.assert_close(out[~low], every(x, ei[:, ~low]), rtol=0, atol=1e-5)
        assert float((out[~low] - every(x, ei)[~low]).abs().max()) > 1e-3  # the left-out edges matter


def test_chunked_scoring_of_an_empty_graph():
    x, _ = _graph()
    empty = torch.zeros((2, 0), dtype=torch.long)
    for model in (_trained_context_filter(), FilterModel(**SMALL).eval()):
        with torch.no_grad():
            assert model.chunked_logits(x, empty, 10).shape == (0,)


def test_model_file_round_trip_and_bad_context_setting(tmp_path):
    x, ei = _graph()
    model = _trained_context_filter()
    save_model(model, tmp_path / "ctx.pt")
    loaded = load_model(tmp_path / "ctx.pt")
    assert loaded.context and loaded.config["context_hidden"] == 8
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, ei), model(x, ei), rtol=0, atol=0)
    payload = load_checkpoint(tmp_path / "ctx.pt", "model file")
    payload["config"]["context_hidden"] = "wide"
    save_checkpoint(payload, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="context_hidden") as exc:
        load_model(tmp_path / "bad.pt")
    assert exc.value.field == "config.context_hidden" and "bad.pt" in str(exc.value)


def test_init_from_a_context_filter_into_a_per_edge_filter_is_an_input_error(tmp_path):
    save_model(_trained_context_filter(), tmp_path / "ctx.pt")
    with pytest.raises(InputError, match="unexpected") as exc:
        init_weights(FilterModel(**SMALL), tmp_path / "ctx.pt")
    assert "ctx.pt" in str(exc.value)


def test_export_matches_pytorch(tmp_path):
    ef, gf = write_shard(tmp_path, "sample", [5])
    torch.manual_seed(0)
    save_model(_trained_context_filter(context_min_score=_median_score()), tmp_path / "filter.pt")
    report = run_export({"filter": tmp_path / "filter.pt"}, tmp_path / "export", ef, gf)
    entry = report["models"]["filter"]
    assert entry["passed"], entry
    assert entry["onnx_max_abs_diff"] < 1e-4 and entry["torchscript_max_abs_diff"] < 1e-4
    sizes = entry["checked_on"]
    assert sizes[0]["n_edges"] != sizes[1]["n_edges"]


def test_int8_keeps_the_pair_trick_and_tracks_fp32():
    """int8 scores stay close to fp32, whole or chunked (dynamic quantisation scales activations
    per call, so chunks are quantised differently: close, not equal)."""
    x, ei = _graph()
    model = _trained_context_filter()
    q = quantize_int8(model)
    assert isinstance(q.edge_net, QuantPairMLP) and q.edge_net.node_width == 8
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    with torch.no_grad():
        fp32 = torch.sigmoid(model(x, ei))
        for int8 in (torch.sigmoid(q(x, ei)), torch.sigmoid(q.chunked_logits(x, ei, 128))):
            diff = (int8 - fp32).abs()
            assert float(diff.max()) > 0 and float(diff.mean()) < 0.02


def test_structured_pruning_keeps_the_edge_latent_and_narrows_the_rest(tmp_path):
    model = _trained_context_filter()
    small = prune_units(model, 0.5)
    widths = small.config["widths"]
    # net.0 narrowed; net.3 (the edge latent the context MLPs read) kept at 16
    assert widths == {"net.0": 8, "node_net.0": 4, "node_net.3": 4, "edge_net.0": 4, "edge_net.3": 4}
    assert small.net[3].out_features == 16
    x, ei = _graph()
    save_model(small, tmp_path / "small.pt")
    with torch.no_grad():
        assert torch.isfinite(load_model(tmp_path / "small.pt")(x, ei)).all()


def test_linear_flops_count_the_context_networks():
    base, model = FilterModel(**SMALL), FilterModel(**CONTEXT)
    n, e, h, c = 100, 1000, 16, 8
    node_net = 2 * h * c + c * c + c * c  # per node
    edge_net_nodes = 2 * c * c  # the pair MLP's two node column blocks, per node
    edge_net_edges = h * c + c * c + c * 1  # its edge block and the rest, per edge
    extra = 2 * (n * (node_net + edge_net_nodes) + e * edge_net_edges)
    assert linear_flops(model, n, e) == linear_flops(base, n, e) + extra


SMALL_TWO_PHASE = {**SMALL_TRAIN, "epochs": 3}


def test_filter_stage_trains_the_per_edge_filter_then_its_context(tmp_path):
    """No init_from: the per-edge filter is trained first (``<output>.per_edge``), the context
    filter starts from it, trains on whole regions and keeps the target efficiency it is cut at;
    apply_filter scores the context filter in chunks as one whole event."""
    tr, va = write_shard(tmp_path, "train", [1, 2]), write_shard(tmp_path, "val", [10])
    cfg = {
        **CONTEXT,
        "train": SMALL_TWO_PHASE,
        "context_train": {**SMALL_TWO_PHASE, "epochs": 2},
        "max_edges_per_step": 300,
        "target_efficiency": 0.97,
        "chunk_size": 256,
    }
    out = tmp_path / "filter.pt"
    summary = run_train_filter([tr[0]], [tr[1]], [va[0]], [va[1]], out, cfg, device="cpu")
    per_edge = load_model(tmp_path / "filter.pt.per_edge")
    model = load_model(out)
    assert not per_edge.context and model.context
    assert summary["per_edge"]["epochs_run"] == 3 and len(summary["history"]) == 2
    info = read_model_info(out)
    assert info["working_point"]["efficiency"] >= 0.97
    filtered = tmp_path / "filtered.h5"
    metrics = run_apply_filter(
        va[0], va[1], out, filtered, FilterConfig(**{**cfg, "train": {}, "context_train": {}})
    )
    assert metrics["efficiency"] == info["working_point"]["efficiency"]
    # chunked scoring (256 edges per pass) reproduces whole-event scores
    whole = run_apply_filter(va[0], va[1], out, tmp_path / "whole.h5", {"chunk_size": 10**6})
    a = np.concatenate([g.scores["filter"] for g in read_graphs(filtered)])
    b = np.concatenate([g.scores["filter"] for g in read_graphs(tmp_path / "whole.h5")])
    assert a.shape == b.shape and np.max(np.abs(a - b)) < 1e-5
    assert whole["edges_out"] == metrics["edges_out"]
