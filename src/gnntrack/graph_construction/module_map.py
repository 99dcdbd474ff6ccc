"""Data-driven module map (GNN4ITk style): which module pairs target tracks cross, with cut windows.

Building: for every truth edge of a target particle in the training events, record the module
pair (source module -> destination module along the particle) and the doublet quantities of
``geometry.DOUBLET_FEATURES``; per pair keep count, min, max, mean and rms. The map is one HDF5
file::

    /            attrs: format="gnntrack-module-map", version, n_events, features, symmetry,
                 cut_cut, cut_tolerance, cut_n_sigma (default cuts)
    /doublets/modules   (P, 2) uint64 module identifiers (source, destination), sorted
    /doublets/count     (P,) int64 number of training doublets
    /doublets/min, max, mean, rms   (P, F) float32 per feature (mean, rms absent in a map
                        written for min/max cuts only: ``ModuleMapData.minmax_only``)
    /doublets/width_prior  (P, F) float32 (optional, see ``module_symmetry.width_prior``)
    /triplets/...   (version 2, optional) the same datasets for module triplets (T, 3) with the
                    ``geometry.TRIPLET_FEATURES``; attrs triplet_features, cut_triplets
    (every dataset written with ``MAP_COMPRESSION``)

Triplets (``module_map.triplets``, as GNN4ITk's module map): building also records every module
triplet (A, B, C) crossed by a target particle's consecutive truth doublets a -> b -> c with the
windows of the triplet quantities; applying keeps a doublet only if it is one of the two doublets
of at least one candidate triplet whose module triplet is mapped and whose quantities lie in that
triplet's windows (the same cut logic as the doublets). Version 1 files (no triplets) still load.

With ``symmetry: phi`` (default) the statistics of rotation-equivalent module pairs are merged
and expanded to every such pair (``module_symmetry``): with hundreds rather than GNN4ITk's ~1e5
training events, a plain map is limited by the module pairs it has never seen. ``symmetry: phi_z``
also merges each class with its mirror image under z -> -z (z0, deta and dz/dr change sign).
The ``symmetry`` attribute records the mode ("none" in files written before it existed).

Applying: candidate edges only between hits on connected modules, kept when every quantity lies
in its window (``minmax``: [min, max] widened by ``tolerance`` x width; ``mean_rms``: mean +-
``n_sigma`` x rms). Candidates come from a binary search in the φ window (hits sorted by module
and φ), not from every hit pair of a module pair; it is written as batched tensor ops over
chunks of module pairs, so the same code runs on CPU and GPU with bounded memory at <mu> = 200.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import torch

from ..config import ConfigError, Count, NonNegative, from_dict
from ..device import resolve_device
from ..io.atomic import atomic_output
from ..io.errors import InputError
from ..io.event_store import Event, event_keys, iter_events
from ..io.hdf5 import SealedWriter, open_verified, read_errors
from ..progress import progress, safe_total
from .geometry import (
    DOUBLET_FEATURES,
    GEOMETRY_COLUMNS,
    TRIPLET_FEATURES,
    doublet_direction,
    doublet_features,
    hits_to_tensors,
    orient_outward,
    triplet_features,
    wrap_phi,
)
from .module_symmetry import RING_COLUMNS, ModuleCatalogue, symmetrise, symmetrise_triplets, width_prior

log = logging.getLogger(__name__)

FORMAT = "gnntrack-module-map"
#: 1: doublet windows; 2: optional triplet windows (version 1 files read as maps without them)
VERSION = 2

#: Relative and absolute widening of every window: a rounding guard only (CPU vs GPU FMA), so that
#: a training doublet sitting exactly on its pair's min or max is always kept.
_ROUND_REL = 1e-5
_ROUND_ABS = 1e-6

#: Candidate doublets evaluated at once when applying the map (bounds peak memory).
DEFAULT_CHUNK = 1 << 22

#: φ search when applying the map: sort-key distance between modules (> 2π + margins), the
#: widening of every searched window (rad; >> float32 rounding of a φ difference), and the
#: largest |window bound| or module φ span (rad) searched; wider ones take the whole module.
_KEY_STRIDE = 16.0
_PHI_SEARCH_GUARD = 1e-4
_PHI_SEARCH_MAX = 1.0


CutMode = Literal["minmax", "mean_rms"]

#: what building a map reads of a training event: a map sample holds thousands of events
MAP_EVENT_COLUMNS = {
    "hits": [*GEOMETRY_COLUMNS, "module_id", *RING_COLUMNS, "phi_module"],
    "particles": ["is_target"],
}


def read_map_events(path: str | Path):
    """The events of one shard, with only the columns ``build_module_map`` uses."""
    return iter_events(path, tables=tuple(MAP_EVENT_COLUMNS), columns=MAP_EVENT_COLUMNS)


@dataclass
class ModuleMapConfig:
    """Settings of the module map.

    The cut settings are stored in the map file and used by ``ModuleMap.load`` unless the caller
    overrides them, so graph building and one-process inference apply the same cuts.
    """

    #: use at most this many training events (None: all of them), in file order
    n_events: Count | None = None
    #: keep only module pairs seen at least this many times
    min_count: Count = 1
    #: ``phi``: share statistics between rotation-equivalent module pairs (``module_symmetry``);
    #: ``phi_z``: also between z-mirrored ones (rings paired geometrically from the training hits);
    #: ``none``: only the module pairs seen in training, as in GNN4ITk's map
    symmetry: Literal["none", "phi", "phi_z"] = "phi"
    #: ``minmax``: [min - tolerance*width, max + tolerance*width]; ``mean_rms``: mean +- n_sigma*rms
    cut: CutMode = "minmax"
    tolerance: NonNegative = 0.1
    n_sigma: NonNegative = 5.0
    #: ``minmax`` only: a pair seen n times is widened further by this many times its layer pair's
    #: typical window width / (n + 1) each side (``module_symmetry.width_prior``); 0 disables
    small_count_margin: NonNegative = 1.0
    #: also record module-triplet windows and keep only doublets of a triplet inside them when
    #: the map is applied (stored in the map file: graph building and inference follow the map);
    #: supported with symmetry ``none`` and ``phi``
    triplets: bool = False

    def __post_init__(self) -> None:
        if self.tolerance < 0 or self.n_sigma < 0 or self.small_count_margin < 0:
            raise ConfigError("module_map: tolerance, n_sigma and small_count_margin must be >= 0")
        if self.triplets and self.symmetry == "phi_z":
            raise ConfigError(
                "module_map.triplets: triplet windows support symmetry 'none' or 'phi', not 'phi_z' "
                "(the z mirror is not implemented for triplets)"
            )
        if self.n_events is not None and self.n_events < 1:
            raise ConfigError("module_map: n_events must be >= 1")


# ----------------------------------------------------------------------------------------------
# building


def _target_edges(event: Event):
    """(src, dst, particle) of the event's target truth edges between two different modules,
    the hit tensors and the module id of every hit."""
    edges = np.asarray(event.truth_edges, dtype=np.int64).reshape(2, -1)
    is_target = np.asarray(event.particles["is_target"], bool)
    part = np.asarray(event.truth_edge_particle, dtype=np.int64)
    keep = (part >= 0) & is_target[np.maximum(part, 0)] if len(part) else np.zeros(0, bool)
    src, dst, part = edges[0, keep], edges[1, keep], part[keep]
    hits = hits_to_tensors(event.hits, (*GEOMETRY_COLUMNS, "module_id"))
    mod = hits["module_id"].numpy()
    other = mod[src] != mod[dst]  # not a module transition: no doublet to record
    return src[other], dst[other], part[other], hits, mod


def target_doublets(event: Event) -> tuple[np.ndarray, np.ndarray]:
    """(E, 2) int64 module pairs and (E, F) float32 quantities of the event's target truth edges."""
    if np.asarray(event.truth_edges).reshape(2, -1).shape[1] == 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, len(DOUBLET_FEATURES)), np.float32)
    src, dst, _, hits, mod = _target_edges(event)
    feats = doublet_features(hits, torch.from_numpy(src), torch.from_numpy(dst)).numpy()
    return np.stack([mod[src], mod[dst]], axis=1), feats


