"""ONNX / TorchScript export of filter, GNN and embedding reproduces PyTorch on a real graph."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from test_training_stages import write_shard

from gnntrack.export import run_export
from gnntrack.io.errors import InputError
from gnntrack.models import FilterModel, InteractionGNN, save_model

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _models(tmp_path):
    torch.manual_seed(0)
    paths = {
        "filter": (FilterModel(hidden=32, n_layers=2), tmp_path / "filter.pt"),
        "gnn": (
            InteractionGNN(
                hidden=16,
                n_graph_iters=3,
                recurrent=False,
                aggregation="mean",
                concat_inputs=True,
                decoder="edge",
            ),
            tmp_path / "gnn.pt",
        ),
    }
    try:
        from gnntrack.models.embedding import EmbeddingMLP

        paths["embedding"] = (EmbeddingMLP(hidden=32, n_layers=2), tmp_path / "embedding.pt")
    except ImportError:  # H3's module not present in this checkout
        pass
    for model, path in paths.values():
        save_model(model, path)
    return {k: p for k, (_, p) in paths.items()}


def test_exports_match_pytorch(tmp_path):
    ef, gf = write_shard(tmp_path, "sample", [5])
    models = _models(tmp_path)
    out = tmp_path / "export"
    report = run_export(models, out, ef, gf)
    assert json.loads((out / "export_report.json").read_text()) == report
    for name in models:
        entry = report["models"][name]
        assert (
            entry["passed"] and entry["onnx_max_abs_diff"] < 1e-4 and entry["torchscript_max_abs_diff"] < 1e-4
        )
        assert (out / f"{name}.onnx").exists() and (out / f"{name}.ts.pt").exists()
        # the two checked inputs have different sizes: the axes really are dynamic
        sizes = entry["checked_on"]
        assert sizes[0]["n_nodes"] != sizes[1]["n_nodes"]
        meta = {p.key: p.value for p in onnx.load(str(out / f"{name}.onnx")).metadata_props}
        assert json.loads(meta["gnntrack.node_features"])[:3] == ["r", "phi", "z"]
    assert report["models"]["gnn"]["torchscript_method"] == "script"


def test_exported_gnn_handles_empty_and_isolated(tmp_path):
    ef, gf = write_shard(tmp_path, "sample", [6])
    run_export({"gnn": _models(tmp_path)["gnn"]}, tmp_path / "x", ef, gf)
    sess = ort.InferenceSession(str(tmp_path / "x" / "gnn.onnx"), providers=["CPUExecutionProvider"])
    ts = torch.jit.load(str(tmp_path / "x" / "gnn.ts.pt"))
    x = np.random.default_rng(0).normal(size=(7, 24)).astype(np.float32)
    for ei in (np.zeros((2, 0), np.int64), np.array([[0, 1], [1, 2]], np.int64)):  # nodes 3..6 isolated
        logits = sess.run(None, {"x": x, "edge_index": ei})[0]
        assert logits.shape == (ei.shape[1],) and np.all(np.isfinite(logits))
        np.testing.assert_allclose(
            ts(torch.from_numpy(x), torch.from_numpy(ei)).detach().numpy(), logits, atol=1e-5
        )


def test_missing_sample_or_model_is_input_error(tmp_path):
    ef, gf = write_shard(tmp_path, "sample", [7])
    with pytest.raises(InputError, match="does not exist"):
        run_export({"gnn": tmp_path / "nope.pt"}, tmp_path / "x", ef, gf)
    with pytest.raises(InputError, match="does not exist"):
        run_export(_models(tmp_path), tmp_path / "x", ef, tmp_path / "nope.h5")
    assert not list((tmp_path / "x").glob("*.onnx"))
