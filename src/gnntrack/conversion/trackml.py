"""TrackML CSV events -> the same ``Event`` as the GNN4ITk path.

Files of one event: ``<prefix>-hits.csv``, ``-cells.csv`` (optional), ``-particles.csv``,
``-truth.csv``, each optionally gzipped, plus the detector's ``detectors.csv`` (a leading unnamed
index column is tolerated). Units are already mm and GeV.

Mapping to the ITk-style tables:
- one cluster per hit (TrackML strip hits are already combined), ``cl2_*`` = ``cl1_*``;
- hardware pixel for volumes 7/8/9, strip otherwise; barrel_endcap -2/0/+2 from the volume;
  layer_disk = layer_id/2 - 1; module_id packs (volume, layer, module);
  eta_module/phi_module are ranks of the module centre (z or r, then φ) within its layer;
- cluster shape from the cells: cell count, summed charge, centroid (loc_phi/loc_eta along u/v),
  extent and the direction it implies through the sensor thickness, rotated to global
  (glob_eta/glob_phi, eta_angle/phi_angle), as the Exa.TrkX cell features;
- truth: exactly one row per hit; particle_id 0 is noise, any other must be in particles.csv
  (a dangling one is an error naming its row, not a silent noise hit);
- particles: particle_id 0 is noise; the sub-event is the primary-vertex field (bits 52+) of the
  particle_id, secondaries are those with a non-zero sub-particle field (low 16 bits); barcodes
  are numbered per sub-event (secondaries from 200001) and the original ``particle_id`` is kept
  as an extra column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import from_dict
from ..io.errors import InputError
from ..io.event_store import CLUSTER_FEATURES, Event
from ..io.gnn4itk_schema import SECONDARY_BARCODE

PIXEL_VOLUMES = (7, 8, 9)
BARREL_ENDCAP = {7: -2, 8: 0, 9: 2, 12: -2, 13: 0, 14: 2, 16: -2, 17: 0, 18: 2}

REQUIRED = {
    "hits": ("hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"),
    "cells": ("hit_id", "ch0", "ch1", "value"),
    "particles": ("particle_id", "vx", "vy", "vz", "px", "py", "pz", "q"),
    "truth": ("hit_id", "particle_id"),
    "detectors": (
        "volume_id", "layer_id", "module_id", "cx", "cy", "cz",
        "rot_xu", "rot_xv", "rot_xw", "rot_yu", "rot_yv", "rot_yw", "rot_zu", "rot_zv", "rot_zw",
        "module_t", "module_minhu", "module_maxhu", "module_hv", "pitch_u", "pitch_v",
    ),
}  # fmt: skip

_KIND = re.compile(r"^(?P<event>.*)-(?P<kind>hits|cells|particles|truth)\.csv(\.gz)?$")


def _find(base: Path, kind: str) -> Path | None:
    for suffix in (".csv", ".csv.gz"):
        p = base.parent / f"{base.name}-{kind}{suffix}"
        if p.exists():
            return p
    return None


def event_files(prefix_or_file: str | Path) -> dict[str, Path | None]:
    """The files of one event from its prefix (``.../event000000001``) or any one of its files."""
    p = Path(prefix_or_file)
    m = _KIND.match(p.name)
    prefix = p.with_name(m.group("event")) if m else p
    files = {kind: _find(prefix, kind) for kind in ("hits", "cells", "particles", "truth")}
    for kind in ("hits", "particles", "truth"):
        if files[kind] is None:
            raise InputError(f"no {prefix.name}-{kind}.csv[.gz] next to it", file=prefix, field=kind)
    return files


def find_detectors(prefix_or_file: str | Path) -> Path:
    """``detectors.csv[.gz]`` in the event's directory or its parent."""
    p = Path(prefix_or_file)
    for d in (p.parent, p.parent.parent):
        for name in ("detectors.csv", "detectors.csv.gz"):
            if (d / name).exists():
                return d / name
    raise InputError("no detectors.csv[.gz] in the event directory or its parent; pass it explicitly", file=p)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return True  # empty: reported by the CSV parser
        f.seek(-1, 2)
        return f.read(1) in (b"\n", b"\r")


