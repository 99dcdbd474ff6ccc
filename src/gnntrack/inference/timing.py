"""Per-stage wall-clock timing and peak-memory probes for the inference pipeline.

GPU kernels run asynchronously: a clock read right after a launch measures the launch, not the
work, and the time then lands in whichever later stage first synchronises. ``StageTimer``
therefore synchronises the device before reading the clock at both ends of every stage, so each
stage is charged exactly for its own work (at the cost of removing cross-stage overlap, which the
pipeline does not rely on).

Peak memory: host peak RSS comes from ``VmHWM`` in ``/proc/self/status``, which Linux lets a
process reset by writing ``5`` to ``/proc/self/clear_refs``, so a peak can be measured per event
or per benchmark variant inside one process; device peaks come from the CUDA caching allocator.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

#: Stage names in pipeline order, as they appear in the timing tables (ATLAS GNN4ITk style).
STAGES = ("data_loading", "embedding", "build_edges", "filtering", "gnn", "labelling")

STAGE_LABELS = {
    "data_loading": "Data loading",
    "embedding": "Embedding",
    "build_edges": "Build edges",
    "filtering": "Filtering",
    "gnn": "GNN",
    "labelling": "Labelling",
    "total": "Total",
}


def synchronize(device: torch.device | str | None) -> None:
    """Wait for all queued work on ``device`` (no-op on the CPU)."""
    if device is None:
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # pragma: no cover - no Apple hardware in CI
        torch.mps.synchronize()


class StageTimer:
    """Accumulates seconds per stage name, synchronising ``device`` around each measurement."""

    def __init__(self, device: torch.device | str | None = None):
        self.device = None if device is None else torch.device(device)
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    @property
    def total(self) -> float:
        return float(sum(self.seconds.values()))

    def as_dict(self) -> dict[str, float]:
        """Stage -> seconds, every pipeline stage present (0 when it did not run) plus ``total``."""
        out = {s: float(self.seconds.get(s, 0.0)) for s in STAGES}
        out.update({k: float(v) for k, v in self.seconds.items() if k not in out})
        out["total"] = self.total
        return out


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_host_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def host_peak_rss_bytes() -> int:
    """Peak resident set size of this process since start or the last ``reset_host_peak``."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    import resource  # fallback (macOS reports bytes, Linux KiB); cannot be reset

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import sys

    return int(peak if sys.platform == "darwin" else peak * 1024)


def host_rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    return 0 if kib is None else kib * 1024


def reset_device_peak(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def device_peak_bytes(device: torch.device | str | None) -> int | None:
    """Peak bytes held by the CUDA caching allocator on ``device``; None for the CPU."""
    if device is None or torch.device(device).type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(torch.device(device)))


class PeakMemory:
    """Peak host RSS and device memory over a block: ``with PeakMemory(dev) as pm: ...; pm.host``."""

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self.host: int = 0
        self.device_bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        synchronize(self.device)
        reset_host_peak()
        reset_device_peak(self.device)
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.host = host_peak_rss_bytes()
        self.device_bytes = device_peak_bytes(self.device)
