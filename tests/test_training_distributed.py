"""Data-parallel training with real processes: gloo ranks on this machine's CPUs.

Each rank is a separate Python process started by ``gnntrack.training.distributed.launch`` (as
the workflow starts them outside SLURM), training the toy task of test_training_loop
(tests/ddp_toy.py). Checked: two ranks end with the weights of one process with the same global
batch, validation metrics reduced over the ranks equal one process's, a rank that raises ends
the whole job (the other rank is stopped, nothing hangs), and a run killed with one rank count
resumes from its checkpoint with another. Each launch costs a few seconds of process start-up.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from ddp_toy import train_toy
from torch import nn

from gnntrack.training import TrainConfig
from gnntrack.training.distributed import first_host, launch, rank_env
from gnntrack.training.loop import Trainer, rank_share, step_batches

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
# the ranks import the toy task (tests/) and gnntrack (src/) by name
RANK_PYTHONPATH = os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")])
# 12 training items, a global batch of 4 (2 per rank), dropout in the model: every step draws
CFG = dict(epochs=3, lr=0.02, optimizer="adam", scheduler="cosine", batch_items=4, progress="off")
ITEMS_PER_EPOCH = 12
ATOL = 1e-5


@pytest.fixture
def rank_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", RANK_PYTHONPATH)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=ATOL, rtol=0, msg=k)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: one process, the same global batch, uninterrupted."""
    out = tmp_path_factory.mktemp("one") / "toy.pt"
    summary = train_toy(str(out), CFG)
    return out, summary


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


# -- without processes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("node7", "node7"),
        ("gpu[07-09,12],cpu1", "gpu07"),
        ("a1,b[2-3]", "a1"),
        ("n[3]x", "n3x"),
        ("c-[100-101]", "c-100"),
    ],
)
def test_first_host_of_slurm_node_lists(nodelist, host):
    assert first_host(nodelist) == host


def test_rank_environment_from_torchrun_and_slurm():
    env = rank_env(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h0", "MASTER_PORT": "1234"}
    )
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port) == (
        3,
        4,
        1,
        "h0",
        1234,
    )
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "4711",
             "SLURM_STEP_NODELIST": "gpu[03-04]", "MASTER_PORT": "2345"}  # fmt: skip
    env = rank_env(slurm)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port) == (
        5,
        8,
        1,
        "gpu03",
        2345,
    )
    # without a port from the launcher every task derives the same one from the job id
    env2 = rank_env({k: v for k, v in slurm.items() if k != "MASTER_PORT"})
    assert env2.master_port == rank_env({**slurm, "SLURM_PROCID": "0"} | {"MASTER_PORT": ""}).master_port
    assert rank_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None  # a one-task job is no group
    assert rank_env({}) is None


def test_every_item_of_a_step_goes_to_exactly_one_rank():
    order = list(range(11))
    batches = step_batches(order, 4)
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert step_batches(order, 4, max_steps=2) == batches[:2]
    for world in (1, 2, 3):
        for batch in batches:
            shares = [rank_share(batch, r, world) for r in range(world)]
            assert sorted(i for s in shares for i in s) == batch


