"""Progress of long loops: a tqdm bar on a terminal, periodic log lines everywhere else.

Workflow jobs send stderr and logging into the rule's log file (``workflow/scripts/_common.py``),
where a tqdm bar is unreadable. ``progress`` wraps an iterable and, depending on the mode:

- ``bar``: a tqdm bar on stderr;
- ``log``: an INFO log line at most every ``every_s`` seconds, e.g.
  ``simulate shard 3: 120/500 events (24.0 %), 2.1 events/s, ETA 3m01s``;
- ``off``: nothing.

Both ``bar`` and ``log`` end with one INFO line with the count, total time and rate
(``simulate shard 3: done, 500 events in 3m58s, 2.1 events/s``). ``auto`` (the default) is
``bar`` when stderr is a terminal and ``log`` otherwise; the environment variable
``GNNTRACK_PROGRESS`` (``auto`` | ``bar`` | ``log`` | ``off``) overrides ``auto``, and
``GNNTRACK_PROGRESS_EVERY`` (seconds) the default interval between log lines (30 s). The cost
per item is one clock read and a comparison; nothing is formatted between log lines.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ENV_VAR = "GNNTRACK_PROGRESS"
ENV_EVERY = "GNNTRACK_PROGRESS_EVERY"
MODES = ("auto", "bar", "log", "off")
DEFAULT_EVERY_S = 30.0

_log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()


def _env_ignored(name: str, value: str, expected: str) -> None:
    """A bad environment setting is ignored, with one warning: it must not fail a long job."""
    if (name, value) not in _warned:
        _warned.add((name, value))
        _log.warning("ignoring %s=%r: expected %s", name, value, expected)


def resolve_mode(mode: str | None = None, stream=None) -> str:
    """``bar``, ``log`` or ``off``: ``mode`` unless it is ``auto``/None, then ``$GNNTRACK_PROGRESS``
    unless that is unset or ``auto``, then ``bar`` if ``stream`` (default: stderr) is a terminal,
    else ``log``. A ``mode`` outside ``MODES`` is a ValueError; a bad environment value is ignored
    with a warning."""
    value = (mode or "auto").strip().lower()
    if value not in MODES:
        raise ValueError(f"progress mode {mode!r} is not one of {list(MODES)}")
    if value == "auto":
        env = os.environ.get(ENV_VAR, "")
        value = env.strip().lower() or "auto"
        if value not in MODES:
            _env_ignored(ENV_VAR, env, f"one of {list(MODES)}")
            value = "auto"
    if value != "auto":
        return value
    stream = sys.stderr if stream is None else stream
    try:
        return "bar" if stream.isatty() else "log"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "log"


def resolve_every(every_s: float | None = None) -> float:
    """Seconds between log lines: ``every_s``, else ``$GNNTRACK_PROGRESS_EVERY``, else 30 (a bad
    environment value is ignored with a warning)."""
    if every_s is not None:
        return float(every_s)
    value = os.environ.get(ENV_EVERY, "")
    if not value.strip():
        return DEFAULT_EVERY_S
    try:
        every = float(value)
    except ValueError:
        every = math.nan
    if not 0 <= every < math.inf:
        _env_ignored(ENV_EVERY, value, "a number of seconds >= 0")
        return DEFAULT_EVERY_S
    return every


def format_duration(seconds: float) -> str:
    """``4.2s``, ``42s``, ``3m01s``, ``2h05m``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _format_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Progress:
    """Counts work done; shows it as a bar or as periodic log lines (see the module docstring).

    Use ``update(n)`` and ``close()`` (or ``with Progress(...) as p:``), or ``wrap(iterable)`` to
    count the items of an iterable as they are consumed (several iterables may be wrapped in turn,
    e.g. one per input file). ``set_postfix(loss=0.31)`` adds ``key=value`` fields to the lines
    (and the bar); the values are formatted only when a line is written.

    ``mode``: ``auto`` | ``bar`` | ``log`` | ``off`` (see ``resolve_mode``); ``logger``: where the
    lines go (default ``gnntrack.progress``); ``every_s``: least seconds between two periodic
    lines (None: ``resolve_every``; 0: one per update); ``clock``: seconds, monotonic (tests pass
    a fake one).
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "progress",
        unit: str = "items",
        logger: logging.Logger | None = None,
        every_s: float | None = None,
        mode: str | None = None,
        stream=None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = None if total is None else int(total)
        self.desc = desc
        self.unit = unit
        self.logger = logger if logger is not None else _log
        self.every_s = resolve_every(every_s)
        self.mode = resolve_mode(mode, stream)
        self.clock = clock
        self.n = 0
        self.closed = False
        self.postfix: dict[str, Any] = {}
        self._start = clock()
        self._next = self._start + self.every_s
        self._bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                desc=desc,
                unit=unit,
                leave=False,
                dynamic_ncols=True,
                file=sys.stderr if stream is None else stream,
            )

    # -- counting ---------------------------------------------------------------------------------

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.mode == "log":
            now = self.clock()
            if now >= self._next:
                self._next = now + self.every_s
                self.logger.info("%s", self.line(now))
        elif self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **fields: Any) -> None:
        """Fields shown after the rate (e.g. the running loss); replaces the previous ones."""
        self.postfix = fields
        if self._bar is not None:
            self._bar.set_postfix({k: _format_value(v) for k, v in fields.items()}, refresh=False)

    def wrap(self, iterable: Iterable[T], close: bool = False) -> Iterator[T]:
        """Yield the items of ``iterable``, counting each once the loop body is done with it.

        With ``close``, end with ``close()`` when the iterable is exhausted or the count reached
        ``total`` (``done``), or when the loop stops before (``stopped at``: on ``break`` or an
        exception, when the generator is closed).
        """
        finished = False
        try:
            for item in iterable:
                yield item
                self.update()
            finished = True
        finally:
            if close:
                self.close(done=finished or (self.total is not None and self.n >= self.total))

    def close(self, done: bool | None = None) -> None:
        """End the bar and write the final line (once). ``done``: the work completed; by default,
        whether the count reached ``total`` (or True without a total)."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        if self.mode == "off":
            return
        if done is None:
            done = self.total is None or self.n >= self.total
        self.logger.info("%s", self.final_line(self.clock(), done))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(done=None if exc_type is None else False)

    # -- text -------------------------------------------------------------------------------------

    def _rate(self, now: float) -> float:
        elapsed = now - self._start
        return self.n / elapsed if elapsed > 0 else math.nan

    def _count(self) -> str:
        if self.total is None:
            return f"{self.n} {self.unit}"
        pct = 100.0 * self.n / self.total if self.total > 0 else 100.0
        return f"{self.n}/{self.total} {self.unit} ({pct:.1f} %)"

    def _rate_text(self, rate: float) -> str:
        if not math.isfinite(rate):
            return f"? {self.unit}/s"
        return f"{rate:.3g} {self.unit}/s"

    def _postfix_text(self) -> str:
        return "".join(f", {k}={_format_value(v)}" for k, v in self.postfix.items())

    def line(self, now: float | None = None) -> str:
        """The periodic line: count, percentage, rate, ETA (with a total), postfix fields."""
        now = self.clock() if now is None else now
        rate = self._rate(now)
        text = f"{self.desc}: {self._count()}, {self._rate_text(rate)}"
        if self.total is not None:
            left = max(self.total - self.n, 0)
            eta = left / rate if rate > 0 else math.inf
            text += f", ETA {format_duration(eta)}"
        return text + self._postfix_text()

    def final_line(self, now: float | None = None, done: bool = True) -> str:
        """The last line: ``done, <n> <unit> in <time>, <rate>``, or for work that ended early
        ``stopped at <n>/<total> <unit> (<pct> %) after <time>, <rate>``."""
        now = self.clock() if now is None else now
        elapsed = format_duration(now - self._start)
        rate = self._rate_text(self._rate(now))
        if done:
            text = f"{self.desc}: done, {self.n} {self.unit} in {elapsed}, {rate}"
        else:
            text = f"{self.desc}: stopped at {self._count()} after {elapsed}, {rate}"
        return text + self._postfix_text()


def shard_name(path: str | Path) -> str:
    """``<folder>/<file>`` of a shard path (``train/3.h5``), for progress descriptions."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def safe_total(count: Callable[[], int | None]) -> int | None:
    """``count()``, or None when it raises: a total only buys the ETA, so an input that cannot
    tell its size (a damaged file, say) is left to the loop that reads it to report."""
    try:
        return count()
    except Exception as exc:  # noqa: BLE001
        _log.debug("no progress total (%s: %s)", type(exc).__name__, exc)
        return None


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "progress",
    unit: str = "items",
    logger: logging.Logger | None = None,
    every_s: float | None = None,
    mode: str | None = None,
    **kwargs: Any,
) -> Iterator[T]:
    """Yield the items of ``iterable`` unchanged while showing progress (see ``Progress``).

    ``total`` defaults to ``len(iterable)`` when it has one. The final line is written when the
    iterable is exhausted (``done``), or when the loop stops early (``stopped at n/total``): on
    ``break`` or an exception, as soon as the generator is closed. ``kwargs``: ``stream``,
    ``clock`` of ``Progress``.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    return Progress(total, desc, unit, logger, every_s, mode, **kwargs).wrap(iterable, close=True)
