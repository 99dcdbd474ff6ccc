"""The shared training loop: learning, checkpoints, bit-identical resume, clear errors."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from gnntrack.io.errors import InputError
from gnntrack.models import load_model
from gnntrack.models.registry import register_model
from gnntrack.training import TrainConfig, fit, seed_everything

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
