"""Model files: the class, its constructor config and its weights, so any stage can rebuild it.

A model file is a dict saved with ``torch.save`` (tensors and plain values only)::

    format="gnntrack-model", version, class="<registered name>", config (constructor kwargs),
    state_dict, node_features, feature_scales, metrics (optional), extra keys of the trainer

``config`` is the model's ``.config``: the fields of its config dataclass (``InteractionGNNConfig``,
``FilterModelConfig``, ``EmbeddingMLPConfig``) as one flat mapping, the form files had before
those dataclasses existed, so old and new files load alike (``cls(**config)``).

Opening a model file never runs code the file chooses: ``torch.load(weights_only=True)`` reads
only tensors and plain values, the class comes from a closed table of model classes
(``MODEL_CLASSES``, name -> class; nothing is imported or looked up by attribute), and the
config is checked key by key against that class's settings (``constructor_defaults``: known
names, plain values of the default's kind, sizes in range) before the class is called. Every
model carries ``.node_features`` (names for ``gnntrack.io.features.node_features``) and
``.feature_scales`` so the stage that applies it builds exactly the input the model was trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import math
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..io.atomic import atomic_output
from ..io.errors import InputError

log = logging.getLogger(__name__)

FORMAT = "gnntrack-model"
VERSION = 1
OPTIONAL_BUFFERS = ("x_mean", "x_std")


#: zip member of a model file (beside torch's data.pkl) holding "sha256:<hex>" of the payload
DIGEST_RECORD = "gnntrack_digest"


def _update(h, value) -> None:
    """Feed ``value`` into ``h`` in a canonical form: the same before ``torch.save`` and after
    ``torch.load`` (lists and tuples alike, mappings in key order, tensors as dtype, shape, bytes)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        h.update(b"M%d:" % len(items))
        for k, v in items:
            _update(h, k)
            _update(h, v)
    elif isinstance(value, (list, tuple)):
        h.update(b"L%d:" % len(value))
        for v in value:
            _update(h, v)
    elif value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        text = repr(value).encode("utf-8", "surrogatepass")
        h.update(f"{type(value).__name__}{len(text)}:".encode() + text)
    else:  # any other plain value torch.load may return (torch.dtype, torch.device, ...)
        text = f"{type(value).__module__}.{type(value).__qualname__}:{value!r}".encode()
        h.update(b"X%d:" % len(text) + text)


def payload_digest(payload: Mapping) -> str:
    """``sha256:<hex>`` of a model/checkpoint payload in canonical form (``_update``)."""
    h = hashlib.sha256()
    _update(h, payload)
    return f"sha256:{h.hexdigest()}"


def save_checkpoint(payload: dict, path: str | Path) -> None:
    """``torch.save`` under a temporary name, renamed when complete.

    The file also holds the payload's content digest (``payload_digest``) as an extra zip member
    next to torch's records, so ``load_checkpoint`` can check that what it loaded is what was
    written. It is outside the pickled payload: a payload re-saved with a bare ``torch.save``
    is a file without a digest, not one with a stale digest.
    """
    digest = payload_digest(payload)
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            prefix = z.namelist()[0].split("/", 1)[0]  # torch keeps every record in one folder
            z.writestr(f"{prefix}/{DIGEST_RECORD}", digest)


