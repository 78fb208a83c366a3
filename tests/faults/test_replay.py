"""F17: replaying the ticks topic from offset 0 into an empty and into a populated database
gives identical candle tables (I5, I12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..integration.kafka_io import publish, read_all
from .harness import (
    bad_records,
    db_candles,
    db_count,
    interleave,
    make_topics,
    settle,
    tick_records,
)

pytestmark = pytest.mark.broker


def test_replay_from_zero_into_empty_and_populated_db_gives_identical_tables(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """Worker A fills DB-1; worker B (new app id, so a new group and checkpoint, offset 0)
    replays into an empty DB-2, then worker C (another app id) replays into the populated
    DB-1. Both tables equal the oracle and each other, field for field, each row once."""
    make_topics(kafka_bootstrap, fault_env)
    good = tick_records(3_000)
    t0 = int(good[200][1].split(b'"ts":')[1].split(b",")[0])
    publish(kafka_bootstrap, f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks", interleave(good, bad_records(t0)))
    app = fault_env["FOREXD_APP_ID"]
    db1 = f"sqlite:///{tmp_path / 'one.db'}"
    db2 = f"sqlite:///{tmp_path / 'two.db'}"

    a = spawn_worker(dict(fault_env, FOREXD_DATABASE_URL=db1), role="ticks", name="a")
    first, _ = settle(kafka_bootstrap, dict(fault_env, FOREXD_DATABASE_URL=db1), workers=[a])
    assert not first.violations, first.summary()
    a.stop()
    table1 = db_candles(db1)

    # B and C run at once (different groups, different databases).
    b = spawn_worker(dict(fault_env, FOREXD_DATABASE_URL=db2, FOREXD_APP_ID=app + "-b"), role="ticks", name="b")
    c = spawn_worker(dict(fault_env, FOREXD_DATABASE_URL=db1, FOREXD_APP_ID=app + "-c"), role="ticks", name="c")
    settle(kafka_bootstrap, dict(fault_env, FOREXD_DATABASE_URL=db2), workers=[b])
    # C re-emits every candle: wait for the third copy of each on fx.candles (A, B, C), then compare.
    prefix = fault_env["FOREXD_TOPIC_PREFIX"]
    emitted = read_all(kafka_bootstrap, f"{prefix}fx.candles", expect=3 * len(table1), timeout_s=120)
    assert len(emitted) >= 3 * len(table1), "worker C did not re-emit every candle\n" + c.log()[-3000:]
    b.stop()
    c.stop()
    assert db_candles(db2) == table1, "replay into an empty DB differs"
    assert db_candles(db1) == table1, "replay into the populated DB changed it"
    assert db_count(db1) == db_count(db2) == len(table1)
