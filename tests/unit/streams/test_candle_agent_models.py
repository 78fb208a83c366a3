"""The candle agent with several (timeframe, horizon) models and warm start (issue 16).

One agent serves 1m/H24 (the bundled diffusion model) and 5m/H6 (no model: the random walk
at H6): its forecasts carry each model's horizon and version, the model book resolves both
keys, its state carries both series and restores. An agent with stored candles but no
checkpoint forecasts the first candle it sees; with the warm start off it cannot.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from forex_diffusion.bundled import MODELS, SAMPLE_TICKS
from forex_diffusion.domain import Candle
from forex_diffusion.forecast.warm_start import stream_key
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import make_engine, upsert_candles
from forex_diffusion.wire import encode_candle
from streams.agents.candles import CandleAgent
from streams.app import Runtime
from streams.settings import Settings

TFS = ("1m", "5m")
M1 = sorted((MODELS / "EURUSD-1m-h24").glob("*.pt"))[-1]


@pytest.fixture(scope="module")
def candles() -> list[Candle]:
    return sorted(aggregate_ticks_file(SAMPLE_TICKS, timeframes=list(TFS)).candles, key=stream_key)


def _agent(tmp_path: Path, *, engine: Any = None, **kw: Any) -> CandleAgent:
    s = Settings(
        symbols=("EURUSD",),
        timeframes=TFS,
        data_dir=tmp_path,
        status_interval_s=0,
        forecast_steps=2,
        forecast_samples=16,
        **kw,
    )
    rt = Runtime(
        settings=s,
        app=SimpleNamespace(consumer=None),
        topics={},
        instruments=InstrumentRegistry.of(s.symbols),
        engine=engine,
    )
    return CandleAgent(rt)


def _feed(agent: CandleAgent, cs: list[Candle], start: int = 0, batch: int = 32) -> list[dict[str, Any]]:
    """Feed ``cs`` in batches; return the forecast records (taken off the queue as a
    checkpoint would: nothing is published in these tests)."""
    msgs = [
        SimpleNamespace(topic="fx.candles", partition=0, offset=start + i, key=b"EURUSD", value=encode_candle(c))
        for i, c in enumerate(cs)
    ]
    out: list[dict[str, Any]] = []

    async def go() -> None:
        for i in range(0, len(msgs), batch):
            await agent.handle_batch(msgs[i : i + batch])
            out.extend(json.loads(v) for kind, _k, v in agent.effects.out if kind == "forecasts")
            agent.effects.out.clear()

    asyncio.run(go())
    return out


def test_one_agent_serves_two_timeframe_horizon_models(tmp_path: Path, candles: list[Candle]) -> None:
    agent = _agent(tmp_path, models=("1m:24", "5m:6"), model_dir=MODELS)
    cs = candles[:420]  # ~350 1m and ~70 5m candles: both contexts get ready
    recs = _feed(agent, cs)
    by_tf = {tf: [r for r in recs if r["timeframe"] == tf] for tf in TFS}
    assert by_tf["1m"] and by_tf["5m"]
    assert {(r["horizon"], r["model_version"], len(r["quantiles"])) for r in by_tf["1m"]} == {(24, M1.stem, 24)}
    assert {(r["horizon"], r["model_version"], len(r["quantiles"])) for r in by_tf["5m"]} == {(6, "rw-ewma", 6)}
    # the learners of each series predict at one step and at its own model's horizon
    assert {p["horizon"] for r in by_tf["5m"] for p in r["learner"]} == {1, 6}
    assert {p["horizon"] for r in by_tf["1m"] for p in r["learner"]} == {1, 24}
    # the model book resolves both keys (symbol, timeframe, horizon)
    assert agent.models.versions() == {("EURUSD", "1m"): M1.stem, ("EURUSD", "5m"): "rw-ewma"}
    assert (agent.models.horizon_of("1m"), agent.models.horizon_of("5m")) == (24, 6)
    assert agent.models.predictor("EURUSD", "5m").horizon == 6
    # a drift request of a series names its model's horizon
    f = agent.forecasters["EURUSD"]
    assert (f.series["1m"].policy.model_horizon, f.series["5m"].policy.model_horizon) == (24, 6)

    # the partition state holds both series, each with its horizon, and restores
    state = json.loads(json.dumps(agent._snapshot(0, ["EURUSD"])["EURUSD"]))  # per series (issue 15)
    assert {tf: d["horizon"] for tf, d in state["symbols"]["EURUSD"]["state"]["series"].items()} == {"1m": 24, "5m": 6}
    other = _agent(tmp_path, models=("1m:24", "5m:6"), model_dir=MODELS)
    other._restore(0, {"EURUSD": state})
    g = other.forecasters["EURUSD"]
    assert g.cold == set() and {tf: s.horizon for tf, s in g.series.items()} == {"1m": 24, "5m": 6}
    assert [c.close_ms for c in g.series["5m"].history] == [c.close_ms for c in f.series["5m"].history]


def test_an_agent_with_stored_candles_and_no_checkpoint_forecasts_its_first_candle(
    tmp_path: Path,
    candles: list[Candle],
) -> None:
    k = [i for i, c in enumerate(candles) if c.timeframe == "1m"][300]
    engine = make_engine(f"sqlite:///{tmp_path / 'forexd.db'}")
    upsert_candles(engine, candles[:k])  # what the previous worker stored; its checkpoint is gone

    agent = _agent(tmp_path, engine=engine)
    recs = _feed(agent, [candles[k]], start=k)
    assert [(r["as_of_ms"], r["timeframe"], r["horizon"]) for r in recs] == [(candles[k].close_ms, "1m", 24)]
    assert agent.forecasters["EURUSD"].cold == set()
    assert len(agent.forecasters["EURUSD"].series["1m"].history) == 301  # 300 stored + this one

    # the same through a worker that never stored anything, or with the warm start off: none
    for off in (
        _agent(tmp_path / "a", engine=make_engine(f"sqlite:///{tmp_path / 'empty.db'}")),
        _agent(tmp_path / "b", engine=engine, warm_candles=0),
    ):
        assert _feed(off, [candles[k]], start=k) == []


def test_the_retrain_agent_takes_requests_for_every_model_and_names_their_horizon(tmp_path: Path) -> None:
    from forex_diffusion.errors import ValidationError
    from forex_diffusion.quality.trigger import RetrainRequest
    from streams.agents.retrain import RetrainAgent

    s = Settings(symbols=("EURUSD",), timeframes=("1m", "5m", "1h"), data_dir=tmp_path, models=("1m:60", "1h:24"))
    agent = RetrainAgent(SimpleNamespace(settings=s, metrics=None, app=None, topics={}))  # type: ignore[arg-type]
    assert {60, 24} <= agent.horizons

    def req(tf: str, h: int | None) -> RetrainRequest:
        return RetrainRequest(
            request_id="a" * 24, symbol="EURUSD", timeframe=tf, horizon=h, reason="manual", requested_at_ms=0
        )

    # a request naming no horizon (forexd retrain without --horizon) retrains its timeframe's model
    assert agent.named(req("1h", None)).horizon == 24 and agent.named(req("1m", None)).horizon == 60
    assert agent.named(req("5m", None)).horizon is None  # no model there: the job's horizon, as before
    assert agent.named(req("1h", 6)).horizon == 6
    agent.check(req("1h", 24))
    agent.check(req("1m", 60))
    with pytest.raises(ValidationError, match="horizon 12 is not configured"):
        agent.check(req("1h", 12))


def test_a_partition_revoked_while_its_batch_forecasts_dead_letters_nothing(
    tmp_path: Path, candles: list[Candle]
) -> None:
    """The revoke does not wait for a step past its bound: a batch whose partition was revoked
    while its forecasts were sampled (in the executor) found its forecasters gone, and every
    due candle of it was dead-lettered as ``internal`` (KeyError) -- records the new owner
    processes correctly. They are left to the new owner now."""
    import threading

    agent = _agent(tmp_path)
    _feed(agent, candles[:400])
    loop_of: list[asyncio.AbstractEventLoop] = []
    real = agent.models.predictor

    class Revoking:
        def __init__(self, pred: Any) -> None:
            self.pred = pred

        def __getattr__(self, name: str) -> Any:
            return getattr(self.pred, name)

        def forecast(self, reqs: Any, **kw: Any) -> Any:
            done = threading.Event()

            def revoke() -> None:  # what on_revoked does once its bounded checkpoint gave up
                agent.consumer.progress._forget(0)
                agent.consumer.progress.revoked.add(0)
                agent.effects.drop(0)
                done.set()

            loop_of[0].call_soon_threadsafe(revoke)
            assert done.wait(10)
            return self.pred.forecast(reqs, **kw)

    agent.models.predictor = lambda sym, tf: Revoking(real(sym, tf))  # type: ignore[method-assign]
    msgs = [
        SimpleNamespace(topic="fx.candles", partition=0, offset=400 + i, key=b"EURUSD", value=encode_candle(c))
        for i, c in enumerate(candles[400:440])
    ]

    async def go() -> None:
        loop_of.append(asyncio.get_running_loop())
        await agent.handle_batch(msgs)

    asyncio.run(go())
    assert agent.contain.internal_errors == 0 and not agent.effects.dead
    assert 0 not in agent.effects.parts  # nothing of the revoked partition queued again


def test_no_series_is_warmed_for_a_partition_this_worker_no_longer_holds(tmp_path: Path, candles: list[Candle]) -> None:
    """A batch in hand after its partition was revoked (or fenced): its candles are not this
    worker's any more, so no forecaster is built and installed for them (it stayed, never
    checkpointed nor dropped, and served the series if the partition came back)."""
    from streams.agents.warm import warm_batch

    agent = _agent(tmp_path)
    agent.consumer.progress.revoked.add(0)
    c = next(c for c in candles if c.final)
    msg = SimpleNamespace(topic="fx.candles", partition=0, offset=0, key=b"EURUSD", value=encode_candle(c))
    asyncio.run(warm_batch(agent, [msg]))
    assert agent.forecasters == {}


def test_a_partition_revoked_and_assigned_again_during_a_batch_keeps_its_restored_state(
    tmp_path: Path, candles: list[Candle]
) -> None:
    """Revoked while the batch's forecasts were sampled, then assigned to this worker again
    and restored (a rebalance keeps most partitions where they were): the batch's forecasts
    were recorded into the *restored* forecaster -- pending forecasts of candles its state
    has not seen yet, which the new assignment replays and forecasts again. A batch in hand
    across a revoke is the old assignment's; nothing of it reaches the new one."""
    import threading

    agent = _agent(tmp_path)
    _feed(agent, candles[:400])
    saved = json.loads(json.dumps(agent._snapshot(0, ["EURUSD"])))
    loop_of: list[asyncio.AbstractEventLoop] = []
    real = agent.models.predictor
    progress = agent.consumer.progress

    class Rebalancing:
        def __init__(self, pred: Any) -> None:
            self.pred = pred

        def __getattr__(self, name: str) -> Any:
            return getattr(self.pred, name)

        def forecast(self, reqs: Any, **kw: Any) -> Any:
            done = threading.Event()

            def rebalance() -> None:  # on_revoked (its bounded checkpoint gave up), then on_assigned
                progress._forget(0)
                progress.revoked.add(0)
                progress.revocations[0] = progress.revocations.get(0, 0) + 1
                agent.effects.drop(0)
                progress.revoked.discard(0)
                agent._restore(0, saved)
                progress.offsets[0] = 399
                done.set()

            loop_of[0].call_soon_threadsafe(rebalance)
            assert done.wait(10)
            return self.pred.forecast(reqs, **kw)

    agent.models.predictor = lambda sym, tf: Rebalancing(real(sym, tf))  # type: ignore[method-assign]
    msgs = [
        SimpleNamespace(topic="fx.candles", partition=0, offset=400 + i, key=b"EURUSD", value=encode_candle(c))
        for i, c in enumerate(candles[400:440])
    ]

    async def go() -> None:
        loop_of.append(asyncio.get_running_loop())
        await agent.handle_batch(msgs)

    asyncio.run(go())
    fresh = _agent(tmp_path)
    fresh._restore(0, saved)
    untouched = json.loads(json.dumps(fresh._snapshot(0, ["EURUSD"])))  # the restored state, as restored
    assert json.loads(json.dumps(agent._snapshot(0, ["EURUSD"]))) == untouched
    assert not agent.effects.parts.get(0, SimpleNamespace(forecasts=[])).forecasts
    assert agent.contain.internal_errors == 0 and not agent.effects.dead
