"""``inference.hold_memory``: freed memory stays in the process for the next event (glibc)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_inference_pipeline import setup  # noqa: F401 - a fixture

from gnntrack.io.track_store import read_tracks

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")

PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from gnntrack.inference.allocator import hold_freed_memory

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    held = hold_freed_memory() if sys.argv[1] == "hold" else False
    base = rss_mb()
    a = np.ones(200 * 2**20 // 8)  # 200 MB: far above glibc's mmap threshold
    peak = rss_mb()
    del a
    after_free = rss_mb()
    b = np.ones(200 * 2**20 // 8)  # the next "event" of the same size
    again = rss_mb()
    print(json.dumps({"held": held, "base": base, "peak": peak, "after_free": after_free, "again": again}))
    """
)


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_memory_is_kept_and_reused_only_when_held():
    free = _probe("free")
    held = _probe("hold")
    assert held["held"] is True and free["held"] is False
    for r in (free, held):
        assert r["peak"] - r["base"] > 150  # the array was really touched
    # glibc's default: the mapping goes back to the kernel when freed
    assert free["peak"] - free["after_free"] > 150
    # held: the pages stay resident and the next allocation of the same size reuses them
    assert held["peak"] - held["after_free"] < 20
    assert held["again"] - held["after_free"] < 20


RUN = textwrap.dedent(
    """
    import sys
    from gnntrack.inference import allocator, run_infer

    d, hold, own = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
    run_infer(d + "/events.h5", d + "/tracks_" + sys.argv[2] + sys.argv[3] + ".h5", {"hold_memory": hold},
              module_map=d + "/map.h5", gnn_model=d + "/gnn.pt", device="cpu", own_process=own)
    print(allocator._held)
    """
)


def test_run_infer_holds_memory_only_in_its_own_process_when_set(setup):  # noqa: F811 - the fixture
    """The setting reaches the allocator in a process that runs one shard (the ``infer`` command,
    the workflow rule), never in a library caller's; the tracks do not depend on it."""
    for hold, own, held in ((True, True, True), (False, True, False), (True, False, False)):
        out = subprocess.run(
            [sys.executable, "-c", RUN, str(setup), str(int(hold)), str(int(own))],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip().splitlines()[-1] == str(held), (hold, own)
    held, freed = read_tracks(setup / "tracks_11.h5"), read_tracks(setup / "tracks_01.h5")
    assert [r.key for r in held] == [r.key for r in freed] and len(held) == 3
    for a, b in zip(held, freed):
        np.testing.assert_array_equal(a.tracks.hits, b.tracks.hits)
        np.testing.assert_array_equal(a.tracks.offsets, b.tracks.offsets)
