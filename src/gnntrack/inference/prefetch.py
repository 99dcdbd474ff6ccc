"""Read ahead: run an iterator on a background thread, ``depth`` items ahead of its consumer.

The inference pipeline uses it to prepare event n+1 (file read, input checks, node features,
pinned host copies) while event n runs through the stages. The queue is bounded, an exception
raised by the source is re-raised unchanged in the consumer (an ``InputError`` keeps its file,
event and field), and closing the iterator early (``break``, an exception in the consumer, or
garbage collection) stops the thread and closes the source on it before ``close`` returns.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_ITEM, _DONE, _ERROR = 0, 1, 2
_POLL_S = 0.05  # how often a blocked reader checks whether the consumer has gone


class Prefetcher(Generic[T]):
    """Iterate ``make_source()`` on a daemon thread, up to ``depth`` (>= 1) items ahead.

    ``make_source`` is called on the reader thread, so a file it opens is opened, read and
    closed there. Use as an iterator and close it (or use it as a context manager).
    """

    def __init__(self, make_source: Callable[[], Iterator[T]], depth: int = 1, name: str = "prefetch"):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._make_source = make_source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=f"gnntrack-{name}", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- reader thread
    def _put(self, message) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            source = self._make_source()
            with contextlib.closing(source) if hasattr(source, "close") else contextlib.nullcontext():
                for item in source:
                    if not self._put((_ITEM, item)):
                        return
            self._put((_DONE, None))
        except BaseException as exc:  # re-raised in the consumer
            self._put((_ERROR, exc))

    # ---------------------------------------------------------------- consumer
    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value
        self._finished = True
        self._thread.join()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the reader (it drops what it read ahead) and wait for it to close its source."""
        self._finished = True
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_S)  # unblock a reader waiting on a full queue
        self._thread.join()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # an abandoned iterator must not leave its thread reading
        with contextlib.suppress(Exception):
            self._stop.set()
