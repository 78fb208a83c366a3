"""Containment (issue 13): an exception at any stage of one record's path -- decode, validate,
process, encode -- dead-letters that record once (``internal``, with the exception's type),
is logged at ERROR with its traceback, and the agent goes on with the next record. Keys that
are not the canonical symbol are refused; a forged far-future candle cannot freeze a series."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ModelError, RejectReason, ValidationError
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.wire import encode, encode_candle
from streams.agents import candle_step as step_mod
from streams.agents import candles as candles_mod
from streams.agents import tick_step as ticks_mod
from streams.agents.candles import CandleAgent
from streams.agents.ticks import TickAgent
from streams.app import Runtime
from streams.settings import Settings

SAMPLE = SAMPLE_TICKS
N_TICKS = 600


class Boom(RuntimeError):
    """The injected failure."""


def _runtime(tmp_path: Path, **kw: Any) -> Runtime:
    s = Settings(
        symbols=("EURUSD",),
        timeframes=("1m",),
        data_dir=tmp_path,
        model_dir=tmp_path / "models",
        status_interval_s=0,
        **kw,
    )
    return Runtime(
        settings=s,
        app=SimpleNamespace(consumer=None),
        topics={},
        instruments=InstrumentRegistry.of(s.symbols),
        engine=None,
    )


def _tick_msgs(keys: dict[int, bytes | None] | None = None) -> list[SimpleNamespace]:
    f = read_ticks(SAMPLE).frame.iloc[:N_TICKS]
    keys = keys or {}
    return [
        SimpleNamespace(
            topic="fx.ticks",
            partition=0,
            offset=i,
            key=keys.get(i, b"EURUSD"),
            value=encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a}),
        )
        for i, (t, b, a) in enumerate(zip(f.ts_ms.tolist(), f.bid.tolist(), f.ask.tolist(), strict=True))
    ]


def _feed_ticks(agent: TickAgent, msgs: list[SimpleNamespace]) -> None:
    async def go() -> None:
        for m in msgs:
            await agent.handle(m)

    asyncio.run(go())


def _dead(agent: Any) -> list[dict[str, Any]]:
    return [json.loads(v) for _k, v, _h in agent.effects.dead]


def _state(agent: TickAgent) -> Any:
    return [c for e in agent.effects.parts.values() for c in e.candles] + agent.pipeline.flush()


def _fail_once(fn: Any, when: Any) -> Any:
    """Wrap ``fn`` to raise :class:`Boom` on the first call for which ``when(*args)`` holds."""
    fired = []

    def wrapped(*args: Any, **kw: Any) -> Any:
        if not fired and when(*args, **kw):
            fired.append(1)
            raise Boom("injected")
        return fn(*args, **kw)

    return wrapped


TARGET = 250  # the offset of the record that fails


@pytest.mark.parametrize("stage", ["decode", "validate", "process", "encode"])
def test_tick_agent_dead_letters_a_failing_record_once_and_goes_on(
    stage: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    msgs = _tick_msgs()
    agent = TickAgent(_runtime(tmp_path))
    target_ts = json.loads(msgs[TARGET].value)["ts"]
    if stage == "decode":
        monkeypatch.setattr(
            ticks_mod, "decode_tick", _fail_once(ticks_mod.decode_tick, lambda raw, **kw: raw == msgs[TARGET].value)
        )
    elif stage == "validate":
        v = agent.pipeline.validator
        monkeypatch.setattr(v, "check", _fail_once(v.check, lambda sym, ts, *a, **kw: ts == target_ts))
    elif stage == "process":
        ag = agent.pipeline.aggregator
        monkeypatch.setattr(ag, "add", _fail_once(ag.add, lambda sym, ts, *a, **kw: ts == target_ts))
    else:  # the first candle a tick closes cannot be encoded
        monkeypatch.setattr(ticks_mod, "encode_candle", _fail_once(ticks_mod.encode_candle, lambda c: True))
    with caplog.at_level(logging.ERROR, logger="streams.deadletter"):
        _feed_ticks(agent, msgs)

    dead = _dead(agent)
    assert len(dead) == 1, dead
    d = dead[0]
    assert d["reason"] == "internal" and d["error"].startswith("Boom at ")
    assert dict(agent.effects.dead[0][2])["x-exception"] == b"Boom"
    if stage != "encode":
        assert d["offset"] == TARGET
    assert agent.consumer.processed == len(msgs)  # every record was handled: the stream went on
    assert agent.consumer.progress.offsets[0] == len(msgs) - 1
    assert agent.contain.internal_errors == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "streams.deadletter"]
    assert len(errors) == 1 and errors[0].exc_info is not None and errors[0].exc_info[0] is Boom
    # the stream went on: the ticks after the failure made candles, as in a clean run
    # without the failing record
    clean = TickAgent(_runtime(tmp_path / "clean"))
    if stage == "encode":  # the tick went in; only the candle that failed to encode is missing
        _feed_ticks(clean, msgs)
        got, want = _state(agent), _state(clean)
        assert len(got) == len(want) - 1 and set(got) < set(want)
    else:  # refused before it changed anything (the aggregator raised before adding)
        _feed_ticks(clean, [m for m in msgs if m.offset != d["offset"]])
        assert _state(agent) == _state(clean)


@pytest.mark.parametrize("key", [None, b"EUR/USD", b"eurusd", b"USDJPY", b"\xff\xfe"])
def test_tick_with_a_key_that_is_not_the_canonical_symbol_is_dead_lettered(key: bytes | None, tmp_path: Path) -> None:
    # issue 13 finding 6: a null key used to be accepted
    msgs = _tick_msgs({10: key})
    agent = TickAgent(_runtime(tmp_path))
    _feed_ticks(agent, msgs)
    assert [(d["reason"], d["offset"]) for d in _dead(agent)] == [("key_mismatch", 10)]


def test_a_held_far_future_tick_given_up_by_a_late_tick_is_dead_lettered_at_once(tmp_path: Path) -> None:
    """Review finding: a held tick refused while the next record failed itself (late) waited in
    the pipeline until the next good tick, so a checkpoint could commit past it and a crash
    lose its dead letter. Now it is dead-lettered right after that record."""
    msgs = _tick_msgs()[:20]
    first = json.loads(msgs[0].value)
    far = dict(json.loads(msgs[10].value), ts=json.loads(msgs[10].value)["ts"] + 5 * 86_400_000)
    late = dict(first, ts=first["ts"] - 60_000)  # older than the watermark: refused as late
    stream = msgs[:10] + [
        SimpleNamespace(topic="fx.ticks", partition=0, offset=10, key=b"EURUSD", value=encode(far)),
        SimpleNamespace(topic="fx.ticks", partition=0, offset=11, key=b"EURUSD", value=encode(late)),
    ]
    agent = TickAgent(_runtime(tmp_path))
    _feed_ticks(agent, stream)
    assert sorted((d["reason"], d["offset"]) for d in _dead(agent)) == [("future_ts", 10), ("late", 11)]
    assert agent.pipeline.take_quarantined() == []


# -- candle agent -------------------------------------------------------------------------------

T0 = 1_399_248_000_000  # 2014-05-05 00:00 UTC, on every grid


def _candles(n: int) -> list[Candle]:
    out, px = [], 1.3870
    for i in range(n):
        o = px
        px = o * math.exp(0.0002 * math.sin(i * 0.7) + 0.0001 * math.cos(i * 1.3))
        hi, lo = max(o, px) + 0.0001, min(o, px) - 0.0001
        out.append(
            Candle(
                symbol="EURUSD",
                timeframe="1m",
                open_ms=T0 + i * 60_000,
                close_ms=T0 + (i + 1) * 60_000,
                open=round(o, 5),
                high=round(hi, 5),
                low=round(lo, 5),
                close=round(px, 5),
                volume=1.0,
                tick_count=5,
            )
        )
    return out


def _candle_msgs(
    cs: list[Candle], *, keys: dict[int, bytes | None] | None = None, values: dict[int, bytes] | None = None
) -> list[SimpleNamespace]:
    keys, values = keys or {}, values or {}
    return [
        SimpleNamespace(
            topic="fx.candles", partition=0, offset=i, key=keys.get(i, b"EURUSD"), value=values.get(i, encode_candle(c))
        )
        for i, c in enumerate(cs)
    ]


def _no_forecast(reqs: Any, **kw: Any) -> Any:
    raise ModelError("no model in this test")


_NO_MODEL = SimpleNamespace(context_spec=None, version="none", forecast=_no_forecast)


def _candle_agent(tmp_path: Path) -> CandleAgent:
    agent = CandleAgent(_runtime(tmp_path, forecast_timeframes=("1m",)))
    # no model: every forecast attempt fails with the project's error (logged, no forecast)
    agent.models.predictor = lambda sym, tf: _NO_MODEL  # type: ignore[method-assign]
    return agent


def _feed_candles(agent: CandleAgent, msgs: list[SimpleNamespace], batch: int = 16) -> None:
    async def go() -> None:
        for i in range(0, len(msgs), batch):
            await agent.handle_batch(msgs[i : i + batch])

    asyncio.run(go())


def _forecaster_state(agent: CandleAgent) -> Any:
    f = agent.forecasters["EURUSD"]
    return (
        f.last_open,
        [c.key for c in agent.effects.at(0).candles],
        [v for k, _key, v in agent.effects.out if k == "indicators"],
    )


@pytest.mark.parametrize("stage", ["decode", "validate", "process", "encode"])
def test_candle_agent_dead_letters_a_failing_record_once_and_goes_on(
    stage: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cs = _candles(80)
    msgs = _candle_msgs(cs)
    target = 40
    agent = _candle_agent(tmp_path)
    if stage == "decode":
        monkeypatch.setattr(
            step_mod,
            "decode_candle",
            _fail_once(step_mod.decode_candle, lambda raw, **kw: raw == msgs[target].value),
        )
    elif stage == "validate":
        g = agent.gate
        monkeypatch.setattr(g, "check", _fail_once(g.check, lambda c, **kw: c.open_ms == cs[target].open_ms))
    elif stage == "process":
        orig = candles_mod.SymbolForecaster.on_candle

        def on_candle(self: Any, c: Candle) -> Any:
            if c.open_ms == cs[target].open_ms:
                raise Boom("injected")
            return orig(self, c)

        monkeypatch.setattr(candles_mod.SymbolForecaster, "on_candle", on_candle)
    else:
        monkeypatch.setattr(
            step_mod,
            "encode_indicators",
            _fail_once(step_mod.encode_indicators, lambda c, values: c.open_ms == cs[target].open_ms),
        )
    with caplog.at_level(logging.ERROR, logger="streams.deadletter"):
        _feed_candles(agent, msgs)
    dead = _dead(agent)
    assert [(d["reason"], d["offset"]) for d in dead] == [("internal", target)]
    assert dead[0]["error"].startswith("Boom at ")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "streams.deadletter"]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert agent.consumer.progress.offsets[0] == len(msgs) - 1
    assert agent.forecasters["EURUSD"].last_open["1m"] == cs[-1].open_ms  # later candles were processed
    if stage in ("decode", "validate", "process"):  # refused before the series changed
        clean = _candle_agent(tmp_path / "clean")
        _feed_candles(clean, [m for m in msgs if m.offset != target])
        assert _forecaster_state(agent) == _forecaster_state(clean)


@pytest.mark.parametrize("key", [None, b"EUR/USD", b"USDJPY"])
def test_candle_with_a_key_that_is_not_the_canonical_symbol_is_dead_lettered(key: bytes | None, tmp_path: Path) -> None:
    cs = _candles(30)
    agent = _candle_agent(tmp_path)
    _feed_candles(agent, _candle_msgs(cs, keys={5: key}))
    assert [(d["reason"], d["offset"]) for d in _dead(agent)] == [("key_mismatch", 5)]


def test_forged_far_future_candle_does_not_freeze_the_series(tmp_path: Path) -> None:
    # issue 13 finding 6: a final candle dated years ahead became the series' last open time,
    # and every real candle after it was skipped as a duplicate
    cs = _candles(60)
    forged = Candle(
        symbol="EURUSD",
        timeframe="1m",
        open_ms=T0 + 3 * 365 * 86_400_000,
        close_ms=T0 + 3 * 365 * 86_400_000 + 60_000,
        open=1.39,
        high=1.39,
        low=1.39,
        close=1.39,
    )
    msgs = _candle_msgs(cs, values={30: encode_candle(forged)})
    agent = _candle_agent(tmp_path)
    _feed_candles(agent, msgs)
    assert [(d["reason"], d["offset"]) for d in _dead(agent)] == [("future_ts", 30)]
    assert agent.forecasters["EURUSD"].last_open["1m"] == cs[-1].open_ms


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"high": 1.0}, "inconsistent"),
        ({"open_time": T0 + 61_000, "close_time": T0 + 121_000}, "bad_ts"),
        ({"close_time": T0 + 180_000}, "bad_ts"),
        ({"volume": float("inf")}, "non_finite"),
        # review finding: candles had no per-instrument price bound (ticks had); a close of 5e-324
        # would have put inf into the features, learners and drift detectors of the series
        ({"open": 1e9, "high": 1e9, "close": 1e9}, "out_of_range"),
        ({"low": 5e-324}, "out_of_range"),
    ],
)
def test_inconsistent_candle_is_refused_before_it_touches_state(
    change: dict[str, Any], reason: str, tmp_path: Path
) -> None:
    cs = _candles(10)
    obj = json.loads(encode_candle(cs[1]))
    obj.update(change)
    raw = json.dumps(obj).encode()  # json writes inf as the Infinity literal
    agent = _candle_agent(tmp_path)
    _feed_candles(agent, _candle_msgs(cs, values={1: raw}))
    assert [(d["reason"], d["offset"]) for d in _dead(agent)] == [(reason, 1)]


def test_a_failing_dead_letter_path_never_escapes_the_record_scope(caplog: pytest.LogCaptureFixture) -> None:
    """Review finding: a sink, metric or callback that fails inside ``Containment.fail`` (or an
    exception whose ``__str__`` raises) escaped the record scope and stopped the agent."""
    from streams.deadletter import Containment

    class Unprintable(RuntimeError):
        def __str__(self) -> str:
            raise ValueError("no text")

    def bad_callback(error: Any, symbol: str | None) -> None:
        raise RuntimeError("callback broke")

    sent: list[Any] = []
    c = Containment(source="ticks", sink=lambda k, v, h: sent.append(v), on_refused=bad_callback)
    msg = SimpleNamespace(topic="fx.ticks", partition=0, offset=5, key=b"EURUSD", value=b"{}")
    for exc in (Unprintable(), ValidationError(RejectReason.MALFORMED, "x")):
        with caplog.at_level(logging.ERROR), c.record(msg) as rec:
            raise exc
        assert rec.failed
    assert len(sent) == 2 and "record.deadletter_failed" in caplog.text
    broken = Containment(source="ticks", sink=lambda k, v, h: (_ for _ in ()).throw(OSError("sink down")))
    with broken.record(msg):
        raise RuntimeError("boom")
