"""Model files: the class, its constructor config and its weights, so any stage can rebuild it.

A model file is a dict saved with ``torch.save`` (tensors and plain values only)::

    format="gnntrack-model", version, class="<module>:<qualname>", config (constructor kwargs),
    state_dict, node_features, feature_scales, metrics (optional), extra keys of the trainer

Only classes inside the ``gnntrack`` package are rebuilt, so opening a model file never imports
arbitrary code. Every model carries ``.node_features`` (names for
``gnntrack.io.features.node_features``) and ``.feature_scales`` so the stage that applies it
builds exactly the input the model was trained on.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from ..io.atomic import atomic_output
from ..io.errors import InputError

FORMAT = "gnntrack-model"
VERSION = 1
OPTIONAL_BUFFERS = ("x_mean", "x_std")


def save_checkpoint(payload: dict, path: str | Path) -> None:
    """``torch.save`` under a temporary name, renamed when complete."""
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """Load a model or checkpoint file; InputError naming the file if it is missing or unusable.

    ``weights_only=True``: these files hold only tensors and plain values, so no pickled code runs.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} does not exist", file=path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged zip/pickle data
        raise InputError(f"corrupt or unreadable {what} ({type(exc).__name__}: {exc})", file=path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"not a gnntrack {what}", file=path, field="format")
    return payload


def class_path(model: nn.Module) -> str:
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def model_payload(model: nn.Module, config: dict | None = None, **extra) -> dict:
    """The loadable part of a model or checkpoint file (weights copied to CPU)."""
    if config is None:
        config = getattr(model, "config", None)
    if config is None:
        raise ValueError(f"{class_path(model)} has no .config; pass its constructor kwargs as config")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "class": class_path(model),
        "config": dict(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "node_features": list(getattr(model, "node_features", []) or []),
        "feature_scales": {k: float(v) for k, v in (getattr(model, "feature_scales", {}) or {}).items()},
    }
    payload.update(extra)
    return payload


def save_model(model: nn.Module, path: str | Path, config: dict | None = None, **extra) -> None:
    """Write ``model`` (rebuilt later by ``load_model``) atomically to ``path``."""
    save_checkpoint(model_payload(model, config, **extra), path)


def build_model(payload: dict, path: str | Path | None = None) -> nn.Module:
    """Instantiate the class named in ``payload`` with its config and load the weights."""
    name = payload.get("class", "")
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith("gnntrack.") or not qualname:
        raise InputError(f"model class {name!r} is not a gnntrack model", file=path, field="class")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InputError(
            f"model class {name!r} cannot be imported ({exc})", file=path, field="class"
        ) from None
    try:
        model = obj(**payload.get("config", {}))
        result = model.load_state_dict(payload["state_dict"], strict=False)
    except (TypeError, RuntimeError, KeyError) as exc:
        raise InputError(f"weights/config do not fit {name} ({exc})", file=path, field="state_dict") from None
    # files written before input standardisation existed lack only its buffers (identity default)
    missing = [k for k in result.missing_keys if k not in OPTIONAL_BUFFERS]
    if missing or result.unexpected_keys:
        raise InputError(
            f"weights do not fit {name} (missing {missing}, unexpected {result.unexpected_keys})",
            file=path,
            field="state_dict",
        )
    if payload.get("node_features"):
        model.node_features = tuple(payload["node_features"])
    if payload.get("feature_scales"):
        model.feature_scales = dict(payload["feature_scales"])
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by ``save_model`` or ``gnntrack.training.fit``, in eval mode on ``device``.

    A missing, corrupt or foreign file raises InputError naming it.
    """
    from ..training.device import resolve_device

    payload = load_checkpoint(path, "model file")
    model = build_model(payload, path)
    return model.to(resolve_device(device)).eval()


def read_model_info(path: str | Path) -> dict:
    """Metadata of a model file (class, config, features, metrics) without building the model."""
    payload = load_checkpoint(path, "model file")
    return {k: v for k, v in payload.items() if k not in ("state_dict", "optimizer", "scheduler", "rng")}
