"""The per-shard HDF5 tracks file: track candidates of each event, the scored graph and timings.

Layout::

    /                       attrs: format="gnntrack-tracks", version
    /tracks/<key>/          attrs: n_hits, run_number, event_number (when known); <key> = event key
        hits                    (H,) int64 hit rows of all candidates, concatenated
        offsets                 (T+1,) int64: candidate i is hits[offsets[i]:offsets[i+1]]
        edge_index              optional (2, E) int64: the final scored graph the tracks came from
        scores                  optional (E,) float32 edge scores of that graph
    /timing/<key>           attrs: stage -> seconds for that event (data_loading, ..., total)

Hit rows index the ``hits`` table of the event in the events file of the same shard. Keeping the
scored graph lets evaluation compute the truth-CC upper bound on exactly the graph the tracks
were built from; keeping per-event timings lets the report build the per-stage timing table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..track_building.tracks import Tracks
from .atomic import atomic_output
from .errors import InputError
from .hdf5 import open_store

FORMAT = "gnntrack-tracks"
VERSION = 1


@dataclass
class TrackRecord:
    """One event's entry of a tracks file."""

    key: str
    tracks: Tracks
    n_hits: int
    edge_index: np.ndarray | None = None
    scores: np.ndarray | None = None
    timing: dict[str, float] = field(default_factory=dict)
    run_number: int | None = None
    event_number: int | None = None


def _as_record(item) -> TrackRecord:
    if isinstance(item, TrackRecord):
        return item
    if isinstance(item, dict):
        try:
            return TrackRecord(**item)
        except TypeError as exc:
            raise ValueError(f"cannot build a TrackRecord from keys {sorted(item)}: {exc}") from None
    raise TypeError(f"expected a TrackRecord or dict, got {type(item).__name__}")


def write_tracks(path: str | Path, items: Iterable[TrackRecord | dict]) -> None:
    """Write a shard's track records atomically (``items``: TrackRecord or dicts of its fields)."""
    records = [_as_record(it) for it in items]
    keys = [r.key for r in records]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate event keys in tracks to write")
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        root = f.create_group("tracks")
        timing_root = f.create_group("timing")
        for rec in records:
            t = rec.tracks.numpy()
            _check_csr(t.hits, t.offsets, rec.n_hits, path, rec.key)
            g = root.create_group(rec.key)
            g.attrs["n_hits"] = int(rec.n_hits)
            if rec.run_number is not None:
                g.attrs["run_number"] = int(rec.run_number)
            if rec.event_number is not None:
                g.attrs["event_number"] = int(rec.event_number)
            g.create_dataset("hits", data=np.asarray(t.hits, dtype=np.int64))
            g.create_dataset("offsets", data=np.asarray(t.offsets, dtype=np.int64))
            if rec.edge_index is not None:
                ei = _np(rec.edge_index).astype(np.int64).reshape(2, -1)
                g.create_dataset("edge_index", data=ei)
                if rec.scores is not None:
                    sc = _np(rec.scores).astype(np.float32).ravel()
                    if len(sc) != ei.shape[1]:
                        raise ValueError(f"event {rec.key}: {len(sc)} scores for {ei.shape[1]} edges")
                    g.create_dataset("scores", data=sc)
            tg = timing_root.create_group(rec.key)
            for stage, seconds in rec.timing.items():
                tg.attrs[stage] = float(seconds)


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _check_csr(hits, offsets, n_hits, path, key) -> None:
    if offsets.ndim != 1 or len(offsets) < 1:
        raise InputError("offsets must be a non-empty 1-D array", file=path, event=key, field="offsets")
    if offsets[0] != 0 or offsets[-1] != len(hits) or np.any(np.diff(offsets) < 0):
        raise InputError(
            f"offsets are not a CSR index of {len(hits)} hits", file=path, event=key, field="offsets"
        )
    if len(hits) and (hits.min() < 0 or hits.max() >= n_hits):
        raise InputError(f"hit rows outside [0, {n_hits})", file=path, event=key, field="hits")


def _open(path: str | Path) -> h5py.File:
    f = open_store(path, FORMAT)
    if "tracks" not in f:
        f.close()
        raise InputError(f"not a {FORMAT} file", file=path, field="tracks")
    return f


def track_keys(path: str | Path) -> list[str]:
    with _open(path) as f:
        return list(f["tracks"].keys())


def _read_record(path, f: h5py.File, key: str) -> TrackRecord:
    g = f["tracks"][key]
    for name in ("hits", "offsets"):
        if name not in g:
            raise InputError("missing dataset", file=path, event=key, field=name)
    if "n_hits" not in g.attrs:
        raise InputError("missing attribute", file=path, event=key, field="n_hits")
    hits = np.asarray(g["hits"][()], dtype=np.int64)
    offsets = np.asarray(g["offsets"][()], dtype=np.int64)
    n_hits = int(g.attrs["n_hits"])
    _check_csr(hits, offsets, n_hits, path, key)
    edge_index = scores = None
    if "edge_index" in g:
        edge_index = np.asarray(g["edge_index"][()], dtype=np.int64)
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise InputError(
                f"shape {edge_index.shape} is not (2, E)", file=path, event=key, field="edge_index"
            )
        if "scores" in g:
            scores = np.asarray(g["scores"][()], dtype=np.float32)
            if scores.shape != (edge_index.shape[1],):
                raise InputError(
                    f"{scores.shape} scores for {edge_index.shape[1]} edges",
                    file=path,
                    event=key,
                    field="scores",
                )
    timing = {}
    if "timing" in f and key in f["timing"]:
        timing = {k: float(v) for k, v in f["timing"][key].attrs.items()}
    return TrackRecord(
        key=key,
        tracks=Tracks(hits, offsets),
        n_hits=n_hits,
        edge_index=edge_index,
        scores=scores,
        timing=timing,
        run_number=int(g.attrs["run_number"]) if "run_number" in g.attrs else None,
        event_number=int(g.attrs["event_number"]) if "event_number" in g.attrs else None,
    )


def iter_tracks(path: str | Path, keys: list[str] | None = None) -> Iterator[TrackRecord]:
    """Yield the records of a tracks file in file order (or ``keys`` order)."""
    with _open(path) as f:
        root = f["tracks"]
        for key in keys if keys is not None else list(root.keys()):
            if key not in root:
                raise InputError("no such event in file", file=path, event=key)
            yield _read_record(path, f, key)


def read_tracks(path: str | Path, keys: list[str] | None = None) -> list[TrackRecord]:
    return list(iter_tracks(path, keys))


def read_timing(path: str | Path) -> dict[str, dict[str, float]]:
    """Event key -> {stage: seconds} of a tracks file."""
    with _open(path) as f:
        if "timing" not in f:
            return {}
        return {k: {s: float(v) for s, v in g.attrs.items()} for k, g in f["timing"].items()}
