"""The candle agent's forecasts/s beside its predictor's own batch rate, measured in one run.

1. The predictor alone: the forecast requests of the bundled sample's 1m candles (built
   offline by the core forecaster, as the agent builds them), sampled in batches of the sizes
   the agent's batches had, with the same sampler budget: forecasts/s of the model itself.
2. The candle agent as Faust runs it, without a broker (``agent.test_context()``; the topics
   acknowledge at once, the checkpoints write the worker's SQLite database): the same candles
   put into its channel, forecasts/s from the first candle to the last batch.

The ratio is what the agent's per-candle work (features, learners, drift, encoding, the
checkpoint) costs beside the sampling; the agent batches as it does in service
(``take_events(64, within=0.05)``), one sampling call per model per batch.
Run: ``.venv/bin/python bench/bench_candle_agent.py [--candles 2000] [--steps 10] [--samples 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class AckingTopic:
    """A topic whose sends the broker acknowledges at once."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> asyncio.Future[None]:
        self.sent += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


async def run_agent(candles: list[Any], tmp: str, steps: int, samples: int) -> tuple[float, int, list[int], Any]:
    """Feed ``candles`` to a candle agent; return (seconds, forecasts, batch sizes, its predictor)."""
    from forex_diffusion.bundled import MODELS
    from forex_diffusion.wire import encode_candle
    from streams.app import create_app
    from streams.settings import Settings

    s = Settings(
        symbols=("EURUSD",),
        timeframes=("1m",),
        forecast_timeframes=("1m",),
        horizon=24,
        data_dir=Path(tmp),
        model_dir=MODELS,
        forecast_steps=steps,
        forecast_samples=samples,
        warm_candles=0,
        status_interval_s=0,
    )
    rt = create_app(s, roles=("candles",))
    rt.topics = {name: AckingTopic() for name in rt.topics}  # type: ignore[misc]
    agent = rt.candle_agent  # type: ignore[attr-defined]
    sizes: list[int] = []
    handle = agent.handle_batch

    async def counted(msgs: list[Any]) -> None:
        sizes.append(len(msgs))
        await handle(msgs)

    agent.handle_batch = counted
    async with agent.agent.test_context() as ctx:
        t0 = time.perf_counter()
        for c in candles:
            await ctx.put(encode_candle(c), key=b"EURUSD", partition=0, wait=False)
        while agent.consumer.processed < len(candles) or agent.consumer.busy:
            await asyncio.sleep(0.001)
        seconds = time.perf_counter() - t0
    await agent.consumer.flush()
    return seconds, agent.forecasts_emitted, sizes, agent.models.predictor("EURUSD", "1m")


def predictor_rate(candles: list[Any], predictor: Any, sizes: list[int], steps: int, samples: int) -> tuple[float, int]:
    """Sample the agent's requests with ``predictor`` in batches of the agent's sizes."""
    from forex_diffusion.forecast.forecaster import ForecasterConfig, SymbolForecaster

    f = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1m",), forecast_timeframes=("1m",), horizon=24))
    due: list[list[Any]] = []
    i = 0
    for n in sizes:  # the requests of each of the agent's batches, in its order
        reqs = []
        for c in candles[i : i + n]:
            o = f.on_candle(c)
            if o.due and (r := f.request(o, predictor.context_spec, predictor.inputs)) is not None:
                reqs.append(r)
        due.append(reqs)
        i += n
    first = next((reqs for reqs in due if reqs), [])
    predictor.forecast(first[:1], steps=steps, samples=samples)  # warm-up, as the agent's first call was not
    t0 = time.perf_counter()
    done = 0
    for reqs in due:
        if reqs:
            done += len(predictor.forecast(reqs, steps=steps, samples=samples))
    return time.perf_counter() - t0, done


def main() -> None:
    from forex_diffusion.bundled import SAMPLE_TICKS
    from forex_diffusion.offline import aggregate_ticks_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candles", type=int, default=2_000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--samples", type=int, default=64)
    a = ap.parse_args()
    candles = aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m"]).candles[: a.candles]
    with tempfile.TemporaryDirectory() as tmp:
        t_agent, n_agent, sizes, predictor = asyncio.run(run_agent(candles, tmp, a.steps, a.samples))
    t_pred, n_pred = predictor_rate(candles, predictor, sizes, a.steps, a.samples)
    print(
        f"candles: {len(candles):,} (bundled EUR/USD 1m), model {predictor.version}, {a.steps} steps x {a.samples} samples"
    )
    print(f"agent batches: {len(sizes)}, mean {len(candles) / max(1, len(sizes)):.1f} candles")
    print(f"{'predictor alone (same batches)':36s} {n_pred / t_pred:10,.1f} forecasts/s  ({n_pred} forecasts)")
    print(f"{'forexd candle agent':36s} {n_agent / t_agent:10,.1f} forecasts/s  ({n_agent} forecasts)")
    if n_pred and n_agent:
        print(f"candle agent / predictor alone: {(n_agent / t_agent) / (n_pred / t_pred):.2f}")


if __name__ == "__main__":
    main()
