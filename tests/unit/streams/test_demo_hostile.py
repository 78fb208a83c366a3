"""``forexd demo`` goes on printing past an ``fx.forecasts`` record it cannot show.

Its watch task read the topic with a bare ``json.loads`` and its row formatter indexed fields:
a tombstone, garbage, a record missing a key, or a valid record of a short horizon or other
quantile levels raised inside the task, which ``gather(return_exceptions=True)`` hid, and the
demo printed nothing more. Now each value goes through the wire's forecast decoder: a refused
one is counted and logged in one line, and every record the decoder passes has a row.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import demo
from streams.demo import DemoResult, _fmt, _take, _watch
from streams.settings import Settings

LEVELS = [0.05, 0.25, 0.5, 0.75, 0.95]


def forecast(horizon: int = 24, levels: list[float] | None = None, **changes: Any) -> dict[str, Any]:
    """A valid ``fx.forecasts`` record (as the worker writes one), with ``changes``."""
    lv = LEVELS if levels is None else levels
    rec: dict[str, Any] = {
        "symbol": "EURUSD",
        "timeframe": "1m",
        "as_of": 1399000000000,
        "as_of_ms": 1399000000000,
        "horizon": horizon,
        "model_version": "v1",
        "last_close": 1.1,
        "levels": lv,
        "quantiles": [[1.1 + 0.0001 * (i + 1) * j for j in range(len(lv))] for i in range(horizon)],
        "mean": [1.1] * horizon,
        "p_up": [0.5] * horizon,
        "steps": 8,
        "samples": 100,
        "latency_s": 0.012,
        "rw_quantiles": [[1.1] * len(lv)] * horizon,
        "degraded": False,
        "learner": [],
    }
    rec.update(changes)
    return rec


def enc(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec).encode()


HOSTILE: list[bytes | None] = [
    None,  # a tombstone
    b"garbage",
    b"\xff\xfe not utf-8",
    enc({k: v for k, v in forecast().items() if k != "quantiles"}),  # a missing key
    b'{"symbol": "EURUSD", "latency_s": NaN}',
    enc(forecast(symbol=5)),
    b"[" * 100_000,
]
SHOWABLE = [
    enc(forecast()),
    enc(forecast(horizon=3)),  # no step 6
    enc(forecast(levels=[0.1, 0.5, 0.9])),  # no 5 % or 95 % level
    enc(forecast(horizon=1, quantiles=[[None, 1.1, None, None, 2.0]], p_up=[], latency_s=-0.0)),
    enc(forecast(quantiles=[])),
]


class FakeConsumer:
    """``getmany`` hands ``values`` once as one partition's messages, then stops the watch."""

    def __init__(self, values: list[bytes | None], halt: asyncio.Event) -> None:
        self.values, self.halt, self.calls = values, halt, 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def getmany(self, timeout_ms: int) -> dict[Any, list[Any]]:
        self.calls += 1
        if self.calls > 1:
            self.halt.set()
            return {}
        return {0: [SimpleNamespace(partition=0, offset=i, value=v) for i, v in enumerate(self.values)]}


def _run_watch(values: list[bytes | None], monkeypatch: pytest.MonkeyPatch) -> tuple[DemoResult, list[list[str]]]:
    result, shown = DemoResult(), []

    async def go() -> None:
        stop = asyncio.Event()
        consumer = FakeConsumer(values, stop)
        monkeypatch.setattr(demo, "make_consumer", lambda settings, topic: consumer)
        await asyncio.wait_for(_watch(Settings(), result, stop, lambda rec: shown.append(_fmt(rec))), 60)

    asyncio.run(go())
    return result, shown


def test_the_watch_skips_refused_records_and_shows_every_other(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    values = [v for pair in zip(HOSTILE, SHOWABLE + SHOWABLE[:2], strict=True) for v in pair]
    with caplog.at_level(logging.WARNING, logger="streams.demo"):
        result, shown = _run_watch(values, monkeypatch)
    assert result.refused == len(HOSTILE) and result.unshown == 0
    assert len(shown) == len(result.forecasts) == len(HOSTILE)  # the showable ones, in order
    assert shown[0][:3] == ["EURUSD", "1m", "2014-05-02 03:06"]
    assert shown[0][3] == "1.10020 [1.10000, 1.10040]" and shown[0][6:] == ["0.50", "v1", "12.0 ms"]
    assert shown[1][4] == "- [-, -]"  # a horizon of 3 has no step 6
    assert shown[2][3] == "1.10010 [-, -]"  # no 5 % or 95 % level
    refused = [r.getMessage() for r in caplog.records if "demo.forecast_refused" in r.getMessage()]
    assert len(refused) == len(HOSTILE) and "offset=0 reason=malformed" in refused[0], refused


def test_a_show_that_fails_is_counted_and_the_watch_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    result, seen = DemoResult(), []

    def show(rec: dict[str, Any]) -> None:
        seen.append(rec)
        if len(seen) == 1:
            raise KeyError("a bug of the display")

    with caplog.at_level(logging.ERROR, logger="streams.demo"):
        for i, v in enumerate(SHOWABLE):
            _take(v, result, show, f"offset={i}")
    assert len(seen) == len(SHOWABLE) and result.unshown == 1 and result.refused == 0
    assert any("demo.show_failed offset=0 error=KeyError" in r.getMessage() for r in caplog.records)


cells = st.one_of(st.none(), st.floats(min_value=1e-3, max_value=1e3), st.integers(1, 5))


@st.composite
def decodable_or_not(draw: st.DrawFn) -> bytes:
    """A forecast with its shape drawn (horizon, levels, nulls, ragged rows), or any bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=80))
    horizon = draw(st.integers(1, 30))
    levels = draw(st.lists(st.sampled_from([0.05, 0.1, 0.5, 0.9, 0.95, 0.0, 1.0]), max_size=6))
    rows = draw(st.lists(st.lists(cells, max_size=7), max_size=horizon))
    rec = forecast(horizon, levels, quantiles=rows, p_up=draw(st.lists(st.floats(0, 1), max_size=3)))
    if draw(st.booleans()):
        rec.pop(draw(st.sampled_from(sorted(rec))))
    return enc(rec)


@settings(max_examples=300, deadline=None)
@given(decodable_or_not())
def test_any_value_is_either_refused_or_shown_as_a_full_row(value: bytes) -> None:
    result, rows = DemoResult(), []
    _take(value, result, lambda rec: rows.append(_fmt(rec)), "offset=0")
    assert result.unshown == 0
    assert result.refused + len(rows) == 1
    for row in rows:
        assert len(row) == 9 and all(isinstance(c, str) and c for c in row)
