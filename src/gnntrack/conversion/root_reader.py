"""Read and validate GNN4ITk ROOT dumps (real ATLAS ``DumpObjects`` output or ``root_writer`` files).

The ``GNN4ITk`` object may be a TTree or an RNTuple (ATLAS's Run-4 storage, and what uproot >= 5.7
writes for a new tree by default) with the same branch / field names. Accepts both encodings of
the non-flat branches:

- real dumps: ``CLhardware`` as ``vector<string>`` and ``CLparticleLink_*`` as
  ``vector<vector<int>>``;
- ``root_writer`` files: ``CLhardware_len`` + ``CLhardware_chars`` and ``CLparticleLink_n`` +
  ``CLparticleLink_*_flat`` (uproot cannot write the ATLAS types).

Only the branches the convert stage reads are required (``gnn4itk_schema.REQUIRED_BRANCHES``):
``Jet_*`` and ``UNUSED_BRANCHES`` are read when present, branches outside the schema are ignored.
Every problem is an
``InputError`` naming the file, the event (``run_event`` key, or the entry number when the event
ids themselves are unreadable) and the branch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import awkward as ak
import numpy as np
import uproot

from ..io.errors import InputError
from ..io.gnn4itk_schema import (
    CLUSTER_BRANCHES,
    CLUSTER_LINK_BRANCHES,
    EVENT_BRANCHES,
    JET_BRANCHES,
    PARTICLE_BRANCHES,
    REQUIRED_BRANCHES,
    SPACEPOINT_BRANCHES,
    TREE_NAME,
)
from ..io.root_writer import CHECKSUM, HARDWARE_CHARS, HARDWARE_LEN, LINK_COUNT, LINK_FLAT, event_checksum

_NUMERIC_CLUSTER = {k: v for k, v in CLUSTER_BRANCHES.items() if k != "CLhardware"}
_HARDWARE_NAMES = (b"PIXEL", b"STRIP")

#: Bytes of uncompressed data read per chunk of entries (bounded memory at <mu>=200).
STEP_SIZE = "200 MB"


def _open_tree(path: Path):
    """(open file, the ``GNN4ITk`` TTree or RNTuple)."""
    if not path.exists():
        raise InputError("file does not exist", file=path)
    try:
        f = uproot.open(path)
    except Exception as exc:  # uproot raises many types for garbage or truncated headers
        raise InputError(f"not a readable ROOT file ({type(exc).__name__}: {exc})", file=path) from None
    try:
        tree = f[TREE_NAME]
    except uproot.KeyInFileError:
        f.close()
        raise InputError(f"no TTree or RNTuple {TREE_NAME!r} in file", file=path, field=TREE_NAME) from None
    except Exception as exc:  # a damaged directory or object header
        f.close()
        raise InputError(
            f"cannot read {TREE_NAME!r} (corrupt file? {type(exc).__name__}: {exc})",
            file=path,
            field=TREE_NAME,
        ) from None
    if not isinstance(tree, (uproot.behaviors.TTree.TTree, uproot.behaviors.RNTuple.RNTuple)):
        f.close()
        raise InputError(
            f"{TREE_NAME!r} is a {type(tree).__name__}, not a TTree or an RNTuple", file=path, field=TREE_NAME
        )
    return f, tree


def _plan(tree, path: Path) -> dict:
    """Which branches to read, and which encoding of hardware/links the file uses."""
    try:
        names = set(tree.keys())
    except Exception as exc:
        raise InputError(
            f"cannot list the branches of {TREE_NAME!r} (corrupt file? {type(exc).__name__}: {exc})",
            file=path,
            field=TREE_NAME,
        ) from None
    required = set(REQUIRED_BRANCHES)

    def group(branches):
        """The group's required branches (error if absent) and its optional ones that are present."""
        out = []
        for name in branches:
            if name in names:
                out.append(name)
            elif name in required:
                raise InputError("missing required branch", file=path, field=name)
        return out

    plan = {
        "scalar": group(EVENT_BRANCHES),
        "particles": group(PARTICLE_BRANCHES),
        "spacepoints": group(SPACEPOINT_BRANCHES),
        "clusters": group(_NUMERIC_CLUSTER),
    }
    if "CLhardware" in names:
        plan["hardware"] = "strings"
    elif HARDWARE_LEN in names and HARDWARE_CHARS in names:
        plan["hardware"] = "chars"
    else:
        raise InputError("missing required branch", file=path, field="CLhardware")
    if all(b in names for b in CLUSTER_LINK_BRANCHES):
        plan["links"] = "nested"
    elif LINK_COUNT in names and all(LINK_FLAT[b] in names for b in CLUSTER_LINK_BRANCHES):
        plan["links"] = "flat"
    else:
        flat = [LINK_COUNT] + [LINK_FLAT[b] for b in CLUSTER_LINK_BRANCHES]
        wanted = flat if any(b in names for b in flat) else list(CLUSTER_LINK_BRANCHES)
        missing = next(b for b in wanted if b not in names)
        raise InputError("missing required branch", file=path, field=missing)
    present_jets = [b for b in JET_BRANCHES if b in names]
    if present_jets and len(present_jets) != len(JET_BRANCHES):
        raise InputError(
            "incomplete jet branches", file=path, field=next(b for b in JET_BRANCHES if b not in names)
        )
    plan["jets"] = list(JET_BRANCHES) if present_jets else []
    plan["checksum"] = CHECKSUM in names  # files of root_writer: verify every entry
    return plan


