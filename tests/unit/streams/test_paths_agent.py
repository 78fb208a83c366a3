"""The candle agent publishes each forecast's sample paths on fx.forecasts.paths (issue 16).

Run as Faust runs it (``agent.test_context()``) with the bundled 1m/H24 model: with
``FOREXD_PATHS`` on, every forecast on ``fx.forecasts`` has one paths record, same key and
identifiers, whose decoded paths are the model's own sample paths for that forecast (the
first ``FOREXD_PATHS`` of them) within the quantisation bound; with it off none is published.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from forex_diffusion.bundled import MODELS
from forex_diffusion.diffusion.predictor import Predictor
from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster, paths_record
from forex_diffusion.wire import PATHS_SCALE, decode_paths

from .test_agents_in_context import _candles, _worker, put_candles

MODEL = MODELS / "EURUSD-1m-h24"
SAMPLES, STEPS, PATHS = 16, 2, 6


async def _run(
    tmp_path: Path, candles: list[Candle] | None = None, **kw: int
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]] | None]:
    """What a candle worker serving the bundled 1m/H24 model publishes on ``fx.forecasts`` and
    ``fx.forecasts.paths`` (None: no such topic) for ``candles`` (the sample's first 400),
    with ``kw`` over this module's settings."""
    shutil.copytree(MODEL, tmp_path / "models" / MODEL.name)
    settings: dict[str, Any] = {"forecast_samples": SAMPLES, "forecast_steps": STEPS, **kw}
    rt = _worker(tmp_path, ("candles",), timeframes=("1m", "5m"), forecast_timeframes=("1m",), horizon=24, **settings)
    await put_candles(rt.candle_agent, _candles() if candles is None else candles)  # type: ignore[attr-defined]
    paths = rt.topics["forecasts.paths"].sent if "forecasts.paths" in rt.topics else None  # type: ignore[attr-defined]
    return rt.topics["forecasts"].sent, paths  # type: ignore[attr-defined]


def _due_origins() -> list[int]:
    """The ``as_of`` of every forecast the series is due, in order (the core's own count)."""
    f = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1m", "5m"), forecast_timeframes=("1m",), horizon=24))
    spec = Predictor.load(MODEL).context_spec
    return [r.as_of_ms for c in _candles() if (o := f.on_candle(c)).due and (r := f.request(o, spec)) is not None]


@pytest.mark.asyncio
async def test_each_forecast_is_followed_by_its_sample_paths_when_paths_are_on(tmp_path: Path) -> None:
    forecasts, paths = await _run(tmp_path, paths=PATHS)
    assert paths is not None and len(forecasts) > 100 and len(paths) == len(forecasts)

    # the model's own paths for the same requests (per-series seeds: the batch does not matter)
    pred = Predictor.load(MODEL)
    f = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1m", "5m"), forecast_timeframes=("1m",), horizon=24))
    reqs = [r for c in _candles() if (o := f.on_candle(c)).due and (r := f.request(o, pred.context_spec)) is not None]
    want = {fc.as_of_ms: fc for fc in pred.forecast(reqs, steps=STEPS, samples=SAMPLES)}

    for (fkey, fvalue), (pkey, pvalue) in zip(forecasts, paths, strict=True):
        rec = json.loads(fvalue)
        header, prices = decode_paths(pvalue)
        assert pkey == fkey == b"EURUSD"
        ids = ("symbol", "timeframe", "as_of", "horizon", "model_version", "last_close")
        assert {k: header[k] for k in ids} == {k: rec[k] for k in ids}
        assert rec["model_version"] == pred.version  # the diffusion model's, not the random walk's
        assert (header["n_paths"], header["samples"], header["dtype"]) == (PATHS, SAMPLES, "<i2")
        fc = want[rec["as_of"]]
        assert fc.paths is not None and fc.rw_weight is not None
        assert prices.shape == (PATHS, 24)
        # the quantisation bound, plus float32 rounding that differs with the batch (docs/diffusion.md)
        assert np.max(np.abs(np.log(prices / fc.paths[:PATHS]))) <= 0.5 / PATHS_SCALE + 1e-9
        np.testing.assert_allclose(header["rw_weight"], fc.rw_weight, rtol=0, atol=0)
        np.testing.assert_allclose(rec["quantiles"], fc.quantiles, rtol=1e-7)  # the same forecast


@pytest.mark.asyncio
async def test_no_paths_are_published_when_paths_are_off(tmp_path: Path) -> None:
    forecasts, paths = await _run(tmp_path)
    assert len(forecasts) > 100 and paths is None  # no topic, nothing queued for one
    assert {json.loads(v)["samples"] for _k, v in forecasts} == {SAMPLES}


def test_a_forecast_with_fewer_samples_carries_them_all_and_the_random_walk_none() -> None:
    """A degraded batch samples fewer paths than FOREXD_PATHS: the record says so; the random
    walk (no model yet) samples none, and FOREXD_PATHS=0 publishes nothing."""
    pred = Predictor.load(MODEL)
    f = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1m", "5m"), forecast_timeframes=("1m",), horizon=24))
    o = next(o for c in _candles() if (o := f.on_candle(c)).due)
    req = f.request(o, pred.context_spec)
    assert req is not None
    fc = pred.forecast([req], steps=STEPS, samples=4)[0]
    raw = paths_record(fc, req.sigma, 10)
    assert raw is not None
    header, prices = decode_paths(raw)
    assert (header["n_paths"], header["samples"], header["sigma"]) == (4, 4, req.sigma) and prices.shape == (4, 24)
    assert paths_record(fc, req.sigma, 0) is None
    assert paths_record(RandomWalkPredictor(24).forecast([req])[0], req.sigma, 10) is None


@pytest.mark.asyncio
async def test_a_forecast_whose_paths_cannot_be_encoded_is_still_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A degenerate model's sample path that overflowed (inf: exp of a huge log return) or is
    NaN cannot be written as fx.forecasts.paths; the forecast itself (its quantiles are
    finite) is published and scored as with FOREXD_PATHS off, only its paths record is left
    out, and the candle is no dead letter."""
    real = Predictor.forecast

    def degenerate(self: Predictor, requests: Any, **kw: Any) -> list[Any]:
        out = real(self, requests, **kw)
        for i, fc in enumerate(out):
            if fc.as_of_ms // 60_000 % 3 == 0 and fc.paths is not None:
                bad = fc.paths.copy()
                bad[i % PATHS, -1] = (math.inf, math.nan)[fc.as_of_ms // 60_000 % 2]
                out[i] = dataclasses.replace(fc, paths=bad)
        return out

    monkeypatch.setattr(Predictor, "forecast", degenerate)
    forecasts, paths = await _run(tmp_path, paths=PATHS)
    assert paths is not None and len(forecasts) > 100
    # every due forecast is published: the series' own due origins, none missing
    assert [json.loads(v)["as_of"] for _k, v in forecasts] == _due_origins()
    carried = {decode_paths(v)[0]["as_of"] for _k, v in paths}
    left_out = {json.loads(v)["as_of"] for _k, v in forecasts} - carried
    assert left_out == {t for t in carried | left_out if t // 60_000 % 3 == 0}


@pytest.mark.asyncio
async def test_a_forecast_record_larger_than_a_kafka_message_is_left_out_and_the_stream_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fx.forecasts record over the producer's limit (a horizon of about 1,600 steps or more
    makes one over 1 MB) was published: the producer refuses it, so every checkpoint of its
    partition failed and the stream stopped. It is now left out (an internal error, logged),
    with its paths record; every other forecast is published exactly as before."""
    from streams.agents import forecasts as module

    limit = 100_000  # a forecast of 24 steps is some 15 kB: every third one is made one byte over
    monkeypatch.setattr(module, "RECORD_BYTES_MAX", limit)
    made: list[bytes] = []  # every record encoded
    encode = module.encode_forecast

    def oversized(rec: dict[str, Any]) -> bytes:
        value = encode(rec)
        if rec["as_of"] // 60_000 % 3 == 0:  # still valid JSON: whitespace after the object
            value += b" " * (limit + 1 - len(value))
        made.append(value)
        return value

    monkeypatch.setattr(module, "encode_forecast", oversized)
    forecasts, paths = await _run(tmp_path, paths=PATHS)
    kept = [v for v in made if len(v) <= limit]
    assert [json.loads(v)["as_of"] for v in made] == _due_origins()  # every due forecast was made
    assert 0 < len(kept) < len(made)
    assert [v for _k, v in forecasts] == kept  # the stream went on past every oversize record
    oversize = [r for r in caplog.records if r.levelname == "ERROR" and r.getMessage().startswith("forecast.oversize")]
    assert len(oversize) == len(made) - len(kept)  # each one an internal error, logged
    assert paths is not None
    assert [decode_paths(v)[0]["as_of"] for _k, v in paths] == [json.loads(v)["as_of"] for v in kept]
