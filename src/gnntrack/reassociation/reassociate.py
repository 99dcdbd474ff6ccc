"""Map track candidates back to clusters, ordered from the beam spot outward.

The GNN works on spacepoints, but the ATLAS track fit works on clusters (measurements): a pixel
spacepoint is one cluster, a strip spacepoint is two (one per sensor side). Each candidate's
clusters are collected, de-duplicated (two spacepoints of a track may share a strip cluster) and
ordered by increasing distance from the beam-spot origin so the fitter sees them in the order a
particle from the interaction region crosses them.

Outputs per tracks shard:

- ``outdir/track_<run>_<event>.csv``: one line per candidate, comma-separated cluster indices
  (``CLindex`` = ``clusters/cluster_id``), then ``|``, then comma-separated spacepoint indices
  (``SPindex`` = ``hits/hit_id``), both ordered by distance from the origin.
- ``outdir/<shard>.h5``: per event CSR tables of the ordered clusters (written last, so its
  presence marks a complete shard).

Everything is read and checked before anything is written, and the outputs are written into a
temporary folder that is renamed into place: a damaged input ends in an ``InputError`` naming
it and leaves no output folder (nor any partial file in an existing one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..config import from_dict
from ..io.errors import InputError
from ..io.event_store import Event, event_keys, read_event
from ..io.track_store import iter_tracks
from ..tracks import Tracks

#: the event columns re-association reads
_COLUMNS = {
    "hits": ("hit_id", "x", "y", "z", "cluster_index_1", "cluster_index_2"),
    "clusters": ("cluster_id", "x", "y", "z"),
}
FORMAT = "gnntrack-reassociated"
VERSION = 1


@dataclass
class ReassociationConfig:
    """origin: beam-spot position (x, y, z) in mm from which cluster distances are measured."""

    origin: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    def __post_init__(self) -> None:
        if len(self.origin) != 3:
            raise ValueError(f"origin must be (x, y, z), got {self.origin}")


@dataclass
class TrackClusters:
    """Ordered clusters and spacepoints of each candidate of one event (CSR)."""

    cluster_rows: np.ndarray  # rows into the event's clusters table
    cluster_offsets: np.ndarray
    cluster_distance: np.ndarray  # distance of each cluster from the origin (mm)
    hit_rows: np.ndarray  # rows into the hits table, ordered by distance
    hit_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.cluster_offsets) - 1


def _csr_sort(track: np.ndarray, item: np.ndarray, dist: np.ndarray, n_tracks: int):
    """Sort (track, item) pairs by track then distance, drop repeated items within a track."""
    order = np.lexsort((item, dist, track))
    track, item, dist = track[order], item[order], dist[order]
    if len(track):
        keep = np.r_[True, (track[1:] != track[:-1]) | (item[1:] != item[:-1])]
        # duplicates share their distance, so after the sort they are adjacent
        track, item, dist = track[keep], item[keep], dist[keep]
    offsets = np.zeros(n_tracks + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(track, minlength=n_tracks))
    return item.astype(np.int64), offsets, dist


def reassociate_event(event: Event, tracks: Tracks, origin=(0.0, 0.0, 0.0), file=None) -> TrackClusters:
    """Ordered, de-duplicated clusters of every candidate of ``event``."""
    t = tracks.numpy()
    n_tracks = len(t)
    origin = np.asarray(origin, dtype=np.float64)
    hits, clusters = event.hits, event.clusters
    n_clusters = len(clusters["cluster_id"])
    if len(t.hits) and (t.hits.min() < 0 or t.hits.max() >= event.n_hits):
        raise InputError(
            f"track hit rows outside [0, {event.n_hits})", file=file, event=event.key, field="hits"
        )
    track_of = t.track_index()
    cl1 = np.asarray(hits["cluster_index_1"], dtype=np.int64)[t.hits]
    cl2 = np.asarray(hits["cluster_index_2"], dtype=np.int64)[t.hits]
    for name, cl in (("cluster_index_1", cl1), ("cluster_index_2", cl2)):
        if len(cl) and cl.max() >= n_clusters:
            raise InputError(
                f"cluster row {cl.max()} outside the {n_clusters} clusters", file=file, event=event.key,
                field=f"hits/{name}",
            )  # fmt: skip
    cl_track = np.concatenate([track_of[cl1 >= 0], track_of[cl2 >= 0]])
    cl_rows = np.concatenate([cl1[cl1 >= 0], cl2[cl2 >= 0]])
    cxyz = np.stack([np.asarray(clusters[c], dtype=np.float64) for c in ("x", "y", "z")], axis=1)
    cl_dist = np.linalg.norm(cxyz[cl_rows] - origin, axis=1) if len(cl_rows) else np.zeros(0)
    cluster_rows, cluster_offsets, cluster_distance = _csr_sort(cl_track, cl_rows, cl_dist, n_tracks)

    hxyz = np.stack([np.asarray(hits[c], dtype=np.float64) for c in ("x", "y", "z")], axis=1)
    h_dist = np.linalg.norm(hxyz[t.hits] - origin, axis=1) if len(t.hits) else np.zeros(0)
    hit_rows, hit_offsets, _ = _csr_sort(track_of, t.hits, h_dist, n_tracks)
    return TrackClusters(
        cluster_rows, cluster_offsets, cluster_distance.astype(np.float32), hit_rows, hit_offsets
    )


def format_csv(event: Event, tc: TrackClusters) -> str:
    """The Athena track-reader CSV text: ``CLindex,...|SPindex,...`` per candidate."""
    cluster_id = np.asarray(event.clusters["cluster_id"], dtype=np.int64)[tc.cluster_rows]
    hit_id = np.asarray(event.hits["hit_id"], dtype=np.int64)[tc.hit_rows]
    lines = []
    for i in range(len(tc)):
        cls = cluster_id[tc.cluster_offsets[i] : tc.cluster_offsets[i + 1]]
        sps = hit_id[tc.hit_offsets[i] : tc.hit_offsets[i + 1]]
        lines.append(",".join(map(str, cls.tolist())) + "|" + ",".join(map(str, sps.tolist())))
    return "".join(line + "\n" for line in lines)


def run_reassociate(
    event_file: str | Path | Sequence[str | Path],
    tracks_file: str | Path,
    outdir: str | Path,
    cfg: ReassociationConfig | dict | None = None,
) -> None:
    """Re-associate every event of a tracks shard; write the CSVs and ``outdir/<shard>.h5``.

    ``event_file`` is the shard's events file (or several, searched for each event key).
    """
    cfg = (
        cfg if isinstance(cfg, ReassociationConfig) else from_dict(ReassociationConfig, cfg, "reassociation")
    )
    outdir = Path(outdir)
    records = list(iter_tracks(tracks_file))
    event_files = [event_file] if isinstance(event_file, (str, Path)) else list(event_file)
    index = {key: f for f in event_files for key in event_keys(f)}
    missing = [r.key for r in records if r.key not in index]
    if missing:
        raise InputError(
            f"tracks file {tracks_file} refers to event(s) missing from the events file(s): {missing[:5]}",
            file=event_files[0] if len(event_files) == 1 else None,
            event=missing[0],
        )
    events = {
        r.key: read_event(index[r.key], r.key, tables=tuple(_COLUMNS), columns=_COLUMNS) for r in records
    }
    results = []
    for rec in records:
        ev = events[rec.key]
        if rec.n_hits != ev.n_hits:
            raise InputError(
                f"tracks were built on {rec.n_hits} hits but the event has {ev.n_hits}",
                file=tracks_file, event=rec.key, field="n_hits",
            )  # fmt: skip
        for table, columns in _COLUMNS.items():
            have = getattr(ev, table)
            for column in columns:
                if column not in have or len(have[column]) != len(have[columns[0]]):
                    raise InputError(
                        "missing column or wrong length", file=index[rec.key], event=ev.key,
                        field=f"{table}/{column}",
                    )  # fmt: skip
        results.append((ev, reassociate_event(ev, rec.tracks, cfg.origin, file=tracks_file)))
    with _atomic_dir(outdir) as tmpdir:
        _write_outputs(tmpdir, Path(tracks_file).stem, results, cfg)


@contextlib.contextmanager
def _atomic_dir(outdir: Path):
    """Yield a temporary folder beside ``outdir``; its files appear in ``outdir`` only if the block
    succeeds (the whole folder renamed into place, or each file renamed into an existing one,
    the shard file last). On failure nothing is left behind."""
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = outdir.with_name(f".{outdir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmpdir, ignore_errors=True)
    tmpdir.mkdir()
    try:
        yield tmpdir
        if not outdir.exists():
            os.replace(tmpdir, outdir)
            return
        files = sorted(tmpdir.iterdir(), key=lambda p: (p.suffix == ".h5", p.name))
        for src in files:
            os.replace(src, outdir / src.name)
        tmpdir.rmdir()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _write_outputs(outdir: Path, shard: str, results, cfg: ReassociationConfig) -> None:
    for ev, tc in results:
        (outdir / f"track_{ev.run_number}_{ev.event_number}.csv").write_text(format_csv(ev, tc))
    with h5py.File(outdir / f"{shard}.h5", "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["origin"] = np.asarray(cfg.origin, dtype=np.float64)
        root = f.create_group("events")
        for ev, tc in results:
            g = root.create_group(ev.key)
            g.attrs["run_number"] = int(ev.run_number)
            g.attrs["event_number"] = int(ev.event_number)
            g.create_dataset("cluster_rows", data=tc.cluster_rows)
            g.create_dataset(
                "cluster_id", data=np.asarray(ev.clusters["cluster_id"], np.int64)[tc.cluster_rows]
            )
            g.create_dataset("cluster_distance", data=tc.cluster_distance)
            g.create_dataset("offsets", data=tc.cluster_offsets)
            g.create_dataset("hit_rows", data=tc.hit_rows)
            g.create_dataset("hit_id", data=np.asarray(ev.hits["hit_id"], np.int64)[tc.hit_rows])
            g.create_dataset("hit_offsets", data=tc.hit_offsets)
