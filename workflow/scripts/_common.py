"""Plumbing shared by the workflow scripts: log into the rule's log file, pick device and threads.

Scripts stay thin: ``start(snakemake)`` then one call of the gnntrack API.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# A workflow run in a --sdm conda env (without the package installed) imports the checkout's source.
_SRC = Path(__file__).resolve().parents[2] / "src"
try:
    import gnntrack  # noqa: F401
except ImportError:  # pragma: no cover - only outside the project venv
    sys.path.insert(0, str(_SRC))


def start(snakemake, torch_threads: bool = False) -> logging.Logger:
    """Send stdout, stderr (tracebacks included) and logging to the rule's log file."""
    log_file = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    sys.stdout = sys.stderr = log_file
    logging.basicConfig(
        stream=log_file,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        force=True,
    )
    if torch_threads:
        import torch

        torch.set_num_threads(max(1, int(snakemake.threads)))
    logger = logging.getLogger(f"gnntrack.workflow.{snakemake.rule}")
    logger.info(
        "rule %s, wildcards %s, threads %s", snakemake.rule, dict(snakemake.wildcards), snakemake.threads
    )
    return logger


def train(snakemake, section: str, target: str, **kwargs) -> None:
    """Run a stage's training function (``"gnntrack.gnn:run_train_gnn"``) on the ranks its
    section's ``train.distributed`` asks for (``gnntrack.training.distributed.launch``: an srun
    step inside a SLURM job, local processes elsewhere; in this process with one rank).

    ``threads`` is per rank; locally the job's threads are shared out over its ranks.
    """
    from gnntrack.campaign import stage_params
    from gnntrack.training.distributed import in_slurm_job, launch

    dist = stage_params(snakemake.config, section)["train"]["distributed"]
    threads = max(1, int(snakemake.threads))
    if not in_slurm_job():
        threads = max(1, threads // dist["ranks"])
    launch(target, kwargs, dist, threads=threads, call_dir=Path(snakemake.output[0]).parent)


def device(snakemake) -> str:
    """The campaign's device setting ("auto" -> CUDA when present, else CPU)."""
    return snakemake.config.get("device", "auto")
