"""The tests' own waits (tests/waiting.py): progress is work done, not a retry counting up.

A wait that follows a worker's log fails after a stall of the log. A worker that only retries
(a checkpoint failing forever) still writes new lines — ``attempt=1``, ``attempt=2`` … — and
counted as progress they kept such a wait alive until pytest's own timeout, without the log.
"""

from __future__ import annotations

import time

import pytest

from ..waiting import log_progress, wait_for_workers, wait_until

STAMP = "[2026-12-05 06:53:54,132] [26144] [WARNING] "  # Faust's, once the worker runs
START_STAMP = "2026-12-05 06:53:{:02d},847 WARNING streams.launch "  # logging's, before


def _lines(template: str, values: range) -> str:
    return "".join(f"{STAMP}{template.format(v)}\n" for v in values)


def test_the_start_up_waits_retrying_make_no_progress_whatever_the_time_stamp() -> None:
    for line in ("database.wait url=postgresql://u:***@db:5432/x error=OperationalError", "broker.wait address=b:9092"):
        assert log_progress("".join(f"{START_STAMP.format(s)}{line}\n" for s in range(40))) == 1


@pytest.mark.parametrize(
    "template",
    [
        "checkpoint.failed consumer=forexd:ticks attempt={} error=OperationalError: database is locked",
        "forexd:ticks.status processed=20 offsets={{1: 9}} pending=0 dead=0 healthy=False failures={} flushing=False",
        "checkpoint.failed consumer=forexd:ticks partition=1 step=claim error=X retry_in={}.5s",
        "producer.reset deferred failing_for={}.0s: new producer did not start (X)",
        "Timer Monitor.sampler woke up too late, with a drift of +0.{} runtime=0.1 sleeptime=1.0",
    ],
)
def test_a_log_that_only_retries_makes_no_progress(template: str) -> None:
    assert log_progress(_lines(template, range(1, 50))) == 1


@pytest.mark.parametrize(
    "template",
    [
        "forexd:ticks.status processed={} offsets={{1: 9}} pending=0 dead=0 healthy=True failures=0 flushing=False",
        "progress.restored consumer=forexd:ticks partition=1 offset={}",
        "shutdown.checkpoint consumer=forexd:ticks offsets={{1: {}}}",
        "checkpoint.recovered consumer=forexd:ticks after={} failures",
    ],
)
def test_work_done_is_progress(template: str) -> None:
    assert log_progress(_lines(template, range(0, 500, 100))) == 5


def test_time_stamps_are_not_progress() -> None:
    same = f"{STAMP}x\n" + f"{STAMP.replace('54,132', '59,001')}x\n"
    assert log_progress(same) == 1


class _Log:
    def __init__(self, text: str) -> None:
        self.text = text

    def log(self) -> str:
        return self.text


def test_a_stalled_worker_wait_fails_with_the_end_of_its_log() -> None:
    w = _Log(_lines("checkpoint.failed attempt={} error=X", range(3)) + "the last line\n")
    with pytest.raises(AssertionError, match=r"(?s)timed out after 0.3s without progress.*the last line"):
        wait_for_workers(lambda: False, w, what="nothing", timeout=0.3, interval=0.05)


def test_a_ceiling_ends_a_wait_that_keeps_progressing() -> None:
    # the progress changes at every poll: only the ceiling can end this wait
    with pytest.raises(AssertionError, match=r"timed out after 0.5s in all"):
        wait_until(lambda: False, 10.0, interval=0.01, what="x", progress=time.monotonic, ceiling=0.5)
