"""The ``convert`` stage: GNN4ITk ROOT dumps (or TrackML CSV events) -> one HDF5 events shard.

Per event: MeV -> GeV, spacepoints with cylindrical coordinates and the features of both of
their clusters (``cl1_*``/``cl2_*``, pixel ``cl2_*`` = ``cl1_*``), truth links and the truth
graph (``io/truth.py``), particle counts, the configured target selection, and each particle's
nearest truth jet (ΔR, jet pT) for the efficiency-vs-jet plots. Events are streamed into the
shard; any bad input aborts the whole shard without leaving an output file.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..conditions import DEFAULT_TARGET, condition_mask, select
from ..config import ConfigError, from_dict
from ..io.errors import InputError
from ..io.event_store import CLUSTER_FEATURES, PARTICLE_COLUMNS, Event, event_key, write_events
from ..io.gnn4itk_schema import CLUSTER_LINK_BRANCHES, SECONDARY_BARCODE
from ..io.root_writer import LINK_COUNT, LINK_FLAT, encode_links
from ..progress import progress, safe_total, shard_name
from .truth import (
    build_truth_graph,
    first_particle,
    hit_particle_links,
    link_particles,
    particle_counts,
    vertex_distance,
)

MEV = 1e-3  # MeV -> GeV

log = logging.getLogger(__name__)


@dataclass
class ConvertConfig:
    """Settings of the convert stage."""

    input_format: Literal["root", "trackml"] = "root"
    #: target particles, ``gnntrack.conditions`` syntax on the particle columns (GeV, mm)
    target: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_TARGET))
    #: HDF5 dataset compression: null, "lzf" (fast) or "gzip" (small)
    compression: Literal["lzf", "gzip"] | None = "lzf"
    #: TrackML only: detectors.csv(.gz); null -> looked up next to each event
    detectors: str | None = None

    def __post_init__(self):
        if self.compression not in (None, "lzf", "gzip"):
            raise ConfigError(
                f"convert.compression: {self.compression!r} is not one of [null, 'lzf', 'gzip']"
            )
        probe = np.zeros(1)
        for name, cond in self.target.items():
            base = name[4:] if name.startswith("abs_") and name not in PARTICLE_COLUMNS else name
            if base not in PARTICLE_COLUMNS:
                raise ConfigError(
                    f"convert.target.{name}: unknown particle column; allowed: {list(PARTICLE_COLUMNS)}"
                )
            try:
                condition_mask(probe, cond)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"convert.target.{name}: {exc}") from None


def _cylindrical(x, y, z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(z / r)
    return r, np.arctan2(y, x), eta


def feature_dtype(values: np.ndarray) -> np.ndarray:
    """Cluster features copied onto hits are model inputs: float32 (0.1 µm at 1 m) halves the shard."""
    values = np.asarray(values)
    return values.astype(np.float32) if values.dtype.kind == "f" else values


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def nearest_jet(
    eta: np.ndarray, phi: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray, jet_pt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ΔR to the nearest jet and that jet's pT for every particle (inf / nan without jets)."""
    n = len(eta)
    if len(jet_eta) == 0:
        return np.full(n, np.inf), np.full(n, np.nan)
    dr = np.empty(n)
    best = np.empty(n, np.int64)
    for start in range(0, n, 65536):  # bound the (particles x jets) block at high pile-up
        s = slice(start, start + 65536)
        d2 = (eta[s, None] - jet_eta[None, :]) ** 2 + _wrap(phi[s, None] - jet_phi[None, :]) ** 2
        best[s] = np.argmin(d2, axis=1)
        dr[s] = np.sqrt(d2[np.arange(len(best[s])), best[s]])
    return dr, np.asarray(jet_pt, np.float64)[best]


def finish_particles(
    particles: dict[str, np.ndarray],
    hits: Mapping[str, np.ndarray],
    hit_particle: np.ndarray,
    cfg: ConvertConfig,
) -> None:
    """Add the columns that need truth links and config: counts, ``is_target``."""
    n_part = len(particles["pt"])
    n_sp, n_mod = particle_counts(hit_particle, hits["module_id"], n_part)
    particles["n_spacepoints"] = n_sp
    particles["n_modules"] = n_mod
    try:
        particles["is_target"] = select(particles, cfg.target, n_part)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"convert.target: {exc}") from None


