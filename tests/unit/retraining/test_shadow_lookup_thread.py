"""The first shadow lookup of a series runs off the event loop, as the champion's does
(``tests/unit/streams/test_model_lookup_thread.py``): it asks the registry and loads the
version in shadow, and a worker whose champions are all random walks imports torch with it.
On the loop thread that stalled every agent of the worker, heartbeats included."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from forex_diffusion.diffusion import TrainResult
from streams.shadow_lane import ShadowLane

from .test_shadow import CHAMPION, CHANGE, FIXED, regime_candles, setup


def test_a_first_shadow_lookup_runs_off_the_loop_and_a_known_one_on_it(
    tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    _reg, live, version = setup(tmp_path, tiny_checkpoint, FIXED, CHAMPION)
    book = live.book
    on_loop: list[bool] = []  # per shadow lookup: on the loop's thread
    lookup = book.shadow

    def recorded(symbol: str, timeframe: str) -> Any:
        on_loop.append(threading.current_thread() is threading.main_thread())
        return lookup(symbol, timeframe)

    book.shadow = recorded  # type: ignore[method-assign]
    lane = ShadowLane(book, metrics=lambda: None, send=lambda *_: None, store=lambda *_: None)
    kept: list[int] = []
    for c in regime_candles()[CHANGE : CHANGE + 40]:
        out = live.f.on_candle(c)
        if not out.due:
            continue
        fc = book.predictor("EURUSD", "1h").forecast([live.f.request(out, None)])[0]
        live.f.record(fc, out)
        done = [(0, out, fc)]
        # the loop runs on this (the main) thread
        kept.append(
            asyncio.run(
                lane.forecast(done, lambda o, _p: live.f.request(o, None), steps=None, samples=None, degraded=False)
            )
        )
        if len(kept) == 3:
            break
    assert kept == [1, 1, 1]  # the version in shadow forecast each time
    assert lane.tracker.snapshot(["EURUSD"])  # and its forecasts are held for scoring
    assert on_loop == [False, True, True]
    assert book.shadow_versions() == {("EURUSD", "1h"): version}
