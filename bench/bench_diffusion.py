"""Benchmark the diffusion forecaster: forecast latency (1 series, batch of 32) and training.

Run: ``.venv/bin/python bench/bench_diffusion.py [--model PATH] [--threads 2] [--train-minutes 1]``

Latency: ``Predictor.forecast`` with 100 samples, H = 24, the model's default DDIM
steps, on CPU with ``--threads`` threads; p50/p99 over repeated calls on real hourly
EUR/USD contexts. Peers measured in the same process: the same model sampled with 100
DDIM steps (the step counts of published diffusion forecasters), and the EWMA random
walk baseline. Training: a short ``train()`` on the hourly 2007–2017 set (train to 2015,
validate 2016) to measure throughput; the full run's time is in docs/diffusion.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from forex_diffusion.bundled import MODELS
from forex_diffusion.diffusion import (
    ContextSpec,
    DenoiserConfig,
    DiffusionModel,
    ForecastRequest,
    ModelConfig,
    Predictor,
    SeriesContext,
    TrainConfig,
    train,
)
from forex_diffusion.diffusion.context import CALENDAR_DIM
from forex_diffusion.domain import Candle
from forex_diffusion.evaluation import ewma_random_walk_quantiles
from forex_diffusion.readers import read_candles
from forex_diffusion.timeframes import datetime_to_ms

HOURLY = Path(__file__).resolve().parents[1] / "tests" / "data" / "lean" / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
BUNDLED = MODELS / "EURUSD-1h-h24"


def _predictor(model: Path | None) -> Predictor:
    path = model or (BUNDLED if BUNDLED.is_dir() else None)
    if path is not None:
        return Predictor.load(path)
    spec = ContextSpec()
    cfg = ModelConfig(denoiser=DenoiserConfig(horizon=24, cond_dim=2 * spec.window + CALENDAR_DIM + 1))
    print("no model given or bundled: timing an untrained model of the default architecture")
    return Predictor(DiffusionModel(cfg), {"version": "bench", "key": "EURUSD-1h-h24",
                                           "context": spec.to_dict(), "sampling": {"steps": 8, "samples": 100}})


def _requests(pred: Predictor, n: int) -> list[ForecastRequest]:
    frame = read_candles(HOURLY, symbol="EURUSD", price="mid").frame.iloc[-(n + 400):]
    ctx: SeriesContext = pred.new_context("EURUSD", "1h")
    out = []
    for k, (t, o, h, lo, c) in enumerate(zip(frame.ts_ms, frame.open, frame.high, frame.low, frame.close, strict=True)):
        ctx.update(Candle(symbol="EURUSD", timeframe="1h", open_ms=int(t), close_ms=int(t) + 3_600_000,
                          open=o, high=h, low=lo, close=c))
        if k >= 400:
            req = ctx.request()
            assert req is not None
            out.append(req)
    return out


def _time(fn: object, reps: int) -> np.ndarray:
    f = fn  # type: ignore[assignment]
    for _ in range(3):
        f()  # type: ignore[operator]
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()  # type: ignore[operator]
        ts.append(time.perf_counter() - t0)
    return np.array(ts) * 1e3


def _row(name: str, ms: np.ndarray, ref: float | None = None) -> None:
    p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
    ratio = f"  x{p50 / ref:6.2f} vs predictor" if ref else ""
    print(f"  {name:<42} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms{ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-minutes", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pred = _predictor(args.model)
    n_params = sum(p.numel() for p in pred.model.parameters())
    print(f"model {pred.key} {pred.version}: {n_params} params, default steps {pred.default_steps}, "
          f"threads {torch.get_num_threads()}")
    reqs = _requests(pred, 32)
    one = reqs[:1]
    print("forecast latency, 100 samples, H=24:")
    t1 = _time(lambda: pred.forecast(one, samples=100), args.reps)
    _row("1 series (default steps)", t1)
    t32 = _time(lambda: pred.forecast(reqs, samples=100), max(10, args.reps // 4))
    _row("batch of 32 series (default steps)", t32)
    print("peers (same process):")
    _row("1 series, 100 DDIM steps", _time(lambda: pred.forecast(one, steps=100, samples=100), 10), float(np.median(t1)))
    _row("batch of 32, 100 DDIM steps", _time(lambda: pred.forecast(reqs, steps=100, samples=100), 5), float(np.median(t32)))
    last = np.array([r.last_close for r in reqs])
    sig = np.array([r.sigma for r in reqs])
    _row("batch of 32, EWMA random walk quantiles", _time(lambda: ewma_random_walk_quantiles(last, sig, 24), 100),
         float(np.median(t32)))
    print(f"goals: 1 series p50 <= 15 ms: {'met' if np.median(t1) <= 15 else 'MISSED'}; "
          f"batch of 32 p50 <= 150 ms: {'met' if np.median(t32) <= 150 else 'MISSED'}")
    frame = read_candles(HOURLY, symbol="EURUSD", price="mid").frame
    cfg = TrainConfig(symbol="EURUSD", timeframe="1h", horizon=24, device="cpu", max_minutes=args.train_minutes,
                      split=(datetime_to_ms(datetime(2016, 1, 1, tzinfo=UTC)),
                             datetime_to_ms(datetime(2017, 1, 1, tzinfo=UTC))))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(cfg, frame, tmp)
        wall = time.perf_counter() - t0
    m = res.metrics
    print(f"training, hourly EUR/USD 2007-2015 (budget {args.train_minutes} min): {m['steps']} steps in "
          f"{wall:.1f} s wall ({m['steps'] / wall:.1f} steps/s incl. evaluation, calibration, scoring); "
          f"stop={m['stop_reason']}; test skill step1 {m['test']['skill'][0]:+.4f} step24 {m['test']['skill'][-1]:+.4f}")


if __name__ == "__main__":
    main()
