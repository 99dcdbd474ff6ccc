"""The one training loop every learned stage uses (metric learning, filter, GNN).

A stage supplies a ``Task`` (model + per-item loss + validation metrics); ``fit`` owns the
optimiser, schedule, mixed precision, seeding, validation, checkpoints and logs, so every model
trains, resumes and reports the same way. A job killed mid-run (SLURM pre-emption, Ctrl-C) and
started again continues from ``<output>.last`` and ends bit-identical to an uninterrupted run on
the same device, because the checkpoint holds every random generator's state and the item order
of each epoch is a pure function of (seed, epoch).

``fit`` is ``Trainer(...).fit()``, a short composition of steps that can also be called one by
one: ``restore`` (resume from ``<output>.last`` or start fresh), then per epoch ``train_epoch``,
``validate``, ``end_epoch`` (record the epoch: history, best, early stopping, plateau schedule)
and ``checkpoint`` (write ``.last``, the best weights, the metrics CSV), then ``finish`` (publish
the best model, return the summary).

Data-parallel: when a default process group is initialised (``gnntrack.training.distributed``
starts the ranks and makes it), every rank runs the same loop on its share of the items. The
items of each optimiser step (``train.batch_items`` of the epoch's seeded order) are dealt out
over the ranks, the summed gradients and item counts are all-reduced before the step, the
validation items are shared out and their per-item results gathered on rank 0, which computes
the metrics and sends them to all; only rank 0 writes files. Every rank therefore takes the same
optimiser steps as one process with the same ``batch_items`` would, and a checkpoint resumes
with any number of ranks. Without a process group nothing of this runs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..config import from_dict, to_dict
from ..device import resolve_device
from ..io.atomic import atomic_output
from ..io.errors import InputError
from ..models.registry import class_path, load_checkpoint, model_payload, save_checkpoint
from ..progress import Progress
from .checkpoint import rng_state, seed_everything, set_rng_state
from .config import TrainConfig
from .distributed import local_rank, rank_and_size, rank_device

log = logging.getLogger(__name__)


@runtime_checkable
class Task(Protocol):
    """What a stage gives ``fit``.

    ``model_config()`` must return the keyword arguments that rebuild ``type(model)`` (the model
    file stores class + config + weights; ``gnntrack.models.load_model`` calls ``cls(**config)``).
    ``loss`` runs under autocast when mixed precision is on; ``evaluate`` runs under
    ``torch.no_grad()`` in fp32 with the model in eval mode and returns plain floats.
    """

    model: nn.Module

    def loss(self, item: Any, device: torch.device) -> torch.Tensor: ...

    def evaluate(self, items: Sequence[Any], device: torch.device) -> dict[str, float]: ...

    def model_config(self) -> dict: ...


def checkpoint_paths(output: str | Path) -> dict[str, Path]:
    """Where ``fit`` writes for a given best-model path."""
    output = Path(output)
    return {
        "best": output,
        # the best weights live beside the declared output until training ends: a workflow
        # manager deletes the output of a killed job, and the resumed job must still have them
        "best_state": output.with_name(output.name + ".best"),
        "last": output.with_name(output.name + ".last"),
        "metrics": output.with_name(output.name + ".metrics.csv"),
        "tensorboard": output.with_name(output.name + ".tb"),
    }


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for a precision setting on a device; None means plain fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based) relative to ``cfg.lr``: warm-up x decay."""
    spe = max(int(steps_per_epoch), 1)
    warm = cfg.warmup_epochs * spe
    factor = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
    if cfg.scheduler == "step":
        factor *= cfg.gamma ** ((step // spe) // max(cfg.step_size, 1))
    elif cfg.scheduler == "cosine":
        total = max(cfg.epochs * spe - warm, 1.0)
        t = min(max(step - warm, 0.0) / total, 1.0)
        floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
        factor *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int = 1):
    """Learning-rate schedule: a per-step ``LambdaLR`` (warm-up, step, cosine), per-epoch plateau,
    or None for a constant rate."""
    if cfg.scheduler == "plateau":
        if cfg.warmup_epochs > 0:
            raise ValueError("train.warmup_epochs does not combine with scheduler: plateau")
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=cfg.mode, factor=cfg.gamma, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
    if cfg.scheduler == "none" and cfg.warmup_epochs <= 0:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, steps_per_epoch))


