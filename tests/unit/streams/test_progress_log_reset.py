"""D3: a partition log shorter than the stored checkpoint (recreated topic, broker with
memory storage restarted) is detected on assignment; its records are processed, not
skipped as "already reflected in the state"."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from forex_diffusion.storage import make_engine, save_progress
from streams.progress import PartitionProgress

TOPIC = "fx.ticks"


class FakeConsumer:
    def __init__(self, ends: dict[int, int] | None) -> None:
        self.ends = ends

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        if self.ends is None:
            raise ConnectionError("broker unreachable")
        return {tp: self.ends[tp.partition] for tp in tps}


def _progress(tmp_path: Path, ends: dict[int, int] | None) -> tuple[PartitionProgress, Any, list[int]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    for p, off in ((0, 999), (1, 499)):
        save_progress(engine, consumer="c", topic=TOPIC, partition=p, offset=off, state={"n": off},
                      candle_items=[], forecast_rows=[])
    restored: list[int] = []
    app = SimpleNamespace(consumer=FakeConsumer(ends))
    prog = PartitionProgress(app=app, consumer="c", topic=TOPIC, engine=engine,
                             snapshot=lambda p: {}, restore=lambda p, s: restored.append(s["n"]),
                             drop=lambda p: None)
    return prog, app, restored


@pytest.mark.parametrize(("ends", "reset"), [
    ({0: 1000, 1: 800}, set()),        # logs at or past the checkpoints: nothing reset
    ({0: 120, 1: 800}, {0}),           # partition 0 holds 120 records, its checkpoint says 1,000
    ({0: 0, 1: 499}, {0, 1}),          # empty / one-short logs: both reset
])
def test_log_shorter_than_checkpoint_resets_offsets_and_keeps_state(
    tmp_path: Path, ends: dict[int, int], reset: set[int],
) -> None:
    prog, app, restored = _progress(tmp_path, ends)
    asyncio.run(prog.on_assigned(app, [TP(TOPIC, 0), TP(TOPIC, 1)]))
    assert sorted(restored) == [499, 999]  # the state is restored either way
    for p, last in ((0, 999), (1, 499)):
        if p in reset:
            assert p not in prog.offsets
            assert prog.admit(p, 0)  # the new log's first record is processed
        else:
            assert prog.offsets[p] == last
            assert not prog.admit(p, last) and prog.admit(p, last + 1)


def test_unknown_log_end_keeps_the_checkpoint(tmp_path: Path) -> None:
    prog, app, _ = _progress(tmp_path, None)
    asyncio.run(prog.on_assigned(app, [TP(TOPIC, 0), TP(TOPIC, 1)]))
    assert prog.offsets == {0: 999, 1: 499}
    assert not prog.check_log_end(0, None)
    assert prog.check_log_end(0, 10) and 0 not in prog.offsets