def assemble_event(
    run_number: int,
    event_number: int,
    hits: dict[str, np.ndarray],
    clusters: dict[str, np.ndarray],
    particles: dict[str, np.ndarray],
    jets: dict[str, np.ndarray],
    hit_particle: np.ndarray,
    cfg: ConvertConfig,
    source=None,
    validate_file=None,
) -> Event:
    """The one place an ``Event`` is made from reader tables: truth graph, targets, validation."""
    finish_particles(particles, hits, hit_particle, cfg)
    edges, edge_particle = truth_graph(hits, particles, hit_particle)
    ev = Event(
        run_number=run_number,
        event_number=event_number,
        hits=hits,
        clusters=clusters,
        particles=particles,
        jets=jets,
        truth_edges=edges,
        truth_edge_particle=edge_particle,
        hit_particle=hit_particle,
        attrs={"source": Path(source).name} if source else {},
    )
    ev.validate(file=validate_file if validate_file is not None else source)
    return ev


def truth_graph(hits, particles, hit_particle) -> tuple[np.ndarray, np.ndarray]:
    xyz = np.stack([hits["x"], hits["y"], hits["z"]], axis=1)
    vtx = np.stack([particles["vx"], particles["vy"], particles["vz"]], axis=1)
    dist = vertex_distance(xyz, vtx, hit_particle)
    return build_truth_graph(hit_particle, hits["module_id"], dist)


