"""Waiting in tests: poll a condition, and give a slow machine as long as it keeps moving."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any


class _Patience:
    """The limits of a wait: ``timeout`` seconds from the start, or, with ``progress``, since
    the last change of its value."""

    def __init__(self, timeout: float, progress: Callable[[], Any] | None) -> None:
        self.timeout, self.progress = timeout, progress
        self.last_change = time.monotonic()
        self.seen = progress() if progress is not None else None

    def left(self) -> bool:
        return time.monotonic() - self.last_change < self.timeout

    def observe(self) -> None:
        if self.progress is not None and (now := self.progress()) != self.seen:
            self.seen, self.last_change = now, time.monotonic()

    def failure(self, what: str, last: Any) -> AssertionError:
        stall = f" without progress (last progress {self.seen!r})" if self.progress is not None else ""
        return AssertionError(f"timed out after {self.timeout}s{stall} waiting for {what} (last={last!r})")


def wait_until(
    pred: Callable[[], Any],
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
    progress: Callable[[], Any] | None = None,
) -> Any:
    """Poll ``pred`` until it is truthy and return its value.

    Without ``progress`` the wait fails ``timeout`` seconds after it began. With ``progress``
    (a function whose value changes whenever the awaited work advances: rows stored, offsets
    checkpointed, records read), ``timeout`` is the longest time allowed *without* a change:
    a loaded machine that keeps advancing gets as long as it needs, a stalled one fails.
    """
    patience, last = _Patience(timeout, progress), None
    while patience.left():
        if last := pred():
            return last
        time.sleep(interval)
        patience.observe()
    raise patience.failure(what, last)


async def until(
    pred: Callable[[], Any],
    timeout: float,
    interval: float = 0.001,
    what: str = "condition",
    progress: Callable[[], Any] | None = None,
) -> Any:
    """:func:`wait_until` inside an event loop: await ``pred`` while the loop (and the executor
    threads it hands work to) runs, and return its value.

    The same limits: with ``progress``, ``timeout`` is the longest time allowed without a change;
    without it (work of one step), ``timeout`` seconds from the start. Never a count of loop
    turns, whose duration is the machine's speed. Each poll sleeps ``interval``: spinning on
    ``sleep(0)`` would hold the GIL the executor threads doing the work need.
    """
    patience, last = _Patience(timeout, progress), None
    while patience.left():
        if last := pred():
            return last
        await asyncio.sleep(interval)
        patience.observe()
    raise patience.failure(what, last)


_LOG_STAMP = re.compile(r"^\[[^\]]*\] ")


def log_progress(text: str) -> int:
    """The number of distinct lines of a worker's log, its timestamps removed: a ``progress``
    for :func:`wait_until` that grows while the worker starts, consumes and checkpoints, and
    stays still when it stalls (its periodic status lines then repeat word for word)."""
    return len({_LOG_STAMP.sub("", line, count=1) for line in text.splitlines()})
