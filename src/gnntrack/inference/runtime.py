"""Execution back-ends for the learned stages: eager PyTorch (optionally autocast), TorchScript,
ONNX Runtime and ``torch.compile``.

Which one is fastest depends on the hardware: on a GPU bf16/fp16 autocast wins (tensor cores);
on a CPU without native bf16 instructions autocast is usually *slower* and a graph runtime
(TorchScript freezing, ONNX Runtime's fused kernels, Inductor) may win instead. The benchmark
therefore measures the candidates on real events instead of guessing, and ``ModelRunner`` gives
the pipeline one calling convention for all of them: ``runner(*tensors) -> float32 tensor`` on
the pipeline's device.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import torch

RUNTIMES = ("eager", "torchscript", "onnx", "compile")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {"bf16", "fp16"}; a null context for "none"."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"unknown amp setting {amp!r}; choose one of {list(AMP_DTYPES)}")
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("fp16 autocast is not supported on the CPU; use amp='bf16'")
    return torch.autocast(device_type=device.type, dtype=dtype)


class ModelRunner:
    """Run one learned stage's model with a chosen runtime; conversions happen on first call.

    Graph runtimes are traced from the first real input, so the example has the real feature
    width and dtypes; they are traced with dynamic node/edge counts.
    """

    def __init__(
        self, model: torch.nn.Module, device: torch.device, runtime: str = "eager", amp: str = "none"
    ):
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")
        if runtime == "onnx" and amp != "none":
            raise ValueError("ONNX Runtime runs the exported fp32 graph; use amp='none' with runtime='onnx'")
        autocast_context(device, amp)  # validates amp for this device
        self.model = model.eval()
        self.device = device
        self.runtime = runtime
        self.amp = amp
        self._impl = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self._impl is None:
            self._impl = self._build(inputs)
        with torch.inference_mode():
            out = self._impl(*inputs)
        return out.float()

    # -- builders ---------------------------------------------------------------------------
    def _build(self, example: tuple[torch.Tensor, ...]):
        if self.runtime == "eager":
            return self._eager(self.model)
        if self.runtime == "torchscript":
            with torch.inference_mode(False), torch.no_grad():
                traced = torch.jit.trace(self.model, example, check_trace=False)
                traced = torch.jit.freeze(traced.eval())
            return self._eager(traced)
        if self.runtime == "compile":
            return self._eager(torch.compile(self.model, dynamic=True))
        return self._onnx(example)

    def _eager(self, fn):
        def run(*inputs):
            with autocast_context(self.device, self.amp):
                return fn(*inputs)

        return run

    def _onnx(self, example):
        import onnxruntime as ort

        self._tmpdir = tempfile.TemporaryDirectory(prefix="gnntrack-onnx-")
        path = Path(self._tmpdir.name) / "model.onnx"
        names = [f"input{i}" for i in range(len(example))]
        dynamic = {n: {int(0 if t.dim() < 2 or t.dtype.is_floating_point else 1): f"d{i}"}
                   for i, (n, t) in enumerate(zip(names, example))}  # fmt: skip
        dynamic["output"] = {0: "n_out"}
        with torch.no_grad():
            torch.onnx.export(
                self.model,
                tuple(example),
                str(path),
                input_names=names,
                output_names=["output"],
                dynamic_axes=dynamic,
                opset_version=17,
                dynamo=False,
            )
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=providers)

        def run(*inputs):
            feeds = {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)}
            out = session.run(None, feeds)[0]
            return torch.from_numpy(np.ascontiguousarray(out)).to(self.device)

        return run