def _branch_list(plan) -> list[str]:
    out = plan["scalar"] + plan["particles"] + plan["spacepoints"] + plan["clusters"] + plan["jets"]
    out += ["CLhardware"] if plan["hardware"] == "strings" else [HARDWARE_LEN, HARDWARE_CHARS]
    if plan["links"] == "nested":
        out += list(CLUSTER_LINK_BRANCHES)
    else:
        out += [LINK_COUNT] + [LINK_FLAT[b] for b in CLUSTER_LINK_BRANCHES]
    if plan.get("checksum"):
        out.append(CHECKSUM)
    return out


class _Jagged:
    """A chunk's jagged branch as (per-entry offsets, flat numpy content)."""

    __slots__ = ("offsets", "flat")

    def __init__(self, array, name, path, entry0):
        try:
            array = ak.without_parameters(array)
            counts = np.asarray(ak.num(array, axis=1), dtype=np.int64)
            self.flat = ak.to_numpy(ak.flatten(array, axis=1))
            if self.flat.dtype.kind not in "biuf":
                raise TypeError(f"element type {self.flat.dtype} is not numeric")
        except Exception as exc:
            raise InputError(
                f"branch is not a flat jagged array of numbers ({exc})",
                file=path,
                event=f"entry {entry0}",
                field=name,
            ) from None
        self.offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=self.offsets[1:])

    def __call__(self, i):
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def count(self, i):
        return int(self.offsets[i + 1] - self.offsets[i])


def _decode_hardware(lengths: np.ndarray, chars: np.ndarray, path, label) -> np.ndarray:
    """Cluster hardware strings from (per-cluster length, concatenated ASCII bytes), vectorised."""
    starts = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    ok = lengths == 5
    is_pixel = np.zeros(len(lengths), bool)
    if ok.any():
        grab = chars[starts[ok, None] + np.arange(5)]
        pix = np.all(grab == np.frombuffer(_HARDWARE_NAMES[0], np.uint8), axis=1)
        strip = np.all(grab == np.frombuffer(_HARDWARE_NAMES[1], np.uint8), axis=1)
        ok[ok] = pix | strip
        is_pixel[np.flatnonzero(lengths == 5)[pix]] = True
    if not ok.all():
        j = int(np.flatnonzero(~ok)[0])
        bad = bytes(chars[starts[j] : starts[j] + lengths[j]]).decode("ascii", "replace")
        raise InputError(
            f"cluster {j} has hardware {bad!r}, expected 'PIXEL' or 'STRIP'",
            file=path,
            event=label,
            field="CLhardware",
        )
    return np.where(is_pixel, "PIXEL", "STRIP")


def _check_event(ev: dict, path, label) -> None:
    n_sp = len(ev["SPindex"])
    if n_sp == 0:
        raise InputError("event has no spacepoints", file=path, event=label, field="SPindex")
    for name in ("SPx", "SPy", "SPz", "CLx", "CLy", "CLz"):
        bad = ~np.isfinite(ev[name])
        if bad.any():
            raise InputError(
                f"non-finite coordinate at index {int(np.flatnonzero(bad)[0])}",
                file=path,
                event=label,
                field=name,
            )
    cl_index = ev["CLindex"]
    order = np.argsort(cl_index, kind="stable")
    sorted_ids = cl_index[order]
    if len(sorted_ids) > 1 and np.any(sorted_ids[1:] == sorted_ids[:-1]):
        raise InputError("duplicate cluster index", file=path, event=label, field="CLindex")
    for name, allow_missing in (("SPCL1_index", False), ("SPCL2_index", True)):
        ids = ev[name]
        need = ids != -1 if allow_missing else np.ones(len(ids), bool)
        pos = np.clip(np.searchsorted(sorted_ids, ids[need]), 0, max(len(sorted_ids) - 1, 0))
        found = sorted_ids[pos] == ids[need] if len(sorted_ids) else np.zeros(int(need.sum()), bool)
        if not np.all(found):
            k = int(ids[need][~found][0])
            raise InputError(f"spacepoint refers to unknown cluster {k}", file=path, event=label, field=name)