def test_a_step_follows_the_mean_gradient_of_its_items(tmp_path):
    """batch_items = 2 with plain SGD: one step moves the weights by -lr x the mean gradient."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    items = [torch.randn(5, 3), torch.randn(5, 3)]

    class Task:
        def __init__(self):
            self.model = model

        def loss(self, x, device):
            return self.model(x).pow(2).mean()

        def evaluate(self, items, device):
            return {}

        def model_config(self):
            return {}

    start = {k: v.clone() for k, v in model.state_dict().items()}
    grads = []
    for x in items:
        model.zero_grad()
        model(x).pow(2).mean().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    cfg = TrainConfig(epochs=1, optimizer="sgd", momentum=0.0, lr=0.1, batch_items=2, progress="off")
    trainer = Trainer(Task(), items, [], cfg, tmp_path / "m.pt", device="cpu")
    trainer.restore()
    model.load_state_dict(start)
    trainer.train_epoch()
    assert trainer.steps_per_epoch == 1
    for k, p in model.named_parameters():
        expected = start[k] - 0.1 * (grads[0][k] + grads[1][k]) / 2
        torch.testing.assert_close(p.detach(), expected)


def test_more_nodes_than_one_need_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(RuntimeError, match="needs a SLURM job"):
        launch("ddp_toy:train_toy", {}, {"ranks": 2, "nodes": 2})


# -- with real processes -------------------------------------------------------------------------


def test_two_gloo_ranks_match_one_process(one_process, rank_path, tmp_path):
    ref_out, ref = one_process
    out, report = tmp_path / "toy.pt", tmp_path / "report"
    launch("ddp_toy:train_toy", {"output": str(out), "train_cfg": CFG, "report": str(report)}, {"ranks": 2})
    assert_close(weights(out), weights(ref_out))

    reports = [json.loads(Path(f"{report}.{r}.json").read_text()) for r in (0, 1)]
    assert [r["ranks"] for r in reports] == [2, 2]
    # each rank computed half of every step's items
    assert [r["calls"] for r in reports] == [CFG["epochs"] * ITEMS_PER_EPOCH // 2] * 2
    # validation shared out, reduced on rank 0 and sent to all: every rank has one process's metrics
    for r in reports:
        for row, ref_row in zip(r["summary"]["history"], ref["history"], strict=True):
            for key in ("train_loss", "val_loss", "val_accuracy"):
                assert row[key] == pytest.approx(ref_row[key], abs=ATOL), key
    assert reports[0]["summary"]["best_epoch"] == ref["best_epoch"]
    # rank 0 alone wrote: the model, the resumable state, the metrics; no call file is left
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("report")) == [
        "toy.pt", "toy.pt.best", "toy.pt.last", "toy.pt.metrics.csv",
    ]  # fmt: skip


def test_a_failing_rank_ends_the_whole_job(rank_path, tmp_path):
    report = tmp_path / "report"
    # rank 1 raises in epoch 2 while rank 0 waits for its gradients; the collective timeout is
    # far longer than the launch may take, so the launcher, not a timeout, has to end rank 0
    distributed = {"ranks": 2, "timeout_s": 900}
    kwargs = {"output": str(tmp_path / "toy.pt"), "train_cfg": CFG, "fail_rank": 1, "fail_after": 8}
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="rank 1 exited with 1"):
        launch("ddp_toy:train_toy", {**kwargs, "report": str(report)}, distributed)
    assert time.monotonic() - start < 300
    pids = [int(Path(f"{report}.{r}.pid").read_text()) for r in (0, 1)]
    assert not any(_alive(pid) for pid in pids), "a rank outlived the failed job"
    assert not Path(f"{report}.0.json").exists()  # rank 0 was stopped, it did not finish
    # the first epoch was checkpointed before the failure
    assert torch.load(tmp_path / "toy.pt.last", weights_only=True)["loop_state"]["epoch"] == 1


def test_killed_run_resumes_with_another_rank_count(one_process, rank_path, tmp_path):
    ref_out, _ = one_process
    fail_in_epoch3 = 2 * ITEMS_PER_EPOCH // 2 + 1  # loss calls of one of two ranks
    # two ranks, killed in epoch 3 -> one process resumes from epoch 2
    out = tmp_path / "a" / "toy.pt"
    out.parent.mkdir()
    kwargs = {"output": str(out), "train_cfg": CFG, "fail_rank": 0, "fail_after": fail_in_epoch3}
    with pytest.raises(RuntimeError, match="rank 0 exited"):
        launch("ddp_toy:train_toy", kwargs, {"ranks": 2})
    summary = train_toy(str(out), CFG)
    assert summary["resumed_from_epoch"] == 2 and summary["ranks"] == 1
    assert_close(weights(out), weights(ref_out))

    # one process, killed in epoch 3 -> two ranks resume from epoch 2
    out = tmp_path / "b" / "toy.pt"
    out.parent.mkdir()
    with pytest.raises(RuntimeError, match="simulated failure"):
        train_toy(str(out), CFG, fail_rank=0, fail_after=2 * ITEMS_PER_EPOCH + 1)
    report = tmp_path / "b" / "report"
    launch("ddp_toy:train_toy", {"output": str(out), "train_cfg": CFG, "report": str(report)}, {"ranks": 2})

    resumed = json.loads(Path(f"{report}.0.json").read_text())["summary"]
    assert resumed["resumed_from_epoch"] == 2 and resumed["ranks"] == 2
    assert_close(weights(out), weights(ref_out))
