"""Issue 15: incremental, fenced checkpoints.

A checkpoint writes only the series changed since the last one (one ``snapshot_parts`` row
each) with the offset; the restore assembles the partition from its parts; a checkpoint of
the single-row layout before it still restores (whole) and is rewritten as parts. Every write
carries the epoch its owner claimed on assignment: an older owner's write is refused
(``StaleOwnerError``), it drops the partition and stops writing it. The record at the
checkpoint offset is fingerprinted: a reset log that has grown past the checkpoint is told.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from faust.types import TP

from forex_diffusion.errors import StaleOwnerError
from forex_diffusion.storage import (
    claim_progress,
    load_snapshot,
    make_engine,
    save_progress,
    snapshot_parts,
    snapshots,
)
from streams.progress import WHOLE_STATE, PartitionProgress, record_fingerprint

KEY = {"consumer": "w:ticks", "topic": "fx.ticks", "partition": 0}


def _parts(engine: sa.Engine) -> dict[str, tuple[Any, int]]:
    with engine.connect() as c:
        rows = c.execute(sa.select(snapshot_parts.c.part, snapshot_parts.c.state, snapshot_parts.c.updated_ms))
        return {r.part: (json.loads(r.state), r.updated_ms) for r in rows}


def test_a_checkpoint_writes_the_changed_series_and_the_restore_assembles_them(db_url: str) -> None:
    eng = make_engine(db_url)
    epoch = claim_progress(eng, **KEY)
    save_progress(eng, **KEY, offset=10, parts={"EURUSD": {"n": 1}, "GBPUSD": {"n": 2}}, epoch=epoch)
    before = _parts(eng)
    with eng.begin() as c:  # make the first write's time recognisable
        c.execute(sa.update(snapshot_parts).values(updated_ms=1))
    save_progress(eng, **KEY, offset=11, parts={"EURUSD": {"n": 3}}, epoch=epoch)
    after = _parts(eng)
    assert after["EURUSD"][0] == {"n": 3} and after["EURUSD"][1] >= before["EURUSD"][1]
    assert after["GBPUSD"] == ({"n": 2}, 1)  # not rewritten
    cp = load_snapshot(eng, **KEY, detail=True)
    assert cp is not None and (cp.offset, cp.epoch, cp.state) == (11, epoch, None)
    assert cp.parts == {"EURUSD": {"n": 3}, "GBPUSD": {"n": 2}}
    assert load_snapshot(eng, **KEY) == (11, {"EURUSD": {"n": 3}, "GBPUSD": {"n": 2}})
    # a series that left the partition is deleted; a full checkpoint replaces every part
    save_progress(eng, **KEY, offset=12, parts={}, removed=["GBPUSD"], epoch=epoch)
    assert set(_parts(eng)) == {"EURUSD"}
    save_progress(eng, **KEY, offset=13, parts={"USDJPY": {"n": 4}}, full=True, epoch=epoch)
    assert load_snapshot(eng, **KEY) == (13, {"USDJPY": {"n": 4}})


def test_a_claim_on_a_deleted_checkpoint_forgets_its_parts(db_url: str) -> None:
    """An operator deletes a partition's row to start it fresh: its parts never come back."""
    eng = make_engine(db_url)
    save_progress(eng, **KEY, offset=5, parts={"EURUSD": {"n": 1}}, epoch=claim_progress(eng, **KEY))
    with eng.begin() as c:
        c.execute(sa.delete(snapshots))
    epoch = claim_progress(eng, **KEY)
    assert epoch == 1 and load_snapshot(eng, **KEY) is None and _parts(eng) == {}
    save_progress(eng, **KEY, offset=0, parts={"GBPUSD": {"n": 1}}, epoch=epoch)
    assert load_snapshot(eng, **KEY) == (0, {"GBPUSD": {"n": 1}})


