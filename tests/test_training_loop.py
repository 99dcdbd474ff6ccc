"""The shared training loop: learning, checkpoints, bit-identical resume, clear errors."""

from __future__ import annotations

import copy
import csv
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from gnntrack.io.errors import InputError
from gnntrack.models import load_model
from gnntrack.models.registry import register_model
from gnntrack.training import TrainConfig, fit, seed_everything
from gnntrack.training.checkpoint import rng_state
from gnntrack.training.loop import Trainer

# tiny models: one thread avoids oversubscribing the shared CI/laptop cores
torch.set_num_threads(1)


class ToyModel(nn.Module):
    """A tiny model, registered so that load_model can rebuild it."""

    def __init__(self, n_in: int = 3, hidden: int = 8):
        super().__init__()
        self.config = {"n_in": n_in, "hidden": hidden}
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


class ToyTask:
    """Binary classification of points by the sign of a linear function; dropout uses the RNG."""

    def __init__(self, seed=0, fail_at_epoch=None):
        seed_everything(seed)
        self.model = ToyModel()
        self.fail_at = fail_at_epoch
        self.calls = 0

    def model_config(self):
        return dict(self.model.config)

    def loss(self, item, device):
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        x, y = item
        return nn.functional.binary_cross_entropy_with_logits(self.model(x.to(device)), y.to(device))

    def evaluate(self, items, device):
        losses, correct, n = [], 0, 0
        for x, y in items:
            logit = self.model(x.to(device))
            losses.append(float(nn.functional.binary_cross_entropy_with_logits(logit, y)))
            correct += int(((logit > 0) == (y > 0.5)).sum())
            n += len(y)
        return {"loss": sum(losses) / len(losses), "accuracy": correct / n}


