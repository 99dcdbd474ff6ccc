"""Write events in the GNN4ITk in-memory form (``io/gnn4itk_schema.py``) as a ROOT TTree or RNTuple.

uproot (5.x) cannot write ``vector<string>`` nor ``vector<vector<int>>`` into a TTree, the ATLAS
types of ``CLhardware`` and ``CLparticleLink_*``. A TTree therefore stores them in the closest
faithful encoding that keeps every byte of information, and ``root_reader`` accepts both this and
the real types (an RNTuple has them: it is written with the ATLAS types):

- ``CLhardware`` -> ``CLhardware_len`` (per cluster: string length) and ``CLhardware_chars``
  (per event: the ASCII bytes of all cluster strings concatenated);
- ``CLparticleLink_eventIndex/_barcode`` -> ``CLparticleLink_n`` (per cluster: number of links)
  and ``CLparticleLink_eventIndex_flat`` / ``CLparticleLink_barcode_flat`` (per event: all links,
  cluster-major).

Branches of one object type share one counter (``nPart``, ``nSP``, ``nCL``, ``nCLlink``,
``nCLchar``, ``nJet``), like the implicit size of the ``std::vector`` branches of a real dump.

Every entry carries ``gnntrack_crc32``, a CRC-32 of its content (``event_checksum``): ROOT
stores a basket or page uncompressed when compression does not shrink it, and such data have no
check of their own, so a flipped bit there would otherwise be read as a different valid value.
``root_reader`` verifies it whenever the branch is present (real dumps do not have it).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from .atomic import atomic_output
from .errors import InputError
from .gnn4itk_schema import (
    CLUSTER_BRANCHES,
    CLUSTER_LINK_BRANCHES,
    EVENT_BRANCHES,
    JET_BRANCHES,
    PARTICLE_BRANCHES,
    SPACEPOINT_BRANCHES,
    TREE_NAME,
)


@contextlib.contextmanager
def _reproducible_header(name: str) -> Iterator:
    """Make the file bytes a function of its content: the same seed gives the same file.

    ROOT headers carry UUIDs and creation/modification times. We derive the UUIDs from the file
    name and the time stamps from ``SOURCE_DATE_EPOCH`` (the reproducible-builds convention;
    default 2000-01-01), by swapping uproot's time encoder while this file is written.
    """
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", 946684800))
    frozen = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).replace(tzinfo=None)
    util = uproot._util
    original = util.datetime_to_code
    frozen_code = original(frozen)
    counter = itertools.count()
    util.datetime_to_code = lambda dt: frozen_code  # every ROOT time stamp goes through this
    try:
        yield lambda: uuid.uuid5(uuid.NAMESPACE_URL, f"gnntrack:{name}:{next(counter)}")
    finally:
        util.datetime_to_code = original


#: Names of the encoded branches (shared with the reader).
HARDWARE_LEN = "CLhardware_len"
HARDWARE_CHARS = "CLhardware_chars"
LINK_COUNT = "CLparticleLink_n"
LINK_FLAT = {name: f"{name}_flat" for name in CLUSTER_LINK_BRANCHES}

_NUMERIC_CLUSTER = {k: v for k, v in CLUSTER_BRANCHES.items() if k != "CLhardware"}

#: Per-entry CRC-32 of the event's content.
CHECKSUM = "gnntrack_crc32"

#: What the checksum covers, in this order and these types: every branch in the encoding-free
#: form (hardware strings as lengths + characters, links as per-cluster counts + flat values).
CHECKSUM_FIELDS = {
    **EVENT_BRANCHES,
    **PARTICLE_BRANCHES,
    **SPACEPOINT_BRANCHES,
    **_NUMERIC_CLUSTER,
    HARDWARE_LEN: np.int32,
    HARDWARE_CHARS: np.uint8,
    LINK_COUNT: np.int32,
    **{LINK_FLAT[k]: v for k, v in CLUSTER_LINK_BRANCHES.items()},
    **JET_BRANCHES,
}


def event_checksum(values: Mapping) -> int:
    """CRC-32 of one event given as {name: value} for the names of ``CHECKSUM_FIELDS``.

    Names absent from ``values`` are skipped; each value is cast to its type and hashed with its
    name and length, so moving data between branches or entries changes the sum.
    """
    crc = 0
    for name, dtype in CHECKSUM_FIELDS.items():
        if name not in values:
            continue
        a = np.ascontiguousarray(np.asarray(values[name], dtype=dtype).reshape(-1))
        crc = zlib.crc32(f"{name}[{a.size}]".encode(), crc)
        crc = zlib.crc32(a.view(np.uint8).data, crc)
    return crc


#: record name (-> counter "n<record>") -> {branch: dtype}
_GROUPS = {
    "Part": PARTICLE_BRANCHES,
    "SP": SPACEPOINT_BRANCHES,
    "CL": {**_NUMERIC_CLUSTER, HARDWARE_LEN: np.int32, LINK_COUNT: np.int32},
    "CLlink": {LINK_FLAT[k]: v for k, v in CLUSTER_LINK_BRANCHES.items()},
    "CLchar": {HARDWARE_CHARS: np.uint8},
    "Jet": JET_BRANCHES,
}

_OBJECT_GROUPS = {"particles": PARTICLE_BRANCHES, "spacepoints": SPACEPOINT_BRANCHES}


def _event_label(ev: Mapping, i: int):
    if "run_number" in ev and "event_number" in ev:
        return f"{int(ev['run_number'])}_{int(ev['event_number'])}"
    return f"#{i}"


def encode_links(links, n_clusters: int, path, label, name) -> tuple[np.ndarray, np.ndarray]:
    """(per-cluster counts, flat values) of a ``vector<vector<int>>`` given as a list of arrays."""
    if isinstance(links, ak.Array):
        counts = np.asarray(ak.num(links, axis=1), dtype=np.int32)
        flat = np.asarray(ak.flatten(links, axis=1), dtype=np.int32)
    else:
        counts = np.fromiter(map(len, links), dtype=np.int32, count=len(links))
        flat = np.concatenate(links).astype(np.int32, copy=False) if len(links) else np.zeros(0, np.int32)
        if flat.ndim != 1 or len(flat) != counts.sum():
            raise InputError(
                "expected one 1-D array of links per cluster", file=path, event=label, field=name
            )
    if len(counts) != n_clusters:
        raise InputError(
            f"{len(counts)} entries for {n_clusters} clusters", file=path, event=label, field=name
        )
    return counts, flat


def _encode_hardware(hw, n_clusters: int, path, label) -> tuple[np.ndarray, np.ndarray]:
    """(per-cluster string length, concatenated ASCII bytes), vectorised over 10^5 clusters."""
    strings = np.asarray(hw)
    if strings.dtype.kind not in "US":
        strings = strings.astype(str)
    if strings.shape != (n_clusters,):
        raise InputError(
            f"{strings.shape} entries for {n_clusters} clusters", file=path, event=label, field="CLhardware"
        )
    try:
        raw = strings.astype(f"S{max(strings.dtype.itemsize // (4 if strings.dtype.kind == 'U' else 1), 1)}")
    except UnicodeEncodeError:
        raise InputError("non-ASCII hardware name", file=path, event=label, field="CLhardware") from None
    width = raw.dtype.itemsize
    lengths = np.char.str_len(raw).astype(np.int32)
    table = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(n_clusters, width)
    chars = table[np.arange(width)[None, :] < lengths[:, None]]
    return lengths, chars


def _columns(ev: Mapping, i: int, path) -> dict[str, dict[str, np.ndarray] | np.ndarray]:
    """Check one event and lay it out as {record: {branch: array}} plus event scalars."""
    label = _event_label(ev, i)
    out: dict = {}
    for name, dtype in EVENT_BRANCHES.items():
        if name not in ev:
            raise InputError("missing branch", file=path, event=label, field=name)
        out[name] = np.asarray([ev[name]], dtype=dtype)

    def column(name, dtype, n=None):
        if name not in ev:
            raise InputError("missing branch", file=path, event=label, field=name)
        arr = np.asarray(ev[name])
        if arr.ndim != 1:
            raise InputError(
                f"expected a 1-D array, got shape {arr.shape}", file=path, event=label, field=name
            )
        if n is not None and len(arr) != n:
            raise InputError(
                f"length {len(arr)} != {n} of its object type", file=path, event=label, field=name
            )
        return arr.astype(dtype, copy=False)

    for record, branches in (("Part", PARTICLE_BRANCHES), ("SP", SPACEPOINT_BRANCHES)):
        first = next(iter(branches))
        n = len(column(first, branches[first]))
        out[record] = {b: column(b, dt, n) for b, dt in branches.items()}

    n_cl = len(column("CLindex", np.int32))
    cl = {b: column(b, dt, n_cl) for b, dt in _NUMERIC_CLUSTER.items()}
    if "CLhardware" not in ev:
        raise InputError("missing branch", file=path, event=label, field="CLhardware")
    cl[HARDWARE_LEN], chars = _encode_hardware(ev["CLhardware"], n_cl, path, label)
    link_flat = {}
    counts_ref = None
    for name in CLUSTER_LINK_BRANCHES:
        if name not in ev:
            raise InputError("missing branch", file=path, event=label, field=name)
        counts, flat = encode_links(ev[name], n_cl, path, label, name)
        if counts_ref is not None and not np.array_equal(counts, counts_ref):
            raise InputError(
                "per-cluster link counts differ from CLparticleLink_eventIndex",
                file=path,
                event=label,
                field=name,
            )
        counts_ref = counts
        link_flat[LINK_FLAT[name]] = flat
    cl[LINK_COUNT] = counts_ref
    out["CL"] = cl
    out["CLlink"] = link_flat
    out["CLchar"] = {HARDWARE_CHARS: chars}

    if any(b in ev for b in JET_BRANCHES):
        n_jet = len(column("Jet_pt", np.float32))
        out["Jet"] = {b: column(b, dt, n_jet) for b, dt in JET_BRANCHES.items()}
    else:
        out["Jet"] = {b: np.zeros(0, dt) for b, dt in JET_BRANCHES.items()}
    flat = {name: out[name] for name in EVENT_BRANCHES}
    for record in _GROUPS:
        flat.update(out[record])
    out[CHECKSUM] = np.asarray([event_checksum(flat)], np.uint32)
    return out


def _branch_types() -> dict:
    types = {name: np.dtype(dt) for name, dt in EVENT_BRANCHES.items()}
    for record, branches in _GROUPS.items():
        fields = ", ".join(f"{b}: {np.dtype(dt).name}" for b, dt in branches.items())
        types[record] = ak.types.from_datashape(f"var * {{{fields}}}", highlevel=False)
    types[CHECKSUM] = np.dtype(np.uint32)
    return types


def _list(content, counts: np.ndarray, parameters=None):
    """An awkward list layout of ``content`` split by ``counts``."""
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return ak.contents.ListOffsetArray(ak.index.Index64(offsets), content, parameters=parameters)


def _rntuple_fields() -> dict:
    """RNTuple field types: the ATLAS types, ``vector<string>`` and ``vector<vector<int>>`` included."""
    types = {name: np.dtype(dt) for name, dt in EVENT_BRANCHES.items()}
    for branches in (PARTICLE_BRANCHES, SPACEPOINT_BRANCHES, CLUSTER_BRANCHES, CLUSTER_LINK_BRANCHES):
        for b, dt in branches.items():
            if b == "CLhardware":
                shape = "var * string"
            elif b in CLUSTER_LINK_BRANCHES:
                shape = f"var * var * {np.dtype(dt).name}"
            else:
                shape = f"var * {np.dtype(dt).name}"
            types[b] = ak.types.from_datashape(shape, highlevel=False)
    for b, dt in JET_BRANCHES.items():
        types[b] = ak.types.from_datashape(f"var * {np.dtype(dt).name}", highlevel=False)
    types[CHECKSUM] = np.dtype(np.uint32)
    return types


def _rntuple_entry(cols: dict) -> dict:
    """One event's columns (``_columns``) as a one-entry chunk of ATLAS-typed RNTuple fields."""
    one = np.array([1])
    out = {name: cols[name] for name in EVENT_BRANCHES}
    for record in ("Part", "SP", "CL", "Jet"):
        for b, v in cols[record].items():
            if b not in (HARDWARE_LEN, LINK_COUNT):
                out[b] = ak.Array(_list(ak.contents.NumpyArray(np.ascontiguousarray(v)), one * len(v)))
    cl = cols["CL"]
    n_cl = len(cl["CLindex"])
    chars = ak.contents.NumpyArray(cols["CLchar"][HARDWARE_CHARS], parameters={"__array__": "char"})
    strings = _list(chars, cl[HARDWARE_LEN], parameters={"__array__": "string"})
    out["CLhardware"] = ak.Array(_list(strings, one * n_cl))
    for b in CLUSTER_LINK_BRANCHES:
        links = _list(ak.contents.NumpyArray(cols["CLlink"][LINK_FLAT[b]]), cl[LINK_COUNT])
        out[b] = ak.Array(_list(links, one * n_cl))
    out[CHECKSUM] = cols[CHECKSUM]
    return out


