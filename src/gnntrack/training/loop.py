"""The one training loop every learned stage uses (metric learning, filter, GNN).

A stage supplies a ``Task`` (model + per-item loss + validation metrics); ``fit`` owns the
optimiser, schedule, mixed precision, seeding, validation, checkpoints and logs, so every model
trains, resumes and reports the same way. A job killed mid-run (SLURM pre-emption, Ctrl-C) and
started again continues from ``<output>.last`` and ends bit-identical to an uninterrupted run on
the same device, because the checkpoint holds every random generator's state and the item order
of each epoch is a pure function of (seed, epoch).
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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..config import from_dict, to_dict
from ..io.atomic import atomic_output
from ..io.errors import InputError
from ..models.registry import class_path, load_checkpoint, model_payload, save_checkpoint
from .checkpoint import rng_state, seed_everything, set_rng_state
from .config import TrainConfig
from .device import resolve_device

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
    """Content hash of a training or validation set (~1 GB/s)."""
    h = hashlib.blake2b(digest_size=16)
    for item in items:
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
    for key in ("resume", "progress", "tensorboard", "early_stopping_patience", "deterministic"):
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


def _progress(cfg: TrainConfig) -> bool:
    if cfg.progress == "auto":
        return sys.stderr.isatty()
    return cfg.progress == "on"


def epoch_order(n_items: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """Item order of an epoch: a pure function of (seed, epoch) so a resumed run sees the same order."""
    if not shuffle:
        return list(range(n_items))
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n_items, generator=gen).tolist()


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
    the best weights.
    """
    cfg = cfg if isinstance(cfg, TrainConfig) else from_dict(TrainConfig, cfg, "train")
    if len(train_items) == 0:
        raise InputError("no training items (empty training set)")
    paths = checkpoint_paths(output)
    device = resolve_device(device)
    model = task.model.to(device)
    n_steps = len(train_items)
    if cfg.max_steps_per_epoch is not None:
        n_steps = min(n_steps, cfg.max_steps_per_epoch)
    optimizer = make_optimizer(model.parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg, n_steps)
    per_step = isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)
    dtype = amp_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    fingerprint = _fingerprint(task, cfg, train_items, val_items)

    state = {"epoch": 0, "history": [], "best": None, "best_epoch": None, "bad_epochs": 0, "stopped": False}
    resumed_from = None
    if cfg.resume and paths["last"].exists():
        ck = load_checkpoint(paths["last"], "training checkpoint")
        if ck.get("fingerprint") == fingerprint:
            model.load_state_dict(ck["state_dict"])
            optimizer.load_state_dict(ck["optimizer"])
            if scheduler is not None and ck.get("scheduler") is not None:
                scheduler.load_state_dict(ck["scheduler"])
            if ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            set_rng_state(ck["rng"])
            state.update(ck["loop_state"])
            resumed_from = state["epoch"]
            log.info("resuming %s from epoch %d", paths["last"], resumed_from)
        else:
            log.warning("%s belongs to a different model/config/data; training from scratch", paths["last"])
    if resumed_from is None:
        seed_everything(cfg.seed)
        paths["best_state"].unlink(missing_ok=True)  # a previous run's best must not leak in

    writer = _tensorboard_writer(paths["tensorboard"]) if cfg.tensorboard else None
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
    show = _progress(cfg)

    try:
        while state["epoch"] < cfg.epochs and not state["stopped"]:
            epoch = state["epoch"]
            t0 = time.perf_counter()
            model.train()
            order = epoch_order(len(train_items), cfg.seed, epoch)[:n_steps]
            total, counted, skipped = 0.0, 0, 0
            bar = _tqdm(order, show, f"epoch {epoch + 1}/{cfg.epochs}")
            for i in bar:
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = task.loss(train_items[i], device)
                if not loss.requires_grad or not torch.isfinite(loss.detach()):
                    skipped += 1  # an item without edges or a diverged loss: no update
                    continue
                scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if per_step:
                    scheduler.step()
                total += float(loss.detach())
                counted += 1
                if show:
                    bar.set_postfix(loss=f"{total / counted:.4g}")
            train_loss = total / counted if counted else float("nan")
            lr = optimizer.param_groups[0]["lr"]

            model.eval()
            with torch.no_grad():
                metrics = (
                    {k: float(v) for k, v in task.evaluate(val_items, device).items()} if val_items else {}
                )
            model.train()
            row = {"epoch": epoch + 1, "train_loss": train_loss, "lr": lr, "skipped_steps": skipped}
            row.update({f"val_{k}": v for k, v in metrics.items()})
            monitored = _monitored(cfg.monitor, metrics, train_loss, bool(val_items))
            row["time_s"] = time.perf_counter() - t0

            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and math.isfinite(monitored):
                scheduler.step(monitored)

            state["history"].append(row)
            state["epoch"] = epoch + 1
            if _improved(monitored, state["best"], cfg.mode):
                state.update(best=monitored, best_epoch=epoch + 1, bad_epochs=0)
                save_checkpoint(
                    model_payload(
                        model, task.model_config(), metrics=row, epoch=epoch + 1, train_config=to_dict(cfg)
                    ),
                    paths["best_state"],
                )
            else:
                state["bad_epochs"] += 1
                if (
                    cfg.early_stopping_patience is not None
                    and state["bad_epochs"] >= cfg.early_stopping_patience
                ):
                    state["stopped"] = True
                    log.info("early stop after epoch %d (no improvement of %s)", epoch + 1, cfg.monitor)
            save_checkpoint(
                model_payload(
                    model,
                    task.model_config(),
                    metrics=row,
                    epoch=epoch + 1,
                    train_config=to_dict(cfg),
                    optimizer=optimizer.state_dict(),
                    scheduler=None if scheduler is None else scheduler.state_dict(),
                    scaler=scaler.state_dict() if scaler.is_enabled() else None,
                    rng=rng_state(),
                    loop_state=state,
                    fingerprint=fingerprint,
                ),
                paths["last"],
            )
            _write_metrics_csv(paths["metrics"], state["history"])
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch" and isinstance(v, (int, float)):
                        writer.add_scalar(k, v, epoch + 1)
            log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" for k, v in row.items()))
    finally:
        if writer is not None:
            writer.close()
        torch.use_deterministic_algorithms(was_deterministic)

    if state["best"] is None or not paths["best_state"].exists():
        # no finite monitored value ever: keep the final weights
        save_checkpoint(
            model_payload(model, task.model_config(), epoch=state["epoch"], train_config=to_dict(cfg)),
            paths["best_state"],
        )
    with atomic_output(paths["best"]) as tmp:
        shutil.copyfile(paths["best_state"], tmp)
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
        "resumed_from_epoch": resumed_from,
        "device": str(device),
        "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
        "history": state["history"],
    }


def _monitored(name: str, metrics: dict[str, float], train_loss: float, has_val: bool) -> float:
    if name == "train_loss" or not has_val:
        return train_loss
    key = name.removeprefix("val_") if name not in metrics else name
    if key not in metrics:
        raise KeyError(
            f"monitor {name!r} is not a validation metric; available: {sorted(metrics)} or 'train_loss'"
        )
    return metrics[key]


def _tqdm(iterable, show: bool, desc: str):
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)