def _link_arrays(raw: Mapping, n_clusters: int, source, key) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(per-cluster link counts, flat link values) from either link form of ``root_reader``."""
    if LINK_COUNT in raw:
        counts = np.asarray(raw[LINK_COUNT], np.int64)
        flat = {b: np.asarray(raw[LINK_FLAT[b]], np.int32) for b in CLUSTER_LINK_BRANCHES}
        for b, v in flat.items():
            if len(counts) != n_clusters or len(v) != counts.sum():
                raise InputError(
                    "link counts do not match the clusters", file=source, event=key, field=LINK_FLAT[b]
                )
        return counts, flat
    counts, flat = None, {}
    for b in CLUSTER_LINK_BRANCHES:
        if b not in raw:
            raise InputError("missing branch", file=source, event=key, field=b)
        counts_b, flat[b] = encode_links(raw[b], n_clusters, source, key, b)
        if counts is not None and not np.array_equal(counts, counts_b):
            raise InputError(
                "links per cluster differ between the link branches", file=source, event=key, field=b
            )
        counts = counts_b
    return counts.astype(np.int64), flat


def event_from_gnn4itk(raw: Mapping, cfg: ConvertConfig | None = None, source: str | None = None) -> Event:
    """One raw GNN4ITk event (``root_reader`` output, validated) -> ``Event`` in GeV."""
    cfg = cfg or ConvertConfig()
    run, evt = int(raw["run_number"]), int(raw["event_number"])
    key = event_key(run, evt)

    # clusters: CLindex -> row
    cl_index = np.asarray(raw["CLindex"], np.int64)
    n_cl = len(cl_index)
    order = np.argsort(cl_index, kind="stable")
    sorted_ids = cl_index[order]

    def rows_of(ids, name):
        ids = np.asarray(ids, np.int64)
        rows = np.full(len(ids), -1, np.int64)
        have = ids >= 0
        if have.any():
            if n_cl == 0:
                raise InputError(
                    "spacepoint refers to a cluster but the event has none",
                    file=source,
                    event=key,
                    field=name,
                )
            pos = np.clip(np.searchsorted(sorted_ids, ids[have]), 0, n_cl - 1)
            if np.any(sorted_ids[pos] != ids[have]):
                raise InputError(
                    "spacepoint refers to an unknown cluster", file=source, event=key, field=name
                )
            rows[have] = order[pos]
        return rows

    hardware = (np.asarray(raw["CLhardware"]).astype(str) == "STRIP").astype(np.int32)
    cx, cy, cz = (np.asarray(raw[b], np.float64) for b in ("CLx", "CLy", "CLz"))
    cr, cphi, ceta = _cylindrical(cx, cy, cz)
    part_sub = np.asarray(raw["Part_event_number"], np.int32)
    part_bc = np.asarray(raw["Part_barcode"], np.int32)
    counts, flat = _link_arrays(raw, n_cl, source, key)
    link_part = link_particles(
        flat["CLparticleLink_eventIndex"], flat["CLparticleLink_barcode"], part_sub, part_bc
    )
    # a cluster's main particle: its first link to a known particle
    link_cluster = np.repeat(np.arange(n_cl), counts)
    known = link_part >= 0
    cl_particle = np.full(n_cl, -1, np.int64)
    uniq, first = np.unique(link_cluster[known], return_index=True)
    cl_particle[uniq] = link_part[known][first]

    clusters = {
        "cluster_id": cl_index.astype(np.int32),
        "hardware": hardware,
        "x": cx,
        "y": cy,
        "z": cz,
        "barrel_endcap": np.asarray(raw["CLbarrel_endcap"]),
        "layer_disk": np.asarray(raw["CLlayer_disk"]),
        "eta_module": np.asarray(raw["CLeta_module"]),
        "phi_module": np.asarray(raw["CLphi_module"]),
        "side": np.asarray(raw["CLside"]),
        "module_id": np.asarray(raw["CLmoduleID"], np.uint64),
        "pixel_count": np.asarray(raw["CLpixel_count"]),
        "charge_count": np.asarray(raw["CLcharge_count"]),
        "loc_eta": np.asarray(raw["CLloc_eta"]),
        "loc_phi": np.asarray(raw["CLloc_phi"]),
        "glob_eta": np.asarray(raw["CLglob_eta"]),
        "glob_phi": np.asarray(raw["CLglob_phi"]),
        "eta_angle": np.asarray(raw["CLeta_angle"]),
        "phi_angle": np.asarray(raw["CLphi_angle"]),
        "norm_x": np.asarray(raw["CLnorm_x"]),
        "norm_y": np.asarray(raw["CLnorm_y"]),
        "norm_z": np.asarray(raw["CLnorm_z"]),
        "particle_index": cl_particle,
    }
    cl_feat = dict(clusters, r=cr, phi=cphi, eta=ceta)

    c1 = rows_of(raw["SPCL1_index"], "SPCL1_index")
    c2 = rows_of(raw["SPCL2_index"], "SPCL2_index")
    if np.any(c1 < 0):
        raise InputError("spacepoint without a first cluster", file=source, event=key, field="SPCL1_index")
    c2_feat = np.where(c2 >= 0, c2, c1)
    x, y, z = (np.asarray(raw[b], np.float64) for b in ("SPx", "SPy", "SPz"))
    r, phi, eta = _cylindrical(x, y, z)
    hits = {
        "hit_id": np.asarray(raw["SPindex"]),
        "x": x,
        "y": y,
        "z": z,
        "r": r,
        "phi": phi,
        "eta": eta,
        "module_id": clusters["module_id"][c1],
        "hardware": hardware[c1],
        "barrel_endcap": clusters["barrel_endcap"][c1],
        "layer_disk": clusters["layer_disk"][c1],
        "eta_module": clusters["eta_module"][c1],
        "phi_module": clusters["phi_module"][c1],
        "is_overlap": np.asarray(raw["SPisOverlap"]),
        "cluster_index_1": c1,
        "cluster_index_2": c2,
    }
    for feat in CLUSTER_FEATURES:
        values = feature_dtype(cl_feat[feat])
        hits[f"cl1_{feat}"] = values[c1]
        hits[f"cl2_{feat}"] = values[c2_feat]

    hit_particle = hit_particle_links(c1, c2, counts, link_part)
    hits["particle_index"] = first_particle(hit_particle, len(x))

    px, py, pz = (np.asarray(raw[b], np.float64) * MEV for b in ("Part_px", "Part_py", "Part_pz"))
    p_eta = np.asarray(raw["Part_eta"], np.float64)
    p_phi = np.arctan2(py, px)
    jets = {
        "pt": np.asarray(raw.get("Jet_pt", np.zeros(0)), np.float64) * MEV,
        "eta": np.asarray(raw.get("Jet_eta", np.zeros(0)), np.float64),
        "phi": np.asarray(raw.get("Jet_phi", np.zeros(0)), np.float64),
    }
    jet_dr, jet_pt = nearest_jet(p_eta, p_phi, jets["eta"], jets["phi"], jets["pt"])
    particles = {
        "subevent": part_sub,
        "barcode": part_bc,
        "px": px,
        "py": py,
        "pz": pz,
        "pt": np.asarray(raw["Part_pt"], np.float64) * MEV,
        "eta": p_eta,
        "phi": p_phi,
        "vx": np.asarray(raw["Part_vx"], np.float64),
        "vy": np.asarray(raw["Part_vy"], np.float64),
        "vz": np.asarray(raw["Part_vz"], np.float64),
        "radius": np.asarray(raw["Part_radius"], np.float64),
        "charge": np.asarray(raw["Part_charge"], np.float64),
        "pdg_id": np.asarray(raw["Part_pdg_id"], np.int32),
        "status": np.asarray(raw["Part_status"], np.int32),
        "is_primary": part_bc < SECONDARY_BARCODE,
        "jet_dr": jet_dr,
        "jet_pt": jet_pt,
    }
    return assemble_event(run, evt, hits, clusters, particles, jets, hit_particle, cfg, source=source)


def iter_converted(
    inputs: Iterable[str | Path], cfg: ConvertConfig, timings: list | None = None
) -> Iterator[Event]:
    """Convert every event of ``inputs`` in order; appends (key, seconds) to ``timings`` if given."""
    inputs = list(inputs)
    seen: dict[str, str] = {}
    for path in inputs:
        path = Path(path)
        if cfg.input_format == "root":
            from .root_reader import iter_gnn4itk

            t0 = time.perf_counter()
            for raw in iter_gnn4itk(path, links="flat"):
                ev = event_from_gnn4itk(raw, cfg, source=str(path))
                _check_unique(ev, path, seen)
                if timings is not None:
                    timings.append((ev.key, time.perf_counter() - t0))
                yield ev
                t0 = time.perf_counter()
        else:
            from .trackml import read_trackml_event

            t0 = time.perf_counter()
            ev = read_trackml_event(path, cfg.detectors, cfg=cfg)
            _check_unique(ev, path, seen)
            if timings is not None:
                timings.append((ev.key, time.perf_counter() - t0))
            yield ev
    if not seen:
        raise InputError("no events in the inputs", file=", ".join(str(p) for p in inputs))


def count_events(inputs: list[str | Path], cfg: ConvertConfig) -> int:
    """Events ``iter_converted`` will yield, from the ROOT file headers (for the progress ETA)."""
    if cfg.input_format != "root":
        return len(inputs)  # a TrackML input is one event
    from .root_reader import n_entries

    return sum(n_entries(p) for p in inputs)


def _check_unique(ev: Event, path: Path, seen: dict[str, str]) -> None:
    if ev.key in seen:
        raise InputError(
            f"duplicate event (also in {seen[ev.key]})", file=path, event=ev.key, field="event_number"
        )
    seen[ev.key] = str(path)


def run_convert(
    inputs: list[str | Path] | str | Path, output: str | Path, cfg: ConvertConfig | Mapping | None = None
) -> dict:
    """Convert ``inputs`` (ROOT files, or TrackML event prefixes) into one events shard ``output``.

    All-or-nothing: events are streamed into a temporary file that is renamed only when every
    input converted cleanly. Returns {"n_events", "seconds_per_event"} for logs and benchmarks.
    """
    if cfg is None or isinstance(cfg, Mapping):
        cfg = from_dict(ConvertConfig, dict(cfg or {}), "convert")
    elif not isinstance(cfg, ConvertConfig):
        raise TypeError(f"cfg must be a ConvertConfig or a mapping, got {type(cfg).__name__}")
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    timings: list = []
    events = progress(
        iter_converted(inputs, cfg, timings),
        total=safe_total(lambda: count_events(inputs, cfg)),
        desc=f"convert {shard_name(output)}",
        unit="events",
        logger=log,
    )
    write_events(output, events, compression=cfg.compression)
    secs = [s for _, s in timings]
    return {
        "n_events": len(secs),
        "seconds_per_event": float(np.mean(secs)) if secs else 0.0,
        "config": dataclasses.asdict(cfg),
    }