def _data(n_items=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([1.0, -2.0, 0.5])
    items = []
    for _ in range(n_items):
        x = torch.randn(32, 3, generator=g)
        items.append((x, (x @ w > 0).float()))
    return items[: n_items * 3 // 4], items[n_items * 3 // 4 :]


register_model(ToyModel)  # load_model rebuilds only registered classes


def test_fit_learns_and_writes_outputs(tmp_path):
    train, val = _data()
    task = ToyTask()
    cfg = TrainConfig(epochs=6, lr=0.02, scheduler="cosine", monitor="accuracy", mode="max", progress="off")
    out = tmp_path / "toy.pt"
    summary = fit(task, train, val, cfg, out, device="cpu")
    hist = summary["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert summary["best_metric"] == max(h["val_accuracy"] for h in hist)
    assert summary["best_metric"] > 0.8
    assert out.exists() and (tmp_path / "toy.pt.last").exists()
    rows = list(csv.DictReader((tmp_path / "toy.pt.metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    model = load_model(out, "cpu")
    x, y = val[0]
    best = summary["best_epoch"]
    assert float(((model(x) > 0) == (y > 0.5)).float().mean()) == pytest.approx(
        float(((task.model(x) > 0) == (y > 0.5)).float().mean())
    )
    assert best is not None
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "temporary files left behind"


@pytest.mark.parametrize("scheduler", ["step", "plateau"])
def test_resume_is_identical_to_uninterrupted(tmp_path, scheduler):
    train, val = _data()
    cfg = TrainConfig(
        epochs=4,
        lr=0.01,
        optimizer="adam",
        scheduler=scheduler,
        step_size=1,
        progress="off",
        deterministic=True,
    )
    ref = ToyTask(seed=3)
    ref_summary = fit(ref, train, val, cfg, tmp_path / "ref.pt", device="cpu")

    killed = ToyTask(seed=3, fail_at_epoch=len(train) * 2 + 3)  # dies inside epoch 3
    with pytest.raises(KeyboardInterrupt):
        fit(killed, train, val, cfg, tmp_path / "run.pt", device="cpu")
    (tmp_path / "run.pt").unlink(missing_ok=True)  # what Snakemake does to a failed job's output
    restarted = ToyTask(seed=99)  # different init: everything must come from the checkpoint
    summary = fit(restarted, train, val, cfg, tmp_path / "run.pt", device="cpu")
    assert summary["resumed_from_epoch"] == 2
    assert [h["train_loss"] for h in summary["history"]] == [h["train_loss"] for h in ref_summary["history"]]
    for (k, a), b in zip(ref.model.state_dict().items(), restarted.model.state_dict().values()):
        assert torch.equal(a, b), k
    best_ref = torch.load(tmp_path / "ref.pt", weights_only=True)
    best_run = torch.load(tmp_path / "run.pt", weights_only=True)
    assert best_ref["epoch"] == best_run["epoch"]
    for k, v in best_ref["state_dict"].items():
        assert torch.equal(v, best_run["state_dict"][k])
    last_ref = torch.load(tmp_path / "ref.pt.last", weights_only=True)
    last_run = torch.load(tmp_path / "run.pt.last", weights_only=True)
    for k, v in last_ref["state_dict"].items():
        assert torch.equal(v, last_run["state_dict"][k])


def test_changed_model_config_trains_from_scratch(tmp_path):
    train, val = _data()
    cfg = TrainConfig(epochs=1, progress="off")
    fit(ToyTask(), train, val, cfg, tmp_path / "m.pt", device="cpu")
    other = ToyTask()
    other.model = ToyModel(hidden=4)
    summary = fit(other, train, val, cfg, tmp_path / "m.pt", device="cpu")
    assert summary["resumed_from_epoch"] is None
    assert load_model(tmp_path / "m.pt").config["hidden"] == 4


def test_changed_training_data_trains_from_scratch(tmp_path):
    """A rerun on other data of the same size (e.g. graphs rebuilt with a new module map) must not
    resume the finished run: it would return the old model after zero new epochs."""
    train, val = _data()
    cfg = TrainConfig(epochs=2, progress="off")
    fit(ToyTask(), train, val, cfg, tmp_path / "m.pt", device="cpu")
    assert fit(ToyTask(), train, val, cfg, tmp_path / "m.pt", device="cpu")["resumed_from_epoch"] == 2
    other_train, _ = _data(seed=7)
    summary = fit(ToyTask(), other_train, val, cfg, tmp_path / "m.pt", device="cpu")
    assert summary["resumed_from_epoch"] is None
    assert len(summary["history"]) == 2


def test_corrupt_checkpoint_names_file(tmp_path):
    train, val = _data()
    last = tmp_path / "m.pt.last"
    last.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(InputError, match="m.pt.last"):
        fit(ToyTask(), train, val, TrainConfig(epochs=1, progress="off"), tmp_path / "m.pt", device="cpu")
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="corrupt"):
        load_model(last)


def test_unknown_monitor_and_bad_config(tmp_path):
    train, val = _data()
    with pytest.raises(KeyError, match="available"):
        fit(
            ToyTask(),
            train,
            val,
            TrainConfig(epochs=1, monitor="auc", progress="off"),
            tmp_path / "a.pt",
            "cpu",
        )
    from gnntrack.config import ConfigError

    with pytest.raises(ConfigError):
        fit(ToyTask(), train, val, {"epochs": 1, "optimiser": "adam"}, tmp_path / "b.pt", "cpu")


def test_early_stopping_and_grad_clip(tmp_path):
    train, val = _data()
    cfg = TrainConfig(epochs=50, lr=1e-9, grad_clip=1.0, early_stopping_patience=2, progress="off")
    summary = fit(ToyTask(), train, val, cfg, tmp_path / "e.pt", device="cpu")
    assert summary["stopped_early"] and summary["epochs_run"] < 50


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes(tmp_path, precision):
    """The autocast/GradScaler path (GPU default) also runs on CPU, and its state resumes."""
    train, val = _data()
    cfg = TrainConfig(epochs=2, lr=0.02, precision=precision, grad_clip=1.0, progress="off")
    first = fit(ToyTask(), train, val, cfg, tmp_path / "m.pt", device="cpu")
    assert first["precision"] == {"bf16": "bfloat16", "fp16": "float16"}[precision]
    cfg.epochs = 4  # continue the same run for longer
    more = fit(ToyTask(seed=5), train, val, cfg, tmp_path / "m.pt", device="cpu")
    assert more["resumed_from_epoch"] == 2 and more["epochs_run"] == 4
    losses = [h["train_loss"] for h in more["history"]]
    assert losses[-1] < losses[0]


def _run_state(trainer):
    """Everything a resumed run depends on: weights, optimiser, schedule, generators, loop state."""
    return copy.deepcopy(
        {
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "rng": rng_state(),
            "loop": trainer.state,
        }
    )


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def test_steps_one_by_one_and_restore_what_checkpoint_wrote(tmp_path):
    """restore -> train_epoch -> validate -> end_epoch -> checkpoint, each on its own; restoring
    gives back exactly the state that was written, and finishing the run from there matches fit."""
    train, val = _data()
    cfg = TrainConfig(
        epochs=3, lr=0.01, optimizer="adam", scheduler="cosine", warmup_epochs=0.5, progress="off"
    )
    out = tmp_path / "s.pt"
    trainer = Trainer(ToyTask(seed=3), train, val, cfg, out, device="cpu")
    assert trainer.restore() is None and not trainer.done

    metrics = trainer.train_epoch()
    assert list(metrics) == ["epoch", "train_loss", "lr", "skipped_steps"]
    assert metrics["epoch"] == 1 and metrics["skipped_steps"] == 0 and trainer.state["epoch"] == 0
    trainer.model.eval()
    val_metrics = trainer.validate()
    assert set(val_metrics) == {"loss", "accuracy"} and not trainer.model.training  # mode kept
    row = trainer.end_epoch(metrics, val_metrics)
    assert list(row) == ["epoch", "train_loss", "lr", "skipped_steps", "val_loss", "val_accuracy", "time_s"]
    assert trainer.state["epoch"] == 1 and trainer.state["best_epoch"] == 1
    assert trainer.state["history"] == [row]
    assert not (tmp_path / "s.pt.last").exists(), "end_epoch writes nothing"
    trainer.checkpoint()
    assert {p.name for p in tmp_path.iterdir()} == {"s.pt.last", "s.pt.best", "s.pt.metrics.csv"}
    written = _run_state(trainer)

    # train on without a checkpoint; restore() rolls back to what was written
    trainer.end_epoch(trainer.train_epoch(), trainer.validate())
    assert not _same(_run_state(trainer), written)
    assert trainer.restore() == 1
    assert _same(_run_state(trainer), written)

    # so does a new trainer whose model starts elsewhere
    other = Trainer(ToyTask(seed=99), train, val, cfg, out, device="cpu")
    assert other.restore() == 1
    assert _same(_run_state(other), written)
    while not other.done:
        other.end_epoch(other.train_epoch(), other.validate())
        other.checkpoint()
    summary = other.finish()
    assert summary["resumed_from_epoch"] == 1 and summary["epochs_run"] == 3 and out.exists()

    ref = ToyTask(seed=3)
    ref_summary = fit(ref, train, val, cfg, tmp_path / "ref.pt", device="cpu")
    assert [h["train_loss"] for h in summary["history"]] == [h["train_loss"] for h in ref_summary["history"]]
    assert _same(other.model.state_dict(), ref.model.state_dict())
    assert summary["best_epoch"] == ref_summary["best_epoch"]

    # without resume, restore starts afresh even though a matching .last exists
    fresh = Trainer(ToyTask(seed=3), train, val, replace(cfg, resume=False), out, device="cpu")
    assert fresh.restore() is None
    assert fresh.state["epoch"] == 0 and fresh.state["history"] == []
    assert not (tmp_path / "s.pt.best").exists(), "a previous run's best must not leak in"


def test_steps_out_of_order_are_errors(tmp_path):
    train, val = _data()
    trainer = Trainer(ToyTask(), train, val, TrainConfig(epochs=2, progress="off"), tmp_path / "o.pt", "cpu")
    trainer.restore()
    with pytest.raises(RuntimeError, match="end_epoch"):
        trainer.checkpoint()
    metrics = trainer.train_epoch()
    trainer.end_epoch(metrics, trainer.validate())
    with pytest.raises(ValueError, match="epoch 1"):
        trainer.end_epoch(metrics, {})  # the same epoch twice
