"""Stage timer and peak-memory probes of the inference pipeline."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from gnntrack.inference.timing import STAGES, PeakMemory, StageTimer, host_peak_rss_bytes, reset_host_peak


def test_stage_timer_accumulates_and_totals():
    timer = StageTimer("cpu")
    with timer.stage("gnn"):
        time.sleep(0.02)
    with timer.stage("gnn"):
        time.sleep(0.01)
    with timer.stage("labelling"):
        pass
    d = timer.as_dict()
    assert list(d)[: len(STAGES)] == list(STAGES)  # every stage present, pipeline order
    assert d["gnn"] >= 0.03
    assert d["embedding"] == 0.0
    assert d["total"] == pytest.approx(sum(d[s] for s in STAGES))


def test_stage_timer_records_time_when_the_stage_raises():
    timer = StageTimer(None)
    with pytest.raises(RuntimeError), timer.stage("filtering"):
        time.sleep(0.005)
        raise RuntimeError("boom")
    assert timer.seconds["filtering"] >= 0.005


def test_peak_memory_sees_a_large_allocation_and_resets():
    if not reset_host_peak():
        pytest.skip("kernel does not allow resetting the peak RSS")
    with PeakMemory("cpu") as small:
        _ = np.zeros(10)
    with PeakMemory("cpu") as big:
        a = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        a.sum()
        del a
    assert big.host - small.host > 150 * 2**20
    reset_host_peak()
    assert host_peak_rss_bytes() < big.host - 150 * 2**20
    assert big.device_bytes is None  # no device memory on the CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_device():  # pragma: no cover - GPU only
    with PeakMemory("cuda") as pm:
        x = torch.ones(64 * 2**20 // 4, device="cuda")
        del x
    assert pm.device_bytes >= 64 * 2**20