def test_a_table_of_the_single_row_layout_is_upgraded_and_its_checkpoint_restores(db_url: str) -> None:
    raw = sa.create_engine(db_url)
    with raw.begin() as c:  # what a database of the previous release holds
        c.execute(
            sa.text(
                "CREATE TABLE state_snapshots (consumer VARCHAR(64) NOT NULL, topic VARCHAR(255) NOT NULL, "
                'partition INTEGER NOT NULL, "offset" BIGINT NOT NULL, state TEXT NOT NULL, '
                "updated_ms BIGINT NOT NULL, PRIMARY KEY (consumer, topic, partition))"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO state_snapshots VALUES ('w:ticks', 'fx.ticks', 0, 41, "
                '\'{"a": {"n": 1}, "b": {"n": 2}}\', 0)'
            )
        )
    raw.dispose()
    eng = make_engine(db_url)  # adds the epoch and fingerprint columns
    cols = {c["name"] for c in sa.inspect(eng).get_columns("state_snapshots")}
    assert {"epoch", "fingerprint"} <= cols
    restored: list[dict[str, Any]] = []
    state = {"a": {"n": 1}, "b": {"n": 2}}
    pp = PartitionProgress(
        consumer="w:ticks",
        topic="fx.ticks",
        engine=eng,
        snapshot=lambda p, series: {s: state[s] for s in series if s in state},
        restore=lambda p, parts: restored.append(parts),
        drop=lambda p: None,
        series=lambda p: list(state),
    )

    async def go() -> None:
        await pp.on_assigned(None, [TP("fx.ticks", 0)])
        await pp.persist(pp.capture())  # the first checkpoint after the upgrade: every series, as parts

    asyncio.run(go())
    assert restored == [{WHOLE_STATE: {"a": {"n": 1}, "b": {"n": 2}}}]
    assert _parts(eng).keys() == {"a", "b"}
    cp = load_snapshot(eng, **KEY, detail=True)
    assert cp is not None and cp.state is None and cp.parts == state and cp.offset == 41 and cp.epoch == 1


class Series:
    """A consumer's per-series state: a counter per series, changed by records."""

    def __init__(self) -> None:
        self.state: dict[str, int] = {}
        self.snapshots: list[list[str]] = []
        self.dropped = 0

    def process(self, pp: PartitionProgress, offset: int, sym: str) -> None:
        self.state[sym] = self.state.get(sym, 0) + 1
        rec = SimpleNamespace(key=sym.encode(), value=b"%d" % offset, timestamp=offset / 10, offset=offset)
        pp.mark(0, offset, series=sym, record=rec)

    def progress(self, engine: sa.Engine) -> PartitionProgress:
        def snapshot(p: int, series: list[str]) -> dict[str, Any]:
            self.snapshots.append(list(series))
            return {s: {"n": self.state[s]} for s in series if s in self.state}

        def restore(p: int, parts: dict[str, Any]) -> None:
            self.state.update({s: v["n"] for s, v in parts.items()})

        def drop(p: int) -> None:
            self.state.clear()
            self.dropped += 1

        return PartitionProgress(
            consumer="w:ticks",
            topic="fx.ticks",
            engine=engine,
            snapshot=snapshot,
            restore=restore,
            drop=drop,
            series=lambda p: list(self.state),
        )


def test_only_changed_series_are_snapshotted_and_a_failed_write_retries_them(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    s = Series()
    pp = s.progress(eng)

    async def go() -> None:
        await pp.on_assigned(None, [TP("fx.ticks", 0)])
        for i, sym in enumerate(["EURUSD", "GBPUSD", "USDJPY"]):
            s.process(pp, i, sym)
        await pp.persist(pp.capture())
        s.process(pp, 3, "EURUSD")
        failed = pp.capture()
        s.process(pp, 4, "GBPUSD")
        assert failed  # lost: the database refused it (never persisted)
        pp.dirty.add(0)  # what the agent does with a failed checkpoint
        await pp.persist(pp.capture())

    asyncio.run(go())
    assert s.snapshots == [["EURUSD", "GBPUSD", "USDJPY"], ["EURUSD"], ["EURUSD", "GBPUSD"]]
    assert load_snapshot(eng, **KEY) == (4, {"EURUSD": {"n": 2}, "GBPUSD": {"n": 2}, "USDJPY": {"n": 1}})


@pytest.mark.postgres
def test_an_owner_claimed_over_is_refused_and_the_new_owners_state_is_intact(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two owners of one partition on PostgreSQL: the second claims it; the first one's next
    checkpoint is refused, it drops the partition and stops writing it (no exit)."""
    eng = make_engine(pg_url)
    old, new = Series(), Series()
    a, b = old.progress(eng), new.progress(eng)

    async def go() -> None:
        await a.on_assigned(None, [TP("fx.ticks", 0)])
        old.process(a, 0, "EURUSD")
        await a.persist(a.capture())
        await b.on_assigned(None, [TP("fx.ticks", 0)])  # the group gave the partition to b
        assert new.state == {"EURUSD": 1}
        new.process(b, 1, "GBPUSD")
        await b.persist(b.capture())
        old.process(a, 1, "EURUSD")  # a, paused meanwhile, goes on with its stale state
        old.process(a, 2, "USDJPY")
        with caplog.at_level(logging.ERROR, logger="streams.progress"):
            await a.persist(a.capture())
        assert not a.admit(0, 3) and a.capture() == {}  # fenced: nothing more is processed or written
        a.mark(0, 3, series="EURUSD")
        assert a.capture() == {}

    asyncio.run(go())
    assert (a.epochs, b.epochs) == ({}, {0: 2})
    assert old.dropped == 1 and old.state == {} and 0 in a.fenced
    assert [r.message for r in caplog.records if "progress.fenced" in r.message]
    assert load_snapshot(eng, **KEY) == (1, {"EURUSD": {"n": 1}, "GBPUSD": {"n": 1}})
    with pytest.raises(StaleOwnerError):
        save_progress(eng, **KEY, offset=9, parts={"EURUSD": {"n": 9}}, epoch=1)
    assert load_snapshot(eng, **KEY) == (1, {"EURUSD": {"n": 1}, "GBPUSD": {"n": 1}})


def test_the_checkpoints_record_is_fingerprinted_and_another_record_there_is_a_reset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    s = Series()
    pp = s.progress(eng)

    async def go() -> PartitionProgress:
        await pp.on_assigned(None, [TP("fx.ticks", 0)])
        for i in range(5):
            s.process(pp, i, "EURUSD")
        await pp.persist(pp.capture())
        fresh = Series().progress(eng)  # a restarted worker
        await fresh.on_assigned(None, [TP("fx.ticks", 0)])
        return fresh

    same = asyncio.run(go())
    cp = load_snapshot(eng, **KEY, detail=True)
    checkpointed = SimpleNamespace(key=b"EURUSD", value=b"4", timestamp=0.4, offset=4)
    assert cp is not None and cp.fingerprint == record_fingerprint(checkpointed)
    assert not same.admit(0, 4, checkpointed) and same.resets == 0  # the same record: already in the state
    assert same.admit(0, 5, SimpleNamespace(key=b"EURUSD", value=b"5", timestamp=0.5, offset=5))

    other = asyncio.run(_restarted(eng))
    recreated = SimpleNamespace(key=b"EURUSD", value=b"new", timestamp=9.0, offset=4)  # a recreated topic's
    with caplog.at_level(logging.ERROR, logger="streams.progress"):
        assert other.admit(0, 4, recreated)
    assert other.resets == 1 and other.offsets[0] == 3
    assert [r for r in caplog.records if "progress.log_reset" in r.message and "fingerprint" in r.message]


async def _restarted(eng: sa.Engine) -> PartitionProgress:
    pp = Series().progress(eng)
    await pp.on_assigned(None, [TP("fx.ticks", 0)])
    return pp


def test_a_refused_write_of_an_earlier_assignment_leaves_the_current_one_alone(tmp_path: Path) -> None:
    """A checkpoint captured before a revoke and still in flight (a revoke's bounded checkpoint
    gives up waiting for it; it is not cancelled) is refused once the same worker is assigned
    the partition again: the refusal is of its old epoch, not of the assignment it holds now,
    which keeps its restored state and goes on (it was fenced off and admitted nothing)."""
    eng = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    s = Series()
    pp = s.progress(eng)

    async def go() -> None:
        await pp.on_assigned(None, [TP("fx.ticks", 0)])
        s.process(pp, 0, "EURUSD")
        await pp.persist(pp.capture())
        s.process(pp, 1, "EURUSD")
        in_flight = pp.capture()  # epoch 1, its write not done yet
        await pp.on_revoked([TP("fx.ticks", 0)])
        await pp.on_assigned(None, [TP("fx.ticks", 0)])  # the group gives it back: epoch 2
        assert s.state == {"EURUSD": 1} and pp.epochs == {0: 2}
        await pp.persist(in_flight)  # the old write lands now: refused (epoch 1 < 2)
        assert 0 not in pp.fenced and pp.epochs == {0: 2} and s.state == {"EURUSD": 1}
        assert pp.admit(0, 1)  # replayed by the current assignment
        s.process(pp, 1, "EURUSD")
        await pp.persist(pp.capture())

    asyncio.run(go())
    assert load_snapshot(eng, **KEY) == (1, {"EURUSD": {"n": 2}})


def test_a_whole_state_captured_before_a_revoke_never_overwrites_the_next_owners(tmp_path: Path) -> None:
    """Whole-state mode (no ``series``) takes the epoch when it writes: a capture still in
    flight across a revoke carried none (the partition was forgotten), and was written
    unfenced over the next owner's checkpoint. It is skipped now."""
    eng = make_engine(f"sqlite:///{tmp_path / 'w.db'}")

    def whole(state: dict[str, Any]) -> PartitionProgress:
        return PartitionProgress(
            consumer="w:ticks",
            topic="fx.ticks",
            engine=eng,
            snapshot=lambda p: dict(state),
            restore=lambda p, s: state.update(s),
            drop=lambda p: state.clear(),
        )

    a_state: dict[str, Any] = {}
    a, b = whole(a_state), whole({})

    async def go() -> None:
        await a.on_assigned(None, [TP("fx.ticks", 0)])
        a_state["n"] = 5
        a.mark(0, 5)
        in_flight = a.capture()
        await a.on_revoked([TP("fx.ticks", 0)])
        await b.on_assigned(None, [TP("fx.ticks", 0)])
        b.mark(0, 2)
        await b.persist(b.capture())
        await a.persist(in_flight)

    asyncio.run(go())
    assert load_snapshot(eng, **KEY) == (2, {})


def test_records_of_a_revoked_partition_still_in_hand_are_neither_admitted_nor_written(tmp_path: Path) -> None:
    """A batch in hand when its partition is revoked (the revoke's bounded checkpoint gave up
    waiting for the step): its remaining records were admitted (the partition's offsets were
    forgotten, so every offset looked new), counted into an empty state, and the next
    checkpoint wrote that state with no epoch -- unfenced, over the new owner's parts."""
    eng = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    old, new = Series(), Series()
    a, b = old.progress(eng), new.progress(eng)

    async def go() -> None:
        await a.on_assigned(None, [TP("fx.ticks", 0)])
        old.process(a, 0, "EURUSD")
        await a.persist(a.capture())
        await a.on_revoked([TP("fx.ticks", 0)])  # a's step is still running its batch
        await b.on_assigned(None, [TP("fx.ticks", 0)])
        new.process(b, 1, "EURUSD")
        await b.persist(b.capture())
        assert not a.admit(0, 1)  # not a's any more
        old.process(a, 1, "EURUSD")  # what an agent that ignored it would do
        a.touch(0, "EURUSD")
        assert a.capture() == {}
        await a.persist(a.capture())

    asyncio.run(go())
    assert load_snapshot(eng, **KEY) == (1, {"EURUSD": {"n": 2}})
