"""Waiting in tests: poll a condition, and give a slow machine as long as it keeps moving."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, Protocol


class _Patience:
    """The limits of a wait: ``timeout`` seconds from the start, or, with ``progress``, since
    the last change of its value; and, with ``ceiling``, ``ceiling`` seconds in all whatever
    the progress (for a wait whose point is a bound on the whole, e.g. a recovery that must
    not hang)."""

    def __init__(self, timeout: float, progress: Callable[[], Any] | None, ceiling: float | None = None) -> None:
        self.timeout, self.progress, self.ceiling = timeout, progress, ceiling
        self.start = self.last_change = time.monotonic()
        self.seen = progress() if progress is not None else None

    def left(self) -> bool:
        now = time.monotonic()
        return now - self.last_change < self.timeout and (self.ceiling is None or now - self.start < self.ceiling)

    def observe(self) -> None:
        if self.progress is not None and (now := self.progress()) != self.seen:
            self.seen, self.last_change = now, time.monotonic()

    def failure(self, what: str, last: Any) -> AssertionError:
        if self.ceiling is not None and time.monotonic() - self.start >= self.ceiling:
            return AssertionError(f"timed out after {self.ceiling}s in all waiting for {what} (last={last!r})")
        stall = f" without progress (last progress {self.seen!r})" if self.progress is not None else ""
        return AssertionError(f"timed out after {self.timeout}s{stall} waiting for {what} (last={last!r})")


def wait_until(
    pred: Callable[[], Any],
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
    progress: Callable[[], Any] | None = None,
    ceiling: float | None = None,
) -> Any:
    """Poll ``pred`` until it is truthy and return its value.

    Without ``progress`` the wait fails ``timeout`` seconds after it began. With ``progress``
    (a function whose value changes whenever the awaited work advances: rows stored, offsets
    checkpointed, records read), ``timeout`` is the longest time allowed *without* a change:
    a loaded machine that keeps advancing gets as long as it needs, a stalled one fails.
    ``ceiling``: also fail ``ceiling`` seconds after the start, progress or not.
    """
    patience, last = _Patience(timeout, progress, ceiling), None
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


# a line's time stamp: Faust's ``[2026-12-05 06:53:54,132] `` once the worker runs, logging's
# ``2026-12-05 06:53:54,132 `` before (the broker and database waits at start-up)
_LOG_STAMP = re.compile(r"^(\[[^\]]*\] |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ )")


# What changes in a log line without the work moving: the count of a retry loop (a checkpoint
# failing forever logs attempt=1, 2, 3 ...; the status line its failures=N), how long a failure
# has lasted, when the next retry is, and the event loop's timer drift on a loaded machine.
_NOT_PROGRESS = re.compile(
    r"\b(attempt|failures|resets|failing_for|retry_in)=[\d.]+s?|drift of [-+]?[\d.]+|woke up too late.*"
)


def log_progress(text: str) -> int:
    """The number of distinct lines of a worker's log, its timestamps and retry counters
    removed: a ``progress`` for :func:`wait_until` that grows while the worker starts, consumes
    and checkpoints, and stays still when it stalls (its periodic status lines then repeat word
    for word) or only retries (``checkpoint.failed attempt=N`` lines differ by ``N`` alone)."""
    return len({_NOT_PROGRESS.sub("#", _LOG_STAMP.sub("", line, count=1)) for line in text.splitlines()})


class Logging(Protocol):
    """Anything with a worker's log: a ``WorkerProcess`` of tests/conftest.py."""

    def log(self) -> str: ...


# The longest a working worker's log stays still: its start-up (imports, two or three seconds
# on an idle machine), a group join held for half the 6 s session timeout, a killed member's
# session running out; every other phase logs a status line every 5 s. Far above all of them,
# and no bound on the whole wait, which the work's length and the machine's speed set.
WORKER_STALL_S = 120.0


def workers_progress(*workers: Logging) -> Callable[[], tuple[int, ...]]:
    """A ``progress`` for :func:`wait_until`: the :func:`log_progress` of each worker."""
    return lambda: tuple(log_progress(w.log()) for w in workers)


def wait_for_workers(
    pred: Callable[[], Any],
    *workers: Logging,
    what: str,
    timeout: float = WORKER_STALL_S,
    interval: float = 0.2,
    progress: Callable[[], Any] | None = None,
    ceiling: float | None = None,
) -> Any:
    """:func:`wait_until` ``pred`` becomes true through the work of ``workers`` (starting,
    consuming, checkpointing): the wait fails only when none of their logs has had a new line
    (nor ``progress``, another measure of the work, changed) for ``timeout`` seconds, however
    long the work takes on a busy machine (or after ``ceiling`` seconds in all, when given).
    The failure carries the end of each worker's log."""
    logs = workers_progress(*workers)
    both = logs if progress is None else lambda: (logs(), progress())
    try:
        return wait_until(pred, timeout, interval, what, progress=both, ceiling=ceiling)
    except AssertionError as exc:
        tails = "".join(f"\n--- worker log, last 3000 characters:\n{w.log()[-3000:]}" for w in workers)
        raise AssertionError(f"{exc}{tails}") from None
