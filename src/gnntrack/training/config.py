"""Settings of the shared training loop (``gnntrack.training.fit``), embedded in every stage config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from ..config import Count, NonNegative, NonNegativeInt, Positive, Probability, Rule


@dataclass
class DistributedConfig:
    """Data-parallel training: how many processes (ranks) one training job runs on.

    Each rank trains on its share of every optimiser step's items (``TrainConfig.batch_items``)
    and the gradients are summed over ranks, so the result does not depend on the rank count
    (up to float rounding) and a checkpoint resumes with any count. 1 = one process, no process
    group. In the workflow a training rule with ``ranks`` > 1 asks the scheduler for that many
    tasks (one GPU each on a GPU rule) over ``nodes`` nodes.
    """

    ranks: Count = 1
    nodes: Count = 1
    #: "auto": nccl when the ranks train on CUDA devices, else gloo
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    #: a collective that waits this long (a rank hung or gone) fails the job
    timeout_s: Positive = 600.0


@dataclass
class TrainConfig:
    """Optimiser, schedule, precision and checkpoint policy of one training run.

    One optimiser step takes ``batch_items`` items (graphs, events or regions of one; one by
    default) and follows their mean gradient; an epoch visits every training item once in a
    seeded random order, capped at ``max_steps_per_epoch`` optimiser steps.
    """

    epochs: Count = 10
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: Positive = 1e-3
    weight_decay: NonNegative = 0.0
    amsgrad: bool = False  # adam/adamw: AMSGrad variant (max of past second moments)
    momentum: Probability = 0.9  # sgd only
    #: learning-rate decay; "none", "step" and "cosine" are applied per optimiser step
    #: (cosine over all steps of the run), "plateau" once per epoch on the monitored metric
    scheduler: Literal["none", "step", "cosine", "plateau"] = "none"
    #: linear warm-up from lr/steps to lr over this many epochs (fractions allowed); not with plateau
    warmup_epochs: NonNegative = 0.0
    step_size: Count = 10  # step: epochs between decays
    gamma: Annotated[float, Rule(exclusive_minimum=0, exclusive_maximum=1)] = (
        0.5  # step/plateau: decay factor
    )
    min_lr: NonNegative = 0.0  # cosine: final lr; plateau: floor
    plateau_patience: NonNegativeInt = 2
    max_steps_per_epoch: Count | None = None
    #: items per optimiser step (the global batch, shared out over the ranks); with more than
    #: one, every item's random draws (dropout, edge or pair sampling) come from its own seed
    batch_items: Count = 1
    grad_clip: Positive | None = None  # max gradient L2 norm
    #: "auto": bf16 autocast on a GPU that supports it, else fp16 + GradScaler; fp32 on CPU.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    seed: NonNegativeInt = 0
    #: deterministic kernels (``torch.use_deterministic_algorithms``): bit-identical GPU reruns
    #: and resumes at some speed cost; CPU runs are deterministic anyway
    deterministic: bool = False
    #: key of the task's ``evaluate`` dict (or "train_loss") that selects the best checkpoint
    monitor: str = "loss"
    mode: Literal["min", "max"] = "min"
    early_stopping_patience: Count | None = None  # epochs without improvement before stopping
    resume: bool = True  # continue from ``<output>.last`` when it exists and matches
    #: progress within an epoch (``gnntrack.progress``): "on" = a tqdm bar, "off" = none, "auto" = a
    #: bar on a terminal, else a log line (steps, rate, ETA) every 30 s; $GNNTRACK_PROGRESS decides "auto"
    progress: Literal["auto", "on", "off"] = "auto"
    tensorboard: bool = False  # writes ``<output>.tb/`` when the tensorboard package is importable
    #: data-parallel ranks of the job (how the run executes, not what it computes: not part of the
    #: checkpoint's fingerprint, so a run resumes with another rank count)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
