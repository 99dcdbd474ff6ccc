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

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..tracks import Tracks
from .atomic import atomic_output
from .errors import InputError
from .hdf5 import DIGEST_ATTRS, SealedWriter, VerifiedReader, open_verified, read_errors

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
        w = SealedWriter(f)
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        root = w.group(f, "tracks")
        timing_root = w.group(f, "timing")
        for rec in records:
            t = rec.tracks.numpy()
            _check_csr(t.hits, t.offsets, rec.n_hits, path, rec.key)
            g = w.group(root, rec.key)
            g.attrs["n_hits"] = int(rec.n_hits)
            if rec.run_number is not None:
                g.attrs["run_number"] = int(rec.run_number)
            if rec.event_number is not None:
                g.attrs["event_number"] = int(rec.event_number)
            w.dataset(g, "hits", np.asarray(t.hits, dtype=np.int64))
            w.dataset(g, "offsets", np.asarray(t.offsets, dtype=np.int64))
            if rec.edge_index is not None:
                ei = _np(rec.edge_index).astype(np.int64).reshape(2, -1)
                w.dataset(g, "edge_index", ei)
                if rec.scores is not None:
                    sc = _np(rec.scores).astype(np.float32).ravel()
                    if len(sc) != ei.shape[1]:
                        raise ValueError(f"event {rec.key}: {len(sc)} scores for {ei.shape[1]} edges")
                    w.dataset(g, "scores", sc)
            tg = w.group(timing_root, rec.key)
            for stage, seconds in rec.timing.items():
                tg.attrs[stage] = float(seconds)
        w.seal()


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


@contextlib.contextmanager
def _open(path: str | Path) -> Iterator[VerifiedReader]:
    with open_verified(path, FORMAT) as r:
        with read_errors(path):
            if "tracks" not in r.f:
                raise InputError(f"not a {FORMAT} file", file=path, field="tracks")
        yield r


def track_keys(path: str | Path) -> list[str]:
    with _open(path) as r:
        return r.names(r.group(r.f, "tracks"))


def _timing(r: VerifiedReader, key: str) -> dict[str, float]:
    with read_errors(r.path, key, "timing"):
        if "timing" not in r.f or key not in r.f["timing"]:
            return {}
    tg = r.group(r.group(r.f, "timing"), key, event=key, field="timing")
    with read_errors(r.path, key, "timing"):
        return {k: float(v) for k, v in tg.attrs.items() if k not in DIGEST_ATTRS}


def _read_record(r: VerifiedReader, key: str) -> TrackRecord:
    path = r.path
    g = r.group(r.group(r.f, "tracks"), key, event=key)
    with read_errors(path, key):
        names = set(r.names(g, key))
        attrs = {k: g.attrs[k] for k in ("n_hits", "run_number", "event_number") if k in g.attrs}
        if "n_hits" not in attrs:
            raise InputError("missing attribute", file=path, event=key, field="n_hits")
        n_hits = int(attrs["n_hits"])
        run_number = int(attrs["run_number"]) if "run_number" in attrs else None
        event_number = int(attrs["event_number"]) if "event_number" in attrs else None
    for name in ("hits", "offsets"):
        if name not in names:
            raise InputError("missing dataset", file=path, event=key, field=name)
    hits = np.asarray(r.read(g, "hits", event=key, field="hits"), dtype=np.int64)
    offsets = np.asarray(r.read(g, "offsets", event=key, field="offsets"), dtype=np.int64)
    _check_csr(hits, offsets, n_hits, path, key)
    edge_index = scores = None
    if "edge_index" in names:
        edge_index = np.asarray(r.read(g, "edge_index", event=key, field="edge_index"), dtype=np.int64)
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise InputError(
                f"shape {edge_index.shape} is not (2, E)", file=path, event=key, field="edge_index"
            )
        if "scores" in names:
            scores = np.asarray(r.read(g, "scores", event=key, field="scores"), dtype=np.float32)
            if scores.shape != (edge_index.shape[1],):
                raise InputError(
                    f"{scores.shape} scores for {edge_index.shape[1]} edges",
                    file=path,
                    event=key,
                    field="scores",
                )
    return TrackRecord(
        key=key,
        tracks=Tracks(hits, offsets),
        n_hits=n_hits,
        edge_index=edge_index,
        scores=scores,
        timing=_timing(r, key),
        run_number=run_number,
        event_number=event_number,
    )


def iter_tracks(path: str | Path, keys: list[str] | None = None) -> Iterator[TrackRecord]:
    """Yield the records of a tracks file in file order (or ``keys`` order).

    A damaged file (content not matching its digest, unreadable HDF5) is an InputError naming it.
    """
    with _open(path) as r:
        root = r.group(r.f, "tracks")
        for key in keys if keys is not None else r.names(root):
            with read_errors(path, key):
                if key not in root:
                    raise InputError("no such event in file", file=path, event=key)
            yield _read_record(r, key)


def read_tracks(path: str | Path, keys: list[str] | None = None) -> list[TrackRecord]:
    return list(iter_tracks(path, keys))


def read_timing(path: str | Path) -> dict[str, dict[str, float]]:
    """Event key -> {stage: seconds} of a tracks file."""
    with _open(path) as r:
        with read_errors(path, field="timing"):
            if "timing" not in r.f:
                return {}
        return {k: _timing(r, k) for k in r.names(r.group(r.f, "timing"))}