_COMPRESSION = {
    "zlib": lambda: uproot.ZLIB(1),
    "lzma": lambda: uproot.LZMA(1),
    "lz4": lambda: uproot.LZ4(1),  # needs the lz4 package
    "zstd": lambda: uproot.ZSTD(1),  # needs the zstandard package
    None: lambda: None,
}


def write_gnn4itk(
    path: str | Path, events: Iterable[Mapping], compression: str | None = "zlib", kind: str = "ttree"
) -> None:
    """Write ``events`` (GNN4ITk in-memory dicts) to a ROOT file with one entry per event.

    ``kind``: "ttree" (encoded hardware and link branches, see the module docstring) or
    "rntuple" (ATLAS types).

    The file appears only when complete (``atomic_output``), and its bytes depend only on the
    events, ``compression``, the file name and ``SOURCE_DATE_EPOCH``: not on the process or the
    directory that wrote it. Branches outside the schema are not
    written; events without ``Jet_*`` get empty jet collections. ``compression``: "zlib" (level
    1, uproot's default), "lzma", "lz4", "zstd" or None.
    """
    if compression not in _COMPRESSION:
        raise ValueError(f"compression {compression!r} is not one of {list(_COMPRESSION)}")
    if kind not in ("ttree", "rntuple"):
        raise ValueError(f"kind {kind!r} is not one of ['ttree', 'rntuple']")
    path = Path(path)
    with (
        atomic_output(path, keep_name=True) as tmp,  # the name ROOT records is the output's
        _reproducible_header(path.name) as uuid_function,
        uproot.recreate(tmp, compression=_COMPRESSION[compression](), uuid_function=uuid_function) as f,
    ):
        if kind == "rntuple":
            ntuple = f.mkrntuple(TREE_NAME, _rntuple_fields(), description="GNN4ITk dump (gnntrack)")
            for i, ev in enumerate(events):
                ntuple.extend(_rntuple_entry(_columns(ev, i, path)))
            return
        tree = f.mktree(
            TREE_NAME,
            _branch_types(),
            title="GNN4ITk dump (gnntrack)",
            field_name=lambda outer, inner: inner,
            counter_name=lambda counted: f"n{counted}",
        )
        for i, ev in enumerate(events):
            cols = _columns(ev, i, path)
            chunk = {}
            for name, value in cols.items():
                if isinstance(value, dict):
                    chunk[name] = ak.Array(
                        ak.contents.ListOffsetArray(
                            ak.index.Index64(np.array([0, len(next(iter(value.values())))], np.int64)),
                            ak.contents.RecordArray(
                                [ak.contents.NumpyArray(np.ascontiguousarray(v)) for v in value.values()],
                                list(value),
                            ),
                        )
                    )
                else:
                    chunk[name] = value
            tree.extend(chunk)