def _read(path: Path, kind: str, event=None) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
        # a plain CSV cut inside a line still parses; its missing final newline gives it away
        # (gzip files carry their own length and CRC, checked while decompressing)
        if path.suffix != ".gz" and not _ends_with_newline(path):
            raise InputError("last line has no newline: the file is truncated", file=path, event=event)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError("file does not exist", file=path, event=event) from None
    except Exception as exc:
        raise InputError(
            f"not a readable CSV file ({type(exc).__name__}: {exc})", file=path, event=event
        ) from None
    missing = [c for c in REQUIRED[kind] if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {missing}", file=path, event=event, field=missing[0])
    if df.empty:
        if kind == "hits":
            raise InputError(
                "no hits: the file has a header but no rows", file=path, event=event, field="hit_id"
            )
        if kind == "detectors":
            raise InputError("no modules: the file has a header but no rows", file=path, event=event)
        return df.astype({c: np.float64 for c in REQUIRED[kind]})  # an empty table of numbers
    for c in REQUIRED[kind]:
        if df[c].isna().any() or not pd.api.types.is_numeric_dtype(df[c]):
            raise InputError("missing or non-numeric values", file=path, event=event, field=c)
    return df


def _rows_of(ids: np.ndarray, ref_ids: np.ndarray, path, event, field) -> np.ndarray:
    """Row of each id in ``ref_ids`` (unique), -1 where absent."""
    order = np.argsort(ref_ids, kind="stable")
    sorted_ids = ref_ids[order]
    if len(sorted_ids) > 1 and np.any(sorted_ids[1:] == sorted_ids[:-1]):
        raise InputError("duplicate identifier", file=path, event=event, field=field)
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, np.int64)
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, order[pos], -1).astype(np.int64)


def _module_key(volume, layer, module) -> np.ndarray:
    return (
        (np.asarray(volume, np.uint64) << np.uint64(40))
        | (np.asarray(layer, np.uint64) << np.uint64(20))
        | np.asarray(module, np.uint64)
    )


