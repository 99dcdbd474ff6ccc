"""Keep freed memory in the process for the next event (``inference.hold_memory``).

glibc serves every allocation above its mmap threshold (at most 32 MB on 64-bit) with a fresh
mapping and returns it to the kernel when it is freed; on a ⟨μ⟩ = 200-300 event the GNN's
(edges x 64) tensors are that large, so each of them is mapped, faulted in page by page and
unmapped again, every event. With ``M_MMAP_MAX = 0`` every allocation comes from the heap and
with a large ``M_TRIM_THRESHOLD`` freed memory stays there, so the next event reuses pages that
are already resident: measured -23 % CPU at ⟨μ⟩ = 200 and -38 % at ⟨μ⟩ = 300 with the reference
models, the system time gone (benchmarks/scaling_mu_20261203). The price is that the process keeps
its peak heap resident until it exits, which is what a batch inference process reaches anyway.

Process-wide and not undone: ``run_infer(own_process=True)`` calls it, which the ``infer`` command
and workflow rule pass (one shard per process); a library caller of ``run_infer`` keeps its
allocator. Where there is no glibc ``mallopt`` (macOS, musl) nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_MAX = -4
#: largest value ``mallopt`` takes (an int): freed memory below 2 GB at the top of the heap stays
TRIM_THRESHOLD = 2**31 - 1

_held = False


def hold_freed_memory() -> bool:
    """Tell glibc's allocator to serve all allocations from the heap and never give freed memory
    back (see the module docstring). Returns whether it is in effect (also when already set)."""
    global _held
    if _held:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if ok:
        _held = True
        log.debug(
            "allocator: mmap off, trim threshold %d B (freed memory kept for the next event)", TRIM_THRESHOLD
        )
    return ok
