"""Live shadow before promotion (issue 16), with a constructed regime change.

The series is a random walk whose volatility rises eightfold at a known candle. The
champion is a Gaussian with twice the old volatility (too wide before the change, too
narrow after it). Two challengers beat it on the offline hold-out, which lies before the
change:

- ``fixed``: a Gaussian with the old volatility -- exact before the change, far narrower
  than the champion after it (worse live);
- ``adapts``: the old volatility before the change and the new one after it -- exact
  throughout (better live).

Both pass the job's offline rule (:func:`evaluate_holdout` + :func:`decide_promotion`) and
enter shadow. The live path then runs after the change exactly as the candle agent runs
it: :class:`SymbolForecaster` makes the requests, :class:`ModelBook` resolves champion and
shadow from the registry, :class:`ShadowTracker` scores both when realised, the rows go
to the database through ``save_progress`` (the checkpoint transaction) and
:func:`settle_shadow` decides. ``fixed`` is blocked by the shadow; ``adapts`` is promoted.
(Over ten seeds of the series, ``fixed``'s live CRPS was 1.06-1.11 x the champion's on the
first 48 realised origins and ``adapts``'s 0.76-0.94 x; the test uses one seed.)
A restart in the middle of the shadow (forecaster and tracker restored from their JSON
snapshots, a new model book and registry object) ends with the same rows and decision.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forex_diffusion.diffusion import TrainResult
from forex_diffusion.diffusion.context import ContextSpec, ForecastRequest, SeriesContext
from forex_diffusion.diffusion.predictor import Forecast
from forex_diffusion.domain import Candle
from forex_diffusion.errors import RegistryError
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.quality.shadow import ShadowTracker
from forex_diffusion.storage import make_engine, save_progress
from forex_diffusion.storage.model_registry import ModelKey, get_aliases, read_shadow_scores
from forex_diffusion.timeframes import Timeframe
from retraining.jobs import decode_outcome, encode_outcome, evaluate_holdout, run_retrain
from retraining.policy import PromotionPolicy, decide_promotion
from retraining.registry import ModelRegistry
from retraining.serving import ModelBook
from retraining.shadow_verdict import ShadowState, settle_shadow, shadow_state
from streams.cli import app

from .conftest import HORIZON, request, stage_copy, tiny_job

KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=HORIZON)
SIGMA_BEFORE, SIGMA_AFTER = 5e-4, 4e-3
CHANGE = 900  # first candle of the new regime
T0_MS = 1_577_836_800_000  # 2020-01-01, the first candle's open
CHANGE_MS = T0_MS + CHANGE * 3_600_000
REQUIRED = 48  # realised forecasts the shadow needs


class Gaussian:
    """A constructed predictor: the Gaussian random walk in log price with a constant volatility
    (``vol``; ``vol_after`` from the change on) or ``mult`` x the request's EWMA volatility.
    Deterministic; the interface the agent and the backtest use."""

    inputs = None
    context_spec = None

    def __init__(
        self, version: str, *, vol: float | None = None, mult: float = 1.0, vol_after: float | None = None
    ) -> None:
        self.version, self.vol, self.mult, self.vol_after, self.horizon = version, vol, mult, vol_after, HORIZON
        self.key = str(KEY)

    def _vol(self, r: ForecastRequest) -> float:
        if self.vol_after is not None and r.as_of_ms >= CHANGE_MS:
            return self.vol_after
        return self.vol if self.vol is not None else self.mult * r.sigma

    def new_context(self, symbol: str, timeframe: str) -> SeriesContext:
        return SeriesContext(symbol=symbol, timeframe=timeframe, spec=ContextSpec())

    def forecast(
        self, requests: Sequence[ForecastRequest], *, steps: int | None = None, samples: int | None = None
    ) -> list[Forecast]:
        """The served random walk's forecasts (:class:`RandomWalkPredictor`) at this predictor's volatility."""
        walk = RandomWalkPredictor(self.horizon)
        forecasts = walk.forecast([replace(r, sigma=self._vol(r)) for r in requests])
        return [replace(f, model_version=self.version) for f in forecasts]


def regime_candles(n: int = CHANGE + 400, seed: int = 7) -> list[Candle]:
    """Hourly EURUSD candles: a random walk whose volatility rises eightfold at :data:`CHANGE`."""
    rng = np.random.default_rng(seed)
    sig = np.where(np.arange(n) < CHANGE, SIGMA_BEFORE, SIGMA_AFTER)
    close = 1.10 * np.exp(np.cumsum(rng.normal(0.0, 1.0, n) * sig))
    tf = Timeframe.parse("1h")
    t0 = T0_MS
    out, prev = [], 1.10
    for i, c in enumerate(close):
        wick = abs(rng.normal(0.0, sig[i] / 3))
        hi, lo = max(prev, c) * (1 + wick), min(prev, c) * (1 - wick)
        open_ms = t0 + i * tf.duration_ms
        out.append(
            Candle(
                symbol="EURUSD",
                timeframe="1h",
                open_ms=open_ms,
                close_ms=tf.end_of(open_ms),
                open=float(prev),
                high=float(hi),
                low=float(lo),
                close=float(c),
            )
        )
        prev = float(c)
    return out


def frame_of(candles: list[Candle]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts_ms": [c.open_ms for c in candles],
            "open": [c.open for c in candles],
            "high": [c.high for c in candles],
            "low": [c.low for c in candles],
            "close": [c.close for c in candles],
        }
    )


def config() -> ForecasterConfig:
    return ForecasterConfig(timeframes=("1h",), forecast_timeframes=("1h",), horizon=HORIZON)


class Live:
    """The candle agent's forecast and shadow path for one series, without the broker."""

    def __init__(self, engine: Any, models: Path, predictors: dict[str, Gaussian]) -> None:
        self.engine, self.models = engine, models
        self.f = SymbolForecaster("EURUSD", config())
        self.tracker = ShadowTracker()
        self.book = self._book(predictors)
        self.predictors = predictors
        self.published: list[str] = []  # model versions of the records that would go on fx.forecasts
        self.offset = 0

    def _book(self, predictors: dict[str, Gaussian]) -> ModelBook:
        book = ModelBook(self.engine, horizon=HORIZON, model_dir=self.models)
        book._loaded.update(predictors)  # the registry's versions, served by the constructed predictors
        return book

    def restart(self) -> None:
        """A new worker: forecaster and tracker from their JSON snapshots, a fresh model book."""
        f_state = json.loads(json.dumps(self.f.snapshot()))
        t_state = json.loads(json.dumps(self.tracker.snapshot(["EURUSD"])))
        self.f = SymbolForecaster.restore(f_state, config(), symbol="EURUSD")
        self.tracker = ShadowTracker()
        assert self.tracker.restore(t_state) > 0
        self.book = self._book(self.predictors)

    def run(self, candles: list[Candle], *, forecast: bool, version: str | None = None, every: int = 24) -> None:
        rows: list[dict[str, Any]] = []
        for i, c in enumerate(candles, 1):
            out = self.f.on_candle(c)
            if not out.duplicate:
                rows += [r.row() for r in self.tracker.on_candle(c)]
            if forecast and out.due:
                fc = self.book.predictor("EURUSD", "1h").forecast([self.f.request(out, None)])[0]
                self.f.record(fc, out)
                self.published.append(fc.model_version)
                sp = self.book.shadow("EURUSD", "1h")
                if sp is not None:
                    assert self.tracker.add(sp.forecast([self.f.request(out, None)])[0], fc, sigma=out.sigma)
            if i % every == 0 or i == len(candles):
                self.offset += 1
                save_progress(
                    self.engine,
                    consumer="t",
                    topic="fx.candles",
                    partition=0,
                    offset=self.offset,
                    state={},
                    shadow_rows=rows,
                )
                rows = []
                if version is not None and settle_shadow(ModelRegistry(self.engine, self.models), version).decided_now:
                    self.book.refresh()


