"""Data-driven module map (GNN4ITk style): which module pairs target tracks cross, with cut windows.

Building: for every truth edge of a target particle in the training events, record the module
pair (source module -> destination module along the particle) and the doublet quantities of
``geometry.DOUBLET_FEATURES``; per pair keep count, min, max, mean and rms. The map is one HDF5
file::

    /            attrs: format="gnntrack-module-map", version, n_events, features, symmetry,
                 cut_cut, cut_tolerance, cut_n_sigma (default cuts)
    /doublets/modules   (P, 2) uint64 module identifiers (source, destination), sorted
    /doublets/count     (P,) int64 number of training doublets
    /doublets/min, max, mean, rms   (P, F) float32 per feature

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
    doublet_features,
    hits_to_tensors,
    orient_outward,
    wrap_phi,
)
from .module_symmetry import RING_COLUMNS, ModuleCatalogue, symmetrise, width_prior

log = logging.getLogger(__name__)

FORMAT = "gnntrack-module-map"
VERSION = 1

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

    def __post_init__(self) -> None:
        if self.tolerance < 0 or self.n_sigma < 0 or self.small_count_margin < 0:
            raise ConfigError("module_map: tolerance, n_sigma and small_count_margin must be >= 0")
        if self.n_events is not None and self.n_events < 1:
            raise ConfigError("module_map: n_events must be >= 1")


# ----------------------------------------------------------------------------------------------
# building


def target_doublets(event: Event) -> tuple[np.ndarray, np.ndarray]:
    """(E, 2) int64 module pairs and (E, F) float32 quantities of the event's target truth edges."""
    edges = np.asarray(event.truth_edges, dtype=np.int64)
    if edges.shape[1] == 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, len(DOUBLET_FEATURES)), np.float32)
    is_target = np.asarray(event.particles["is_target"], bool)
    part = np.asarray(event.truth_edge_particle, dtype=np.int64)
    keep = (part >= 0) & is_target[np.maximum(part, 0)]
    src, dst = edges[0, keep], edges[1, keep]
    hits = hits_to_tensors(event.hits, (*GEOMETRY_COLUMNS, "module_id"))
    mod = hits["module_id"].numpy()
    feats = doublet_features(hits, torch.from_numpy(src), torch.from_numpy(dst)).numpy()
    pairs = np.stack([mod[src], mod[dst]], axis=1)
    same = pairs[:, 0] == pairs[:, 1]  # not a module transition: no doublet to record
    return pairs[~same], feats[~same]


class _Accumulator:
    """Per-pair running count / min / max / sum / sum of squares (float64 sums)."""

    def __init__(self, n_features: int):
        self.n_features = n_features
        self.pairs = np.zeros((0, 2), np.int64)
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


def build_module_map(
    events: Sequence[Event] | Sequence[str | Path], cfg: ModuleMapConfig | dict | None = None
):
    """Accumulate the map from in-memory events or event files; returns a ``ModuleMapData``."""
    cfg = cfg if isinstance(cfg, ModuleMapConfig) else from_dict(ModuleMapConfig, cfg, "module_map")
    acc = _Accumulator(len(DOUBLET_FEATURES))
    catalogue = ModuleCatalogue()
    n_used = 0

    def _events():
        for item in events:
            if isinstance(item, Event):
                yield item
            else:
                yield from read_map_events(item)

    pending_pairs, pending_feats, pending = [], [], 0
    total = safe_total(lambda: _count_events(events, cfg.n_events))
    for ev in progress(_events(), total=total, desc="module map", unit="events", logger=log):
        if cfg.n_events is not None and n_used >= cfg.n_events:
            break
        pairs, feats = target_doublets(ev)
        catalogue.add(ev)
        pending_pairs.append(pairs)
        pending_feats.append(feats)
        pending += len(pairs)
        n_used += 1
        if pending > 2_000_000:
            acc.add(np.concatenate(pending_pairs), np.concatenate(pending_feats))
            pending_pairs, pending_feats, pending = [], [], 0
    if pending_pairs:
        acc.add(np.concatenate(pending_pairs), np.concatenate(pending_feats))
    if cfg.symmetry in ("phi", "phi_z"):
        stats = {"count": acc.count, "min": acc.min, "max": acc.max, "sum": acc.sum, "sumsq": acc.sumsq}
        acc.pairs, stats = symmetrise(acc.pairs, stats, catalogue, z_mirror=cfg.symmetry == "phi_z")
        acc.count, acc.min, acc.max, acc.sum, acc.sumsq = (
            stats[k] for k in ("count", "min", "max", "sum", "sumsq")
        )
    keep = acc.count >= cfg.min_count
    mean = acc.sum[keep] / np.maximum(acc.count[keep], 1)[:, None]
    var = np.maximum(acc.sumsq[keep] / np.maximum(acc.count[keep], 1)[:, None] - mean**2, 0.0)
    prior = width_prior(acc.pairs[keep], acc.count[keep], acc.max[keep] - acc.min[keep], catalogue)
    return ModuleMapData(
        modules=acc.pairs[keep].view(np.uint64),
        count=acc.count[keep],
        min=acc.min[keep],
        max=acc.max[keep],
        mean=mean.astype(np.float32),
        rms=np.sqrt(var).astype(np.float32),
        n_events=n_used,
        cuts={
            "cut": cfg.cut,
            "tolerance": cfg.tolerance,
            "n_sigma": cfg.n_sigma,
            "small_count_margin": cfg.small_count_margin,
        },
        symmetry=cfg.symmetry,
        width_prior=prior,
    )


