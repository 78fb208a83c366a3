"""Ticks through the real broker: candles equal the offline command, DB holds each once,
bad messages go to the dead-letter topic and nothing else changes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import count_candles, fetch_candles, make_engine
from forex_diffusion.wire import decode_candle, encode

from .kafka_io import create_topics, publish, read_all, values

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
TOPICS = ("ticks", "candles", "deadletter", "forecasts", "drift", "models", "retrain.requests")


def _key(c: Candle) -> tuple[str, int, int]:
    return (c.symbol, {"1m": 1, "5m": 5, "1h": 60}[c.timeframe], c.open_ms)


def _db(env: dict[str, str]) -> Any:
    return make_engine(f"sqlite:///{Path(env['FOREXD_DATA_DIR']) / 'forexd.db'}")


def _all_db_candles(env: dict[str, str]) -> list[Candle]:
    eng = _db(env)
    return sorted((c for tf in ("1m", "5m", "1h") for c in fetch_candles(eng, "EURUSD", tf)), key=_key)


def _distinct_copies(candles: list[Candle]) -> list[Candle]:
    """One of each candle, sorted; every redelivered copy (at-least-once) must be identical."""
    copies: dict[tuple[str, int, int], list[Candle]] = {}
    for c in candles:
        copies.setdefault(_key(c), []).append(c)
    differing = [k for k, cs in copies.items() if any(c != cs[0] for c in cs)]
    assert not differing, f"redelivered copies differ: {differing[:5]}"
    return sorted((cs[0] for cs in copies.values()), key=_key)


def _replay(env: dict[str, str], path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(path), "--speed", "max"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_replayed_sample_equals_offline_candles_and_late_replays_change_nothing(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    sample_ticks: Path,
    wait_until: Any,
    tmp_path: Path,
) -> None:
    prefix = worker_env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    expected = sorted(aggregate_ticks_file(sample_ticks, timeframes=["1m", "5m", "1h"]).candles, key=_key)
    _replay(worker_env, sample_ticks)
    w = spawn_worker(worker_env)
    msgs = read_all(
        kafka_bootstrap,
        f"{prefix}fx.candles",
        expect=len(expected),
        timeout_s=180,
        distinct=lambda m: _key(decode_candle(m.value, key=m.key)),
    )
    got = _distinct_copies([decode_candle(m.value, key=m.key) for m in msgs])
    assert len(got) == len(expected), w.log()[-3000:]
    assert got == expected  # every field: OHLC, tick_count, spreads, revision, final
    wait_until(
        lambda: count_candles(_db(worker_env)) == len(expected),
        30,
        what="DB to hold every candle",
        progress=lambda: count_candles(_db(worker_env)),
    )
    assert _all_db_candles(worker_env) == expected

    # The same ticks a second time (the first 1,000, to keep the suite short): every one is
    # late (older than the watermark) and dead-lettered; no candle is touched and the DB
    # still holds each once.
    again = tmp_path / "again.csv"
    read_ticks(sample_ticks).frame.iloc[:1_000][["ts_ms", "bid", "ask"]].to_csv(again, index=False)
    res = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(again), "--symbol", "EURUSD"],
        env=worker_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    dl = read_all(kafka_bootstrap, f"{prefix}fx.deadletter", expect=1_000, timeout_s=240)
    assert len(dl) == 1_000 and {v["reason"] for v in values(dl)} == {"late"}
    assert count_candles(_db(worker_env)) == len(expected)
    assert _all_db_candles(worker_env) == expected
    assert w.alive()
    w.stop()

    # Replay from offset 0 into an empty and into a populated DB (F17) is
    # tests/faults/test_replay.py, on the same sample.


def _bad_messages(t0: int, now_ms: int) -> list[tuple[bytes | None, bytes, str]]:
    """One message per catalogue row the stream must refuse: (key, value, reason)."""
    good = {"v": 1, "symbol": "EURUSD", "ts": t0, "bid": 1.38676, "ask": 1.38686}

    def j(**kw: Any) -> bytes:
        d = dict(good)
        d.update(kw)
        return encode(d) if all(not (isinstance(v, float) and v != v) for v in d.values()) else json.dumps(d).encode()

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
    ]


def test_bad_messages_are_dead_lettered_exactly_and_good_candles_unchanged(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    sample_ticks: Path,
    tmp_path: Path,
    wait_until: Any,
) -> None:
    prefix = worker_env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    frame = read_ticks(sample_ticks).frame.iloc[:8_000]
    # End the input just before an hour boundary: the idle timer closes the last bars after
    # a quiet spell of wall-clock time equal to what is left of them (seconds here).
    boundary = int(frame.ts_ms.iloc[-1]) // 3_600_000 * 3_600_000
    frame = frame[frame.ts_ms < boundary]
    good = [
        (b"EURUSD", encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a, "tick_id": f"s:{i}"}))
        for i, (t, b, a) in enumerate(zip(frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist(), strict=True))
    ]
    bad = _bad_messages(int(frame.ts_ms.iloc[100]), int(time.time() * 1000))
    # a duplicate id and a late tick (older than the watermark at its position)
    bad.append((b"EURUSD", good[50][1], "duplicate"))
    late = json.loads(good[10][1])
    late["tick_id"] = "late-1"
    bad.append((b"EURUSD", encode(late), "late"))
    stream: list[tuple[bytes | None, bytes]] = []
    step = len(good) // len(bad)
    for i, rec in enumerate(good):
        stream.append(rec)
        if i % step == step - 1 and (i // step) < len(bad) and i > 60:
            k, v, _ = bad[i // step]
            stream.append((k, v))
    injected = [
        r
        for _, _, r in bad[
            : sum(1 for i in range(len(good)) if i % step == step - 1 and i > 60 and i // step < len(bad))
        ]
    ]
    publish(kafka_bootstrap, f"{prefix}fx.ticks", stream)

    clean = tmp_path / "clean.csv"
    pd.DataFrame({"ts_ms": frame.ts_ms, "bid": frame.bid, "ask": frame.ask}).to_csv(clean, index=False)
    expected = sorted(aggregate_ticks_file(clean, symbol="EURUSD", timeframes=["1m", "5m", "1h"]).candles, key=_key)

    w = spawn_worker(worker_env)
    dl = read_all(
        kafka_bootstrap,
        f"{prefix}fx.deadletter",
        expect=len(injected),
        timeout_s=120,
        distinct=lambda m: json.loads(m.value)["offset"],
    )
    # Exactly the injected records, each once by its origin (partition, offset): a checkpoint
    # whose send acks time out is retried, and the retry may publish a second identical copy
    # (at-least-once delivery; the record's origin is its idempotency key).
    by_origin = {(v["partition"], v["offset"]): v for v in values(dl)}
    assert all(by_origin[(v["partition"], v["offset"])] == v for v in values(dl)), "copies differ"
    reasons = sorted(v["reason"] for v in by_origin.values())
    assert reasons == sorted(injected), w.log()[-3000:]
    for m in dl:
        v = json.loads(m.value)
        assert v["source_topic"] == f"{prefix}fx.ticks" and v["offset"] >= 0 and "raw" in v
        assert dict(m.headers)["x-error-reason"].decode() == v["reason"]
    oversize = next(v for v in values(dl) if v["reason"] == "oversize")
    assert oversize["size"] > 70_000 and len(oversize["raw"]) <= 16 * 1024 and oversize["truncated"]
    # at-least-once like the dead letters above: a retried checkpoint (a send the broker
    # refused, e.g. NotLeaderForPartition under load) publishes its candles again, identical
    msgs = read_all(
        kafka_bootstrap,
        f"{prefix}fx.candles",
        expect=len(expected),
        timeout_s=120,
        distinct=lambda m: _key(decode_candle(m.value)),
    )
    got = _distinct_copies([decode_candle(m.value) for m in msgs])
    missing = sorted(set(map(_key, expected)) - set(map(_key, got)))
    extra = sorted(set(map(_key, got)) - set(map(_key, expected)))
    assert not missing and not extra, (len(got), len(expected), missing[:10], extra[:10])
    assert got == expected
    # the sink is idempotent: the DB holds each candle once, whatever the topic redelivered
    wait_until(
        lambda: count_candles(_db(worker_env)) == len(expected),
        30,
        what="DB to hold every candle",
        progress=lambda: count_candles(_db(worker_env)),
    )
    assert _all_db_candles(worker_env) == expected
    assert w.alive()