def setup(
    tmp_path: Path, tiny_checkpoint: TrainResult, challenger: Gaussian, champion: Gaussian
) -> tuple[ModelRegistry, Live, str]:
    """Registry with the champion and the challenger (copies of a tiny checkpoint under the
    constructed predictors' versions); the challenger passes the offline rule and enters shadow."""
    engine = make_engine(f"sqlite:///{tmp_path / 'shadow.db'}")
    models = tmp_path / "models"
    reg = ModelRegistry(engine, models)
    for v in (champion.version, challenger.version):
        reg.register(reg.publish(stage_copy(tiny_checkpoint, tmp_path / "stage", v), KEY), key=KEY, metrics={})
    reg.promote(champion.version, "first champion")
    candles = regime_candles()
    # the job's offline rule on a hold-out that lies before the change
    pre = frame_of(candles[:CHANGE])
    scores = {
        p.version: evaluate_holdout(
            p,
            pre,
            symbol="EURUSD",
            timeframe="1h",  # type: ignore[arg-type]
            holdout_start=CHANGE - 300,
            every=4,
            samples=None,
            steps=None,
        )
        for p in (champion, challenger)
    }
    decision = decide_promotion(scores[challenger.version], scores[champion.version], PromotionPolicy())
    assert decision.promote, decision.reason
    assert scores[challenger.version].crps < scores[champion.version].crps
    reg.start_shadow(challenger.version, decision.reason, required=REQUIRED)
    live = Live(engine, models, {p.version: p for p in (champion, challenger)})
    live.run(candles[:CHANGE], forecast=False)  # the worker's context, before the live span
    return reg, live, challenger.version


