"""A warm start never overwrites a series restored from its checkpoint meanwhile.

The warm start of a batch's cold series runs in an executor; the partition's assignment may
restore the same series while it runs (Faust can deliver a batch before the assignment hook
has registered the partition). The restored state is the fold of the log up to the
checkpoint: installing the warm forecaster over it would forecast from other history (found
in ``test_candle_stream[after_db_upsert_before_commit:2]``, which failed this way twice).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.forecast.forecaster import SymbolForecaster
from forex_diffusion.forecast.warm_start import stream_key
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.wire import encode_candle
from streams.agents import warm
from streams.app import create_app
from streams.settings import Settings


def _first_final_candle() -> Any:
    cs = sorted(aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m"]).candles, key=stream_key)
    return next(c for c in cs if c.final)


@pytest.mark.asyncio
@pytest.mark.parametrize("restored_meanwhile", [True, False])
async def test_warm_start_keeps_a_state_restored_while_it_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_meanwhile: bool
) -> None:
    s = Settings(
        symbols=("EURUSD",),
        data_dir=tmp_path,
        model_dir=tmp_path / "models",
        timeframes=("1m",),
        forecast_timeframes=("1m",),
        horizon=12,
    )
    ca = create_app(s, roles=("candles",)).candle_agent  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    restored = SymbolForecaster("EURUSD", ca.config, book=ca.book)
    installed = threading.Event()

    def slow_warm_start(f: SymbolForecaster, engine: Any, **_: Any) -> int:
        if restored_meanwhile:  # the assignment hook restores the series while the warm start runs
            loop.call_soon_threadsafe(lambda: (ca.forecasters.__setitem__("EURUSD", restored), installed.set()))
            assert installed.wait(10)
        return 0

    monkeypatch.setattr(warm, "warm_start", slow_warm_start)
    c = _first_final_candle()
    msg = SimpleNamespace(key=b"EURUSD", value=encode_candle(c), partition=0, offset=0, topic="fx.candles")
    await warm.warm_batch(ca, [msg])
    got = ca.forecasters["EURUSD"]
    if restored_meanwhile:
        assert got is restored
    else:
        assert got is not restored and not got.cold


@pytest.mark.asyncio
async def test_warm_start_never_replays_into_a_state_restored_before_it_reached_the_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm start of a batch warms its series one after another in the executor. A series
    restored from its checkpoint while an earlier one warmed was looked up only then: the
    warm start replayed the stored candles into the restored state (candles it already
    holds), then discarded it as restored -- the restored forecaster stayed, corrupted."""
    s = Settings(
        symbols=("EURUSD", "GBPUSD"),
        data_dir=tmp_path,
        model_dir=tmp_path / "models",
        timeframes=("1m",),
        forecast_timeframes=("1m",),
        horizon=12,
    )
    ca = create_app(s, roles=("candles",)).candle_agent  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    restored = SymbolForecaster("GBPUSD", ca.config, book=ca.book)
    installed = threading.Event()
    warmed: list[Any] = []

    def slow_warm_start(f: SymbolForecaster, engine: Any, **_: Any) -> int:
        warmed.append(f)
        if f.symbol == "EURUSD":  # GBPUSD's partition is restored while EURUSD warms
            loop.call_soon_threadsafe(lambda: (ca.forecasters.__setitem__("GBPUSD", restored), installed.set()))
            assert installed.wait(10)
        return 0

    monkeypatch.setattr(warm, "warm_start", slow_warm_start)
    c = _first_final_candle()
    msgs = [
        SimpleNamespace(key=sym.encode(), value=encode_candle(replace(c, symbol=sym)), partition=0, offset=i)
        for i, sym in enumerate(("EURUSD", "GBPUSD"))
    ]
    await warm.warm_batch(ca, msgs)
    assert ca.forecasters["GBPUSD"] is restored
    assert all(f is not restored for f in warmed)  # the restored state was never replayed into
