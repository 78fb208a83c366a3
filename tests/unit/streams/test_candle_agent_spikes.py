"""B9 through the candle agent: a candle whose close jumps far from its series is held until the
next bar confirms it; a bad print the next bar reverts is dead-lettered as ``spike_unconfirmed``
with its own origin, and no series state ever saw it.

Before, ``fx.candles`` had no price-jump guard: a fat-finger close (EURUSD 11.0 for 1.10,
inside the instrument's bounds) went straight into indicators, online learners, drift
monitors (which then asked for a retrain) and the model context. The held candles are
checkpointed with the series: a restart in the middle of a hold neither loses nor repeats
them. ``forexd backtest`` reads a candle file through the same guard
(:func:`forex_diffusion.offline.check_candle_times`), so it forecasts what the stream does.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from streams.agents.candles import CandleAgent
from tests.unit.cli.test_train_backtest_times import _backtest, _lean, _needs_model, _repriced, _write
from tests.unit.streams.test_agents_in_context import _worker, put_candles
from tests.unit.streams.test_containment import _candle_agent, _candle_msgs, _candles, _dead

HOUR = 3_600_000


def _scaled(c: Candle, f: float) -> Candle:
    return replace(c, open=c.open * f, high=c.high * f, low=c.low * f, close=c.close * f)


def _bad_print(cs: list[Candle], at: int) -> list[Candle]:
    return [_scaled(c, 10.0) if i == at else c for i, c in enumerate(cs)]


def _new_level(cs: list[Candle], at: int) -> list[Candle]:
    return [_scaled(c, 1.05) if i >= at else c for i, c in enumerate(cs)]


def _feed(agent: CandleAgent, msgs: list[SimpleNamespace]) -> list[list[int]]:
    """Feed ``msgs`` one batch each; the open times of the candle rows each one queued."""
    out: list[list[int]] = []

    async def go() -> None:
        for m in msgs:
            before = len(agent.effects.at(0).candles)
            await agent.handle_batch([m])
            out.append([c.open_ms for c in agent.effects.at(0).candles[before:]])

    asyncio.run(go())
    return out


def _outcome(agent: CandleAgent) -> tuple[list[tuple[str, int]], list[int], list[bytes]]:
    dead = [(d["reason"], d["offset"]) for d in _dead(agent)]
    indicators = [v for k, _key, v in agent.effects.out if k == "indicators"]
    return dead, [c.open_ms for c in agent.effects.at(0).candles], indicators


def test_a_bad_print_is_dead_lettered_with_its_origin_and_no_series_state_sees_it(tmp_path: Path) -> None:
    cs = _candles(80)
    agent = _candle_agent(tmp_path / "a")
    rows = _feed(agent, _candle_msgs(_bad_print(cs, 50)))
    dead = _dead(agent)
    assert [(d["reason"], d["offset"]) for d in dead] == [("spike_unconfirmed", 50)]  # before: none
    assert json.loads(dead[0]["raw"])["close"] == pytest.approx(cs[50].close * 10.0)
    assert rows[50] == [] and rows[51] == [cs[51].open_ms]
    clean = _candle_agent(tmp_path / "clean")
    _feed(clean, _candle_msgs([c for i, c in enumerate(cs) if i != 50]))
    assert _outcome(agent)[1:] == _outcome(clean)[1:]  # candle rows and indicators
    assert (
        agent.forecasters["EURUSD"].snapshot()["state"]["series"]["1m"]["history"]
        == (clean.forecasters["EURUSD"].snapshot()["state"]["series"]["1m"]["history"])
    )


def test_a_new_level_is_held_then_released_in_order_with_the_bar_that_confirms_it(tmp_path: Path) -> None:
    cs = _new_level(_candles(80), 50)
    agent = _candle_agent(tmp_path)
    rows = _feed(agent, _candle_msgs(cs))
    assert rows[50] == []  # held: no row, no indicator, no forecast yet
    assert rows[51] == [cs[50].open_ms, cs[51].open_ms]  # released with the confirming bar, in order
    dead, admitted, indicators = _outcome(agent)
    assert not dead and admitted == [c.open_ms for c in cs] and len(indicators) == len(cs)


@pytest.mark.parametrize("shape", ["bad print", "new level"])
def test_a_restart_in_the_middle_of_a_hold_neither_loses_nor_repeats_the_held_candle(
    tmp_path: Path, shape: str
) -> None:
    cs = _candles(80)
    msgs = _candle_msgs(_bad_print(cs, 50) if shape == "bad print" else _new_level(cs, 50))
    whole = _candle_agent(tmp_path / "whole")
    _feed(whole, msgs)
    first = _candle_agent(tmp_path / "first")
    _feed(first, msgs[:51])  # the jump at offset 50 is held
    state = json.loads(json.dumps(first._snapshot(0, ["EURUSD"])))
    assert "spikes" in state["EURUSD"]
    second = _candle_agent(tmp_path / "second")
    second._restore(0, state)
    assert len(second.spikes.held("EURUSD", "1m")) == 1
    _feed(second, msgs[51:])
    a, b = _outcome(first), _outcome(second)
    assert (a[0] + b[0], a[1] + b[1], a[2] + b[2]) == _outcome(whole)
    assert second.forecasters["EURUSD"].last_open == whole.forecasters["EURUSD"].last_open


def test_a_spike_state_that_cannot_be_read_is_dropped_and_the_series_restores(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    first = _candle_agent(tmp_path / "first")
    _feed(first, _candle_msgs(_bad_print(_candles(60), 50))[:51])
    state = first._snapshot(0, ["EURUSD"])
    state["EURUSD"]["spikes"] = {"EURUSD": {"kind": "candle spike guard", "v": 1, "state": {"1m": 3}}}
    second = _candle_agent(tmp_path / "second")
    with caplog.at_level(logging.WARNING, logger="streams.agents.candles"):
        second._restore(0, state)
    assert any(r.getMessage().startswith("spikes.state_dropped symbol=EURUSD") for r in caplog.records)
    assert "EURUSD" in second.forecasters and not second.spikes.held("EURUSD", "1m")


# -- the stream and forexd backtest on one file -------------------------------------------------------


def _file(tmp_path: Path) -> tuple[Path, Path, int]:
    """300 LEAN hourly EUR/USD bars (2016), bar 200 forged at ten times its prices and every bar
    from 250 on at 1.04 times (a genuine new level); and the same file without bar 200."""
    header, rows = _lean(60_000, 300)
    rows = [*rows[:250], *(_repriced(r, 1.04) for r in rows[250:])]
    spiked = [_repriced(r, 10.0) if i == 200 else r for i, r in enumerate(rows)]
    clean = [r for i, r in enumerate(rows) if i != 200]
    return _write(tmp_path / "spiked.csv", header, spiked), _write(tmp_path / "clean.csv", header, clean), 200


@pytest.mark.asyncio
async def test_the_stream_and_the_backtest_reader_forecast_the_same_on_a_file_with_a_forged_spike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file's bars through the candle agent, and through ``forexd backtest``'s reader
    (``admitted_candles``) into the same core with the random walk: the same forecasts, the
    forged bar dead-lettered by one and refused by the other, the new level kept by both."""
    from streams.commands.backtest import admitted_candles, read_series

    src, _clean, at = _file(tmp_path)
    loaded = read_series(src, "EURUSD", timeframe="1h", price="mid")

    def candles(frame: Any) -> list[Candle]:
        cols = zip(frame.ts_ms, frame.open, frame.high, frame.low, frame.close, frame.volume, strict=True)
        return [
            Candle(symbol="EURUSD", timeframe="1h", open_ms=int(t), close_ms=int(t) + HOUR, open=o, high=h, low=lo,
                   close=c, volume=float(v))
            for t, o, h, lo, c, v in cols
        ]  # fmt: skip

    kept = admitted_candles(loaded.frame, src, "EURUSD", timeframe="1h", rejects=loaded.rejects)
    assert "refused 1 of 300 candles (spike_unconfirmed=1; first at line 202)" in capsys.readouterr().err
    offline = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1h",), forecast_timeframes=("1h",), horizon=12))
    want = []
    for c in candles(kept):
        o = offline.on_candle(c)
        if o.due and (req := offline.request(o, None)) is not None:
            want.append(json.loads(json.dumps(offline.record(RandomWalkPredictor(12).forecast([req])[0], o))))
        offline.settle()

    rt = _worker(tmp_path / "w", ("candles",), timeframes=("1h",), forecast_timeframes=("1h",), horizon=12)
    await put_candles(rt.candle_agent, candles(loaded.frame))
    got = [json.loads(v) for _k, v in rt.topics["forecasts"].sent]  # type: ignore[attr-defined]
    dead = [json.loads(v) for _k, v in rt.topics["deadletter"].sent]  # type: ignore[attr-defined]
    assert [(d["reason"], d["offset"]) for d in dead] == [("spike_unconfirmed", at)]
    assert len(want) > 200 and [(r["as_of_ms"], r["quantiles"]) for r in got] == [
        (r["as_of_ms"], r["quantiles"]) for r in want
    ]


def test_backtest_of_a_file_with_a_forged_spike_is_that_of_the_file_without_it(tmp_path: Path) -> None:
    """``forexd backtest`` with the bundled hourly model: the forged bar is refused as the
    stream dead-letters it (before: forecast from, its context ten times the price)."""
    _needs_model()
    spiked, clean, _ = _file(tmp_path)
    code, err, bad = _backtest(spiked, tmp_path / "spiked_out.csv")
    assert code == 0, err
    assert "spiked.csv EURUSD: refused 1 of 300 candles (spike_unconfirmed=1; first at line 202)" in err
    code, err, good = _backtest(clean, tmp_path / "clean_out.csv")
    assert code == 0 and "refused" not in err, err
    assert bad == good