CHAMPION = Gaussian("20200101T000000000000Z-champ", vol=2 * SIGMA_BEFORE)
FIXED = Gaussian("20200101T000000000001Z-fixed", vol=SIGMA_BEFORE)
ADAPTS = Gaussian("20200101T000000000002Z-adapts", vol=SIGMA_BEFORE, vol_after=SIGMA_AFTER)


@pytest.mark.parametrize(
    ("challenger", "expected"), [(FIXED, "rejected"), (ADAPTS, "promoted")], ids=["worse_live", "better_live"]
)
def test_shadow_blocks_a_challenger_worse_live_and_promotes_one_better_live(
    challenger: Gaussian, expected: str, tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    reg, live, version = setup(tmp_path, tiny_checkpoint, challenger, CHAMPION)
    assert reg.get(version).status == "shadow" and reg.shadow(KEY).version == version  # type: ignore[union-attr]
    assert live.book.shadow("EURUSD", "1h") is challenger
    live.run(regime_candles()[CHANGE:], forecast=True, version=version)

    v = reg.get(version)
    assert v.status == expected, v.reason
    rows = read_shadow_scores(reg.engine, version)
    used = rows[:REQUIRED]
    assert len(rows) >= REQUIRED and all(r["champion_version"] == CHAMPION.version for r in used)
    shadow_crps = math.fsum(r["crps"] for r in used) / REQUIRED
    champion_crps = math.fsum(r["champion_crps"] for r in used) / REQUIRED
    aliases = get_aliases(reg.engine, KEY)
    assert "shadow" not in aliases
    if expected == "rejected":
        assert v.reason.startswith("shadow_worse:") and shadow_crps > champion_crps
        assert aliases["champion"] == CHAMPION.version
    else:
        assert v.reason.startswith("shadow_not_worse:") and shadow_crps <= champion_crps
        assert aliases["champion"] == version
    # consumers only ever saw the serving model: the champion, then (promoted) the new one
    assert set(live.published) <= {CHAMPION.version, version}
    first_switch = live.published.index(version) if version in live.published else len(live.published)
    assert set(live.published[:first_switch]) == {CHAMPION.version}
    assert (first_switch < len(live.published)) == (expected == "promoted")
    assert live.book.shadow("EURUSD", "1h") is None
    # the decision used exactly the first REQUIRED realised origins; later rows change nothing
    st = shadow_state(reg, version)
    assert st.state == expected and st.realised == REQUIRED
    assert st.scores.crps == pytest.approx(shadow_crps) and st.scores.champion_crps == pytest.approx(champion_crps)


def test_a_restart_mid_shadow_gives_the_same_rows_and_decision(tmp_path: Path, tiny_checkpoint: TrainResult) -> None:
    challenger = FIXED
    after = regime_candles()[CHANGE:]
    results = []
    for restart in (False, True):
        d = tmp_path / ("restart" if restart else "straight")
        d.mkdir()
        reg, live, version = setup(d, tiny_checkpoint, challenger, CHAMPION)
        if restart:
            live.run(after[:30], forecast=True, version=version)
            assert live.tracker.pending_count() > 0  # unrealised pairs cross the restart
            live.restart()
            live.run(after[30:], forecast=True, version=version)
        else:
            live.run(after, forecast=True, version=version)
        rows = [
            {k: r[k] for k in ("as_of_ms", "crps", "champion_crps", "rw_crps")}
            for r in read_shadow_scores(reg.engine, version, limit=REQUIRED)
        ]
        assert len(rows) == REQUIRED
        results.append((reg.get(version).status, reg.get(version).reason, rows))
    # the rows the decision used are the same (how many more follow depends on when the
    # decision lands between checkpoints, and changes nothing)
    assert results[0] == results[1]
    assert results[0][0] == "rejected"


def test_models_shadow_command_shows_the_comparison(tmp_path: Path, tiny_checkpoint: TrainResult) -> None:
    challenger = ADAPTS
    reg, live, version = setup(tmp_path, tiny_checkpoint, challenger, CHAMPION)
    live.run(regime_candles()[CHANGE : CHANGE + 40], forecast=True, version=version)  # not enough yet
    db, mdir = f"sqlite:///{tmp_path / 'shadow.db'}", str(tmp_path / "models")
    runner = CliRunner()
    res = runner.invoke(app, ["models", "shadow", str(KEY), "--db", db, "--model-dir", mdir, "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output.strip().splitlines()[-1])
    n = len(read_shadow_scores(reg.engine, version))
    assert 0 < n < REQUIRED
    assert got["state"] == "waiting" and got["realised"] == n and got["required"] == REQUIRED
    assert got["version"] == version and got["champion"] == CHAMPION.version
    assert got["scores"]["crps"] < got["scores"]["champion_crps"]  # the adapting challenger is ahead
    text = runner.invoke(app, ["models", "shadow", "EURUSD-1h-h12", "--db", db, "--model-dir", mdir])
    assert text.exit_code == 0 and f"realised forecasts {n} of {REQUIRED}" in text.output
    assert "state waiting" in text.output
    for bad, code in (("GBPUSD/1h/12", 2), ("not a key", 2)):
        out = runner.invoke(app, ["models", "shadow", bad, "--db", db, "--model-dir", mdir])
        assert out.exit_code == code, out.output
        assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1, out.output


def test_a_job_whose_challenger_beats_the_champion_puts_it_in_shadow(
    sqlite_db: str, tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    engine = make_engine(sqlite_db)
    models = tmp_path / "models"
    reg = ModelRegistry(engine, models)
    champ = reg.register(
        reg.publish(stage_copy(tiny_checkpoint, tmp_path / "stage", "20200101T000000000000Z-c"), KEY),
        key=KEY,
        metrics={},
    )
    reg.promote(champ.version, "champion")
    lenient = PromotionPolicy(min_improvement=-0.99, coverage90_bounds=(0.0, 1.0))
    out = run_retrain(
        request("s1"), engine=engine, model_dir=models, config=tiny_job(policy=lenient, shadow_forecasts=5)
    )
    assert out.status == "shadow" and out.exit_code == 0, out.reason
    assert out.reason.startswith("better:") and out.champion == champ.version
    assert decode_outcome(encode_outcome(out)).status == "shadow"  # the fx.models schema knows it
    v = reg.get(out.version)  # type: ignore[arg-type]
    assert v.status == "shadow" and v.metrics["shadow"]["required"] == 5
    assert get_aliases(engine, KEY) == {"champion": champ.version, "challenger": v.version, "shadow": v.version}
    # retention never deletes the version in shadow, and the model book serves it as the shadow only
    reg.apply_retention(KEY, keep_last=0, audit_window_ms=0)
    assert reg.get(v.version).status == "shadow" and reg.verify(reg.get(v.version))
    book = ModelBook(engine, horizon=HORIZON, model_dir=models)
    assert book.predictor("EURUSD", "1h").version == champ.version
    assert book.shadow("EURUSD", "1h").version == v.version  # type: ignore[union-attr]


def test_registry_shadow_transitions(tmp_path: Path, tiny_checkpoint: TrainResult) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    models = tmp_path / "models"
    reg = ModelRegistry(engine, models)
    ids = [f"20200101T00000000000{i}Z-v" for i in range(4)]
    for i in ids:
        reg.register(reg.publish(stage_copy(tiny_checkpoint, tmp_path / "stage", i), KEY), key=KEY, metrics={})
    reg.promote(ids[0], "champion")
    with pytest.raises(RegistryError, match="already the champion"):
        reg.start_shadow(ids[0], "x", required=3)
    reg.start_shadow(ids[1], "offline better", required=3)
    reg.start_shadow(ids[2], "offline better", required=3)  # supersedes the first shadow
    assert reg.get(ids[1]).status == "rejected" and reg.get(ids[1]).reason.startswith("superseded")
    assert reg.shadow(KEY).version == ids[2]  # type: ignore[union-attr]
    # a decision already taken is not taken again: promote/reject expecting "shadow" change nothing
    assert reg.promote(ids[1], "late", expect_status="shadow").status == "rejected"
    assert reg.champion(KEY).version == ids[0]  # type: ignore[union-attr]
    # an operator may promote the shadow by hand: the alias goes with it
    reg.promote(ids[2], "manual")
    assert "shadow" not in get_aliases(engine, KEY) and reg.champion(KEY).version == ids[2]  # type: ignore[union-attr]
    assert reg.reject(ids[2], "late", expect_status="shadow").status == "promoted"
    # a rejected shadow loses its alias too
    reg.start_shadow(ids[3], "offline better", required=3)
    reg.reject(ids[3], "operator")
    assert "shadow" not in get_aliases(engine, KEY) and reg.get(ids[3]).status == "rejected"
    # settling a version that was never in shadow is a one-line registry error
    with pytest.raises(RegistryError, match="never entered shadow"):
        settle_shadow(reg, ids[0])


def test_candle_agent_keeps_shadow_forecasts_off_the_topic_and_announces_the_decision(
    tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    """The candle agent itself (no broker): batches of candle messages in, records out."""
    import asyncio
    from types import SimpleNamespace

    from forex_diffusion.instruments import InstrumentRegistry
    from forex_diffusion.wire import encode_candle
    from streams.agents.candles import CandleAgent
    from streams.app import Runtime
    from streams.metrics import Metrics
    from streams.settings import Settings

    reg, _live, version = setup(tmp_path, tiny_checkpoint, ADAPTS, CHAMPION)
    s = Settings(
        symbols=("EURUSD",),
        timeframes=("1h",),
        forecast_timeframes=("1h",),
        horizon=HORIZON,
        data_dir=tmp_path,
        model_dir=tmp_path / "models",
        status_interval_s=0,
    )
    metrics = Metrics(s.symbols, timeframes=s.timeframes)
    rt = Runtime(
        settings=s,
        app=SimpleNamespace(consumer=None),
        topics={},
        instruments=InstrumentRegistry.of(s.symbols),
        engine=reg.engine,
        metrics=metrics,
    )
    agent = CandleAgent(rt)
    agent.models._loaded.update({p.version: p for p in (CHAMPION, ADAPTS)})
    candles = regime_candles()[: CHANGE + 100]
    msgs = [
        SimpleNamespace(topic="fx.candles", partition=0, offset=i, key=b"EURUSD", value=encode_candle(c))
        for i, c in enumerate(candles)
    ]

    agent.consumer.schedule_flush = lambda: None  # type: ignore[method-assign]  # no broker here

    async def feed() -> list[ShadowState]:
        for i in range(0, len(msgs), 64):
            await agent.handle_batch(msgs[i : i + 64])
        rows = agent.effects.parts[0].shadow  # what the checkpoint stores
        save_progress(
            reg.engine, consumer="t", topic="fx.candles", partition=0, offset=len(msgs), state={}, shadow_rows=rows
        )
        return await agent.shadow.settle()

    states = asyncio.run(feed())
    served = [json.loads(v)["model_version"] for kind, _k, v in agent.effects.out if kind == "forecasts"]
    assert served and set(served) == {CHAMPION.version}  # the shadow's forecasts never reach fx.forecasts
    assert agent.shadow.forecasts == len(served) and agent.shadow.errors == 0
    (st,) = states
    assert st.decided_now and st.state == "promoted" and reg.champion(KEY).version == version  # type: ignore[union-attr]
    (announced,) = [decode_outcome(v) for kind, _k, v in agent.effects.out if kind == "models"]
    assert announced.status == "promoted" and announced.version == version and announced.champion == version
    assert announced.reason.startswith("shadow_not_worse:")
    assert agent.models.predictor("EURUSD", "1h") is ADAPTS and agent.models.shadow("EURUSD", "1h") is None
    assert metrics.registry.get_sample_value("forexd_shadow_decisions_total", {"outcome": "promoted"}) == 1


def test_tracker_scores_step_k_on_the_kth_candle_after_the_origin_however_batched() -> None:
    """The agent forecasts after its whole batch of candles: a pair added late catches up."""
    candles = regime_candles()[:200]
    f = SymbolForecaster("EURUSD", config())
    outs = [f.on_candle(c) for c in candles]
    due = [(i, o) for i, o in enumerate(outs) if o.due]
    assert len(due) > 100

    def pairs(o: Any) -> tuple[Forecast, Forecast]:
        return FIXED.forecast([o.request])[0], CHAMPION.forecast([o.request])[0]

    one_by_one, batched = ShadowTracker(), ShadowTracker()
    rows_a: list[Any] = []
    rows_b: list[Any] = []
    by_index = dict(due)
    for i, c in enumerate(candles):  # forecast right after each candle
        rows_a += one_by_one.on_candle(c)
        if i in by_index:
            assert one_by_one.add(*pairs(by_index[i]), sigma=by_index[i].sigma)
    for start in range(0, len(candles), 64):  # a batch of 64 candles first, then its forecasts
        for c in candles[start : start + 64]:
            rows_b += batched.on_candle(c)
        for i in range(start, min(start + 64, len(candles))):
            if i in by_index:
                assert batched.add(*pairs(by_index[i]), sigma=by_index[i].sigma)
            rows_b += batched.drain()
    key = lambda r: r.as_of_ms  # noqa: E731
    assert sorted(rows_a, key=key) == sorted(rows_b, key=key) and len(rows_a) == len(due) - (HORIZON - 1) - 1
    # step 1 of the first origin is the next candle's close: recompute one row by hand
    i0, o0 = due[0]
    q = CHAMPION.forecast([o0.request])[0].quantiles
    hits = [q[k][0] <= candles[i0 + 1 + k].close <= q[k][-1] for k in range(HORIZON)]
    first = min(rows_a, key=key)
    assert first.as_of_ms == o0.candle.close_ms and first.champion_cover90 == pytest.approx(sum(hits) / HORIZON)


def test_models_shadow_json_is_strict_json_before_any_realised_forecast(
    tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    """A shadow just started has no realised forecast: its scores are undefined, written as
    null (NaN is no JSON: a strict reader, jq or a browser's JSON.parse, refuses it)."""
    setup(tmp_path, tiny_checkpoint, ADAPTS, CHAMPION)
    db, mdir = f"sqlite:///{tmp_path / 'shadow.db'}", str(tmp_path / "models")
    res = CliRunner().invoke(app, ["models", "shadow", str(KEY), "--db", db, "--model-dir", mdir, "--json"])
    assert res.exit_code == 0, res.output

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    got = json.loads(res.output.strip().splitlines()[-1], parse_constant=refuse)
    assert got["realised"] == 0 and got["state"] == "waiting"
    assert got["scores"]["crps"] is None and got["scores"]["skill"] is None and got["scores"]["n"] == 0


def test_a_decision_is_announced_when_the_champion_lookup_after_it_fails(
    tmp_path: Path, tiny_checkpoint: TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shadow lane decides a shadow (stored: it happens once), then looks up the champion
    the announcement names. A database error in that lookup must not lose the announcement
    on fx.models (which finishes the retrain request): it goes out without a champion."""
    import streams.shadow_lane as lane_module
    from forex_diffusion.errors import StorageError
    from retraining.jobs import decode_outcome
    from streams.shadow_lane import ShadowLane

    reg, live, version = setup(tmp_path, tiny_checkpoint, FIXED, CHAMPION)
    live.run(regime_candles()[CHANGE:], forecast=True)  # realised rows stored, not decided yet
    sent: list[bytes] = []
    lane = ShadowLane(live.book, metrics=lambda: None, send=lambda _k, _key, v: sent.append(v), store=lambda *_: None)

    def down(*_: Any) -> None:
        raise StorageError("database unreachable")

    monkeypatch.setattr(lane_module, "serving_champion", down)
    states = asyncio.run(lane.settle([version]))
    assert [s.state for s in states] == ["rejected"] and reg.get(version).status == "rejected"
    assert [(o.version, o.status, o.champion) for o in map(decode_outcome, sent)] == [(version, "rejected", None)]