def _digest(obj, h) -> None:
    """Feed the arrays held by a training item (tensors, arrays, containers, dataclasses) to ``h``."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().contiguous().numpy()
    if isinstance(obj, np.ndarray):
        h.update(f"{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).view(np.uint8).reshape(-1) if obj.size else b"")
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _digest(v, h)
    elif isinstance(obj, dict):
        for k in sorted(obj):
            h.update(str(k).encode())
            _digest(obj[k], h)
    elif hasattr(obj, "__dict__"):
        _digest(vars(obj), h)
    else:
        h.update(repr(obj).encode())


def data_digest(items: Sequence[Any]) -> str:
    """Content hash of a training or validation set (~1 GB/s).

    An item object that recurs in the sequence (a stage that trains on several samples of each
    event lists the event several times) is hashed once and then referred to by its first
    position, so the hash still depends on the order and the repetitions."""
    h = hashlib.blake2b(digest_size=16)
    first: dict[int, int] = {}
    for pos, item in enumerate(items):
        seen = first.setdefault(id(item), pos)
        if seen != pos:
            h.update(f"<item {seen}>".encode())
        else:
            _digest(item, h)
    return h.hexdigest()


def _fingerprint(task: Task, cfg: TrainConfig, train_items: Sequence[Any], val_items: Sequence[Any]) -> str:
    """What must match for ``<output>.last`` to be resumed: model, training settings and the data.

    The epoch count may grow (continue training longer), except under a cosine schedule whose
    shape depends on it; logging and early-stopping switches do not matter. The data enter by
    content: a workflow rerun because an upstream stage changed (a new module map, say) feeds
    the same number of graphs with other edges, and must train from scratch, not "resume" the
    finished run on the old graphs.
    """
    train = to_dict(cfg)
    for key in (
        "resume",
        "progress",
        "tensorboard",
        "early_stopping_patience",
        "deterministic",
        "distributed",
    ):
        train.pop(key)
    if cfg.scheduler != "cosine":
        train.pop("epochs")
    ident = {
        "class": class_path(task.model),
        "model": task.model_config(),
        "train": train,
        "n": [len(train_items), len(val_items)],
        "data": [data_digest(train_items), data_digest(val_items)],
    }
    return json.dumps(ident, sort_keys=True, default=str)


def _improved(value: float, best: float | None, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def _write_metrics_csv(path: Path, history: list[dict]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(history)
    with atomic_output(path) as tmp:
        tmp.write_text(buf.getvalue())


def _tensorboard_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed; metrics go to the CSV only")
        return None
    return SummaryWriter(log_dir=str(path))


#: ``TrainConfig.progress`` -> ``gnntrack.progress`` mode ("auto": a bar on a terminal, else log lines)
_PROGRESS_MODES = {"auto": "auto", "on": "bar", "off": "off"}


def epoch_order(n_items: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """Item order of an epoch: a pure function of (seed, epoch) so a resumed run sees the same order."""
    if not shuffle:
        return list(range(n_items))
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n_items, generator=gen).tolist()


def item_seed(seed: int, epoch: int, item: int) -> int:
    """Seed of the random draws of one training item in one epoch (``batch_items`` > 1): the same
    whichever rank computes the item, so the rank count does not change what is drawn."""
    return ((int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + int(item)) % 2**63


def step_batches(order: Sequence[int], batch_items: int, max_steps: int | None = None) -> list[list[int]]:
    """The items of each optimiser step of an epoch: consecutive ``batch_items`` of its order (the
    last step may be short), at most ``max_steps`` steps."""
    batches = [list(order[i : i + batch_items]) for i in range(0, len(order), batch_items)]
    return batches if max_steps is None else batches[:max_steps]


def rank_share(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """The items of one step that ``rank`` computes: every ``world_size``-th, from its own."""
    return list(batch[rank::world_size])


class Trainer:
    """``fit`` as explicit steps, each usable on its own.

    ``fit`` is ``restore()``, then per epoch ``train_epoch()``, ``validate()``, ``end_epoch()``
    and ``checkpoint()`` until ``done``, then ``finish()``. Construction builds the optimiser,
    schedule and gradient scaler and hashes the data; it neither seeds nor reads or writes files.
    The run's state (``optimizer``, ``scheduler``, ``scaler``, ``state``: epoch, history, best,
    best_epoch, bad_epochs, stopped) is what ``checkpoint`` writes to ``<output>.last`` and
    ``restore`` reads back. Used as a context manager (``fit`` does) it closes the TensorBoard
    writer on exit.
    """

    def __init__(
        self,
        task: Task,
        train_items: Sequence[Any],
        val_items: Sequence[Any],
        cfg: TrainConfig | dict,
        output: str | Path,
        device: str | torch.device = "auto",
    ):
        cfg = cfg if isinstance(cfg, TrainConfig) else from_dict(TrainConfig, cfg, "train")
        if len(train_items) == 0:
            raise InputError("no training items (empty training set)")
        self.task = task
        self.train_items = train_items
        self.val_items = val_items
        self.cfg = cfg
        self.paths = checkpoint_paths(output)
        self.rank, self.world_size = rank_and_size()
        if self.world_size > cfg.batch_items:
            raise ValueError(
                f"{self.world_size} ranks but train.batch_items = {cfg.batch_items}: every rank needs an "
                "item in each optimiser step; set batch_items to at least the rank count"
            )
        self.device = resolve_device(device)
        if self.world_size > 1:
            self.device = rank_device(self.device, local_rank())
        self.model = task.model.to(self.device)
        n_steps = math.ceil(len(train_items) / cfg.batch_items)
        if cfg.max_steps_per_epoch is not None:
            n_steps = min(n_steps, cfg.max_steps_per_epoch)
        self.steps_per_epoch = n_steps
        self.dtype = amp_dtype(cfg.precision, self.device)
        self._reset()
        self.fingerprint = _fingerprint(task, cfg, train_items, val_items)
        self.progress_mode = _PROGRESS_MODES[cfg.progress] if self.rank == 0 else "off"
        self.resumed_from: int | None = None
        self._epoch_start: float | None = None
        self._writer = None
        self._writer_opened = False
        # object collectives (validation parts, barrier) go over gloo, on CPU, whatever the backend
        self._object_group = None
        if self.world_size > 1 and dist.get_backend() != "gloo":
            self._object_group = dist.new_group(backend="gloo")

    def _reset(self) -> None:
        """A new optimiser, schedule, scaler and loop state (the model's weights are left alone)."""
        self.optimizer = make_optimizer(self.model.parameters(), self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.state = {
            "epoch": 0,
            "history": [],
            "best": None,
            "best_epoch": None,
            "bad_epochs": 0,
            "stopped": False,
        }

    @property
    def done(self) -> bool:
        """All ``cfg.epochs`` ran, or early stopping ended the run."""
        return self.state["epoch"] >= self.cfg.epochs or self.state["stopped"]

    # -- the steps -------------------------------------------------------------------------------

    def restore(self) -> int | None:
        """Set the whole run state: resumed from ``<output>.last``, or fresh.

        Resumes (weights, optimiser, schedule, scaler, every random generator, loop state) when
        ``cfg.resume`` is on and the checkpoint's fingerprint matches this model, config and data;
        returns the number of epochs it had finished. Otherwise starts fresh and returns None: new
        optimiser/schedule/scaler, empty history, generators seeded with ``cfg.seed``, a previous
        run's ``<output>.best`` removed; the model keeps the weights it has.
        """
        self._reset()
        self.resumed_from = None
        self._epoch_start = None
        last = self.paths["last"]
        if self.cfg.resume and last.exists():
            ck = load_checkpoint(last, "training checkpoint")
            if ck.get("fingerprint") == self.fingerprint:
                self.model.load_state_dict(ck["state_dict"])
                self.optimizer.load_state_dict(ck["optimizer"])
                if self.scheduler is not None and ck.get("scheduler") is not None:
                    self.scheduler.load_state_dict(ck["scheduler"])
                if ck.get("scaler"):
                    self.scaler.load_state_dict(ck["scaler"])
                set_rng_state(ck["rng"])
                self.state.update(ck["loop_state"])
                self.resumed_from = self.state["epoch"]
                log.info("resuming %s from epoch %d", last, self.resumed_from)
                self._broadcast_model()
                return self.resumed_from
            log.warning("%s belongs to a different model/config/data; training from scratch", last)
        seed_everything(self.cfg.seed)
        if self.rank == 0:
            self.paths["best_state"].unlink(missing_ok=True)  # a previous run's best must not leak in
        self._broadcast_model()
        return None

    def train_epoch(self) -> dict:
        """One pass over the training items of the next epoch, in its seeded order: an optimiser
        step per ``batch_items`` consecutive items (at most ``max_steps_per_epoch`` steps) on their
        mean gradient, and a scheduler step per optimiser step for the per-step schedules. Items
        whose loss has no gradient or is not finite are left out of their step's mean; a step
        without any item left is skipped. With ``batch_items`` > 1 each item's random draws come
        from ``item_seed``. With a process group each rank computes its ``rank_share`` of every
        step and the gradient sums and item counts are all-reduced before the step.

        Returns the epoch's training metrics: ``epoch`` (1-based), ``train_loss`` (mean over the
        items used), ``lr`` (after the epoch) and ``skipped_steps`` (items left out). The epoch
        counter advances in ``end_epoch``.
        """
        cfg, model, optimizer, scaler = self.cfg, self.model, self.optimizer, self.scaler
        device, dtype = self.device, self.dtype
        per_step = isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR)
        epoch = self.state["epoch"]
        self._epoch_start = time.perf_counter()
        total, counted, skipped = 0.0, 0, 0
        seeded = cfg.batch_items > 1
        with self._determinism():
            model.train()
            order = epoch_order(len(self.train_items), cfg.seed, epoch)
            batches = step_batches(order, cfg.batch_items, cfg.max_steps_per_epoch)
            bar = Progress(
                len(batches), f"train epoch {epoch + 1}/{cfg.epochs}", "steps", log, mode=self.progress_mode
            )
            for batch in bar.wrap(batches, close=True):
                optimizer.zero_grad(set_to_none=True)
                mine = 0
                for i in rank_share(batch, self.rank, self.world_size):
                    if seeded:
                        seed_everything(item_seed(cfg.seed, epoch, i))
                    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                        loss = self.task.loss(self.train_items[i], device)
                    if not loss.requires_grad or not torch.isfinite(loss.detach()):
                        skipped += 1  # an item without edges or a diverged loss: no gradient
                        continue
                    scaler.scale(loss).backward()
                    total += float(loss.detach())
                    mine += 1
                counted += mine
                # items used by the step, over all ranks (the all-reduce sums the gradients too)
                used = self._all_reduce_gradients(mine) if self.world_size > 1 else mine
                if used == 0:
                    continue  # nothing to learn from in this step (on any rank)
                if used > 1:
                    for p in model.parameters():
                        if p.grad is not None:
                            p.grad.div_(used)  # the mean over the step's items
                if cfg.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if per_step:
                    self.scheduler.step()
                if self.world_size == 1:
                    bar.set_postfix(loss=total / counted)
        if self.world_size > 1:
            total, counted, skipped = self._sum_over_ranks([total, counted, skipped])
        return {
            "epoch": epoch + 1,
            "train_loss": total / counted if counted else float("nan"),
            "lr": optimizer.param_groups[0]["lr"],
            "skipped_steps": int(skipped),
        }

    def validate(self) -> dict[str, float]:
        """The task's validation metrics (plain floats, keys as the task names them; empty without
        validation items), computed in eval mode under ``torch.no_grad()``; the model's mode is
        restored afterwards."""
        model = self.model
        was_training = model.training
        with self._determinism():
            model.eval()
            with torch.no_grad():
                if not self.val_items:
                    metrics = {}
                elif self.world_size == 1:
                    metrics = {
                        k: float(v) for k, v in self.task.evaluate(self.val_items, self.device).items()
                    }
                else:
                    metrics = self._evaluate_over_ranks()
            model.train(was_training)
        return metrics

    def end_epoch(self, train: dict, metrics: dict[str, float]) -> dict:
        """Record a finished epoch from ``train_epoch``'s and ``validate``'s results.

        Appends its row (epoch, train_loss, lr, skipped_steps, ``val_``-prefixed metrics, time_s)
        to the history, advances the epoch counter, steps a plateau schedule, and updates the best
        value of ``cfg.monitor`` or the early-stopping count. Writes nothing; returns the row.
        """
        cfg, state = self.cfg, self.state
        if train["epoch"] != state["epoch"] + 1:
            raise ValueError(
                f"end_epoch got the training metrics of epoch {train['epoch']}; "
                f"the run is at epoch {state['epoch'] + 1}"
            )
        epoch = state["epoch"]
        row = {k: train[k] for k in ("epoch", "train_loss", "lr", "skipped_steps")}
        row.update({f"val_{k}": v for k, v in metrics.items()})
        monitored = _monitored(cfg.monitor, metrics, train["train_loss"], bool(self.val_items))
        start = self._epoch_start if self._epoch_start is not None else time.perf_counter()
        row["time_s"] = time.perf_counter() - start
        self._epoch_start = None

        plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if plateau and math.isfinite(monitored):
            self.scheduler.step(monitored)

        state["history"].append(row)
        state["epoch"] = epoch + 1
        if _improved(monitored, state["best"], cfg.mode):
            state.update(best=monitored, best_epoch=epoch + 1, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
            if cfg.early_stopping_patience is not None and state["bad_epochs"] >= cfg.early_stopping_patience:
                state["stopped"] = True
                log.info("early stop after epoch %d (no improvement of %s)", epoch + 1, cfg.monitor)
        return row

    def checkpoint(self) -> None:
        """Write the state after the last recorded epoch, each file atomically: the weights to
        ``<output>.best`` when that epoch is the best so far, the resumable state to
        ``<output>.last`` (what ``restore`` reads), the metrics CSV (one row per epoch) and, with
        ``cfg.tensorboard``, the epoch's row to TensorBoard."""
        state, model, cfg = self.state, self.model, self.cfg
        if not state["history"]:
            raise RuntimeError("checkpoint() before end_epoch(): no finished epoch to write")
        if self.rank != 0:
            return  # every rank holds the same state; rank 0 writes it
        row = state["history"][-1]
        epoch = state["epoch"]
        if state["best_epoch"] == epoch:
            save_checkpoint(
                model_payload(
                    model, self.task.model_config(), metrics=row, epoch=epoch, train_config=to_dict(cfg)
                ),
                self.paths["best_state"],
            )
        save_checkpoint(
            model_payload(
                model,
                self.task.model_config(),
                metrics=row,
                epoch=epoch,
                train_config=to_dict(cfg),
                optimizer=self.optimizer.state_dict(),
                scheduler=None if self.scheduler is None else self.scheduler.state_dict(),
                scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
                rng=rng_state(),
                loop_state=state,
                fingerprint=self.fingerprint,
            ),
            self.paths["last"],
        )
        _write_metrics_csv(self.paths["metrics"], state["history"])
        writer = self._tensorboard()
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    writer.add_scalar(k, v, epoch)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in row.items()))

    def finish(self) -> dict:
        """Publish the best weights to ``output`` (the final weights if no epoch had a finite
        monitored value), load them into ``task.model`` (eval mode) and return the summary."""
        cfg, state, paths, model = self.cfg, self.state, self.paths, self.model
        if self.rank == 0:
            if state["best"] is None or not paths["best_state"].exists():
                # no finite monitored value ever: keep the final weights
                config = self.task.model_config()
                save_checkpoint(
                    model_payload(model, config, epoch=state["epoch"], train_config=to_dict(cfg)),
                    paths["best_state"],
                )
            with atomic_output(paths["best"]) as tmp:
                shutil.copyfile(paths["best_state"], tmp)
        if self.world_size > 1:
            dist.barrier(group=self._object_group)  # the model file is there for every rank
        best = load_checkpoint(paths["best"], "model file")
        model.load_state_dict(best["state_dict"])
        model.eval()
        return {
            "output": str(paths["best"]),
            "monitor": cfg.monitor,
            "mode": cfg.mode,
            "best_metric": state["best"],
            "best_epoch": state["best_epoch"],
            "epochs_run": state["epoch"],
            "stopped_early": state["stopped"],
            "resumed_from_epoch": self.resumed_from,
            "device": str(self.device),
            "ranks": self.world_size,
            "precision": "fp32" if self.dtype is None else str(self.dtype).removeprefix("torch."),
            "history": state["history"],
        }

    def fit(self) -> dict:
        """The whole run: restore, then train/validate/record/checkpoint each epoch, then finish."""
        self.restore()
        with self:
            while not self.done:
                train = self.train_epoch()
                self.end_epoch(train, self.validate())
                self.checkpoint()
        return self.finish()

    # -- resources -------------------------------------------------------------------------------

    def __enter__(self) -> Trainer:
        self._tensorboard()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the TensorBoard writer, if one is open (the next ``checkpoint`` reopens it)."""
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._writer_opened = False

    def _tensorboard(self):
        if self.cfg.tensorboard and self.rank == 0 and not self._writer_opened:
            self._writer_opened = True
            self._writer = _tensorboard_writer(self.paths["tensorboard"])
        return self._writer

    # -- data parallel (a process group of ``world_size`` > 1 ranks) ----------------------------

    def _broadcast_model(self) -> None:
        """Rank 0's weights and buffers to every rank (fresh start or resume alike)."""
        if self.world_size == 1:
            return
        with torch.no_grad():
            for tensor in self.model.state_dict().values():
                dist.broadcast(tensor, src=0)

    def _all_reduce_gradients(self, used: int) -> int:
        """Sum every parameter's gradient over the ranks (one collective, the item counts and
        which parameters got a gradient packed in); returns the step's item count over all ranks.

        A parameter without a gradient on every rank keeps none, as in one process, so the
        optimiser leaves it alone; one with a gradient somewhere gets the sum."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        dtype = torch.float32 if all(p.dtype == torch.float32 for p in params) else torch.float64
        parts = [
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype) for p in params
        ]
        flags = [1.0 if p.grad is not None else 0.0 for p in params]
        parts.append(torch.tensor([*flags, float(used)], dtype=dtype, device=self.device))
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        has_grad = flat[-len(params) - 1 : -1].tolist()
        offset = 0
        for p, present in zip(params, has_grad):
            n = p.numel()
            if present > 0:
                g = flat[offset : offset + n].view_as(p).to(p.dtype)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
            else:
                p.grad = None
            offset += n
        return round(float(flat[-1]))

    def _sum_over_ranks(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def _evaluate_over_ranks(self) -> dict[str, float]:
        """Validation metrics of all items, computed on rank 0 and sent to every rank.

        A task with ``evaluate_item(index, item, device)`` and ``reduce_evaluation(parts)`` (its
        ``evaluate`` is the reduction of its items' parts in order) has each rank evaluate every
        ``world_size``-th item; the parts are gathered on rank 0 and reduced in item order, so the
        metrics equal one process's. Other tasks are evaluated whole on rank 0."""
        task, items, device = self.task, self.val_items, self.device
        metrics = None
        if hasattr(task, "evaluate_item") and hasattr(task, "reduce_evaluation"):
            mine = [
                (i, task.evaluate_item(i, items[i], device))
                for i in range(self.rank, len(items), self.world_size)
            ]
            gathered = [None] * self.world_size if self.rank == 0 else None
            dist.gather_object(mine, gathered, dst=0, group=self._object_group)
            if self.rank == 0:
                parts = sorted(
                    (pair for rank_parts in gathered for pair in rank_parts), key=lambda pair: pair[0]
                )
                metrics = task.reduce_evaluation([part for _, part in parts])
        elif self.rank == 0:
            metrics = task.evaluate(items, device)
        box = [None if metrics is None else {k: float(v) for k, v in metrics.items()}]
        dist.broadcast_object_list(box, src=0, group=self._object_group)
        return box[0]

    @contextmanager
    def _determinism(self):
        """``cfg.deterministic``: deterministic kernels while a step computes, then as before."""
        if not self.cfg.deterministic:
            yield
            return
        was = torch.are_deterministic_algorithms_enabled()
        was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was, warn_only=was_warn_only)


def fit(
    task: Task,
    train_items: Sequence[Any],
    val_items: Sequence[Any],
    cfg: TrainConfig | dict,
    output: str | Path,
    device: str | torch.device = "auto",
) -> dict:
    """Train ``task.model``; best model -> ``output``, resumable state -> ``<output>.last``.

    Returns a summary: best epoch and monitored value, the per-epoch history (train loss, lr,
    time and every validation metric), whether the run resumed. On return ``task.model`` holds
    the best weights. ``Trainer(...).fit()``; see ``Trainer`` for the steps.
    """
    return Trainer(task, train_items, val_items, cfg, output, device).fit()


def _monitored(name: str, metrics: dict[str, float], train_loss: float, has_val: bool) -> float:
    if name == "train_loss" or not has_val:
        return train_loss
    key = name.removeprefix("val_") if name not in metrics else name
    if key not in metrics:
        raise KeyError(
            f"monitor {name!r} is not a validation metric; available: {sorted(metrics)} or 'train_loss'"
        )
    return metrics[key]