#: HDF5 filters of every map dataset: byte shuffle + gzip shrink the default campaign's map from
#: 65 MB to 6.5 MB (sorted module ids and repeated window edges compress well); reading it back
#: takes ~0.2 s. Readers need nothing special: HDF5 undoes the filters.
MAP_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


@dataclass
class ModuleMapData:
    """The stored content of a module map (numpy)."""

    modules: np.ndarray  # (P, 2) uint64
    count: np.ndarray  # (P,)
    min: np.ndarray  # (P, F)
    max: np.ndarray
    mean: np.ndarray
    rms: np.ndarray
    n_events: int
    #: default cut settings of this map (cut, tolerance, n_sigma)
    cuts: dict = field(default_factory=lambda: {"cut": "minmax", "tolerance": 0.1, "n_sigma": 5.0})
    features: tuple[str, ...] = DOUBLET_FEATURES
    symmetry: str = "none"
    #: (P, F) typical width of the pair's layer-pair windows (None in maps written before it existed)
    width_prior: np.ndarray | None = None

    @property
    def n_pairs(self) -> int:
        return len(self.count)

    def write(self, path: str | Path) -> None:
        """Write the map atomically, each dataset and the file with its content digest."""
        with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
            w = SealedWriter(f)
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["n_events"] = int(self.n_events)
            f.attrs["features"] = list(self.features)
            f.attrs["symmetry"] = self.symmetry
            for k, v in self.cuts.items():
                f.attrs[f"cut_{k}"] = v
            g = w.group(f, "doublets")
            w.dataset(g, "modules", np.asarray(self.modules, np.uint64), **MAP_COMPRESSION)
            w.dataset(g, "count", np.asarray(self.count, np.int64), **MAP_COMPRESSION)
            for name in ("min", "max", "mean", "rms"):
                w.dataset(g, name, np.asarray(getattr(self, name), np.float32), **MAP_COMPRESSION)
            if self.width_prior is not None:
                w.dataset(g, "width_prior", np.asarray(self.width_prior, np.float32), **MAP_COMPRESSION)
            w.seal()

    @classmethod
    def read(cls, path: str | Path) -> ModuleMapData:
        """Read and validate a map file; any defect (damaged content, a value that does not match
        the file's digest, a bad shape or value) is an ``InputError`` naming the field."""
        with open_verified(path, FORMAT, what="module map file") as r, read_errors(path):
            f = r.f
            features = tuple(str(x) for x in f.attrs.get("features", ()))
            if features != DOUBLET_FEATURES:
                raise InputError(
                    f"features {list(features)} != expected {list(DOUBLET_FEATURES)}",
                    file=path,
                    field="features",
                )
            if "n_events" not in f.attrs:
                raise InputError("missing attribute", file=path, field="n_events")
            if "doublets" not in f:
                raise InputError("missing group", file=path, field="doublets")
            g = r.group(f, "doublets")
            members = r.names(g)
            data = {}
            for name in ("modules", "count", "min", "max", "mean", "rms"):
                data[name] = r.read(g, name, field=f"doublets/{name}")
            prior = (
                r.read(g, "width_prior", field="doublets/width_prior") if "width_prior" in members else None
            )
            n_events = int(f.attrs["n_events"])
            symmetry = str(f.attrs.get("symmetry", "none"))
            cuts = {}
            for k, tp in (
                ("cut", str),
                ("tolerance", float),
                ("n_sigma", float),
                ("small_count_margin", float),
            ):
                if f"cut_{k}" in f.attrs:
                    v = f.attrs[f"cut_{k}"]
                    cuts[k] = v.decode() if isinstance(v, bytes) else tp(v)
        if cuts.get("cut", "minmax") not in ("minmax", "mean_rms"):
            raise InputError(f"unknown cut {cuts['cut']!r}", file=path, field="cut_cut")
        for k in ("tolerance", "n_sigma", "small_count_margin"):
            if k in cuts and not (np.isfinite(cuts[k]) and cuts[k] >= 0):
                raise InputError(f"{cuts[k]} is not a finite number >= 0", file=path, field=f"cut_{k}")
        p = len(data["count"])
        if data["modules"].shape != (p, 2):
            raise InputError(
                f"shape {data['modules'].shape} != ({p}, 2)", file=path, field="doublets/modules"
            )
        for name in ("min", "max", "mean", "rms"):
            if data[name].shape != (p, len(DOUBLET_FEATURES)):
                raise InputError(
                    f"shape {data[name].shape} != ({p}, {len(DOUBLET_FEATURES)})",
                    file=path,
                    field=f"doublets/{name}",
                )
            if not np.all(np.isfinite(data[name])):
                raise InputError("non-finite values", file=path, field=f"doublets/{name}")
        if np.any(data["max"] < data["min"]):
            raise InputError("max < min for some module pair", file=path, field="doublets/max")
        if prior is not None and (
            prior.shape != (p, len(DOUBLET_FEATURES)) or not np.all(np.isfinite(prior))
        ):
            raise InputError(
                f"shape {prior.shape} != ({p}, {len(DOUBLET_FEATURES)}) or non-finite values",
                file=path,
                field="doublets/width_prior",
            )
        return cls(
            modules=data["modules"].astype(np.uint64),
            count=data["count"].astype(np.int64),
            min=data["min"].astype(np.float32),
            max=data["max"].astype(np.float32),
            mean=data["mean"].astype(np.float32),
            rms=data["rms"].astype(np.float32),
            n_events=n_events,
            cuts=cuts,
            symmetry=symmetry,
            width_prior=None if prior is None else prior.astype(np.float32),
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
    ):
        """Cut settings left None come from the map file (its build config); maps without a
        width prior (written before it existed) get no small-count margin."""
        stored = {"cut": "minmax", "tolerance": 0.1, "n_sigma": 5.0, "small_count_margin": 0.0, **data.cuts}
        cut = stored["cut"] if cut is None else cut
        tolerance = float(stored["tolerance"] if tolerance is None else tolerance)
        n_sigma = float(stored["n_sigma"] if n_sigma is None else n_sigma)
        margin_k = float(stored["small_count_margin"] if small_count_margin is None else small_count_margin)
        if cut not in ("minmax", "mean_rms"):
            raise ValueError(f"unknown module map cut {cut!r}; choose minmax or mean_rms")
        if tolerance < 0 or n_sigma < 0 or margin_k < 0:
            raise ValueError("tolerance, n_sigma and small_count_margin must be >= 0")
        self.small_count_margin = margin_k
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
        mn, mx = torch.from_numpy(data.min).double(), torch.from_numpy(data.max).double()
        if cut == "minmax":
            margin = self.tolerance * (mx - mn)
            if margin_k > 0 and data.width_prior is not None:
                n = torch.from_numpy(np.asarray(data.count, np.float64))[:, None]
                margin = margin + margin_k * torch.from_numpy(data.width_prior).double() / (n + 1.0)
            lo, hi = mn - margin, mx + margin
        else:
            mean, rms = torch.from_numpy(data.mean).double(), torch.from_numpy(data.rms).double()
            lo, hi = mean - self.n_sigma * rms, mean + self.n_sigma * rms
        lo = lo - _ROUND_REL * lo.abs() - _ROUND_ABS
        hi = hi + _ROUND_REL * hi.abs() + _ROUND_ABS
        self.modules = self.modules.to(self.device)
        self.pair_src = inv[:, 0].to(self.device)
        self.pair_dst = inv[:, 1].to(self.device)
        self.lo = lo.float().to(self.device)
        self.hi = hi.float().to(self.device)

    @classmethod
    def load(cls, path: str | Path, device="auto", **cut) -> ModuleMap:
        """Read a map file onto ``device``; ``cut`` = cut, tolerance, n_sigma, chunk_size."""
        return cls(ModuleMapData.read(path), device=device, **cut)

    @property
    def n_events(self) -> int:
        return self.data.n_events

    def with_cuts(
        self, cut=None, tolerance=None, n_sigma=None, device=None, small_count_margin=None
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
        start = 0
        while start < active.numel():
            # chunks bounded by the dense candidate count: the search never returns more
            base = int(cum[start - 1]) if start > 0 else 0
            stop = int(torch.searchsorted(cum, torch.tensor(base + self.chunk_size, device=dev), right=True))
            stop = max(stop, start + 1)
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
            out.append(torch.stack([src[ok], dst[ok]]))
            start = stop
        return orient_outward(torch.cat(out, 1), h)
