"""Data-parallel training: the process group of a training job's ranks, and their launcher.

``Trainer`` trains data-parallel whenever a default process group is initialised (see
``gnntrack.training.loop``); this module makes that group and starts the ranks:

- ``launch(target, kwargs, cfg)`` runs a training function (``"gnntrack.gnn:run_train_gnn"``)
  on ``cfg.ranks`` processes and returns when all have finished. Inside a SLURM job it starts them
  as the tasks of one ``srun`` step (over ``cfg.nodes`` nodes, ``--kill-on-bad-exit``); elsewhere
  as local processes (one node). If any rank fails, the others are stopped and ``launch`` raises,
  so a failure never leaves a job hanging. With one rank it calls the function in-process.
- each rank (``python -m gnntrack.training.rank CALLFILE``, ``run_rank``) reads its place from the
  environment (``rank_env``: torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, or SLURM's
  ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` with the first host of the step's node list
  as ``MASTER_ADDR``), joins the group (``init_process_group``: NCCL on CUDA devices, gloo on
  CPUs), calls the function, and leaves. Started by ``torchrun`` or a hand-written ``srun``
  directly, the same entry point works.

Everything a rank writes besides its log (checkpoints, metrics, model files) is written by rank 0
(``is_main``); the others only compute.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..config import from_dict
from .config import DistributedConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankEnv:
    """Where one process sits in the job: global rank, rank count, rank on its node, rendezvous."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list (``"gpu[07-09,12],cpu1"`` -> ``"gpu07"``)."""
    first = re.split(r",(?![^\[]*\])", nodelist.strip(), maxsplit=1)[0]
    m = re.fullmatch(r"([^\[]*)\[([^\]]+)\](.*)", first)
    if m is None:
        return first
    prefix, ranges, suffix = m.groups()
    return prefix + ranges.split(",")[0].split("-")[0] + suffix


def _port_from_job(job_id: str) -> int:
    """A rendezvous port every task of a SLURM job derives alike, when none is given."""
    return 20000 + int(re.sub(r"\D", "", job_id) or 0) % 20000


def rank_env(environ: Mapping[str, str] | None = None) -> RankEnv | None:
    """This process's place in a multi-process job, from torchrun's or SLURM's variables; None
    when it was started alone (no ``RANK`` and no SLURM task of a multi-task step)."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return RankEnv(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
        )
    ntasks = env.get("SLURM_NTASKS") or env.get("SLURM_STEP_NUM_TASKS")
    if "SLURM_PROCID" in env and ntasks and int(ntasks) > 1:
        nodelist = (
            env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        )
        if not nodelist and "MASTER_ADDR" not in env:
            raise RuntimeError(
                "SLURM task without SLURM_STEP_NODELIST/SLURM_JOB_NODELIST: no rendezvous host"
            )
        port = env.get("MASTER_PORT") or _port_from_job(env.get("SLURM_JOB_ID", "0"))
        return RankEnv(
            rank=int(env["SLURM_PROCID"]),
            world_size=int(ntasks),
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            master_addr=env.get("MASTER_ADDR") or first_host(nodelist),
            master_port=int(port),
        )
    return None


def rank_and_size() -> tuple[int, int]:
    """(rank, number of ranks) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rank() -> int:
    """This process's rank on its node (0 when it was started alone)."""
    env = rank_env()
    return 0 if env is None else env.local_rank


def is_main() -> bool:
    """True in the one process that writes files: rank 0, or a process without a group."""
    return rank_and_size()[0] == 0


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """The CUDA device of a rank: ``cuda`` without an index -> this node's ``local_rank``-th GPU."""
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def init_process_group(cfg: DistributedConfig | None = None, env: RankEnv | None = None) -> RankEnv:
    """Join the job's default process group (backend ``cfg.backend``: "auto" = NCCL when this node
    has CUDA devices, else gloo) and pin this rank's GPU."""
    cfg = cfg or DistributedConfig()
    env = env or rank_env()
    if env is None:
        raise RuntimeError(
            "not started as a rank: no RANK/WORLD_SIZE or multi-task SLURM step in the environment"
        )
    backend = cfg.backend
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    dist.init_process_group(
        backend,
        init_method=f"tcp://{env.master_addr}:{env.master_port}",
        rank=env.rank,
        world_size=env.world_size,
        timeout=datetime.timedelta(seconds=cfg.timeout_s),
    )
    members = [None] * env.world_size
    dist.all_gather_object(members, (env.rank, env.local_rank, socket.gethostname(), os.getpid()))
    log.info(
        "%d ranks joined via %s:%d, backend %s: %s",
        env.world_size,
        env.master_addr,
        env.master_port,
        backend,
        ", ".join(f"rank {r} (local {lr}) {host} pid {pid}" for r, lr, host, pid in members),
    )
    return env


