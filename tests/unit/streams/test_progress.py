"""D3: a log that no longer holds the checkpoint is detected, and its records are consumed;
F5: a graceful stop checkpoints once more, bounded.

``PartitionProgress.admit`` skips messages at or before the last processed offset: after a
restart they are already in the restored state. When the broker lost its log (memory
storage restarted) or the topic was recreated, the offsets start again from 0 and every
message up to the old checkpoint would be skipped silently. The fetch responses'
high-water mark tells the two apart: a log that held the checkpoint ends above it.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from streams.progress import PartitionProgress


class FakeConsumer:
    def __init__(self) -> None:
        self.hw: dict[int, int | None] = {}
        self.fail = False

    def highwater(self, tp: Any) -> int | None:
        if self.fail:
            raise AssertionError("partition is not assigned")
        return self.hw.get(tp.partition)


def _progress(consumer: FakeConsumer) -> PartitionProgress:
    return PartitionProgress(app=SimpleNamespace(consumer=consumer), consumer="test:ticks", topic="fx.ticks",
                             engine=None, snapshot=lambda p: {}, restore=lambda p, s: None, drop=lambda p: None)


def test_messages_behind_a_checkpoint_the_log_still_holds_are_skipped() -> None:
    c = FakeConsumer()
    pp = _progress(c)
    pp.offsets[0] = 100  # restored checkpoint; the group's commit lagged it
    c.hw[0] = 250
    assert [pp.admit(0, o) for o in (60, 99, 100)] == [False, False, False]
    assert pp.admit(0, 101)
    assert pp.resets == 0 and pp.offsets[0] == 100


def test_a_log_that_ends_below_the_checkpoint_is_consumed_from_where_it_starts(caplog: pytest.LogCaptureFixture) -> None:
    c = FakeConsumer()
    pp = _progress(c)
    pp.offsets[1] = 100
    c.hw[1] = 40  # the new log: 40 records, all new
    with caplog.at_level(logging.ERROR, logger="streams.progress"):
        assert pp.admit(1, 0)
    assert pp.resets == 1
    assert "progress.log_reset" in caplog.text and "checkpoint=100" in caplog.text and "log_end=40" in caplog.text
    assert pp.offsets[1] == -1 and 1 in pp.dirty
    pp.mark(1, 0)
    assert all(pp.admit(1, o) for o in range(1, 40))
    assert pp.resets == 1


def test_a_log_ending_exactly_at_the_checkpoint_is_a_reset() -> None:
    c = FakeConsumer()
    pp = _progress(c)
    pp.offsets[0] = 100
    c.hw[0] = 100  # offset 100 was processed, so a log holding it ends at 101 or later
    assert pp.admit(0, 0)
    assert pp.resets == 1


@pytest.mark.parametrize("hw", [None, "raises"])
def test_an_unknown_log_end_is_not_a_reset(hw: Any) -> None:
    c = FakeConsumer()
    pp = _progress(c)
    pp.offsets[0] = 100
    if hw == "raises":
        c.fail = True
    assert not pp.admit(0, 3)
    assert pp.resets == 0 and pp.offsets[0] == 100


def test_shutdown_checkpoint_runs_once_and_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    pp = _progress(FakeConsumer())
    pp.offsets[1] = 41
    calls: list[str] = []

    async def quick() -> None:
        calls.append("quick")

    async def stuck() -> None:
        calls.append("stuck")
        await asyncio.sleep(30)

    with caplog.at_level(logging.INFO, logger="streams.progress"):
        asyncio.run(pp.on_shutdown(quick))
        asyncio.run(pp.on_shutdown(stuck, timeout_s=0.2))
    assert calls == ["quick", "stuck"]
    assert "shutdown.checkpoint consumer=test:ticks offsets={1: 41}" in caplog.text
    assert "shutdown.checkpoint_timeout" in caplog.text
