"""Write outputs under a temporary name and rename when complete.

An interrupted or failed job must never leave a file that looks finished: the output appears
only through an atomic rename of a complete temporary. Temporaries are named
``.<name>.tmp-<host>-<pid>`` next to the output; one left behind by a process that died without
cleaning up (``kill -9``, a node crash) is removed by the next write of the same output on that
host once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

#: Host part of temporary names: a process id only identifies a process on its own host, and
#: outputs may live on a file system shared by several hosts (cluster runs).
_HOST = "".join(c if c.isalnum() or c in "._" else "_" for c in socket.gethostname()) or "localhost"


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, OSError):
        return True  # cannot tell: keep the file
    return True


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporaries of ``path`` left by dead processes of this host (or of the old, host-less naming)."""
    path = Path(path)
    prefix = _tmp_prefix(path)
    if not path.parent.is_dir():
        return []
    stale = []
    for entry in path.parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        tag = entry.name[len(prefix) :]
        host, sep, pid = tag.rpartition("-")
        if not sep:
            host, pid = None, tag  # ".<name>.tmp-<pid>": written before host names were added
        if not pid.isdigit() or int(pid) <= 0 or (host is not None and host != _HOST):
            continue
        if int(pid) == os.getpid() or not _pid_alive(int(pid)):
            stale.append(entry)
    return stale


def _remove(entry: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, keep_name: bool = False) -> Iterator[Path]:
    """Yield a temporary path; rename it to ``path`` only if the block succeeds.

    With ``keep_name`` the temporary is ``.<name>.tmp-<host>-<pid>/<name>``: it has the output's
    own file name, for writers that record the name inside the file (ROOT does), so that the
    bytes do not depend on the process that wrote them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for entry in stale_temporaries(path):
        _remove(entry)
    holder = path.with_name(f"{_tmp_prefix(path)}{_HOST}-{os.getpid()}")
    if keep_name:
        holder.mkdir()
        tmp = holder / path.name
    else:
        tmp = holder
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        if keep_name:
            _remove(holder)