def _module_indices(det: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(eta_module, phi_module) of every detector row: ranks of the centre within its layer.

    Barrel: rings of equal z; endcap: rings of equal r; then φ order within the ring. Centres
    are rounded to 1 mm / 1 mrad so that nominally equal positions rank together.
    """
    volume = det["volume_id"].to_numpy()
    barrel = np.isin(volume, [v for v, be in BARREL_ENDCAP.items() if be == 0])
    ring_pos = np.where(barrel, det["cz"].to_numpy(), np.hypot(det["cx"].to_numpy(), det["cy"].to_numpy()))
    frame = pd.DataFrame(
        {
            "volume": volume,
            "layer": det["layer_id"].to_numpy(),
            "ring": np.round(ring_pos).astype(np.int64),
            "phi": np.round(np.arctan2(det["cy"].to_numpy(), det["cx"].to_numpy()) * 1000).astype(np.int64),
        }
    )
    eta_mod = frame.groupby(["volume", "layer"])["ring"].rank(method="dense").to_numpy() - 1
    frame["eta_mod"] = eta_mod
    phi_mod = frame.groupby(["volume", "layer", "eta_mod"])["phi"].rank(method="dense").to_numpy() - 1
    return eta_mod.astype(np.int32), phi_mod.astype(np.int32)


@dataclass(frozen=True)
class Detector:
    """detectors.csv as arrays: module keys, geometry columns and module eta/phi indices."""

    key: np.ndarray
    columns: dict
    eta_module: np.ndarray
    phi_module: np.ndarray


_DETECTORS: dict = {}


def load_detectors(path: str | Path, event=None) -> Detector:
    """Read (once per file version: a shard converts many events with one detector) detectors.csv."""
    path = Path(path)
    if not path.exists():
        raise InputError("file does not exist", file=path, event=event)
    st = path.stat()
    cache_key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if cache_key not in _DETECTORS:
        det = _read(path, "detectors", event)
        eta_mod, phi_mod = _module_indices(det)
        _DETECTORS.clear()
        _DETECTORS[cache_key] = Detector(
            key=_module_key(det["volume_id"], det["layer_id"], det["module_id"]),
            columns={c: det[c].to_numpy(np.float64) for c in REQUIRED["detectors"][3:]},
            eta_module=eta_mod,
            phi_module=phi_mod,
        )
    return _DETECTORS[cache_key]


def _cell_features(cells: pd.DataFrame, hit_row: np.ndarray, n_hits: int) -> dict[str, np.ndarray]:
    """Per-hit cell count, charge, charge-weighted centroid and extent in channels (NaN if no cells)."""
    order = np.argsort(hit_row, kind="stable")
    row = hit_row[order]
    ch0 = cells["ch0"].to_numpy(np.float64)[order]
    ch1 = cells["ch1"].to_numpy(np.float64)[order]
    val = cells["value"].to_numpy(np.float64)[order]
    out = {k: np.full(n_hits, np.nan) for k in ("mean0", "mean1", "span0", "span1")}
    out["count"] = np.bincount(row, minlength=n_hits).astype(np.int32)
    out["charge"] = np.bincount(row, weights=val, minlength=n_hits)
    if len(row) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    rows = row[starts]
    wsum = np.add.reduceat(val, starts)
    w = np.where(wsum > 0, wsum, 1.0)
    n = np.add.reduceat(np.ones_like(val), starts)
    # charge-weighted centroid; unweighted where all charges are zero
    out["mean0"][rows] = np.where(
        wsum > 0, np.add.reduceat(ch0 * val, starts) / w, np.add.reduceat(ch0, starts) / n
    )
    out["mean1"][rows] = np.where(
        wsum > 0, np.add.reduceat(ch1 * val, starts) / w, np.add.reduceat(ch1, starts) / n
    )
    out["span0"][rows] = np.maximum.reduceat(ch0, starts) - np.minimum.reduceat(ch0, starts) + 1
    out["span1"][rows] = np.maximum.reduceat(ch1, starts) - np.minimum.reduceat(ch1, starts) + 1
    return out


def _event_number(prefix: Path) -> int:
    m = re.search(r"(\d+)$", prefix.name)
    return int(m.group(1)) if m else 0


def read_trackml_event(
    prefix_or_files: str | Path | dict,
    detectors_path: str | Path | None = None,
    cfg=None,
    run_number: int = 0,
) -> Event:
    """Read one TrackML event into an ``Event`` (truth graph, targets and counts included).

    ``prefix_or_files``: the event prefix, any one of its files, or a dict kind -> path with
    kinds hits/cells/particles/truth (cells may be missing). ``cfg`` is a ``ConvertConfig`` (or
    dict) for the target selection.
    """
    from .convert import ConvertConfig, assemble_event, feature_dtype

    if cfg is None or isinstance(cfg, dict):
        cfg = from_dict(ConvertConfig, dict(cfg or {}, input_format="trackml"), "convert")
    if isinstance(prefix_or_files, dict):
        files = {k: (Path(v) if v is not None else None) for k, v in prefix_or_files.items()}
        files.setdefault("cells", None)
        for kind in ("hits", "particles", "truth"):
            if files.get(kind) is None:
                raise InputError(f"no {kind} file given", field=kind)
        prefix = files["hits"].with_name(_KIND.match(files["hits"].name).group("event"))
    else:
        files = event_files(prefix_or_files)
        prefix = files["hits"].with_name(_KIND.match(files["hits"].name).group("event"))
    evt = _event_number(prefix)
    key = f"{run_number}_{evt}"
    det_path = Path(detectors_path) if detectors_path is not None else find_detectors(files["hits"])

    hits_df = _read(files["hits"], "hits", key)
    parts_df = _read(files["particles"], "particles", key)
    truth_df = _read(files["truth"], "truth", key)
    det = load_detectors(det_path, key)
    n = len(hits_df)

    hit_id = hits_df["hit_id"].to_numpy(np.int64)
    x, y, z = (hits_df[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    for c, v in (("x", x), ("y", y), ("z", z)):
        if not np.all(np.isfinite(v)):
            raise InputError("non-finite coordinate", file=files["hits"], event=key, field=c)
    volume = hits_df["volume_id"].to_numpy(np.int64)
    layer = hits_df["layer_id"].to_numpy(np.int64)
    module = hits_df["module_id"].to_numpy(np.int64)
    unknown = ~np.isin(volume, list(BARREL_ENDCAP))
    if unknown.any():
        raise InputError(
            f"unknown volume_id {int(volume[unknown][0])}", file=files["hits"], event=key, field="volume_id"
        )
    # geometry of each hit's module
    hit_mod = _module_key(volume, layer, module)
    det_row = _rows_of(hit_mod, det.key, det_path, key, "module_id")
    if np.any(det_row < 0):
        raise InputError(
            f"hit module (volume, layer, module) = {(int(volume[det_row < 0][0]), int(layer[det_row < 0][0]), int(module[det_row < 0][0]))} not in {det_path.name}",
            file=files["hits"],
            event=key,
            field="module_id",
        )
    g = {c: v[det_row] for c, v in det.columns.items()}

    r, phi, eta = _cyl(x, y, z)
    cells_feat = None
    if files.get("cells") is not None:
        cells = _read(files["cells"], "cells", key)
        cell_hit = _rows_of(cells["hit_id"].to_numpy(np.int64), hit_id, files["hits"], key, "hit_id")
        if np.any(cell_hit < 0):
            raise InputError("cell of an unknown hit", file=files["cells"], event=key, field="hit_id")
        cells_feat = _cell_features(cells, cell_hit, n)
    if cells_feat is None:
        cells_feat = {k: np.full(n, np.nan) for k in ("mean0", "mean1", "span0", "span1")}
        cells_feat["count"] = np.zeros(n, np.int32)
        cells_feat["charge"] = np.zeros(n)
    thickness = 2.0 * g["module_t"]
    lu = cells_feat["span0"] * g["pitch_u"]
    lv = cells_feat["span1"] * g["pitch_v"]
    loc_phi = (cells_feat["mean0"] + 0.5) * g["pitch_u"] - g["module_maxhu"]
    loc_eta = (cells_feat["mean1"] + 0.5) * g["pitch_v"] - g["module_hv"]
    # local direction through the sensor -> global (rotation columns u, v, w)
    dx = g["rot_xu"] * lu + g["rot_xv"] * lv + g["rot_xw"] * thickness
    dy = g["rot_yu"] * lu + g["rot_yv"] * lv + g["rot_yw"] * thickness
    dz = g["rot_zu"] * lu + g["rot_zv"] * lv + g["rot_zw"] * thickness
    flip = np.where(dx * x + dy * y + dz * z < 0, -1.0, 1.0)  # point away from the origin
    dx, dy, dz = dx * flip, dy * flip, dz * flip
    has_cells = np.isfinite(lu) & np.isfinite(lv)
    with np.errstate(divide="ignore", invalid="ignore"):
        glob_eta = np.where(has_cells, np.arcsinh(dz / np.hypot(dx, dy)), eta)
    glob_phi = np.where(has_cells, np.arctan2(dy, dx), phi)

    hardware = (~np.isin(volume, PIXEL_VOLUMES)).astype(np.int32)
    be = np.vectorize(BARREL_ENDCAP.get, otypes=[np.int32])(volume) if n else np.zeros(0, np.int32)
    module_id = hit_mod
    clusters = {
        "cluster_id": hit_id,
        "hardware": hardware,
        "x": x,
        "y": y,
        "z": z,
        "barrel_endcap": be,
        "layer_disk": (layer // 2 - 1).astype(np.int32),
        "eta_module": det.eta_module[det_row],
        "phi_module": det.phi_module[det_row],
        "side": np.zeros(n, np.int32),
        "module_id": module_id,
        "pixel_count": cells_feat["count"],
        "charge_count": cells_feat["charge"].astype(np.float32),
        "loc_eta": np.nan_to_num(loc_eta),
        "loc_phi": np.nan_to_num(loc_phi),
        "glob_eta": glob_eta,
        "glob_phi": glob_phi,
        "eta_angle": np.nan_to_num(np.arctan2(lv, thickness)),
        "phi_angle": np.nan_to_num(np.arctan2(lu, thickness)),
        "norm_x": g["rot_xw"],
        "norm_y": g["rot_yw"],
        "norm_z": g["rot_zw"],
    }

    # particles
    pid = parts_df["particle_id"].to_numpy(np.int64).astype(np.uint64)
    subevent = (pid >> np.uint64(52)).astype(np.int32)
    secondary = (pid & np.uint64(0xFFFF)) != 0
    barcode = np.empty(len(pid), np.int32)
    for is_sec, base in ((False, 1), (True, SECONDARY_BARCODE + 1)):
        sel = np.flatnonzero(secondary == is_sec)
        # running number within the sub-event, in file order
        sub = subevent[sel]
        o = np.argsort(sub, kind="stable")
        first = np.r_[0, np.flatnonzero(sub[o][1:] != sub[o][:-1]) + 1]
        rank = np.arange(len(o)) - np.repeat(first, np.diff(np.r_[first, len(o)]))
        barcode[sel[o]] = base + rank
    px, py, pz = (parts_df[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
    vx, vy, vz = (parts_df[c].to_numpy(np.float64) for c in ("vx", "vy", "vz"))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_eta = np.arcsinh(pz / pt)
    pdg = (
        parts_df["particle_type"].to_numpy(np.int32)
        if "particle_type" in parts_df.columns
        else np.zeros(len(pid), np.int32)
    )
    particles = {
        "subevent": subevent,
        "barcode": barcode,
        "px": px,
        "py": py,
        "pz": pz,
        "pt": pt,
        "eta": p_eta,
        "phi": np.arctan2(py, px),
        "vx": vx,
        "vy": vy,
        "vz": vz,
        "radius": np.hypot(vx, vy),
        "charge": parts_df["q"].to_numpy(np.float64),
        "pdg_id": pdg,
        "status": np.ones(len(pid), np.int32),
        "is_primary": ~secondary,
        "jet_dr": np.full(len(pid), np.inf),
        "jet_pt": np.full(len(pid), np.nan),
        "particle_id": pid,
    }

    # truth: one particle per hit, 0 = noise
    t_hit = _rows_of(truth_df["hit_id"].to_numpy(np.int64), hit_id, files["hits"], key, "hit_id")
    if np.any(t_hit < 0):
        raise InputError("truth row of an unknown hit", file=files["truth"], event=key, field="hit_id")
    covered = np.zeros(n, bool)
    covered[t_hit] = True
    if not covered.all():
        missing = np.flatnonzero(~covered)
        raise InputError(
            f"hit_id {int(hit_id[missing[0]])} has no truth row ({len(missing)} hits without one)",
            file=files["truth"],
            event=key,
            field="hit_id",
        )
    t_pid = truth_df["particle_id"].to_numpy(np.int64).astype(np.uint64)
    t_part = _rows_of(t_pid, pid, files["particles"], key, "particle_id")
    dangling = np.flatnonzero((t_pid != 0) & (t_part < 0))
    if len(dangling):
        row = int(dangling[0])
        raise InputError(
            f"row {row} (line {row + 2}): particle_id {int(t_pid[row])} is not in "
            f"{files['particles'].name} ({len(dangling)} rows like this)",
            file=files["truth"],
            event=key,
            field="particle_id",
        )
    linked = t_pid != 0
    hit_particle = np.stack([t_hit[linked], t_part[linked]]).astype(np.int64)
    o = np.lexsort((hit_particle[1], hit_particle[0]))
    hit_particle = hit_particle[:, o]
    particle_index = np.full(n, -1, np.int64)
    particle_index[hit_particle[0]] = hit_particle[1]
    clusters["particle_index"] = particle_index

    hits = {
        "hit_id": hit_id,
        "x": x,
        "y": y,
        "z": z,
        "r": r,
        "phi": phi,
        "eta": eta,
        "module_id": module_id,
        "hardware": hardware,
        "barrel_endcap": be,
        "layer_disk": clusters["layer_disk"],
        "eta_module": clusters["eta_module"],
        "phi_module": clusters["phi_module"],
        "is_overlap": np.where(hardware == 0, -1, 0).astype(np.int32),
        "cluster_index_1": np.arange(n, dtype=np.int64),
        "cluster_index_2": np.full(n, -1, np.int64),
        "particle_index": particle_index,
        "volume_id": volume.astype(np.int32),
        "layer_id": layer.astype(np.int32),
    }
    feat = dict(clusters, r=r, phi=phi, eta=eta)
    for f in CLUSTER_FEATURES:
        hits[f"cl1_{f}"] = hits[f"cl2_{f}"] = feature_dtype(feat[f])

    no_jets = {"pt": np.zeros(0), "eta": np.zeros(0), "phi": np.zeros(0)}
    return assemble_event(
        run_number, evt, hits, clusters, particles, no_jets, hit_particle, cfg,
        source=prefix, validate_file=files["hits"],
    )  # fmt: skip


def _cyl(x, y, z):
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(z / r)
    return r, np.arctan2(y, x), eta