def n_entries(path: str | Path) -> int:
    """Number of events (entries) of a GNN4ITk ROOT file, from its header (no data is read)."""
    path = Path(path)
    f, tree = _open_tree(path)
    with f:
        return int(tree.num_entries)


def iter_gnn4itk(path: str | Path, links: Literal["lists", "flat"] = "lists") -> Iterator[dict]:
    """Yield validated events of a GNN4ITk ROOT file in the in-memory form of ``gnn4itk_schema``.

    With ``links="flat"`` the two ``CLparticleLink_*`` lists are replaced by ``CLparticleLink_n``
    (links per cluster) and ``CLparticleLink_*_flat`` (all links, cluster-major): the same
    information without 10^5 small arrays per event, which is what ``convert`` uses.
    """
    path = Path(path)
    f, tree = _open_tree(path)
    with f:
        plan = _plan(tree, path)
        branches = _branch_list(plan)
        entry = 0
        chunks = tree.iterate(branches, step_size=STEP_SIZE, library="ak")
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except InputError:
                raise
            except Exception as exc:
                raise InputError(
                    f"cannot read entries from {entry} on (truncated or corrupt file? {type(exc).__name__}: {exc})",
                    file=path,
                    event=f"entry {entry}",
                ) from None
            try:
                yield from _events_of_chunk(chunk, plan, path, entry, links)
            except InputError:
                raise
            except Exception as exc:  # a library error on damaged data: name the file and the entries
                raise InputError(
                    f"cannot decode entries {entry}..{entry + len(chunk) - 1} ({type(exc).__name__}: {exc})",
                    file=path,
                    event=f"entry {entry}",
                ) from None
            entry += len(chunk)