# -- the launcher ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _fileno(stream) -> int | None:
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def in_slurm_job(environ: Mapping[str, str] | None = None) -> bool:
    """Inside a SLURM allocation with ``srun`` on the PATH: ranks start as tasks of an srun step."""
    env = os.environ if environ is None else environ
    return "SLURM_JOB_ID" in env and shutil.which("srun") is not None


def launch(
    target: str,
    kwargs: dict[str, Any],
    cfg: DistributedConfig | dict | None = None,
    threads: int = 1,
    call_dir: str | Path | None = None,
    grace_s: float = 10.0,
) -> None:
    """Run ``target(**kwargs)`` (``"package.module:function"``, importable by the ranks; JSON-able
    keyword arguments) on ``cfg.ranks`` processes with ``threads`` CPU threads each, and wait for them.

    Inside a SLURM job the ranks are the tasks of ``srun --ntasks=ranks --nodes=nodes
    --kill-on-bad-exit=1`` (so SLURM ends the step when a rank fails); elsewhere local processes
    (``cfg.nodes`` must be 1), of which the rest are terminated (then killed after ``grace_s``) as
    soon as one fails. Raises ``RuntimeError`` naming the failed rank(s); the ranks' own output
    (tracebacks included) goes to this process's stdout/stderr. ``call_dir`` holds the call file
    the ranks read (default: the current directory; it must be visible from every node).
    """
    cfg = (
        cfg
        if isinstance(cfg, DistributedConfig)
        else from_dict(DistributedConfig, dict(cfg or {}), "distributed")
    )
    if ":" not in target:
        raise ValueError(f"launch target must be '<module>:<function>', got {target!r}")
    if cfg.ranks == 1:
        resolve_target(target)(**kwargs)
        return
    slurm = in_slurm_job()
    if not slurm and cfg.nodes > 1:
        raise RuntimeError(f"distributed.nodes = {cfg.nodes} needs a SLURM job (srun); here only one node")
    call = {"target": target, "kwargs": kwargs, "threads": int(threads), "distributed": vars(cfg)}
    call_dir = Path(call_dir or ".")
    call_dir.mkdir(parents=True, exist_ok=True)
    call_file = call_dir / f".gnntrack-ranks-{socket.gethostname()}-{os.getpid()}.json"
    call_file.write_text(json.dumps(call))
    port = _free_port()
    worker = [sys.executable, "-m", "gnntrack.training.rank", str(call_file.resolve())]
    out, err = _fileno(sys.stdout), _fileno(sys.stderr)
    log.info("starting %d ranks of %s (%s)", cfg.ranks, target, "srun" if slurm else "local processes")
    try:
        if slurm:
            cmd = [
                "srun",
                f"--ntasks={cfg.ranks}",
                f"--nodes={cfg.nodes}",
                f"--cpus-per-task={max(1, threads)}",
                "--kill-on-bad-exit=1",
                *worker,
            ]
            env = {**os.environ, "MASTER_PORT": str(port), "PYTHONUNBUFFERED": "1"}
            for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
                env.pop(var, None)
            rc = subprocess.run(cmd, env=env, stdout=out, stderr=err, check=False).returncode
            if rc != 0:
                raise RuntimeError(
                    f"distributed training failed: srun step of {cfg.ranks} ranks exited with {rc}"
                )
        else:
            _run_local(worker, cfg.ranks, port, out, err, grace_s)
    finally:
        call_file.unlink(missing_ok=True)


def _run_local(worker: list[str], ranks: int, port: int, out, err, grace_s: float) -> None:
    procs: list[subprocess.Popen] = []
    try:
        for rank in range(ranks):
            env = {
                **os.environ,
                "RANK": str(rank),
                "WORLD_SIZE": str(ranks),
                "LOCAL_RANK": str(rank),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "PYTHONUNBUFFERED": "1",
            }
            procs.append(subprocess.Popen(worker, env=env, stdout=out, stderr=err))
        while True:
            codes = [p.poll() for p in procs]
            failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                raise RuntimeError(
                    "distributed training failed: "
                    + ", ".join(f"rank {r} exited with {codes[r]}" for r in failed)
                    + "; the other ranks were stopped"
                )
            if all(c == 0 for c in codes):
                return
            time.sleep(0.1)
    finally:
        _stop(procs, grace_s)


def _stop(procs: list[subprocess.Popen], grace_s: float) -> None:
    """Terminate the ranks still running, kill those that outlive ``grace_s``."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in alive:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def resolve_target(target: str):
    """The function a ``"package.module:function"`` target names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
