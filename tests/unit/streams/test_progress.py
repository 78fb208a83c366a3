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
    return PartitionProgress(
        app=SimpleNamespace(consumer=consumer),
        consumer="test:ticks",
        topic="fx.ticks",
        engine=None,
        snapshot=lambda p: {},
        restore=lambda p, s: None,
        drop=lambda p: None,
    )


def test_messages_behind_a_checkpoint_the_log_still_holds_are_skipped() -> None:
    c = FakeConsumer()
    pp = _progress(c)
    pp.offsets[0] = 100  # restored checkpoint; the group's commit lagged it
    c.hw[0] = 250
    assert [pp.admit(0, o) for o in (60, 99, 100)] == [False, False, False]
    assert pp.admit(0, 101)
    assert pp.resets == 0 and pp.offsets[0] == 100


def test_a_log_that_ends_below_the_checkpoint_is_consumed_from_where_it_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
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


def test_records_of_a_partition_wait_until_its_restore_finishes(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """D15 (found by the F7 soak): Faust delivers a newly assigned partition's records while
    ``on_assigned`` still reads its snapshot. An agent that processed them then counted them
    into an empty state the restore overwrote (6 ticks lost per hand-over). ``restored()``
    holds them until the checkpoint (a real SQLite one, read slowly here) is in place."""
    import asyncio
    import time

    from faust.types import TP

    import streams.progress as progress_mod
    from forex_diffusion.storage import make_engine, save_progress

    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    save_progress(
        engine,
        consumer="test:ticks",
        topic="fx.ticks",
        partition=0,
        offset=50,
        state={"n": 50},
        candle_items=[],
        forecast_rows=[],
    )
    real_load = progress_mod.load_snapshot

    def slow_load(*args: Any, **kw: Any) -> Any:
        time.sleep(0.3)  # a database under load
        return real_load(*args, **kw)

    monkeypatch.setattr(progress_mod, "load_snapshot", slow_load)
    events: list[str] = []
    pp = PartitionProgress(
        app=SimpleNamespace(consumer=FakeConsumer()),
        consumer="test:ticks",
        topic="fx.ticks",
        engine=engine,
        snapshot=lambda p: {},
        restore=lambda p, s: events.append(f"restore {s}"),
        drop=lambda p: None,
    )

    async def agent() -> None:  # what TickAgent.handle does with the first fetched records
        await asyncio.sleep(0.05)  # the fetcher delivers while the snapshot is being read
        for offset in (49, 50, 51):
            if pp.restoring:
                await pp.restored(0)
            events.append(f"{offset} {'new' if pp.admit(0, offset) else 'skipped'}")

    async def go() -> None:
        await asyncio.gather(pp.on_assigned(None, [TP("fx.ticks", 0)]), agent())

    asyncio.run(go())
    assert events == ["restore {'n': 50}", "49 skipped", "50 skipped", "51 new"]
    assert pp.restoring == {}
