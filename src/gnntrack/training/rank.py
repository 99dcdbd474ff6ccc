"""One rank of a data-parallel training job: ``python -m gnntrack.training.rank CALLFILE``.

``gnntrack.training.distributed.launch`` writes the call file (target function, its keyword
arguments, threads, the ``distributed`` settings) and starts this entry point once per rank, as
local processes or as the tasks of an ``srun`` step; ``torchrun`` can start it too. The rank
finds its place from the environment, joins the process group, calls the target and leaves. Any
error ends the process at once with status 1 (no group teardown: the other ranks may be waiting
in a collective), which the launcher, or ``srun --kill-on-bad-exit``, turns into the end of the
whole job.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ..config import from_dict
from .config import DistributedConfig
from .distributed import init_process_group, rank_env, resolve_target

log = logging.getLogger("gnntrack.training.rank")


def run_rank(call_file: str | Path) -> int:
    """Join the group, run the call, leave; returns 0, or ends the process with status 1."""
    call = json.loads(Path(call_file).read_text())
    cfg = from_dict(DistributedConfig, call["distributed"], "distributed")
    env = rank_env()
    rank = env.rank if env is not None else "?"
    logging.basicConfig(
        stream=sys.stderr,
        # the other ranks only warn: rank 0 reports the run
        level=logging.INFO if env is None or env.rank == 0 else logging.WARNING,
        format=f"%(asctime)s rank {rank} %(name)s %(levelname)s: %(message)s",
        force=True,
    )
    torch.set_num_threads(max(1, int(call.get("threads", 1))))
    try:
        init_process_group(cfg, env)
        resolve_target(call["target"])(**call["kwargs"])
    except BaseException:
        log.exception("rank %s failed", rank)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(
            "usage: python -m gnntrack.training.rank CALLFILE (written by gnntrack.training.distributed.launch)"
        )
    sys.exit(run_rank(sys.argv[1]))
