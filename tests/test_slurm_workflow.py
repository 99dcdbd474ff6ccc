"""The tiny campaign through a real SLURM cluster with the project's SLURM profile.

A one-node cluster (munged, slurmctld, slurmd; tests/slurm_cluster.py) is started for the
module; the test profile is profiles/slurm/config.yaml with its site settings pointed at that
cluster: both partitions -> the only partition, no account, and the GPU rules asking for no GPU
(the node has none). Skipped only where SLURM cannot run (not installed, not root).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from slurm_cluster import slurm_cluster, unavailable_reason
from test_workflow_dryrun import dry_run, make_workdir

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def test_profile(cluster, path: Path) -> Path:
    """profiles/slurm with its site settings replaced by the test cluster's."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"] = {"slurm_partition": cluster.partition}
    profile["set-resources"] = {
        rule: {"slurm_partition": cluster.partition, "gpu": 0} for rule in profile["set-resources"]
    }
    profile.update({"jobs": 4, "latency-wait": 5, "retries": 0, "slurm-no-account": True})
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(profile))
    return path


test_profile.__test__ = False  # a helper, not a test


def test_tiny_campaign_on_slurm(cluster, tmp_path):
    workdir = make_workdir(tmp_path / "run")
    profile = test_profile(cluster, tmp_path / "profile")
    planned = sum(dry_run(workdir, "config/test_tiny.yaml").values())
    cmd = [
        sys.executable, "-m", "snakemake", "--profile", str(profile), "--configfile", "config/test_tiny.yaml",
        "--executor", "slurm", "--slurm-status-command", "squeue",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=workdir, env=cluster.env, capture_output=True, text=True, timeout=3000)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:] + "\n" + cluster.logs()

    summary = workdir / "results/test_tiny/eval/summary.json"
    assert "efficiency" in json.dumps(json.loads(summary.read_text()))
    # the jobs really went through SLURM: sacct is off, so ask slurmctld about finished jobs
    jobs = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j %T"], env=cluster.env, capture_output=True, text=True
    ).stdout.split("\n")
    states = [line.split()[-1] for line in jobs if line.strip()]
    assert len(states) == planned - 1 and set(states) == {"COMPLETED"}, jobs  # `all` runs locally
