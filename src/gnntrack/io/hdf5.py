"""Opening the project's HDF5 files: one place that turns every failure into an InputError."""

from __future__ import annotations

from pathlib import Path

import h5py

from .errors import InputError


def open_store(path: str | Path, fmt: str, what: str = "file") -> h5py.File:
    """Open ``path`` read-only and check its ``format`` attribute is ``fmt``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} does not exist", file=path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc})", file=path) from None
    if f.attrs.get("format") != fmt:
        f.close()
        raise InputError(f"not a {fmt} file", file=path, field="format")
    return f
