"""Benchmark the diffusion forecaster: forecast latency (1 series, batch of 32) and training.

Run: ``.venv/bin/python bench/bench_diffusion.py [--model PATH] [--threads 2] [--train-minutes 1]
[--compile-steps 200] [--compile-rounds 5]``

The first line names the device: the GPU (``torch.cuda.get_device_name``) when CUDA is
available, else the CPU; with a GPU present the latency rows are repeated on it.

Latency: ``Predictor.forecast`` with 100 samples, H = 24, the model's default DDIM
steps, on CPU with ``--threads`` threads; p50/p99 over repeated calls on real hourly
EUR/USD contexts. Peers measured in the same process: the same model sampled with 100
DDIM steps (the step counts of published diffusion forecasters), and the EWMA random
walk baseline. Training: a short ``train()`` on the hourly 2007–2017 set (train to 2015,
validate 2016) to measure throughput; the full run's time is in docs/diffusion.md.
``--compile``: training steps/s of the default architecture (batch 512) with the loss eager
and through ``torch.compile``, the same step as :func:`train` (loss, backward, clipping,
AdamW, EMA) on synthetic batches of the real shapes (the work does not depend on the values),
measured after warm-up (the compilation time is printed apart), rounds alternating the two so
that load on the machine hits both alike; the ratio is the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
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
from forex_diffusion.diffusion.inputs import frame_candles
from forex_diffusion.ingest.readers import read_candles
from forex_diffusion.quality.evaluation import ewma_random_walk_quantiles
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
    return Predictor(
        DiffusionModel(cfg),
        {
            "version": "bench",
            "key": "EURUSD-1h-h24",
            "context": spec.to_dict(),
            "sampling": {"steps": 8, "samples": 100},
        },
    )


def _requests(pred: Predictor, n: int) -> list[ForecastRequest]:
    frame = read_candles(HOURLY, symbol="EURUSD", price="mid").frame.iloc[-(n + 400) :]
    ctx: SeriesContext = pred.new_context("EURUSD", "1h")
    out = []
    for k, candle in enumerate(frame_candles(frame, "EURUSD", "1h")):
        ctx.update(candle)
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


def _device_line() -> str:
    """The device the figures are measured on: the GPU's name when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return (
            f"device: GPU {torch.cuda.get_device_name(0)} (cuda:0 of {torch.cuda.device_count()}); "
            f"CPU rows use {torch.get_num_threads()} threads"
        )
    cpu = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = f"CPU {line.split(':', 1)[1].strip()}"
                break
    except OSError:
        pass
    return f"device: {cpu}, {torch.get_num_threads()} threads (no CUDA GPU)"


