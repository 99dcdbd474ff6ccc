"""A real one-node SLURM cluster for tests: munged + slurmctld + slurmd on this machine.

Needs the Debian packages ``slurm-wlm`` and ``munge`` and root (slurmd runs jobs as their
owner). Everything the cluster writes (config, state, spool, logs) lives in one folder; only
processes started here are stopped, by their own handles. ``python tests/slurm_cluster.py``
starts one for manual use (partitions ``cpu`` and ``gpu``, two fake GPUs) and stops it on Ctrl-C.

The one node can be in several partitions (named like a site's, e.g. ``cpu`` and ``gpu``) and
can offer fake GPUs (gres.conf: a plain file each, ``Flags=CountOnly``): SLURM accepts, schedules
and records ``--gpus``/``--gres=gpu`` requests as on a GPU cluster, while the jobs find no CUDA
device and run on the CPU.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scancel")
MUNGE_KEY = Path("/etc/munge/munge.key")
PARTITION = "debug"


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here (None when it can)."""
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        return f"SLURM/munge not installed (missing {', '.join(missing)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (install the munge package)"
    return None


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("cannot read MemTotal from /proc/meminfo")


def _munge_works() -> bool:
    try:
        token = subprocess.run(["munge", "-n"], capture_output=True, timeout=10, check=True).stdout
        subprocess.run(["unmunge"], input=token, capture_output=True, timeout=10, check=True)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def slurm_conf(
    workdir: Path,
    host: str,
    cpus: int,
    memory_mb: int,
    partitions: tuple[str, ...] = (PARTITION,),
    gpus: int = 0,
) -> str:
    """slurm.conf of a one-node cluster; ``gpus`` > 0 also needs gres_conf() beside it."""
    ctld_port, d_port = _free_port(), _free_port()
    gres_types, node_gres = ("GresTypes=gpu\n", f" Gres=gpu:{gpus}") if gpus else ("", "")
    partition_lines = "".join(
        f"PartitionName={name} Nodes={host} Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE State=UP\n"
        for i, name in enumerate(partitions)
    )
    return f"""\
ClusterName=gnntrack-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={workdir}/state
SlurmdSpoolDir={workdir}/spool
SlurmctldPidFile={workdir}/slurmctld.pid
SlurmdPidFile={workdir}/slurmd.pid
SlurmctldLogFile={workdir}/slurmctld.log
SlurmdLogFile={workdir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue must still see finished jobs when the executor polls them
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=300
{gres_types}NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb}{node_gres} State=UNKNOWN
{partition_lines}"""


def gres_conf(host: str, devices: list[Path]) -> str:
    """GPUs that are only a count (no GPU library is asked about them).

    SLURM 22.05 drops a GPU without a device file from the node, so each is a plain file.
    """
    files = ",".join(str(d) for d in devices)
    return f"NodeName={host} Name=gpu File={files} Flags=CountOnly\n"


class SlurmCluster:
    """Handles of the daemons of one test cluster; ``env`` holds SLURM_CONF for clients.

    ``partitions``: their names, all on the one node, the first the default; ``gpus``: how many
    count-only GPUs the node offers.
    """

    def __init__(self, workdir: Path, partitions: tuple[str, ...] = (PARTITION,), gpus: int = 0):
        self.workdir = Path(workdir)
        self.conf = self.workdir / "slurm.conf"
        self.procs: list[subprocess.Popen] = []
        self._outputs = []
        self.bin = self.workdir / "bin"
        self.env = {
            **os.environ,
            "SLURM_CONF": str(self.conf),
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.partitions = tuple(dict.fromkeys(partitions))
        self.partition = self.partitions[0]
        self.gpus = gpus

    def _spawn(self, argv: list[str], log: str, **kwargs) -> subprocess.Popen:
        out = open(self.workdir / log, "w")  # noqa: SIM115 - closed with the process in stop()
        self._outputs.append(out)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, **kwargs)
        self.procs.append(proc)
        return proc

    def _write_srun_wrapper(self) -> None:
        """``srun`` that always finds this cluster's config.

        Inside a job, snakemake-executor-plugin-slurm-jobstep drops every SLURM_* variable
        (SLURM_CONF included) before its nested ``srun``, so a cluster whose slurm.conf is not at
        the compiled-in default path needs the path baked into the ``srun`` found on PATH.
        """
        self.bin.mkdir(exist_ok=True)
        wrapper = self.bin / "srun"
        wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {_exe("srun")} "$@"\n')
        wrapper.chmod(0o755)

    def _start_munge(self) -> None:
        if _munge_works():
            return
        munge = pwd.getpwnam("munge")
        for d in ("/run/munge", "/var/lib/munge", "/var/log/munge", "/etc/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
            os.chown(d, munge.pw_uid, munge.pw_gid)
        if not MUNGE_KEY.exists():
            subprocess.run(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)], check=True)
        os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
        MUNGE_KEY.chmod(0o400)
        self._spawn(
            [_exe("munged"), "--foreground"], "munged.out", user="munge", group="munge", extra_groups=[]
        )
        self._wait(_munge_works, "munged")

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for d in ("state", "spool"):
            (self.workdir / d).mkdir(exist_ok=True)
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(
            slurm_conf(self.workdir, host, os.cpu_count() or 1, _memory_mb(), self.partitions, self.gpus)
        )
        if self.gpus:  # slurmd reads gres.conf from beside slurm.conf
            devices = [self.workdir / f"fake-gpu{i}" for i in range(self.gpus)]
            for device in devices:
                device.touch()
            (self.workdir / "gres.conf").write_text(gres_conf(host, devices))
        self._write_srun_wrapper()
        self._start_munge()
        self._spawn([_exe("slurmctld"), "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        self._spawn([_exe("slurmd"), "-D", "-f", str(self.conf), "-N", host], "slurmd.out")
        self._wait(self._node_idle, "slurmd registered with slurmctld", timeout)
        return self

    def _node_idle(self) -> bool:
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
        states = {line.strip().rstrip("*") for line in res.stdout.splitlines() if line.strip()}
        return res.returncode == 0 and states == {"idle"}  # one line per partition

    def _wait(self, ready, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0].args[0]} exited ({dead[0].returncode}); logs in {self.workdir}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.workdir}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        for out in self._outputs:
            out.close()
        self._outputs.clear()

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.workdir.glob("*.log")) if p.is_file()
        )


@contextlib.contextmanager
def slurm_cluster(
    workdir: Path, partitions: tuple[str, ...] = (PARTITION,), gpus: int = 0
) -> Iterator[SlurmCluster]:
    cluster = SlurmCluster(workdir, partitions, gpus)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


if __name__ == "__main__":
    import tempfile

    reason = unavailable_reason()
    if reason:
        raise SystemExit(reason)
    # the partitions slurm/config.yaml names, so that `snakemake --profile slurm` runs as shipped
    with slurm_cluster(Path(tempfile.mkdtemp(prefix="slurm-")), ("cpu", "gpu"), gpus=2) as c:
        print(f"export SLURM_CONF={c.conf} PATH={c.bin}:$PATH")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
