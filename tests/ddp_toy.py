"""Training functions the distributed tests start on several ranks (``gnntrack.training.distributed.launch``).

A rank imports this module by name, so it lives beside the tests (on the ranks' PYTHONPATH) and
takes only JSON-able arguments. The toy task is test_training_loop's (a linear classifier with
dropout, so every step draws random numbers), with its validation split into per-item parts as
the stage tasks do, so that validation is shared out over the ranks too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from test_training_loop import ToyTask, _data
from torch import nn

from gnntrack.training import TrainConfig
from gnntrack.training.distributed import rank_and_size
from gnntrack.training.loop import Trainer

torch.set_num_threads(1)


class PartsToyTask(ToyTask):
    """ToyTask whose validation is the reduction of per-item parts (shared out over ranks), and
    whose loss raises ``RuntimeError`` after ``fail_after`` calls when that is set."""

    def __init__(self, seed=0, fail_after=None):
        super().__init__(seed)
        self.fail_after = fail_after

    def loss(self, item, device):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated failure of one rank")
        return super().loss(item, device)

    def evaluate(self, items, device):
        return self.reduce_evaluation([self.evaluate_item(i, it, device) for i, it in enumerate(items)])

    def evaluate_item(self, index, item, device):
        x, y = item
        logit = self.model(x.to(device))
        loss = float(nn.functional.binary_cross_entropy_with_logits(logit, y))
        return loss, int(((logit > 0) == (y > 0.5)).sum()), len(y)

    def reduce_evaluation(self, parts):
        return {
            "loss": sum(p[0] for p in parts) / len(parts),
            "accuracy": sum(p[1] for p in parts) / sum(p[2] for p in parts),
        }


def train_toy(
    output: str,
    train_cfg: dict,
    n_items: int = 16,
    fail_rank: int | None = None,
    fail_after: int | None = None,
    report: str | None = None,
) -> dict:
    """Train the toy task with ``Trainer.fit``; rank ``fail_rank`` raises after ``fail_after`` loss
    calls. ``report``: each rank writes its process id to ``<report>.<rank>.pid`` at the start and
    ``<report>.<rank>.json`` (summary, rank count, loss calls) at the end."""
    rank, size = rank_and_size()
    if report is not None:
        Path(f"{report}.{rank}.pid").write_text(str(os.getpid()))
    train, val = _data(n_items)
    task = PartsToyTask(seed=7, fail_after=fail_after if fail_rank == rank else None)
    summary = Trainer(task, train, val, TrainConfig(**train_cfg), output, device="cpu").fit()
    if report is not None:
        Path(f"{report}.{rank}.json").write_text(
            json.dumps({"summary": summary, "ranks": size, "pid": os.getpid(), "calls": task.calls})
        )
    return summary
