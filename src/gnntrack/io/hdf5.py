"""Opening the project's HDF5 files, and the content digests that make damage visible.

Every failure of opening or reading a file here is an ``InputError`` naming the file (and the
event and field where known).

Content digests (SHA-256): every group of a file written by a gnntrack writer carries a
``manifest`` attribute (JSON: each dataset's dtype, shape and the SHA-256 of its values; each
subgroup's digest) and a ``digest`` attribute, the SHA-256 of the group's other attributes and
its manifest. The root group's manifest covers the top-level groups, so the digests form a tree:
a reader that reads one event, or a few columns of it, checks the manifests on its path (one
attribute each) and the values of exactly the datasets it reads, never the rest of the file.
Dtype and shape are checked against the manifest before a dataset is read, so a damaged
header cannot make a reader allocate a wrong-sized array. A file without a root ``digest``
(written before digests existed) is read unverified, with a debug log line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

DIGEST_ATTR = "digest"
MANIFEST_ATTR = "manifest"
ALGORITHM = "sha256"
MISMATCH = "content does not match its digest"
DIGEST_ATTRS = (DIGEST_ATTR, MANIFEST_ATTR)

#: what h5py, numpy and json raise on damaged files (h5py maps HDF5 errors onto these)
READ_ERRORS = (
    OSError,
    KeyError,
    ValueError,
    TypeError,
    RuntimeError,
    IndexError,
    AttributeError,
    UnicodeError,
    OverflowError,
    MemoryError,
)


@contextlib.contextmanager
def read_errors(path, event=None, field: str | None = None) -> Iterator[None]:
    """Turn an h5py/numpy error raised while reading ``path`` into an InputError naming it."""
    try:
        yield
    except InputError:
        raise
    except READ_ERRORS as exc:
        reason = " ".join(str(exc).split()) or "no detail"
        raise InputError(
            f"damaged or unreadable HDF5 content ({type(exc).__name__}: {reason})",
            file=path,
            event=event,
            field=field,
        ) from None


def open_store(path: str | Path, fmt: str, what: str = "file") -> h5py.File:
    """Open ``path`` read-only and check its ``format`` attribute is ``fmt``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} does not exist", file=path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc})", file=path) from None
    try:
        with read_errors(path, field="format"):
            fmt_ok = f.attrs.get("format") == fmt
    except InputError:
        f.close()
        raise
    if not fmt_ok:
        f.close()
        raise InputError(f"not a {fmt} file", file=path, field="format")
    return f


# ---------------------------------------------------------------------------------- digests
def _update_value(h, value) -> None:
    """Feed one attribute value into ``h`` in a form that does not depend on how it was set."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(data) + data)
    elif isinstance(value, bytes):
        h.update(b"b%d:" % len(value) + value)
    else:
        a = np.asarray(value)
        if a.dtype.kind == "O":
            h.update(b"O" + repr(a.shape).encode() + b":")
            for item in a.ravel():
                _update_value(h, item)
        else:
            _update_array(h, a)


def _update_array(h, a: np.ndarray) -> None:
    h.update(f"a{a.dtype.str}{a.shape}:".encode())
    h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8) if a.size else b"")


def array_digest(a: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and values (hex)."""
    h = hashlib.new(ALGORITHM)
    _update_array(h, np.asarray(a))
    return h.hexdigest()


def group_digest(attrs, manifest: str) -> str:
    """SHA-256 of a group's attributes (but its digest and manifest) and its manifest text."""
    h = hashlib.new(ALGORITHM)
    for name in sorted(k for k in attrs if k not in (DIGEST_ATTR, MANIFEST_ATTR)):
        h.update(b"attr:" + name.encode() + b"=")
        _update_value(h, attrs[name])
    h.update(b"manifest:" + manifest.encode())
    return h.hexdigest()


def _field(name: str, event=None) -> str | None:
    """An HDF5 path as an error's field: relative to the event's group when there is one."""
    parts = [p for p in name.split("/") if p]
    if event is not None and str(event) in parts:
        parts = parts[parts.index(str(event)) + 1 :]
    return "/".join(parts) or None


class SealedWriter:
    """Writes datasets of one open file and seals every group with its manifest and digest.

    Create every dataset through ``dataset`` and every group through ``group``; call ``seal``
    once, after the last write and before the file is closed.
    """

    def __init__(self, f: h5py.File):
        self.f = f
        self._manifests: dict[str, dict] = {"/": {}}

    def group(self, parent: h5py.Group, name: str) -> h5py.Group:
        g = parent.create_group(name)
        self._manifests[g.name] = {}
        return g

    def dataset(self, parent: h5py.Group, name: str, data, **kwargs) -> h5py.Dataset:
        arr = np.asarray(data)
        ds = parent.create_dataset(name, data=arr, **kwargs)
        stored = np.asarray(arr, dtype=ds.dtype).reshape(ds.shape)
        self._manifests[parent.name][name] = {
            "dtype": ds.dtype.str,
            "shape": list(ds.shape),
            ALGORITHM: array_digest(stored),
        }
        return ds

    def seal(self) -> None:
        # deepest groups first, so each parent records its subgroups' final digests
        for name in sorted(self._manifests, key=lambda n: (-n.count("/") if n != "/" else 1, n)):
            g = self.f[name]
            manifest = self._manifests[name]
            unlisted = sorted(set(g.keys()) - set(manifest))
            if unlisted:
                raise ValueError(f"{name}: {unlisted} written without a digest")
            text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
            g.attrs[MANIFEST_ATTR] = text
            digest = group_digest(g.attrs, text)
            g.attrs[DIGEST_ATTR] = digest
            if name != "/":
                parent, _, leaf = name.rpartition("/")
                self._manifests[parent or "/"][leaf] = {"group": digest}


