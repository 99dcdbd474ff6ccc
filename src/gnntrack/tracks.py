"""Track candidates of one event in CSR form: all hit rows concatenated plus offsets.

CSR keeps a whole event's candidates in two flat integer arrays, which is what the GPU path
produces without a Python loop and what the HDF5 track store writes as-is. The arrays are numpy or
torch, whichever the producer used; ``numpy()`` gives the CPU form for evaluation and I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Tracks:
    """``hits[offsets[i]:offsets[i+1]]`` are the hit rows of track candidate ``i``."""

    hits: np.ndarray | torch.Tensor
    offsets: np.ndarray | torch.Tensor

    def __post_init__(self) -> None:
        if len(self.offsets) == 0:
            raise ValueError("offsets must have at least one entry (T + 1 values)")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tracks(self) -> int:
        return len(self)

    def lengths(self) -> np.ndarray:
        off = self.numpy().offsets
        return np.diff(off)

    def __getitem__(self, i: int) -> np.ndarray:
        t = self.numpy()
        if not -len(t) <= i < len(t):
            raise IndexError(f"track {i} out of range for {len(t)} tracks")
        i %= len(t)
        return t.hits[t.offsets[i] : t.offsets[i + 1]]

    def __iter__(self):
        t = self.numpy()
        for i in range(len(t)):
            yield t.hits[t.offsets[i] : t.offsets[i + 1]]

    def track_index(self) -> np.ndarray:
        """Track number of every entry of ``hits`` (same length as ``hits``)."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def numpy(self) -> Tracks:
        """CPU numpy int64 copy (returns self when already numpy)."""
        if isinstance(self.hits, np.ndarray) and isinstance(self.offsets, np.ndarray):
            return self
        return Tracks(_to_numpy(self.hits), _to_numpy(self.offsets))

    def to(self, device: str | torch.device) -> Tracks:
        return Tracks(torch.as_tensor(self.hits).to(device), torch.as_tensor(self.offsets).to(device))

    @classmethod
    def from_lists(cls, tracks) -> Tracks:
        """Build from a sequence of hit-row sequences (tests, walkthrough)."""
        tracks = [np.asarray(t, dtype=np.int64).ravel() for t in tracks]
        offsets = np.zeros(len(tracks) + 1, dtype=np.int64)
        if tracks:
            offsets[1:] = np.cumsum([len(t) for t in tracks])
            hits = np.concatenate(tracks)
        else:
            hits = np.zeros(0, dtype=np.int64)
        return cls(hits, offsets)

    @classmethod
    def empty(cls) -> Tracks:
        return cls(np.zeros(0, np.int64), np.zeros(1, np.int64))

    def to_lists(self) -> list[list[int]]:
        return [t.tolist() for t in self]


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy().astype(np.int64, copy=False)
    return np.asarray(a, dtype=np.int64)
