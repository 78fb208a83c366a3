"""F12: one day of real FXCM EUR/USD ticks with a 1 % mix of every catalogue row the
validator refuses, through a worker: no crash, the dead-letter topic holds exactly the
injected records with their reasons, and the good candles equal the offline aggregation
of the good ticks."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.wire import encode

from ..integration.kafka_io import publish, read_all
from ..realdata import DATA, require
from .harness import make_topics, settle

pytestmark = pytest.mark.broker
FXCM = DATA / "lean_fxcm_eurusd_ticks_2014-05-01_15.csv.gz"


def _bad(t0: int, now_ms: int, good_first: bytes, n: int = 0) -> list[tuple[bytes | None, bytes, str]]:
    base = {"v": 1, "symbol": "EURUSD", "ts": t0, "bid": 1.38676, "ask": 1.38686}

    def j(**kw: Any) -> bytes:
        d = dict(base)
        d.update(kw)
        return encode(d)

    return [
        (b"EURUSD", b"\xff\xfe not json", "malformed"),
        (b"EURUSD", b'{"v":1,"symbol":"EURUSD","ts":', "malformed"),
        (b"EURUSD", encode({"v": 1, "symbol": "EURUSD", "ts": t0, "bid": 1.38676}), "schema"),
        (b"EURUSD", j(v=7), "schema_version"),
        (b"EURUSD", b'{"v":1,"symbol":"EURUSD","ts":%d,"bid":NaN,"ask":1.38686}' % t0, "non_finite"),
        (b"EURUSD", j(bid="Infinity"), "non_finite"),
        (b"EURUSD", j(bid=-1.38676), "non_positive"),
        (b"EURUSD", j(bid=1.39676), "crossed"),
        (b"EURUSD", j(bid=1.30000, ask=1.40000), "wide_spread"),
        (b"EURUSD", j(bid=1.386761), "precision"),
        (b"XAUUSD", j(symbol="XAUUSD"), "unknown_symbol"),
        (b"USDJPY", j(), "key_mismatch"),
        (b"EURUSD", j(pad="x" * 70_000), "oversize"),
        (b"EURUSD", j(ts=t0 // 1000), "bad_ts"),
        (b"EURUSD", j(ts=now_ms + 86_400_000), "future_ts"),
        (b"EURUSD", good_first, "duplicate"),
        (b"EURUSD", j(ts=t0 - 3_600_000, tick_id=f"late-{n}"), "late"),
    ]


def test_fxcm_day_with_one_percent_hostile_records_dead_letters_exactly_and_candles_equal_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """Every refused catalogue row, repeated to 1 % of one FXCM day, lands once in the DLQ
    with its reason and origin; the worker stays up; candles equal the oracle of the good
    ticks (the harness folds the topic through the core validator and aggregator)."""
    require(FXCM.name)  # a bundled file: absent, the test fails
    frame = read_ticks(FXCM).frame
    day = int(frame.ts_ms.iloc[0]) // 86_400_000 * 86_400_000
    frame = frame[(frame.ts_ms >= day + 7 * 3_600_000) & (frame.ts_ms < day + 9 * 3_600_000 - 1)]  # 2 busy hours
    good = [
        (b"EURUSD", encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a, "tick_id": f"f:{i}"}))
        for i, (t, b, a) in enumerate(zip(frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist(), strict=True))
    ]
    t0, now = int(frame.ts_ms.iloc[500]), int(time.time() * 1000)
    catalogue = _bad(t0, now, good[0][1])
    n_bad = max(len(catalogue), len(good) // 100)
    step = len(good) // (n_bad + 1)
    stream: list[tuple[bytes | None, bytes]] = []
    injected: list[str] = []
    for i, rec in enumerate(good):
        stream.append(rec)
        if i > 1000 and i % step == 0 and len(injected) < n_bad:
            k, v, r = _bad(t0, now, good[0][1], len(injected))[len(injected) % len(catalogue)]
            stream.append((k, v))
            injected.append(r)
    env = dict(fault_env, FOREXD_SYMBOLS="EURUSD")
    make_topics(kafka_bootstrap, env)
    publish(kafka_bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", stream)
    w = spawn_worker(env, role="ticks", name="hostile")
    report, converged = settle(kafka_bootstrap, env, timeout_s=150, published=len(stream), workers=[w])
    dl = read_all(kafka_bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.deadletter", expect=len(injected), timeout_s=30)
    reasons = sorted(json.loads(m.value)["reason"] for m in dl)
    assert reasons == sorted(injected), f"{len(reasons)} dead letters for {len(injected)} injected\n{w.log()[-4000:]}"
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    assert w.alive()
    print(f"hostile: good={len(good)} injected={len(injected)} kinds={len(set(injected))} {report.summary()}")
