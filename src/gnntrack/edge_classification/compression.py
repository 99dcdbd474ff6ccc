"""Compression as a training option of the edge classifiers (the ``compression`` section of the
``gnn`` and ``filter`` stages): iterative magnitude pruning with learning-rate rewinding, and
int8 quantisation-aware training.

Pruning (``prune.target_sparsity`` > 0) runs ``prune.rounds`` rounds through the shared loop's
``Trainer``. Round ``r`` (1-based) first prunes to sparsity ``1 - (1 - target)^(r / rounds)`` (the
same fraction of the remaining weights each round), then trains ``train.epochs`` epochs with a new
optimiser and schedule: the learning rate is rewound to its start (LRR), the weights are not.
Unstructured (default): the smallest-magnitude Linear weights are zeroed, over all Linear
layers at once (``scope: global``) or layer by layer (``scope: layer``); the masks stay applied
(``models.compression.MaskKeeper``). Structured: whole hidden units of every MLP block are removed
(the ``target_sparsity`` fraction of each block's units, block by block), and the model is rebuilt
narrower; with ``latent`` (interaction GNN) the same fraction of the node and edge latent
channels goes too (``models.compression.prune_latent``), which is what makes the gathers,
scatters and LayerNorms cheaper. Each round writes its own resumable run (``<output>.prune<r>``); the final model file
holds the last round's best weights (dense with zeroes when unstructured) and a ``compression``
entry: sparsity per layer, parameters, widths, rounds.

QAT (``qat: true``) trains with fake int8 quantisation of every Linear's weights and inputs,
emulating the int8 inference of ``models.compression.quantize_int8`` (torch.ao dynamic: per-tensor
int8 weights, per-call per-tensor activations); LayerNorm, activations and message aggregation stay
in float. The saved file is an ordinary float model marked ``compression.qat``; int8 is chosen at
inference (``inference.gnn_int8``, ``gnntrack.models.compression.quantize_int8``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import torch
from torch import nn

from ..config import ConfigError, Count, Rule
from ..models.compression import (
    MaskKeeper,
    compression_metadata,
    magnitude_masks,
    prune_latent,
    prune_units,
)
from ..models.mlp import PairMLP
from ..models.registry import load_checkpoint, save_checkpoint
from ..training.loop import Trainer

log = logging.getLogger(__name__)


@dataclass
class PruneConfig:
    """Iterative magnitude pruning with learning-rate rewinding (see the module docstring)."""

    #: fraction of the Linear weights (unstructured) or of each block's hidden units (structured)
    #: removed at the end; 0 = no pruning
    target_sparsity: Annotated[float, Rule(minimum=0, exclusive_maximum=1)] = 0.0
    rounds: Count = 4  # prune/retrain rounds; each trains train.epochs epochs
    structured: bool = False  # remove whole hidden units (a narrower, faster model)
    #: structured, GNN only: also narrow the node and edge latents between the networks (the
    #: states every gather, scatter and LayerNorm works on), not only the MLPs' hidden blocks
    latent: bool = False
    #: unstructured: one magnitude threshold over all Linear weights, or the same sparsity per layer
    scope: Literal["global", "layer"] = "global"

    def __post_init__(self) -> None:
        if self.latent and not self.structured:
            raise ConfigError("compression.prune.latent needs structured: true (it removes whole channels)")


@dataclass
class CompressionConfig:
    """The ``compression`` section of the ``gnn`` and ``filter`` stages."""

    prune: PruneConfig = field(default_factory=PruneConfig)
    #: int8 quantisation-aware training of the Linear layers (fake quantisation in training)
    qat: bool = False

    @property
    def enabled(self) -> bool:
        return self.qat or self.prune.target_sparsity > 0


def round_sparsity(target: float, r: int, rounds: int) -> float:
    """Sparsity after round ``r`` of ``rounds`` (1-based): the same fraction of what remains
    is removed each round, ending at ``target``."""
    return 1.0 - (1.0 - target) ** (r / rounds)


# -- fake int8 quantisation (QAT) ----------------------------------------------------------------


def _reduce_range() -> bool:
    """torch.ao's dynamic quantisation uses 7-bit activations on the fbgemm/x86 engines."""
    return torch.backends.quantized.engine in ("fbgemm", "x86")


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-tensor symmetric int8 fake quantisation (straight-through gradient), as torch.ao's
    default dynamic weight observer."""
    amax = w.detach().abs().max().clamp_min(1e-8)
    scale = float(amax / 127.5)
    return torch.fake_quantize_per_tensor_affine(w, scale, 0, -128, 127)


def fake_quant_activation(x: torch.Tensor) -> torch.Tensor:
    """Per-tensor affine uint8 fake quantisation from the tensor's own range (as dynamic
    quantisation does per call; 7 bits where torch.ao reduces the range)."""
    qmax = 127 if _reduce_range() else 255
    lo = float(x.detach().min().clamp_max(0.0))
    hi = float(x.detach().max().clamp_min(0.0))
    scale = max((hi - lo) / qmax, 1e-8)
    zero_point = int(min(max(round(-lo / scale), 0), qmax))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, qmax)


class FakeQuantLinear(nn.Linear):
    """A Linear computing with fake-int8 weights and inputs (same parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(fake_quant_activation(x), fake_quant_weight(self.weight), self.bias)


class FakeQuantPairMLP(PairMLP):
    """``PairMLP.pairs`` with its three column blocks fake-quantised as ``QuantPairMLP`` quantises
    them (each block its own weight scale; node states and edge inputs quantised separately)."""

    def pairs(self, h, src, dst, e):
        first = self[0]
        w = first.weight
        n = h.shape[1]
        hq, eq = fake_quant_activation(h), fake_quant_activation(e)
        z = nn.functional.linear(hq, fake_quant_weight(w[:, :n])).index_select(0, src)
        z = z + nn.functional.linear(hq, fake_quant_weight(w[:, n : 2 * n])).index_select(0, dst)
        z = z + nn.functional.linear(eq, fake_quant_weight(w[:, 2 * n :]), first.bias)
        for i, layer in enumerate(self):
            if i > 0:
                z = layer(z)
        return z


def enable_fake_quant(model: nn.Module) -> None:
    """Switch every Linear and PairMLP of ``model`` to its fake-quantised form, in place (the
    parameters and state dict are unchanged)."""
    for m in model.modules():
        if type(m) is nn.Linear:
            m.__class__ = FakeQuantLinear
        elif type(m) is PairMLP:
            m.__class__ = FakeQuantPairMLP


def disable_fake_quant(model: nn.Module) -> None:
    """Undo ``enable_fake_quant``."""
    for m in model.modules():
        if type(m) is FakeQuantLinear:
            m.__class__ = nn.Linear
        elif type(m) is FakeQuantPairMLP:
            m.__class__ = PairMLP


# -- the training driver -------------------------------------------------------------------------


def _run(task, train, val, train_cfg, output: Path, device, masks=None) -> dict:
    """One training run through the shared loop; masks (if any) kept applied."""
    trainer = Trainer(task, train, val, train_cfg, output, device)
    trainer.restore()  # a fresh optimiser and schedule: the learning rate starts again
    keeper = MaskKeeper(trainer.model, masks).attach(trainer.optimizer) if masks else None
    try:
        with trainer:
            while not trainer.done:
                row = trainer.train_epoch()
                trainer.end_epoch(row, trainer.validate())
                trainer.checkpoint()
        return trainer.finish()
    finally:
        if keeper is not None:
            keeper.detach()


def train_compressed(task, train, val, cfg, output: str | Path, device) -> dict:
    """Train ``task.model`` with the stage config's ``compression`` settings (pruning rounds with
    learning-rate rewinding and/or QAT); the final model goes to ``output`` with its
    ``compression`` metadata. Returns the shared loop's summary of the last run plus
    ``compression`` (per round: sparsity, parameters, best metric)."""
    comp: CompressionConfig = cfg.compression
    prune = comp.prune
    output = Path(output)
    if comp.qat:
        enable_fake_quant(task.model)
    rounds_info = []
    try:
        if prune.target_sparsity <= 0:
            summary = _run(task, train, val, cfg.train, output.with_name(output.name + ".qat"), device)
            last = Path(summary["output"])
        else:
            original = int(task.model.config.get("hidden", 0)) or None
            for r in range(1, prune.rounds + 1):
                s = round_sparsity(prune.target_sparsity, r, prune.rounds)
                masks = None
                if prune.structured:
                    if comp.qat:
                        disable_fake_quant(task.model)
                    if prune.latent:
                        task.model = prune_latent(task.model, s, original)
                    task.model = prune_units(task.model, s, original)
                    if comp.qat:
                        enable_fake_quant(task.model)
                else:
                    masks = magnitude_masks(task.model, s, prune.scope)
                summary = _run(
                    task, train, val, cfg.train, output.with_name(f"{output.name}.prune{r}"), device, masks
                )
                meta = compression_metadata(task.model)
                rounds_info.append(
                    {
                        "round": r,
                        "sparsity": s,
                        "linear_sparsity": meta["linear_sparsity"],
                        "parameters": meta["parameters"],
                        "nonzero_parameters": meta["nonzero_parameters"],
                        "best_metric": summary["best_metric"],
                    }
                )
                log.info(
                    "pruning round %d/%d: sparsity %.3f (Linear weights %.3f), %d parameters, best %s %.4g",
                    r, prune.rounds, s, meta["linear_sparsity"], meta["nonzero_parameters"],
                    summary["monitor"], summary["best_metric"] if summary["best_metric"] is not None else float("nan"),
                )  # fmt: skip
            last = Path(summary["output"])
    finally:
        if comp.qat:
            disable_fake_quant(task.model)
    info = compression_metadata(
        task.model,
        [
            ("qat", comp.qat),
            ("bits", 8 if comp.qat else 32),
            ("prune", {
                "target_sparsity": prune.target_sparsity, "rounds": prune.rounds if prune.target_sparsity > 0 else 0,
                "structured": prune.structured, "latent": prune.latent, "scope": "block" if prune.structured else prune.scope,
            }),
            ("rounds", rounds_info),
        ],
    )  # fmt: skip
    payload = load_checkpoint(last, "model file")
    payload["compression"] = info
    save_checkpoint(payload, output)
    summary = dict(summary, output=str(output), compression=info)
    return summary