def _stored_digest(path: Path) -> str | None:
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.rpartition("/")[2] == DIGEST_RECORD]
        if not names:
            return None
        if len(names) > 1:
            raise ValueError(f"{len(names)} digest records")
        return z.read(names[0]).decode("ascii")


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """Load a model or checkpoint file; InputError naming the file if it is missing or unusable.

    ``weights_only=True``: these files hold only tensors and plain values, so no pickled code runs.
    A payload that does not match the file's stored digest (flipped bytes in the weights, say) is
    an InputError; files without a digest (written before digests existed, or by a bare
    ``torch.save``) are read unverified, with a debug log line.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} does not exist", file=path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        stored = _stored_digest(path)
    except Exception as exc:  # torch and zipfile raise many types for damaged zip/pickle data
        reason = " ".join(str(exc).split())
        raise InputError(
            f"corrupt or unreadable {what} ({type(exc).__name__}: {reason})", file=path
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"not a gnntrack {what}", file=path, field="format")
    if stored is None:
        log.debug("%s has no content digest (written before digests): read unverified", path)
        return payload
    try:
        actual = payload_digest(payload)
    except Exception as exc:  # a damaged value that cannot even be encoded
        raise InputError(f"damaged {what} content ({type(exc).__name__}: {exc})", file=path) from None
    if stored != actual:
        raise InputError(f"{what} content does not match its digest", file=path)
    return payload


def _model_classes() -> dict[str, type[nn.Module]]:
    from .embedding import EmbeddingMLP
    from .filter import FilterModel
    from .hgnn import HGNN
    from .interaction_gnn import InteractionGNN

    return {cls.__name__: cls for cls in (FilterModel, InteractionGNN, EmbeddingMLP, HGNN)}


#: every class a model file may name; a file naming anything else is refused
MODEL_CLASSES: dict[str, type[nn.Module]] = _model_classes()
# files written before the closed table stored "<module>:<qualname>" of the same classes
_LEGACY_NAMES = {f"{cls.__module__}:{cls.__qualname__}": name for name, cls in MODEL_CLASSES.items()}
MAX_SIZE = 1 << 16  # largest integer hyper-parameter (width, layers, iterations) a file may ask for


def register_model(cls: type[nn.Module], name: str | None = None) -> type[nn.Module]:
    """Add a model class to the table (code extends it; a model file never can)."""
    name = name or cls.__name__
    if MODEL_CLASSES.get(name, cls) is not cls:
        raise ValueError(f"model name {name!r} is already registered for another class")
    MODEL_CLASSES[name] = cls
    return cls


def class_path(model: nn.Module) -> str:
    """The registered name of ``model``'s class (what its model file stores).

    Another class (a test's toy model, a user's experiment) is written as "<module>:<qualname>"
    so its checkpoints resume, but ``load_model`` refuses to build it.
    """
    cls = type(model)
    if MODEL_CLASSES.get(cls.__name__) is cls:
        return cls.__name__
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_class(name, path) -> tuple[str, type[nn.Module]]:
    key = _LEGACY_NAMES.get(name, name) if isinstance(name, str) else None
    if key not in MODEL_CLASSES:
        raise InputError(
            f"model class {name!r} is not a gnntrack model (known: {sorted(MODEL_CLASSES)})",
            file=path,
            field="class",
        )
    return key, MODEL_CLASSES[key]


def _plain_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(name: str, key: str, value, default, path) -> None:
    """``value`` must be a plain value of the kind the constructor's default has."""

    def bad(what: str):
        raise InputError(f"config of {name}: {key}={value!r} {what}", file=path, field=f"config.{key}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            bad("is not a boolean")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            bad("is not an integer")
        if not 0 <= value <= MAX_SIZE:
            bad(f"is outside [0, {MAX_SIZE}]")
    elif isinstance(default, float):
        if not _plain_number(value):
            bad("is not a finite number")
    elif isinstance(default, str):
        if not isinstance(value, str):
            bad("is not a string")
    elif isinstance(default, Sequence):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            bad("is not a list of names")
    elif default is None or isinstance(default, Mapping):  # feature_scales: name -> scale
        if value is not None and (
            not isinstance(value, Mapping)
            or not all(isinstance(k, str) and _plain_number(v) for k, v in value.items())
        ):
            bad("is not a mapping of names to numbers")
    else:  # a constructor argument of a kind a model file cannot carry
        bad("cannot be set from a model file")


_REQUIRED = object()  # default of a setting without one: no file value can match its kind


def constructor_defaults(cls: type[nn.Module]) -> dict:
    """Setting name -> default of everything ``cls``'s model file config may hold.

    A model with a ``config_class`` (``InteractionGNNConfig``, ...) takes that dataclass's fields
    (as keyword overrides of ``cls(**config)``) and its constructor's own keyword arguments
    (``EmbeddingMLP``'s ``feature_scales``); any other registered class its constructor's
    parameters.
    """
    params = {}
    config_class = getattr(cls, "config_class", None)
    if config_class is not None:
        for f in dataclasses.fields(config_class):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                params[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                params[f.name] = f.default_factory()
            else:
                params[f.name] = _REQUIRED
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if config_class is not None and p.name == "config":  # the dataclass itself: not from a file
            continue
        params[p.name] = p.default
    return params


def check_config(name: str, cls: type[nn.Module], config, path=None) -> dict:
    """``config`` as constructor kwargs of ``cls``: known keys only, each a plain value of its kind."""
    if not isinstance(config, Mapping):
        raise InputError(f"config of {name} is not a mapping", file=path, field="config")
    params = constructor_defaults(cls)
    unknown = sorted(str(k) for k in config if k not in params)
    if unknown:
        raise InputError(f"config of {name} has unknown key(s) {unknown}", file=path, field="config")
    for key, value in config.items():
        _check_value(name, key, value, params[key], path)
    return dict(config)


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
    name, cls = _resolve_class(payload.get("class"), path)
    config = check_config(name, cls, payload.get("config", {}), path)
    state = payload.get("state_dict")
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InputError(f"weights of {name} are not a mapping of tensors", file=path, field="state_dict")
    try:
        model = cls(**config)
        result = model.load_state_dict(state, strict=False)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise InputError(f"weights/config do not fit {name} ({exc})", file=path, field="state_dict") from None
    # files written before input standardisation existed lack only its buffers (identity default)
    missing = [k for k in result.missing_keys if k not in OPTIONAL_BUFFERS]
    if missing or result.unexpected_keys:
        raise InputError(
            f"weights do not fit {name} (missing {missing}, unexpected {result.unexpected_keys})",
            file=path,
            field="state_dict",
        )
    features, scales = payload.get("node_features"), payload.get("feature_scales")
    if features:
        _check_value(name, "node_features", features, (), path)
        model.node_features = tuple(features)
    if scales:
        _check_value(name, "feature_scales", scales, None, path)
        model.feature_scales = dict(scales)
    wp = payload.get("working_point")
    if wp is not None:
        cut = wp.get("score_cut") if isinstance(wp, Mapping) else None
        if not _plain_number(cut) or not 0.0 <= cut <= 1.0:
            raise InputError(
                f"working point {cut!r} is not a score in [0, 1]", file=path, field="working_point"
            )
        model.score_cut = float(cut)  # the edge cut chosen on validation events at training time
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by ``save_model`` or ``gnntrack.training.fit``, in eval mode on ``device``.

    A missing, corrupt or foreign file raises InputError naming it.
    """
    from ..device import resolve_device

    payload = load_checkpoint(path, "model file")
    model = build_model(payload, path)
    return model.to(resolve_device(device)).eval()


def read_model_info(path: str | Path) -> dict:
    """Metadata of a model file (class, config, features, metrics) without building the model."""
    payload = load_checkpoint(path, "model file")
    return {k: v for k, v in payload.items() if k not in ("state_dict", "optimizer", "scheduler", "rng")}
