"""The tiny campaign through a real SLURM cluster with the project's SLURM profile, as a user runs it.

A one-node cluster (munged, slurmctld, slurmd; tests/slurm_cluster.py) is started for the module
with what the shipped profile (slurm/config.yaml) expects of a site: its partitions (the node is
in all of them) and GPUs (count-only fakes, so SLURM schedules ``--gpus`` requests while the jobs
run on the CPU). The campaign folder holds the workflow and the profile as a clone does, and the
test runs the command a user types there. The only addition is ``--slurm-status-command squeue``,
which docs/workflow.md tells users of clusters without accounting to add: this one has no
slurmdbd, so ``sacct`` cannot answer (the profile leaves the plugin's default, ``sacct``, for
sites that have it). Skipped only where SLURM cannot run (not installed, not root).

Afterwards SLURM's own record of each job (``scontrol show job``; jobs stay listed for
MinJobAge = 1 h) shows that every GPU rule asked for and got a GPU in the GPU partition, and no
other rule did.

A second run trains the GNN data-parallel (``gnn.train.distributed.ranks: 2``): the train_gnn job
asks SLURM for two tasks with a GPU each and starts its two gloo ranks as one ``srun`` step.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from slurm_cluster import slurm_cluster, unavailable_reason
from test_workflow_dryrun import dry_run, make_workdir

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[1]
PROFILE = yaml.safe_load((REPO / "slurm/config.yaml").read_text())
CPU_PARTITION = PROFILE["default-resources"]["slurm_partition"]
GPU_RULES = {rule for rule, res in PROFILE["set-resources"].items() if "slurm_partition" in res}
GPU_PARTITIONS = {PROFILE["set-resources"][rule]["slurm_partition"] for rule in GPU_RULES}
# the snakemake command of this environment (what `snakemake` is on a user's PATH)
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    partitions = (CPU_PARTITION, *sorted(GPU_PARTITIONS))
    with slurm_cluster(tmp_path_factory.mktemp("slurm"), partitions, gpus=2) as c:
        yield c


def slurm_jobs(cluster) -> list[dict[str, str]]:
    """``scontrol show job -d`` of every job slurmctld still knows: one dict of fields per job."""
    res = subprocess.run(
        ["scontrol", "show", "job", "-d", "-o"], env=cluster.env, capture_output=True, text=True, check=True
    )
    return [
        dict(field.split("=", 1) for field in line.split() if "=" in field)
        for line in res.stdout.splitlines()
        if line.startswith("JobId=")
    ]


def test_tiny_campaign_on_slurm(cluster, tmp_path):
    workdir = make_workdir(tmp_path / "run")
    planned = sum(dry_run(workdir, "config/test_tiny.yaml").values())
    cmd = [SNAKEMAKE, "--profile", "slurm", "--configfile", "config/test_tiny.yaml"]
    cmd += ["--slurm-status-command", "squeue"]  # no accounting (sacct) on the test cluster
    res = subprocess.run(cmd, cwd=workdir, env=cluster.env, capture_output=True, text=True, timeout=3000)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:] + "\n" + cluster.logs()

    summary = workdir / "results/test_tiny/eval/summary.json"
    assert "efficiency" in json.dumps(json.loads(summary.read_text()))

    # the jobs really went through SLURM (`all` runs locally), as the profile asked
    jobs = slurm_jobs(cluster)
    assert len(jobs) == planned - 1 and {j["JobState"] for j in jobs} == {"COMPLETED"}, jobs
    gpus = yaml.safe_load((REPO / "config/test_tiny.yaml").read_text())["resources"]["gpu"]["gpu"]
    assert gpus >= 1
    seen = set()
    for job in jobs:
        rule = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]  # the plugin's comment
        requested = job.get("TresPerJob", "N/A") + "," + job.get("TresPerNode", "N/A")
        where = f"{rule}: {requested} JOB_GRES={job.get('JOB_GRES')} Partition={job['Partition']}"
        if rule in GPU_RULES:
            seen.add(rule)
            assert f"gres:gpu:{gpus}" in requested, where  # --gpus=N (TresPerJob) or --gres=gpu:N
            assert job.get("JOB_GRES") == f"gpu:{gpus}", where  # and SLURM gave them to the job
            assert job["Partition"] == PROFILE["set-resources"][rule]["slurm_partition"], where
        else:
            assert "gpu" not in requested and job.get("JOB_GRES") in (None, "(null)"), where
            assert job["Partition"] == CPU_PARTITION, where
    assert {"train_gnn", "gnn_working_point", "infer"} <= seen, seen


def test_data_parallel_training_on_slurm(cluster, tmp_path):
    """train_gnn on 2 ranks: a 2-task SLURM job whose ranks (an srun step) write one model file."""
    extra = {
        "steps": {"filter": False, "reassociate": False, "export": False, "bench": False},
        "gnn": {"train": {"batch_items": 2, "distributed": {"ranks": 2}}},
    }
    workdir = make_workdir(tmp_path / "run", extra)
    target = "results/test_tiny/models/gnn_trained.pt"
    cmd = [SNAKEMAKE, "--profile", "slurm", "--configfile", "config/test_tiny.yaml", "extra.yaml"]
    cmd += ["--slurm-status-command", "squeue", target]
    before = {j["JobId"] for j in slurm_jobs(cluster)}
    res = subprocess.run(cmd, cwd=workdir, env=cluster.env, capture_output=True, text=True, timeout=3000)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:] + "\n" + cluster.logs()

    model = torch.load(workdir / target, weights_only=True)
    assert model["epoch"] == 1 and model["state_dict"]
    jobs = [j for j in slurm_jobs(cluster) if j["JobId"] not in before]
    train = [j for j in jobs if j["Comment"].startswith("rule_train_gnn")]
    assert len(train) == 1 and train[0]["JobState"] == "COMPLETED", train
    job = train[0]
    assert job["NumTasks"] == "2", job  # one task per rank
    assert job.get("JOB_GRES") == "gpu:2", job  # and a GPU each
    log = (workdir / "results/test_tiny/logs/train_gnn.log").read_text()
    assert "starting 2 ranks of gnntrack.gnn:run_train_gnn (srun)" in log, log[-3000:]
    joined = re.search(r"2 ranks joined via .*?, backend gloo: (.*)", log)
    assert joined, log[-3000:]
    pids = re.findall(r"rank (\d) \(local \d\) \S+ pid (\d+)", joined.group(1))
    assert sorted(r for r, _ in pids) == ["0", "1"] and len({p for _, p in pids}) == 2, joined.group(1)
    assert "rank 0 gnntrack.training.loop INFO: epoch 1:" in log, log[-3000:]