class VerifiedReader:
    """Reads from one open file, each group and dataset checked against its digest on first use.

    ``verify=False`` (or a file written before digests) reads without checks; read errors are
    InputErrors naming the file either way.
    """

    def __init__(self, f: h5py.File, path, verify: bool = True):
        self.f = f
        self.path = path
        self._manifests: dict[str, dict] = {}
        with read_errors(path):
            has_digest = DIGEST_ATTR in f.attrs
        self.on = bool(verify and has_digest)
        if verify and not has_digest:
            log.debug("%s has no content digest (written before digests): read unverified", path)
        if self.on:
            self._verify_group(f, None)

    def _mismatch(self, event=None, field=None, what=MISMATCH):
        raise InputError(what, file=self.path, event=event, field=field)

    def _verify_group(self, g: h5py.Group, event, field: str | None = None) -> dict:
        name = g.name
        field = field or _field(name, event)
        with read_errors(self.path, event, field):
            attrs = {k: g.attrs[k] for k in g.attrs}
            digest, text = attrs.get(DIGEST_ATTR), attrs.get(MANIFEST_ATTR)
            if not isinstance(digest, str) or not isinstance(text, str):
                self._mismatch(event, field, "content digest missing or damaged")
            if group_digest(attrs, text) != digest:
                self._mismatch(event, field)
            if name != "/":
                parent_name, _, leaf = name.rpartition("/")
                parent = self._manifests.get(parent_name or "/")
                if parent is None:
                    parent = self._verify_group(g.parent, event)
                if parent.get(leaf) != {"group": digest}:
                    self._mismatch(event, field)
            manifest = json.loads(text)
            if not isinstance(manifest, dict):
                self._mismatch(event, field)
            members = set(g.keys())
            if set(manifest) != members:
                missing, extra = sorted(set(manifest) - members), sorted(members - set(manifest))
                self._mismatch(
                    event,
                    _field(f"{name}/{(missing or extra)[0]}", event),
                    f"{MISMATCH} (member(s) missing: {missing}, not listed: {extra})",
                )
        self._manifests[name] = manifest
        return manifest

    def _member(self, parent: h5py.Group, name: str, kind: type, what: str, event, field: str):
        """``parent[name]``, which must exist and be a ``kind``; InputError naming ``field`` else."""
        with read_errors(self.path, event, field):
            if name not in parent:
                raise InputError(f"missing {what}", file=self.path, event=event, field=field)
            obj = parent[name]
            if not isinstance(obj, kind):
                raise InputError(f"not a {what}", file=self.path, event=event, field=field)
        return obj

    def group(self, parent: h5py.Group, name: str, event=None, field: str | None = None) -> h5py.Group:
        """``parent[name]`` as a group, its digest checked; InputError if absent or damaged
        (naming ``field``, by default the group's path below the event)."""
        field = field or _field(f"{parent.name}/{name}", event)
        g = self._member(parent, name, h5py.Group, "group", event, field)
        if self.on and g.name not in self._manifests:
            self._verify_group(g, event, field)
        return g

    def names(self, g: h5py.Group, event=None) -> list[str]:
        """Member names of ``g`` in file order (checked against its manifest when verifying)."""
        with read_errors(self.path, event, _field(g.name, event)):
            return list(g.keys())

    def read(self, parent: h5py.Group, name: str, event=None, field: str | None = None) -> np.ndarray:
        """All values of dataset ``parent[name]``, checked against its manifest entry."""
        field = field or _field(f"{parent.name}/{name}", event)
        ds = self._member(parent, name, h5py.Dataset, "dataset", event, field)
        with read_errors(self.path, event, field):
            if not self.on:
                return ds[()]
            entry = self._manifests[parent.name].get(name)
            if (
                not isinstance(entry, dict)
                or entry.get("dtype") != ds.dtype.str
                or entry.get("shape") != list(ds.shape)
            ):
                self._mismatch(event, field)
            data = ds[()]
            if array_digest(np.asarray(data)) != entry.get(ALGORITHM):
                self._mismatch(event, field)
            return data


@contextlib.contextmanager
def open_verified(path: str | Path, fmt: str, what: str = "file", verify: bool = True):
    """``open_store`` plus a ``VerifiedReader`` of the file (closed on exit)."""
    f = open_store(path, fmt, what)
    try:
        yield VerifiedReader(f, path, verify)
    finally:
        f.close()