def target_triplets(event: Event) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) int64 module triplets and (T, len(TRIPLET_FEATURES)) float32 quantities of the
    event's target truth triplets: two truth doublets a -> b, b -> c of the same target particle
    (every hit of consecutive module groups along the particle, like the truth doublets)."""
    empty = np.zeros((0, 3), np.int64), np.zeros((0, len(TRIPLET_FEATURES)), np.float32)
    if np.asarray(event.truth_edges).reshape(2, -1).shape[1] == 0:
        return empty
    src, dst, part, hits, mod = _target_edges(event)
    n = np.int64(max(len(mod), 1))
    key_out = part * n + src  # doublet b -> c, keyed by its particle and first hit
    order = np.argsort(key_out, kind="stable")
    sorted_out = key_out[order]
    key_in = part * n + dst  # doublet a -> b, keyed by its particle and last hit
    lo = np.searchsorted(sorted_out, key_in, side="left")
    cnt = np.searchsorted(sorted_out, key_in, side="right") - lo
    i = np.repeat(np.arange(len(src)), cnt)
    j = order[lo[i] + np.arange(len(i)) - np.repeat(np.cumsum(cnt) - cnt, cnt)]
    ok = src[i] != dst[j]
    i, j = i[ok], j[ok]
    if len(i) == 0:
        return empty
    s, d = torch.from_numpy(src), torch.from_numpy(dst)
    q = doublet_features(hits, s, d)
    alpha = doublet_direction(hits, s, d)
    ti, tj = torch.from_numpy(i), torch.from_numpy(j)
    feats = triplet_features(q[ti], q[tj], alpha[ti], alpha[tj]).numpy()
    return np.stack([mod[src[i]], mod[dst[i]], mod[dst[j]]], axis=1), feats


class _Accumulator:
    """Per-pair running count / min / max / sum / sum of squares (float64 sums)."""

    def __init__(self, n_features: int, n_modules: int = 2):
        self.n_features = n_features
        self.pairs = np.zeros((0, n_modules), np.int64)
        self.count = np.zeros(0, np.int64)
        self.min = np.zeros((0, n_features), np.float32)
        self.max = np.zeros((0, n_features), np.float32)
        self.sum = np.zeros((0, n_features), np.float64)
        self.sumsq = np.zeros((0, n_features), np.float64)

    def add(self, pairs: np.ndarray, feats: np.ndarray) -> None:
        f64 = feats.astype(np.float64)
        self._merge(pairs, np.ones(len(pairs), np.int64), feats, feats, f64, f64 * f64)

    def _merge(self, pairs, count, mn, mx, s, ss) -> None:
        pairs = np.concatenate([self.pairs, pairs])
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        p = len(uniq)
        new_min = np.full((p, self.n_features), np.inf, np.float32)
        new_max = np.full((p, self.n_features), -np.inf, np.float32)
        np.minimum.at(new_min, inv, np.concatenate([self.min, mn]))
        np.maximum.at(new_max, inv, np.concatenate([self.max, mx]))
        new_sum = np.zeros((p, self.n_features))
        new_sumsq = np.zeros((p, self.n_features))
        np.add.at(new_sum, inv, np.concatenate([self.sum, s]))
        np.add.at(new_sumsq, inv, np.concatenate([self.sumsq, ss]))
        self.pairs = uniq
        self.count = np.bincount(inv, weights=np.concatenate([self.count, count]), minlength=p).astype(
            np.int64
        )
        self.min, self.max, self.sum, self.sumsq = new_min, new_max, new_sum, new_sumsq


def _count_events(events, limit: int | None) -> int | None:
    """Events ``build_module_map`` will use (for the progress ETA): from the files' event lists,
    up to ``limit``; None for a one-pass iterator."""
    if not isinstance(events, Sequence):
        return None
    n = 0
    for item in events:
        n += 1 if isinstance(item, Event) else len(event_keys(item))
        if limit is not None and n >= limit:
            return limit
    return n


def _finish(acc: _Accumulator, catalogue: ModuleCatalogue, cfg: ModuleMapConfig, triplets: bool) -> dict:
    """Symmetrised (cfg.symmetry), count-filtered statistics of an accumulator: modules, count,
    min, max, mean, rms, width_prior."""
    if cfg.symmetry in ("phi", "phi_z"):
        stats = {"count": acc.count, "min": acc.min, "max": acc.max, "sum": acc.sum, "sumsq": acc.sumsq}
        if triplets:  # ModuleMapConfig refuses phi_z with triplets
            acc.pairs, stats = symmetrise_triplets(acc.pairs, stats, catalogue)
        else:
            acc.pairs, stats = symmetrise(acc.pairs, stats, catalogue, z_mirror=cfg.symmetry == "phi_z")
        acc.count, acc.min, acc.max, acc.sum, acc.sumsq = (
            stats[k] for k in ("count", "min", "max", "sum", "sumsq")
        )
    keep = acc.count >= cfg.min_count
    mean = acc.sum[keep] / np.maximum(acc.count[keep], 1)[:, None]
    var = np.maximum(acc.sumsq[keep] / np.maximum(acc.count[keep], 1)[:, None] - mean**2, 0.0)
    return {
        "modules": acc.pairs[keep].view(np.uint64),
        "count": acc.count[keep],
        "min": acc.min[keep],
        "max": acc.max[keep],
        "mean": mean.astype(np.float32),
        "rms": np.sqrt(var).astype(np.float32),
        "width_prior": width_prior(
            acc.pairs[keep], acc.count[keep], acc.max[keep] - acc.min[keep], catalogue
        ),
    }


def build_module_map(
    events: Sequence[Event] | Sequence[str | Path], cfg: ModuleMapConfig | dict | None = None
):
    """Accumulate the map from in-memory events or event files; returns a ``ModuleMapData``."""
    cfg = cfg if isinstance(cfg, ModuleMapConfig) else from_dict(ModuleMapConfig, cfg, "module_map")
    kinds = [("doublets", target_doublets, _Accumulator(len(DOUBLET_FEATURES), 2))]
    if cfg.triplets:
        kinds.append(("triplets", target_triplets, _Accumulator(len(TRIPLET_FEATURES), 3)))
    catalogue = ModuleCatalogue()
    n_used = 0

    def _events():
        for item in events:
            if isinstance(item, Event):
                yield item
            else:
                yield from read_map_events(item)

    # per kind: (module tuples, quantities) of events not yet merged into the accumulator
    pending = {name: ([], []) for name, _, _ in kinds}

    def flush(name, acc, limit=0):
        mods, feats = pending[name]
        if mods and sum(len(m) for m in mods) > limit:
            acc.add(np.concatenate(mods), np.concatenate(feats))
            pending[name] = ([], [])

    total = safe_total(lambda: _count_events(events, cfg.n_events))
    for ev in progress(_events(), total=total, desc="module map", unit="events", logger=log):
        if cfg.n_events is not None and n_used >= cfg.n_events:
            break
        catalogue.add(ev)
        n_used += 1
        for name, extract, acc in kinds:
            mods, feats = extract(ev)
            pending[name][0].append(mods)
            pending[name][1].append(feats)
            flush(name, acc, limit=2_000_000)
    for name, _, acc in kinds:
        flush(name, acc)
    d = _finish(kinds[0][2], catalogue, cfg, triplets=False)
    trip = TripletWindows(**_finish(kinds[1][2], catalogue, cfg, triplets=True)) if cfg.triplets else None
    return ModuleMapData(
        **{k: d[k] for k in ("modules", "count", "min", "max", "mean", "rms", "width_prior")},
        n_events=n_used,
        cuts={
            "cut": cfg.cut,
            "tolerance": cfg.tolerance,
            "n_sigma": cfg.n_sigma,
            "small_count_margin": cfg.small_count_margin,
            "triplets": cfg.triplets,
        },
        symmetry=cfg.symmetry,
        triplets=trip,
    )


#: HDF5 filters of every map dataset: byte shuffle + gzip shrink the default campaign's map from
#: 65 MB to 6.5 MB (sorted module ids and repeated window edges compress well); reading it back
#: takes ~0.2 s. Readers need nothing special: HDF5 undoes the filters.
MAP_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}

_STAT_NAMES = ("min", "max", "mean", "rms")
#: statistics only the ``mean_rms`` cut reads: a map written for min/max cuts may omit them
_OPTIONAL_STATS = ("mean", "rms")


@dataclass
class TripletWindows:
    """The triplet part of a module map (numpy): module triplets (A, B, C) with their statistics."""

    modules: np.ndarray  # (T, 3) uint64
    count: np.ndarray  # (T,)
    min: np.ndarray  # (T, len(TRIPLET_FEATURES))
    max: np.ndarray
    #: None in a map written for min/max cuts only (``ModuleMapData.minmax_only``)
    mean: np.ndarray | None
    rms: np.ndarray | None
    width_prior: np.ndarray | None = None

    @property
    def n_triplets(self) -> int:
        return len(self.count)


def _write_windows(w: SealedWriter, g, data) -> None:
    """The datasets of one window group (doublets or triplets), compressed (``MAP_COMPRESSION``)."""
    opts = MAP_COMPRESSION if len(data.count) else {}  # no chunked layout for empty datasets
    w.dataset(g, "modules", np.asarray(data.modules, np.uint64), **opts)
    w.dataset(g, "count", np.asarray(data.count, np.int64), **opts)
    for name in _STAT_NAMES:
        if getattr(data, name) is not None:
            w.dataset(g, name, np.asarray(getattr(data, name), np.float32), **opts)
    if data.width_prior is not None:
        w.dataset(g, "width_prior", np.asarray(data.width_prior, np.float32), **opts)


def _read_windows(r, f, group: str, n_modules: int, n_features: int, path) -> dict:
    """The datasets of one window group (doublets or triplets), shapes and values checked."""
    if group not in f:
        raise InputError("missing group", file=path, field=group)
    g = r.group(f, group)
    members = r.names(g)
    data = {}
    for name in ("modules", "count", *_STAT_NAMES):
        if name in _OPTIONAL_STATS and name not in members:
            data[name] = None  # written for min/max cuts only
            continue
        data[name] = r.read(g, name, field=f"{group}/{name}")
    data["width_prior"] = (
        r.read(g, "width_prior", field=f"{group}/width_prior") if "width_prior" in members else None
    )
    p = len(data["count"])
    if data["modules"].shape != (p, n_modules):
        raise InputError(
            f"shape {data['modules'].shape} != ({p}, {n_modules})", file=path, field=f"{group}/modules"
        )
    for name in _STAT_NAMES:
        if data[name] is None:
            continue
        if data[name].shape != (p, n_features):
            raise InputError(
                f"shape {data[name].shape} != ({p}, {n_features})", file=path, field=f"{group}/{name}"
            )
        if not np.all(np.isfinite(data[name])):
            raise InputError("non-finite values", file=path, field=f"{group}/{name}")
    if np.any(data["max"] < data["min"]):
        raise InputError(f"max < min for some module {group[:-1]}", file=path, field=f"{group}/max")
    prior = data["width_prior"]
    if prior is not None and (prior.shape != (p, n_features) or not np.all(np.isfinite(prior))):
        raise InputError(
            f"shape {prior.shape} != ({p}, {n_features}) or non-finite values",
            file=path,
            field=f"{group}/width_prior",
        )
    return {
        "modules": data["modules"].astype(np.uint64),
        "count": data["count"].astype(np.int64),
        **{name: None if data[name] is None else data[name].astype(np.float32) for name in _STAT_NAMES},
        "width_prior": None if prior is None else prior.astype(np.float32),
    }


@dataclass
class ModuleMapData:
    """The stored content of a module map (numpy)."""

    modules: np.ndarray  # (P, 2) uint64
    count: np.ndarray  # (P,)
    min: np.ndarray  # (P, F)
    max: np.ndarray
    #: None in a map written for min/max cuts only (``minmax_only``)
    mean: np.ndarray | None
    rms: np.ndarray | None
    n_events: int
    #: default cut settings of this map (cut, tolerance, n_sigma, small_count_margin, triplets)
    cuts: dict = field(default_factory=lambda: {"cut": "minmax", "tolerance": 0.1, "n_sigma": 5.0})
    features: tuple[str, ...] = DOUBLET_FEATURES
    symmetry: str = "none"
    #: (P, F) typical width of the pair's layer-pair windows (None in maps written before it existed)
    width_prior: np.ndarray | None = None
    #: module-triplet windows (None: a doublet-only map, e.g. every version 1 file)
    triplets: TripletWindows | None = None
    #: the file the map was read from (None: built in memory); named in errors
    source: str | None = None

    @property
    def n_pairs(self) -> int:
        return len(self.count)

    def minmax_only(self) -> ModuleMapData:
        """The same map without the statistics only the ``mean_rms`` cut reads (mean, rms of the
        doublets and triplets): 40 % smaller compressed, for shipping a map applied with min/max
        cuts. Its edges at min/max cuts are the same; ``mean_rms`` cuts on it are refused."""
        if self.cuts.get("cut", "minmax") != "minmax":
            raise ValueError("minmax_only: this map's default cut is not minmax")
        trip = None if self.triplets is None else dataclasses.replace(self.triplets, mean=None, rms=None)
        return dataclasses.replace(self, mean=None, rms=None, triplets=trip)

    def write(self, path: str | Path) -> None:
        """Write the map atomically, each dataset and the file with its content digest."""
        with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
            w = SealedWriter(f)
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["n_events"] = int(self.n_events)
            f.attrs["features"] = list(self.features)
            f.attrs["symmetry"] = self.symmetry
            cuts = {**self.cuts, "triplets": bool(self.cuts.get("triplets", False))}
            if cuts["triplets"] and self.triplets is None:
                raise ValueError("cuts ask for triplets but the map has no triplet windows")
            for k, v in cuts.items():
                f.attrs[f"cut_{k}"] = v
            _write_windows(w, w.group(f, "doublets"), self)
            if self.triplets is not None:
                f.attrs["triplet_features"] = list(TRIPLET_FEATURES)
                _write_windows(w, w.group(f, "triplets"), self.triplets)
            w.seal()

    @classmethod
    def read(cls, path: str | Path) -> ModuleMapData:
        """Read and validate a map file; any defect (damaged content, a value that does not match
        the file's digest, a bad shape or value) is an ``InputError`` naming the field."""
        with open_verified(path, FORMAT, what="module map file") as r, read_errors(path):
            f = r.f
            version = int(f.attrs.get("version", 1))
            if version > VERSION:
                raise InputError(
                    f"format version {version} is newer than this gnntrack reads (<= {VERSION})",
                    file=path,
                    field="version",
                )
            features = tuple(str(x) for x in f.attrs.get("features", ()))
            if features != DOUBLET_FEATURES:
                raise InputError(
                    f"features {list(features)} != expected {list(DOUBLET_FEATURES)}",
                    file=path,
                    field="features",
                )
            if "n_events" not in f.attrs:
                raise InputError("missing attribute", file=path, field="n_events")
            data = _read_windows(r, f, "doublets", 2, len(DOUBLET_FEATURES), path)
            trip = None
            if "triplets" in f:
                t_features = tuple(str(x) for x in f.attrs.get("triplet_features", ()))
                if t_features != TRIPLET_FEATURES:
                    raise InputError(
                        f"triplet features {list(t_features)} != expected {list(TRIPLET_FEATURES)}",
                        file=path,
                        field="triplet_features",
                    )
                trip = TripletWindows(**_read_windows(r, f, "triplets", 3, len(TRIPLET_FEATURES), path))
            n_events = int(f.attrs["n_events"])
            symmetry = str(f.attrs.get("symmetry", "none"))
            cuts = {}
            for k, tp in (
                ("cut", str),
                ("tolerance", float),
                ("n_sigma", float),
                ("small_count_margin", float),
                ("triplets", bool),
            ):
                if f"cut_{k}" in f.attrs:
                    v = f.attrs[f"cut_{k}"]
                    cuts[k] = v.decode() if isinstance(v, bytes) else tp(v)
        if cuts.get("cut", "minmax") not in ("minmax", "mean_rms"):
            raise InputError(f"unknown cut {cuts['cut']!r}", file=path, field="cut_cut")
        for k in ("tolerance", "n_sigma", "small_count_margin"):
            if k in cuts and not (np.isfinite(cuts[k]) and cuts[k] >= 0):
                raise InputError(f"{cuts[k]} is not a finite number >= 0", file=path, field=f"cut_{k}")
        if cuts.get("cut", "minmax") == "mean_rms" and data["mean"] is None:
            raise InputError(
                "cut_cut is mean_rms but the file stores no mean/rms", file=path, field="doublets/mean"
            )
        if cuts.get("triplets", False) and trip is None:
            raise InputError(
                "cut_triplets is set but the file has no triplets group", file=path, field="triplets"
            )
        return cls(
            **data,
            n_events=n_events,
            cuts=cuts,
            symmetry=symmetry,
            triplets=trip,
            source=str(path),
        )


def run_build_module_map(event_files: Sequence[str | Path], output: str | Path, cfg=None) -> None:
    """Stage entry point: training event files -> module map HDF5 (atomic)."""
    if not event_files:
        raise InputError("no training event files given for the module map")
    data = build_module_map(list(event_files), cfg)
    if data.n_pairs == 0:
        raise InputError("no target truth edges in the training events", file=event_files[0])
    data.write(output)


# ----------------------------------------------------------------------------------------------
# applying


def _chunk_bounds(cum: torch.Tensor, chunk_size: int):
    """(start, stop) index ranges over items whose cumulative work is ``cum`` (1-D, non-decreasing),
    each range holding at most ``chunk_size`` work, or one item when that item alone exceeds it."""
    n = cum.numel()
    start = 0
    while start < n:
        base = int(cum[start - 1]) if start > 0 else 0
        limit = torch.tensor(base + chunk_size, device=cum.device)
        stop = max(int(torch.searchsorted(cum, limit, right=True)), start + 1)
        yield start, stop
        start = stop


class ModuleMap:
    """A module map on a device, ready to build edges for events (tensor ops only)."""

    #: hit columns ``build_edges`` reads
    hit_columns = (*GEOMETRY_COLUMNS, "module_id")

    def __init__(
        self,
        data: ModuleMapData,
        device="auto",
        cut: CutMode | None = None,
        tolerance: float | None = None,
        n_sigma: float | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        small_count_margin: float | None = None,
        triplets: bool | None = None,
    ):
        """Cut settings left None come from the map file (its build config); maps without a
        width prior (written before it existed) get no small-count margin. ``triplets``: keep
        only doublets of a triplet inside the map's triplet windows (an ``InputError`` naming the
        file if the map has none)."""
        stored = {
            "cut": "minmax",
            "tolerance": 0.1,
            "n_sigma": 5.0,
            "small_count_margin": 0.0,
            "triplets": False,
            **data.cuts,
        }
        cut = stored["cut"] if cut is None else cut
        tolerance = float(stored["tolerance"] if tolerance is None else tolerance)
        n_sigma = float(stored["n_sigma"] if n_sigma is None else n_sigma)
        margin_k = float(stored["small_count_margin"] if small_count_margin is None else small_count_margin)
        triplets = bool(stored["triplets"] if triplets is None else triplets)
        if cut not in ("minmax", "mean_rms"):
            raise ValueError(f"unknown module map cut {cut!r}; choose minmax or mean_rms")
        if tolerance < 0 or n_sigma < 0 or margin_k < 0:
            raise ValueError("tolerance, n_sigma and small_count_margin must be >= 0")
        if triplets and data.triplets is None:
            raise InputError(
                "triplet cuts requested, but this module map has no triplet windows "
                "(rebuild it with module_map.triplets: true)",
                file=data.source if data.source is not None else "<module map built in memory>",
                field="triplets",
            )
        self.small_count_margin = margin_k
        self.triplets = triplets
        self.data = data
        self.device = resolve_device(device)
        self.cut, self.tolerance, self.n_sigma, self.chunk_size = (
            cut,
            float(tolerance),
            float(n_sigma),
            chunk_size,
        )
        pairs = torch.from_numpy(np.ascontiguousarray(data.modules).view(np.int64))
        self.modules, inv = torch.unique(pairs.reshape(-1), return_inverse=True)  # sorted int64
        inv = inv.reshape(-1, 2)
        lo, hi = self._windows(data)
        self.modules = self.modules.to(self.device)
        self.pair_src = inv[:, 0].to(self.device)
        self.pair_dst = inv[:, 1].to(self.device)
        self.lo = lo.float().to(self.device)
        self.hi = hi.float().to(self.device)
        if triplets:
            self._init_triplets(data.triplets, inv)

    def _windows(self, w) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi) float64 windows of doublet or triplet statistics ``w`` at this map's cuts."""
        mn, mx = torch.from_numpy(w.min).double(), torch.from_numpy(w.max).double()
        if self.cut == "minmax":
            margin = self.tolerance * (mx - mn)
            if self.small_count_margin > 0 and w.width_prior is not None:
                n = torch.from_numpy(np.asarray(w.count, np.float64))[:, None]
                prior = torch.from_numpy(w.width_prior).double()
                margin = margin + self.small_count_margin * prior / (n + 1.0)
            lo, hi = mn - margin, mx + margin
        else:
            if w.mean is None or w.rms is None:
                raise InputError(
                    "cut mean_rms needs the windows' mean and rms, which this map does not store "
                    "(written for min/max cuts only)",
                    file=self.data.source if self.data.source is not None else "<module map built in memory>",
                    field="cut",
                )
            mean, rms = torch.from_numpy(w.mean).double(), torch.from_numpy(w.rms).double()
            lo, hi = mean - self.n_sigma * rms, mean + self.n_sigma * rms
        lo = lo - _ROUND_REL * lo.abs() - _ROUND_ABS
        hi = hi + _ROUND_REL * hi.abs() + _ROUND_ABS
        return lo, hi

    def _init_triplets(self, t: TripletWindows, pair_modules: torch.Tensor) -> None:
        """Triplet windows keyed by (pair id of A -> B) * n_pairs + (pair id of B -> C), sorted;
        triplets whose pairs are not in the doublet map can never be formed and are dropped."""
        n_pairs = pair_modules.shape[0]
        m = self.modules.numel()
        pair_code = pair_modules[:, 0] * m + pair_modules[:, 1]
        pair_order = torch.argsort(pair_code)
        pair_sorted = pair_code[pair_order]
        mods = torch.from_numpy(np.ascontiguousarray(t.modules).view(np.int64)).reshape(-1, 3)
        modules = self.modules.cpu()
        idx = torch.searchsorted(modules, mods).clamp_(max=max(m - 1, 0))
        ok = (modules[idx] == mods).all(1) if m else torch.zeros(len(mods), dtype=torch.bool)

        def pair_id(a, b):
            code = idx[:, a] * m + idx[:, b]
            pos = torch.searchsorted(pair_sorted, code).clamp_(max=max(n_pairs - 1, 0))
            found = pair_sorted[pos] == code if n_pairs else torch.zeros_like(code, dtype=torch.bool)
            return pair_order[pos] if n_pairs else pos, found

        p_ab, f_ab = pair_id(0, 1)
        p_bc, f_bc = pair_id(1, 2)
        ok = ok & f_ab & f_bc
        key = p_ab[ok] * n_pairs + p_bc[ok]
        lo, hi = self._windows(t)
        order = torch.argsort(key)
        key = key[order]
        self.n_pairs = n_pairs
        # CSR by the first pair: the triplets of pair p (A -> B) are rows ptr[p]:ptr[p + 1], their
        # second pairs (B -> C) in ``triplet_next``
        first = torch.div(key, max(n_pairs, 1), rounding_mode="floor")
        self.triplet_ptr = torch.searchsorted(first, torch.arange(n_pairs + 1)).to(self.device)
        self.triplet_next = (key - first * n_pairs).to(self.device)
        self.triplet_lo = lo[ok][order].float().to(self.device)
        self.triplet_hi = hi[ok][order].float().to(self.device)

    @classmethod
    def load(cls, path: str | Path, device="auto", **cut) -> ModuleMap:
        """Read a map file onto ``device``; ``cut`` = cut, tolerance, n_sigma, chunk_size,
        small_count_margin, triplets."""
        return cls(ModuleMapData.read(path), device=device, **cut)

    @property
    def n_events(self) -> int:
        return self.data.n_events

    def with_cuts(
        self, cut=None, tolerance=None, n_sigma=None, device=None, small_count_margin=None, triplets=None
    ) -> ModuleMap:
        """The same map with other cut settings (None keeps the current one)."""
        return ModuleMap(
            self.data,
            self.device if device is None else device,
            self.cut if cut is None else cut,
            self.tolerance if tolerance is None else tolerance,
            self.n_sigma if n_sigma is None else n_sigma,
            self.chunk_size,
            self.small_count_margin if small_count_margin is None else small_count_margin,
            self.triplets if triplets is None else triplets,
        )

    def to(self, device) -> ModuleMap:
        """The map on another device (self when already there)."""
        return self if resolve_device(device) == self.device else self.with_cuts(device=device)

    def build_edges(self, hits: Mapping[str, torch.Tensor | np.ndarray]) -> torch.Tensor:
        """(2, E) int64 candidate edges on the map's device, directed outward, unique.

        Hits are sorted by module and, within a module, by φ relative to one of its hits. The
        φ window is the narrowest cut, so for every (module pair, source hit) a binary search
        gives the contiguous run of destination hits inside it: only those candidates are
        generated, instead of all n_src x n_dst (at <mu>=200 about a tenth as many). Every
        quantity, φ included, is then computed and cut exactly as when the map was built, so
        the search only has to return a superset (it is widened by ``_PHI_SEARCH_GUARD``).
        """
        dev = self.device
        h = hits_to_tensors(hits, (*GEOMETRY_COLUMNS, "module_id"), dev)
        n = h["r"].shape[0]
        empty = torch.empty(2, 0, dtype=torch.long, device=dev)
        if n == 0 or self.modules.numel() == 0:
            return empty
        pos = torch.searchsorted(self.modules, h["module_id"]).clamp_(max=self.modules.numel() - 1)
        on_map = self.modules[pos] == h["module_id"]
        m = self.modules.numel()
        hit_mod = torch.where(on_map, pos, torch.full_like(pos, m))  # m = "not on the map"
        n_per_mod = torch.bincount(hit_mod, minlength=m + 1)
        first = torch.cumsum(n_per_mod, 0) - n_per_mod
        n_per_mod = n_per_mod[:m]
        # φ of each hit relative to a reference hit of its module, its lowest-numbered one (no
        # ±π seam inside a module)
        ref_hit = torch.full((m + 1,), n - 1, dtype=torch.long, device=dev).scatter_reduce(
            0, hit_mod, torch.arange(n, device=dev), "amin"
        )
        ref = h["phi"].index_select(0, ref_hit)
        u = wrap_phi(h["phi"] - ref.index_select(0, hit_mod)).double()
        key = hit_mod.double() * _KEY_STRIDE + u
        order = torch.argsort(key)
        key = key.index_select(0, order)  # sorted
        phi_sorted = h["phi"].index_select(0, order)
        span = torch.zeros(m + 1, dtype=torch.float64, device=dev).scatter_reduce(
            0, hit_mod, u.abs(), "amax", include_self=True
        )[:m]
        na, nb = n_per_mod[self.pair_src], n_per_mod[self.pair_dst]
        n_cand = na * nb
        active = torch.nonzero(n_cand > 0).squeeze(1)
        if active.numel() == 0:
            return empty
        n_cand = n_cand[active]
        cum = torch.cumsum(n_cand, 0)
        i_dphi = DOUBLET_FEATURES.index("dphi")
        lo_dphi, hi_dphi = self.lo[:, i_dphi].double(), self.hi[:, i_dphi].double()
        # pairs whose window (or destination module) is too wide for a seam-free search take
        # every hit of the destination module
        full = (lo_dphi < -_PHI_SEARCH_MAX) | (hi_dphi > _PHI_SEARCH_MAX)
        full = full | (span.index_select(0, self.pair_dst) > _PHI_SEARCH_MAX)
        out = []
        # chunks bounded by the dense candidate count: the search never returns more
        for start, stop in _chunk_bounds(cum, self.chunk_size):
            p = active[start:stop]
            na_p = na.index_select(0, p)
            # one row per (pair, source hit)
            pid = torch.repeat_interleave(p, na_p)
            ia = torch.arange(pid.numel(), device=dev) - torch.repeat_interleave(
                torch.cumsum(na_p, 0) - na_p, na_p
            )
            ia = ia + first.index_select(0, self.pair_src.index_select(0, pid))
            mod_b = self.pair_dst.index_select(0, pid)
            seg_lo = first.index_select(0, mod_b)
            seg_hi = seg_lo + n_per_mod.index_select(0, mod_b)
            # source φ relative to the destination module's reference hit
            c = wrap_phi(phi_sorted.index_select(0, ia) - ref.index_select(0, mod_b)).double()
            base_key = mod_b.double() * _KEY_STRIDE
            q_lo = base_key + (c + lo_dphi.index_select(0, pid) - _PHI_SEARCH_GUARD)
            q_hi = base_key + (c + hi_dphi.index_select(0, pid) + _PHI_SEARCH_GUARD)
            b_lo = torch.searchsorted(key, q_lo).clamp_(min=seg_lo, max=seg_hi)
            b_hi = torch.searchsorted(key, q_hi, right=True).clamp_(min=seg_lo, max=seg_hi)
            b_lo = torch.minimum(b_lo, b_hi)
            f = full.index_select(0, pid)
            b_lo = torch.where(f, seg_lo, b_lo)
            b_hi = torch.where(f, seg_hi, b_hi)
            cnt = b_hi - b_lo
            row = torch.nonzero(cnt > 0).squeeze(1)
            cnt = cnt.index_select(0, row)
            r = torch.repeat_interleave(row, cnt)
            ib = (
                torch.arange(r.numel(), device=dev)
                - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
                + b_lo.index_select(0, r)
            )
            src = order.index_select(0, ia.index_select(0, r))
            dst = order.index_select(0, ib)
            pid = pid.index_select(0, r)
            q = doublet_features(h, src, dst)
            ok = ((q >= self.lo.index_select(0, pid)) & (q <= self.hi.index_select(0, pid))).all(1)
            out.append((src[ok], dst[ok], pid[ok], q[ok]) if self.triplets else (src[ok], dst[ok]))
        parts = [torch.cat(x) for x in zip(*out)]
        if self.triplets:
            keep = self._in_triplet(h, *parts)
            parts = [parts[0][keep], parts[1][keep]]
        return orient_outward(torch.stack(parts[:2]), h)

    def _in_triplet(
        self,
        h: Mapping[str, torch.Tensor],
        src: torch.Tensor,
        dst: torch.Tensor,
        pid: torch.Tensor,
        q: torch.Tensor,
    ) -> torch.Tensor:
        """(E,) bool: the doublets src -> dst (module pair ``pid``, quantities ``q``) that are the
        first or the second doublet of a triplet a -> b -> c of two such doublets whose module
        triplet is mapped and whose ``TRIPLET_FEATURES`` lie in its windows.

        Driven by the map: each doublet a -> b of pair p is expanded into the map's triplets of
        first pair p (a few per pair); for each, the doublets b -> c of the triplet's second
        pair are one binary search away among the doublets sorted by (source hit, pair). Only
        mapped triplets are ever formed (in chunks of at most ``chunk_size``); pairing every
        doublet with every continuation instead formed ~4x as many candidates at <mu> = 200.
        """
        dev = src.device
        n = src.numel()
        keep = torch.zeros(n, dtype=torch.bool, device=dev)
        if n == 0 or self.triplet_next.numel() == 0:
            return keep
        alpha = doublet_direction(h, src, dst)
        # doublets sorted by (source hit, pair): the continuations of a -> b with pair p' form one run
        d_key = src * self.n_pairs + pid
        d_order = torch.argsort(d_key)
        run_key, run_len = torch.unique_consecutive(d_key.index_select(0, d_order), return_counts=True)
        run_start = torch.cumsum(run_len, 0) - run_len
        n_runs = run_key.numel()
        t_lo = self.triplet_ptr.index_select(0, pid)
        t_cnt = self.triplet_ptr.index_select(0, pid + 1) - t_lo  # mapped triplets of each doublet's pair
        for start, stop in _chunk_bounds(torch.cumsum(t_cnt, 0), self.chunk_size):
            c = t_cnt[start:stop]
            # one row per (first doublet i, mapped triplet t of its pair), i not materialised:
            # the rows of doublet start + k are ends[k] - c[k] : ends[k]
            ends = torch.cumsum(c, 0)
            n_rows = int(ends[-1])
            t = torch.arange(n_rows, device=dev) + torch.repeat_interleave(
                t_lo[start:stop] - (ends - c), c, output_size=n_rows
            )
            want = torch.repeat_interleave(
                dst[start:stop] * self.n_pairs, c, output_size=n_rows
            ) + self.triplet_next.index_select(0, t)
            run = torch.searchsorted(run_key, want).clamp_(max=n_runs - 1)
            row = torch.nonzero(run_key.index_select(0, run) == want).squeeze(1)
            run = run.index_select(0, row)
            j_lo, j_cnt = run_start.index_select(0, run), run_len.index_select(0, run)
            n_match = int(j_cnt.sum())
            j = d_order.index_select(
                0,
                torch.arange(n_match, device=dev)
                + torch.repeat_interleave(
                    j_lo - (torch.cumsum(j_cnt, 0) - j_cnt), j_cnt, output_size=n_match
                ),
            )
            i = torch.repeat_interleave(
                torch.searchsorted(ends, row, right=True) + start, j_cnt, output_size=n_match
            )
            t = torch.repeat_interleave(t.index_select(0, row), j_cnt, output_size=n_match)
            # (a hit pair mapped both ways would form a -> b -> a)
            sel = torch.nonzero(src.index_select(0, i) != dst.index_select(0, j)).squeeze(1)
            i, j, t = i.index_select(0, sel), j.index_select(0, sel), t.index_select(0, sel)
            f = triplet_features(
                q.index_select(0, i), q.index_select(0, j), alpha.index_select(0, i), alpha.index_select(0, j)
            )
            lo_t, hi_t = self.triplet_lo.index_select(0, t), self.triplet_hi.index_select(0, t)
            ok = ((f >= lo_t) & (f <= hi_t)).all(1)
            keep[i[ok]] = True
            keep[j[ok]] = True
        return keep
