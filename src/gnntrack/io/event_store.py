"""The per-shard HDF5 event file: the one format every stage after ``convert`` reads.

Layout (one file per shard)::

    /                      attrs: format="gnntrack-events", version, units
    /events/<key>/         attrs: run_number, event_number; <key> = f"{run}_{event}"
        hits/<column>          one dataset per column, length n_hits (spacepoints)
        clusters/<column>      length n_clusters
        particles/<column>     length n_particles
        jets/<column>          length n_jets
        truth/edges            (2, E) int64 hit rows, directed inner -> outer along the particle
        truth/edge_particle    (E,) int64 particle row of each true edge
        truth/hit_particle     (2, L) int64 (hit row, particle row): every truth link of a hit

Units: lengths in mm, momenta and energies in GeV (converted from the ATLAS MeV at read time),
angles in rad. Column names are listed in ``HIT_COLUMNS`` etc.; extra columns are allowed and
round-trip, missing required ones are an ``InputError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_output
from .errors import InputError
from .hdf5 import DIGEST_ATTRS, SealedWriter, VerifiedReader, open_verified, read_errors

FORMAT = "gnntrack-events"
VERSION = 1
UNITS = "length=mm momentum=GeV angle=rad"

#: Cluster features copied onto each spacepoint for both of its clusters (cl1_*, cl2_*).
#: For pixel spacepoints cl2_* repeats cl1_*, as acorn does.
CLUSTER_FEATURES = (
    "x", "y", "z", "r", "phi", "eta",
    "pixel_count", "charge_count", "loc_eta", "loc_phi",
    "glob_eta", "glob_phi", "eta_angle", "phi_angle",
)  # fmt: skip

HIT_COLUMNS = (
    "hit_id",  # SPindex
    "x", "y", "z", "r", "phi", "eta",
    "module_id",  # uint64 module of cluster 1
    "hardware",  # 0 pixel, 1 strip
    "barrel_endcap", "layer_disk", "eta_module", "phi_module",
    "is_overlap",
    "cluster_index_1", "cluster_index_2",  # rows into clusters, -1 if none
    "particle_index",  # row into particles of the first truth link, -1 noise/ghost/fake
    *(f"cl1_{c}" for c in CLUSTER_FEATURES),
    *(f"cl2_{c}" for c in CLUSTER_FEATURES),
)  # fmt: skip

CLUSTER_COLUMNS = (
    "cluster_id",  # CLindex
    "hardware", "x", "y", "z", "barrel_endcap", "layer_disk", "eta_module", "phi_module",
    "side", "module_id", "pixel_count", "charge_count", "loc_eta", "loc_phi",
    "glob_eta", "glob_phi", "eta_angle", "phi_angle", "norm_x", "norm_y", "norm_z",
    "particle_index",  # first truth link, -1 if none
)  # fmt: skip

PARTICLE_COLUMNS = (
    "subevent", "barcode", "px", "py", "pz", "pt", "eta", "phi", "vx", "vy", "vz",
    "radius", "charge", "pdg_id", "status",
    "is_primary",  # barcode < 200000
    "n_spacepoints", "n_modules",
    "is_target",  # the target selection of the convert config
    "jet_dr",  # Delta R to the nearest truth jet (inf if none)
    "jet_pt",  # pT of that jet (GeV, nan if none)
)  # fmt: skip

JET_COLUMNS = ("pt", "eta", "phi")

TABLES = {
    "hits": HIT_COLUMNS,
    "clusters": CLUSTER_COLUMNS,
    "particles": PARTICLE_COLUMNS,
    "jets": JET_COLUMNS,
}


@dataclass
class Event:
    """One event's tables as column dicts of numpy arrays."""

    run_number: int
    event_number: int
    hits: dict[str, np.ndarray]
    clusters: dict[str, np.ndarray]
    particles: dict[str, np.ndarray]
    jets: dict[str, np.ndarray]
    truth_edges: np.ndarray  # (2, E) int64
    truth_edge_particle: np.ndarray  # (E,) int64
    hit_particle: np.ndarray  # (2, L) int64
    attrs: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return event_key(self.run_number, self.event_number)

    @property
    def n_hits(self) -> int:
        return len(self.hits["hit_id"])

    def validate(self, file=None) -> None:
        """Raise InputError unless every table is complete, rectangular and finite."""
        for table, columns in TABLES.items():
            data = getattr(self, table)
            missing = [c for c in columns if c not in data]
            if missing:
                raise InputError(
                    f"missing column(s) {missing} in table {table}",
                    file=file,
                    event=self.key,
                    field=f"{table}/{missing[0]}",
                )
            lengths = {c: len(v) for c, v in data.items()}
            if len(set(lengths.values())) > 1:
                ref = columns[0]
                bad = next(c for c, n in lengths.items() if n != lengths[ref])
                raise InputError(
                    f"column length {lengths[bad]} != {lengths[ref]} of {table}/{ref}",
                    file=file,
                    event=self.key,
                    field=f"{table}/{bad}",
                )
        for c in ("x", "y", "z"):
            if not np.all(np.isfinite(self.hits[c])):
                raise InputError("non-finite coordinate", file=file, event=self.key, field=f"hits/{c}")
        n = self.n_hits
        for name, arr in (("truth/edges", self.truth_edges), ("truth/hit_particle", self.hit_particle)):
            if arr.ndim != 2 or arr.shape[0] != 2:
                raise InputError(f"shape {arr.shape} is not (2, N)", file=file, event=self.key, field=name)
        if self.truth_edges.size and (self.truth_edges.min() < 0 or self.truth_edges.max() >= n):
            raise InputError("hit index out of range", file=file, event=self.key, field="truth/edges")