def _events_of_chunk(chunk, plan, path, entry0, links) -> Iterator[dict]:
    n = len(chunk)
    scalars = {}
    for b in plan["scalar"] + ([CHECKSUM] if plan.get("checksum") else []):
        try:
            scalars[b] = ak.to_numpy(chunk[b]).astype(EVENT_BRANCHES.get(b, np.uint32))
        except Exception as exc:
            raise InputError(
                f"not a scalar branch ({exc})", file=path, event=f"entry {entry0}", field=b
            ) from None
    jag = {}
    dtypes = {**PARTICLE_BRANCHES, **SPACEPOINT_BRANCHES, **_NUMERIC_CLUSTER, **JET_BRANCHES}
    for b in plan["particles"] + plan["spacepoints"] + plan["clusters"] + plan["jets"]:
        jag[b] = _Jagged(chunk[b], b, path, entry0)
    if plan["hardware"] == "strings":
        try:
            raw = ak.without_parameters(chunk["CLhardware"])  # event -> cluster -> bytes
            hw_count = _Jagged(ak.num(raw, axis=2), "CLhardware", path, entry0)
            hw_chars = ak.to_numpy(ak.flatten(raw, axis=None)).astype(np.uint8)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                f"branch is not a jagged array of strings ({type(exc).__name__}: {exc})",
                file=path,
                event=f"entry {entry0}",
                field="CLhardware",
            ) from None
        char_off = np.zeros(len(hw_count.flat) + 1, np.int64)
        np.cumsum(hw_count.flat, out=char_off[1:])
        hw_char_event = char_off[hw_count.offsets]
    else:
        hw_count = _Jagged(chunk[HARDWARE_LEN], HARDWARE_LEN, path, entry0)
        chars = _Jagged(chunk[HARDWARE_CHARS], HARDWARE_CHARS, path, entry0)
        hw_chars, hw_char_event = chars.flat.astype(np.uint8), chars.offsets
    # per link branch: links per cluster (per-event offsets) and all link values of the chunk
    link_counts, link_values, link_event = {}, {}, {}
    for b in CLUSTER_LINK_BRANCHES:
        if plan["links"] == "nested":
            try:
                nested = ak.without_parameters(chunk[b])
                link_counts[b] = _Jagged(ak.num(nested, axis=2), b, path, entry0)
                link_values[b] = ak.to_numpy(ak.flatten(nested, axis=None))
                if link_values[b].dtype.kind not in "iu":
                    raise TypeError(f"element type {link_values[b].dtype} is not an integer")
                link_values[b] = link_values[b].astype(np.int32)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(
                    f"branch is not a jagged array of integer lists ({type(exc).__name__}: {exc})",
                    file=path,
                    event=f"entry {entry0}",
                    field=b,
                ) from None
            off = np.zeros(len(link_counts[b].flat) + 1, np.int64)
            np.cumsum(link_counts[b].flat, out=off[1:])
            link_event[b] = off[link_counts[b].offsets]
        else:
            link_counts[b] = _Jagged(chunk[LINK_COUNT], LINK_COUNT, path, entry0)
            values = _Jagged(chunk[LINK_FLAT[b]], LINK_FLAT[b], path, entry0)
            link_values[b], link_event[b] = values.flat.astype(np.int32), values.offsets
    link_field = (
        {b: b for b in CLUSTER_LINK_BRANCHES}
        if plan["links"] == "nested"
        else {b: LINK_FLAT[b] for b in LINK_FLAT}
    )

    for i in range(n):
        label = f"{int(scalars['run_number'][i])}_{int(scalars['event_number'][i])}"
        ev: dict = {b: scalars[b][i] for b in plan["scalar"]}
        for group, ref in (
            ("particles", "Part_event_number"),
            ("spacepoints", "SPindex"),
            ("clusters", "CLindex"),
        ):
            n_obj = jag[ref].count(i)
            for b in plan[group]:
                if jag[b].count(i) != n_obj:
                    raise InputError(
                        f"length {jag[b].count(i)} != {n_obj} of {ref}", file=path, event=label, field=b
                    )
                ev[b] = jag[b](i).astype(dtypes[b], copy=False)
        n_cl = len(ev["CLindex"])
        lengths = hw_count(i)
        hw_field = "CLhardware" if plan["hardware"] == "strings" else HARDWARE_LEN
        if len(lengths) != n_cl:
            raise InputError(
                f"length {len(lengths)} != {n_cl} of CLindex", file=path, event=label, field=hw_field
            )
        if np.any(lengths < 0):
            raise InputError("negative string length", file=path, event=label, field=hw_field)
        chars = hw_chars[hw_char_event[i] : hw_char_event[i + 1]]
        if len(chars) != int(lengths.sum()):
            raise InputError(
                f"{len(chars)} characters for string lengths summing to {int(lengths.sum())}",
                file=path,
                event=label,
                field=HARDWARE_CHARS,
            )
        ev["CLhardware"] = _decode_hardware(lengths.astype(np.int64), chars, path, label)
        counts = None
        flats = {}
        for b in CLUSTER_LINK_BRANCHES:
            counts_b = link_counts[b](i).astype(np.int32)
            if len(counts_b) != n_cl:
                field = b if plan["links"] == "nested" else LINK_COUNT
                raise InputError(
                    f"length {len(counts_b)} != {n_cl} of CLindex", file=path, event=label, field=field
                )
            if np.any(counts_b < 0):
                field = b if plan["links"] == "nested" else LINK_COUNT
                raise InputError("negative number of links", file=path, event=label, field=field)
            if counts is not None and not np.array_equal(counts_b, counts):
                raise InputError(
                    "links per cluster differ from CLparticleLink_eventIndex", file=path, event=label, field=b
                )
            counts = counts_b
            flats[b] = link_values[b][link_event[b][i] : link_event[b][i + 1]]
            if len(flats[b]) != int(counts.sum()):
                raise InputError(
                    f"{len(flats[b])} links for per-cluster counts summing to {int(counts.sum())}",
                    file=path,
                    event=label,
                    field=link_field[b],
                )
        if plan["jets"]:
            n_jet = jag["Jet_pt"].count(i)
            for b in plan["jets"]:
                if jag[b].count(i) != n_jet:
                    raise InputError(
                        f"length {jag[b].count(i)} != {n_jet} of Jet_pt", file=path, event=label, field=b
                    )
                ev[b] = jag[b](i).astype(dtypes[b], copy=False)
        if plan.get("checksum"):
            content = {k: v for k, v in ev.items() if k != "CLhardware"}
            content.update({HARDWARE_LEN: lengths, HARDWARE_CHARS: chars, LINK_COUNT: counts})
            content.update({LINK_FLAT[b]: flats[b] for b in CLUSTER_LINK_BRANCHES})
            if event_checksum(content) != int(scalars[CHECKSUM][i]):
                raise InputError(
                    "entry does not match the checksum written with it (damaged file)",
                    file=path,
                    event=label,
                    field=CHECKSUM,
                )
        _check_event(ev, path, label)
        if links == "flat":
            ev[LINK_COUNT] = counts
            for b in CLUSTER_LINK_BRANCHES:
                ev[LINK_FLAT[b]] = flats[b]
        else:
            split = np.cumsum(counts)[:-1]
            for b in CLUSTER_LINK_BRANCHES:
                ev[b] = np.split(flats[b], split) if n_cl else []
        yield ev


def read_gnn4itk(path: str | Path, links: Literal["lists", "flat"] = "lists") -> list[dict]:
    """All events of a file (see ``iter_gnn4itk``)."""
    return list(iter_gnn4itk(path, links))