def _train_step(compiled: bool, device: torch.device) -> Callable[[], float]:
    """One optimiser step of :func:`train` on the default architecture (batch 512), loss eager or compiled."""
    cfg = TrainConfig(symbol="EURUSD", timeframe="1h")
    spec = cfg.context
    cond_dim = 2 * spec.window + CALENDAR_DIM + 1
    torch.manual_seed(cfg.seed)
    model = DiffusionModel(
        ModelConfig(
            denoiser=DenoiserConfig(
                horizon=cfg.horizon,
                cond_dim=cond_dim,
                width=cfg.width,
                cond_width=cfg.cond_width,
                blocks=cfg.blocks,
                time_dim=cfg.time_dim,
            ),
            schedule=cfg.schedule,
            x0_clip=spec.clip,
        )
    ).to(device)
    ema = copy.deepcopy(model)
    params, ema_params = list(model.parameters()), list(ema.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    idx_gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
    n = 20_000
    x_all = torch.randn(n, cfg.horizon, device=device).clamp(-spec.clip, spec.clip)
    c_all = torch.randn(n, cond_dim, device=device)
    loss_fn: Callable[..., torch.Tensor] = torch.compile(model.loss) if compiled else model.loss

    def step() -> float:
        model.train()
        bi = torch.randint(0, n, (cfg.batch_size,), generator=idx_gen).to(device)
        loss = loss_fn(x_all[bi], c_all[bi], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema_params, params, strict=True):
                e.lerp_(p, 1.0 - cfg.ema_decay)
        return float(loss.detach())  # train() reads the loss every step (a device sync)

    return step


def _compile_rates(device: torch.device, steps: int, rounds: int = 3, warmup: int = 20) -> None:
    """Print training steps/s with the loss eager and compiled, and their ratio (same run)."""
    fns: dict[str, Callable[[], float]] = {}
    for name in ("eager", "compiled"):
        try:
            f = _train_step(name == "compiled", device)
            t0 = time.perf_counter()
            f()
            first = time.perf_counter() - t0
            for _ in range(warmup):
                f()
        except Exception as exc:  # a missing C compiler, an unsupported backend: say so, go on
            print(f"  {name}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
            return
        fns[name] = f
        print(f"  {name:<9} first step {first:7.2f} s (compilation when compiled), then {warmup} warm-up steps")
    rates: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                f()
            rates[name].append(steps / (time.perf_counter() - t0))
    ratios = [c / e for e, c in zip(rates["eager"], rates["compiled"], strict=True)]
    for name, r in rates.items():
        print(
            f"  {name:<9} {np.median(r):8.1f} steps/s (median of {rounds} rounds of {steps}: "
            f"{', '.join(f'{x:.1f}' for x in r)})"
        )
    print(f"  compiled / eager: x{np.median(ratios):.2f} (rounds {', '.join(f'{x:.2f}' for x in ratios)})")


def _inputs_rows(names: str, pred: Predictor, reqs: list[ForecastRequest], reps: int) -> None:
    """Latency with named model inputs: the builders' per-candle cost plus sampling a model with extras.

    The model is the default architecture with the inputs' extra width (untrained: the work
    does not depend on the weights), timed in rounds alternating with the model without
    inputs; the ratios are to that model in the same rounds.
    """
    import dataclasses

    from forex_diffusion.diffusion.inputs import InputsBuilder, InputSpec

    spec = InputSpec.parse(names, "1h")
    e = len(spec.features)
    frame = read_candles(HOURLY, symbol="EURUSD", price="mid").frame.iloc[-3000:]
    bars = frame_candles(frame, "EURUSD", "1h")
    warm, timed = bars[:-200], bars[-200:]
    builders = [InputsBuilder(spec, "EURUSD") for _ in range(32)]
    for b in builders:
        for c in warm:
            b.update(c)
    t0 = time.perf_counter()
    vec = None
    for c in timed:
        builders[0].update(c)
        vec = builders[0].vector(c.close_ms)
    per_candle = (time.perf_counter() - t0) / len(timed) * 1e3
    assert vec is not None
    cfg = pred.model.config
    mcfg = dataclasses.replace(cfg, denoiser=dataclasses.replace(cfg.denoiser, cond_dim=cfg.denoiser.cond_dim + e))
    manifest = {**pred.manifest, "extra_dim": e, "inputs": spec.to_dict(), "timeframe": "1h"}
    predx = Predictor(DiffusionModel(mcfg), manifest)
    reqs_x = [dataclasses.replace(r, extra=vec) for r in reqs]
    # rounds alternate the model without and with inputs, so that load on the machine hits both alike
    base1, with1, base32, with32 = [], [], [], []
    for k in range(reps):
        for fn, out in (
            (lambda: pred.forecast(reqs[:1], samples=100), base1),
            (lambda: predx.forecast(reqs_x[:1], samples=100), with1),
        ):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        if k % 4 == 0:
            for fn, out in (
                (lambda: pred.forecast(reqs, samples=100), base32),
                (lambda: predx.forecast(reqs_x, samples=100), with32),
            ):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1e3)
    print(
        f"with inputs {','.join(spec.names)} ({e} extra features): building them costs "
        f"{per_candle * 1e3:.0f} us per candle and series; rounds alternating without/with "
        f"(ratio: with / without, same rounds):"
    )
    _row("1 series, model without inputs", np.array(base1))
    _row("1 series: inputs of one candle + forecast", np.array(with1) + per_candle, float(np.median(base1)))
    _row("batch of 32, model without inputs", np.array(base32))
    _row("batch of 32: inputs of 32 candles + forecast", np.array(with32) + 32 * per_candle, float(np.median(base32)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-minutes", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument(
        "--inputs", default="indicators,mtf", help="model inputs timed against the model without ('' to skip)"
    )
    ap.add_argument(
        "--compile-steps",
        type=int,
        default=200,
        help="steps per round of the eager vs torch.compile training measurement (0: skip)",
    )
    ap.add_argument("--compile-rounds", type=int, default=5, help="rounds of that measurement (median)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(_device_line())
    pred = _predictor(args.model)
    n_params = sum(p.numel() for p in pred.model.parameters())
    print(
        f"model {pred.key} {pred.version}: {n_params} params, default steps {pred.default_steps}, "
        f"threads {torch.get_num_threads()}"
    )
    reqs = _requests(pred, 32)
    one = reqs[:1]
    print("forecast latency, 100 samples, H=24:")
    t1 = _time(lambda: pred.forecast(one, samples=100), args.reps)
    _row("1 series (default steps)", t1)
    t32 = _time(lambda: pred.forecast(reqs, samples=100), max(10, args.reps // 4))
    _row("batch of 32 series (default steps)", t32)
    print("peers (same process):")
    _row(
        "1 series, 100 DDIM steps", _time(lambda: pred.forecast(one, steps=100, samples=100), 10), float(np.median(t1))
    )
    _row(
        "batch of 32, 100 DDIM steps",
        _time(lambda: pred.forecast(reqs, steps=100, samples=100), 5),
        float(np.median(t32)),
    )
    last = np.array([r.last_close for r in reqs])
    sig = np.array([r.sigma for r in reqs])
    _row(
        "batch of 32, EWMA random walk quantiles",
        _time(lambda: ewma_random_walk_quantiles(last, sig, 24), 100),
        float(np.median(t32)),
    )
    print(
        f"goals: 1 series p50 <= 15 ms: {'met' if np.median(t1) <= 15 else 'MISSED'}; "
        f"batch of 32 p50 <= 150 ms: {'met' if np.median(t32) <= 150 else 'MISSED'}"
    )
    if args.inputs:
        _inputs_rows(args.inputs, pred, reqs, args.reps)
    if torch.cuda.is_available():
        gpu = Predictor(copy.deepcopy(pred.model), pred.manifest, device="cuda")
        print(f"on the GPU ({torch.cuda.get_device_name(0)}), same requests (ratio: to the CPU rows above):")
        _row("1 series (default steps)", _time(lambda: gpu.forecast(one, samples=100), args.reps), float(np.median(t1)))
        _row(
            "batch of 32 series (default steps)",
            _time(lambda: gpu.forecast(reqs, samples=100), max(10, args.reps // 4)),
            float(np.median(t32)),
        )
        # the tolerance docs/diffusion.md "Device" states: same seeded noise, float32 kernels differ
        cpu_q = np.stack([f.quantiles for f in pred.forecast(reqs, samples=100)])
        gpu_q = np.stack([f.quantiles for f in gpu.forecast(reqs, samples=100)])
        rel = float(np.max(np.abs(gpu_q - cpu_q) / np.abs(cpu_q)))
        print(
            f"  GPU vs CPU quantiles, batch of 32: max relative difference {rel:.2e} "
            f"({'within' if rel <= 1e-6 else 'OUTSIDE'} the stated 1e-6)"
        )
    if args.compile_steps > 0:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        print(f"training steps/s, default architecture, batch 512, on {dev}, loss eager vs torch.compile:")
        _compile_rates(dev, args.compile_steps, rounds=max(1, args.compile_rounds))
    if args.train_minutes <= 0:
        return  # --train-minutes 0: latency only
    frame = read_candles(HOURLY, symbol="EURUSD", price="mid").frame
    cfg = TrainConfig(
        symbol="EURUSD",
        timeframe="1h",
        horizon=24,
        device="cpu",
        max_minutes=args.train_minutes,
        split=(datetime_to_ms(datetime(2016, 1, 1, tzinfo=UTC)), datetime_to_ms(datetime(2017, 1, 1, tzinfo=UTC))),
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(cfg, frame, tmp)
        wall = time.perf_counter() - t0
    m = res.metrics
    print(
        f"training, hourly EUR/USD 2007-2015 (budget {args.train_minutes} min): {m['steps']} steps in "
        f"{wall:.1f} s wall ({m['steps'] / wall:.1f} steps/s incl. evaluation, calibration, scoring); "
        f"stop={m['stop_reason']}; test skill step1 {m['test']['skill'][0]:+.4f} step24 {m['test']['skill'][-1]:+.4f}"
    )


if __name__ == "__main__":
    main()