def event_key(run_number: int, event_number: int) -> str:
    return f"{int(run_number)}_{int(event_number)}"


def write_events(path: str | Path, events: list[Event], compression: str | None = None) -> None:
    """Write a shard atomically; ``compression`` may be None, "lzf" or "gzip".

    Every dataset and group carries a content digest (``hdf5.SealedWriter``) that readers check.
    """
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        w = SealedWriter(f)
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["units"] = UNITS
        root = w.group(f, "events")
        for ev in events:
            g = w.group(root, ev.key)
            g.attrs["run_number"] = int(ev.run_number)
            g.attrs["event_number"] = int(ev.event_number)
            for k, v in ev.attrs.items():
                g.attrs[k] = v
            for table in TABLES:
                tg = w.group(g, table)
                for col, arr in getattr(ev, table).items():
                    w.dataset(tg, col, np.asarray(arr), compression=compression)
            t = w.group(g, "truth")
            w.dataset(t, "edges", np.asarray(ev.truth_edges, dtype=np.int64))
            w.dataset(t, "edge_particle", np.asarray(ev.truth_edge_particle, dtype=np.int64))
            w.dataset(t, "hit_particle", np.asarray(ev.hit_particle, dtype=np.int64))
        w.seal()


def event_keys(path: str | Path) -> list[str]:
    with open_verified(path, FORMAT) as r:
        return r.names(r.group(r.f, "events"))


def _read_event(
    r: VerifiedReader, root: h5py.Group, key: str, tables=None, columns=None, truth=True
) -> Event:
    path = r.path
    with read_errors(path, key):
        if key not in root:
            raise InputError("no such event in file", file=path, event=key)
    g = r.group(root, key, event=key)
    data = {}
    for table in TABLES:
        if tables is not None and table not in tables:
            data[table] = {}
            continue
        wanted = columns.get(table) if columns else None
        tg = r.group(g, table, event=key)
        names = [c for c in r.names(tg, key) if wanted is None or c in wanted]
        data[table] = {c: r.read(tg, c, event=key, field=f"{table}/{c}") for c in names}
    if truth:
        t = r.group(g, "truth", event=key)
        edges, edge_particle, hit_particle = (
            r.read(t, name, event=key, field=f"truth/{name}")
            for name in ("edges", "edge_particle", "hit_particle")
        )
    else:
        edges, hit_particle = np.zeros((2, 0), np.int64), np.zeros((2, 0), np.int64)
        edge_particle = np.zeros(0, np.int64)
    with read_errors(path, key):
        attrs = {k: v for k, v in g.attrs.items() if k not in ("run_number", "event_number", *DIGEST_ATTRS)}
        run_number, event_number = int(g.attrs["run_number"]), int(g.attrs["event_number"])
    return Event(
        run_number=run_number,
        event_number=event_number,
        truth_edges=edges,
        truth_edge_particle=edge_particle,
        hit_particle=hit_particle,
        attrs=attrs,
        **data,
    )


def iter_events(
    path: str | Path, keys: list[str] | None = None, tables=None, columns=None, truth: bool = True
) -> Iterator[Event]:
    """Yield events of a shard in file order (or in ``keys`` order).

    ``tables`` limits which tables are read, ``columns`` ({table: names}) which columns of them
    (absent names are skipped, not an error: callers validate what they need), and
    ``truth=False`` skips the truth links. Inference reads only what its models need: every
    column is a separately compressed dataset, and decompression dominates reading an event.
    Only what is read is checked against its content digest; a damaged or unreadable file is an
    InputError naming the file, event and field.
    """
    with open_verified(path, FORMAT) as r:
        root = r.group(r.f, "events")
        for key in keys if keys is not None else r.names(root):
            yield _read_event(r, root, key, tables, columns, truth)


def read_events(
    path: str | Path, keys: list[str] | None = None, tables=None, columns=None, truth: bool = True
) -> list[Event]:
    return list(iter_events(path, keys, tables, columns, truth))


def read_event(path: str | Path, key: str, tables=None, columns=None, truth: bool = True) -> Event:
    return next(iter_events(path, [key], tables, columns, truth))
