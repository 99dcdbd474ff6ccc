"""ONNX and TorchScript export of the learned stages, each checked on a real event.

Edge classifiers export as ``(x (N,F) float32, edge_index (2,E) int64) -> logits (E,)`` and the
embedding as ``x (N,F) -> embedding (N,D)``, with N and E dynamic. Edge features are computed
inside the models, so the C++ side only builds ``x``: the feature names and scales it needs are
stored in the files (ONNX ``metadata_props``; TorchScript extra file ``gnntrack.json``).

Every export is run on a graph of the sample files with onnxruntime / the TorchScript runtime
and must reproduce PyTorch's scores (sigmoid of the logits; embeddings as they are) to
``tolerance`` in fp32; it is also run on a sub-graph of a different size to prove the dynamic
axes. A model that fails the check leaves no file behind.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io.atomic import atomic_output
from ..io.errors import InputError
from ..io.event_store import read_event
from ..io.features import node_features
from ..io.graph_store import iter_graphs
from ..models.registry import class_path, load_model

log = logging.getLogger(__name__)

OPSET = 17
TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """An exported model does not reproduce PyTorch, or cannot be exported."""


def _is_edge_model(model: nn.Module) -> bool:
    return len(inspect.signature(model.forward).parameters) >= 2


def _metadata(model: nn.Module) -> dict[str, str]:
    return {
        "gnntrack.class": class_path(model),
        "gnntrack.config": json.dumps(getattr(model, "config", {}), default=str),
        "gnntrack.node_features": json.dumps(list(model.node_features)),
        "gnntrack.feature_scales": json.dumps(dict(model.feature_scales)),
        "gnntrack.inputs": "x,edge_index" if _is_edge_model(model) else "x",
        "gnntrack.output": "logits" if _is_edge_model(model) else "embedding",
    }


def _sample_inputs(model: nn.Module, event_file, graph_file) -> list[tuple[torch.Tensor, ...]]:
    """The first graph of the sample files, and a smaller sub-graph of it (other N and E)."""
    graph = next(iter_graphs(graph_file), None)
    if graph is None:
        raise InputError("sample graph file holds no graph", file=graph_file)
    event = read_event(event_file, graph.key, tables=("hits",))
    x = torch.from_numpy(node_features(event.hits, model.node_features, model.feature_scales))
    if not _is_edge_model(model):
        return [(x,), (x[: max(1, len(x) // 2)],)]
    ei = torch.from_numpy(np.ascontiguousarray(graph.edge_index, dtype=np.int64))
    n_sub = max(1, len(x) // 2)
    keep = (ei[0] < n_sub) & (ei[1] < n_sub)
    return [(x, ei), (x[:n_sub], ei[:, keep])]


def _scores(model_out: torch.Tensor | np.ndarray, edge: bool) -> np.ndarray:
    out = torch.as_tensor(np.asarray(model_out)).float()
    return (torch.sigmoid(out) if edge else out).numpy()


def _export_onnx(model: nn.Module, inputs, path: Path) -> None:
    import onnx

    edge = _is_edge_model(model)
    names = ["x", "edge_index"] if edge else ["x"]
    out_name = "logits" if edge else "embedding"
    axes = {"x": {0: "n_nodes"}, out_name: {0: "n_edges" if edge else "n_nodes"}}
    if edge:
        axes["edge_index"] = {1: "n_edges"}
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, inputs, buf, input_names=names, output_names=[out_name], dynamic_axes=axes,
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in _metadata(model).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())


def _run_onnx(path: Path, inputs) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
    return sess.run(None, feeds)[0]


def _export_torchscript(model: nn.Module, inputs, path: Path) -> str:
    """Script the model (keeps control flow); fall back to tracing if scripting fails."""
    # TorchScript is deprecated in recent torch but is still what libtorch (C++) loads.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            module = torch.jit.script(model)
            how = "script"
        except Exception as exc:  # scripting rejects many Python constructs; tracing is the fallback
            log.info("torch.jit.script failed for %s (%s); tracing instead", class_path(model), exc)
            warnings.simplefilter("ignore")
            module = torch.jit.trace(model, inputs, check_trace=False)
            how = "trace"
        meta = json.dumps(_metadata(model))
        torch.jit.save(module, str(path), _extra_files={"gnntrack.json": meta})
    return how


def _load_torchscript(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


def export_model(
    model: nn.Module, name: str, outdir: str | Path, samples, tolerance: float = TOLERANCE
) -> dict:
    """Export one model to ``outdir/<name>.onnx`` and ``outdir/<name>.ts.pt``; return its check report."""
    outdir = Path(outdir)
    model = model.cpu().float().eval()
    edge = _is_edge_model(model)
    report: dict = {
        "class": class_path(model),
        "kind": "edge_classifier" if edge else "embedding",
        "opset": OPSET,
    }
    with torch.no_grad():
        references = [_scores(model(*inp), edge) for inp in samples]
    report["checked_on"] = [
        {"n_nodes": int(inp[0].shape[0]), **({"n_edges": int(inp[1].shape[1])} if edge else {})}
        for inp in samples
    ]
    onnx_path, ts_path = outdir / f"{name}.onnx", outdir / f"{name}.ts.pt"
    with atomic_output(onnx_path) as tmp_onnx, atomic_output(ts_path) as tmp_ts:
        try:
            _export_onnx(model, samples[0], tmp_onnx)
        except Exception as exc:
            raise ExportError(f"{name}: ONNX export failed ({type(exc).__name__}: {exc})") from exc
        report["onnx_max_abs_diff"] = max(
            float(np.max(np.abs(_scores(_run_onnx(tmp_onnx, inp), edge) - ref), initial=0.0))
            for inp, ref in zip(samples, references)
        )
        report["torchscript_method"] = _export_torchscript(model, samples[0], tmp_ts)
        loaded = _load_torchscript(tmp_ts)
        with torch.no_grad():
            report["torchscript_max_abs_diff"] = max(
                float(np.max(np.abs(_scores(loaded(*inp), edge) - ref), initial=0.0))
                for inp, ref in zip(samples, references)
            )
        report["passed"] = max(report["onnx_max_abs_diff"], report["torchscript_max_abs_diff"]) < tolerance
        if not report["passed"]:
            raise ExportError(f"{name}: exported model differs from PyTorch: {report}")
    report["onnx"], report["torchscript"] = str(onnx_path), str(ts_path)
    report["onnx_bytes"], report["torchscript_bytes"] = os.path.getsize(onnx_path), os.path.getsize(ts_path)
    return report


def run_export(
    models: dict[str, str | Path],
    outdir: str | Path,
    sample_event_file: str | Path,
    sample_graph_file: str | Path,
    tolerance: float = TOLERANCE,
) -> dict:
    """Export every ``name -> model file`` to ``outdir/<name>.onnx`` and ``outdir/<name>.ts.pt``.

    Writes ``outdir/export_report.json`` (per model: files, sizes, sample sizes, max abs score
    difference of ONNX Runtime and TorchScript vs PyTorch) and returns the same dict.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    report: dict = {"tolerance": tolerance, "opset": OPSET, "torch": torch.__version__, "models": {}}
    for name, path in models.items():
        model = load_model(path, "cpu")
        samples = _sample_inputs(model, sample_event_file, sample_graph_file)
        entry = export_model(model, name, outdir, samples, tolerance)
        entry["source"] = str(path)
        report["models"][name] = entry
        log.info("exported %s: onnx diff %.2e, torchscript diff %.2e", name, entry["onnx_max_abs_diff"],
                 entry["torchscript_max_abs_diff"])  # fmt: skip
    try:
        import onnxruntime

        report["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        pass
    with atomic_output(outdir / "export_report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report
