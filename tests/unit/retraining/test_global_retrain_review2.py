"""Second review of the drift retrain of a global key (40db96e, ee4bebc): what the fixes get wrong.

Real daily OANDA candles in SQLite databases and tiny global models trained on them, as
``test_global_retrain.py`` does; pure functions otherwise. Each test states the behaviour the
change should have, and fails on the code of ee4bebc/fefadf0.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.storage import make_engine, upsert_candles
from retraining.jobs import run_retrain
from retraining.policy import HoldoutScores, PromotionPolicy, decide_global, decide_promotion
from retraining.registry import ModelRegistry

from .conftest import request
from .test_global_retrain import PAIR, SET_KEY, champion_of_set, daily_candles, job

#: Candles that reach the database after the first retrain read its candles.
LATE = 30


@pytest.fixture(scope="module")
def daily() -> dict[str, list[Candle]]:
    return {s: daily_candles(s) for s in PAIR}


def _db(tmp_path: Path, candles: dict[str, list[Candle]]) -> str:
    url = f"sqlite:///{tmp_path / 'review2.db'}"
    eng = make_engine(url)
    for cs in candles.values():
        upsert_candles(eng, cs)
    eng.dispose()
    return url


def _s(crps: float, rw: float = 1.0, n: int = 50, cover90: float = 0.9) -> HoldoutScores:
    return HoldoutScores(crps=crps, rw_crps=rw, cover90=cover90, cover50=0.5, n=n)


# -- coalescing ----------------------------------------------------------------------------


def test_a_drift_request_stamped_with_its_candles_time_is_not_answered_by_an_older_retrain(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """The drift trigger stamps a request with the **event time** of the candle that drifted
    (``Forecaster``: ``decide(..., candle.close_ms)`` -> ``RetrainRequest.create(...,
    now_ms)``), while ``_coalesced`` compares it with ``fetched_ms``, the job machine's
    **wall clock** when a version read its candles. The two clocks are not the same: a
    stream that lags (a backlog after an outage, a replay, a daily bar processed hours after
    its close, any requester behind the job machine's clock) stamps a time before a version
    that never saw the drifted candles, and that version answers the request: nothing
    trains on the drift. Here the first retrain read the set's candles; 30 newer daily
    candles then arrive and GBPUSD drifts on the newest (its request stamped with that
    candle's close). Expected: the set is retrained (the version did not read that candle);
    got: ``coalesced: version ...`` and no training. With historical candles every request
    after the first retrain is coalesced for ever."""
    url = _db(tmp_path, {s: cs[:-LATE] for s, cs in daily.items()})
    engine = make_engine(url)
    models = tmp_path / "models"
    champion_of_set(engine, models, daily, tmp_path)
    first = run_retrain(
        request("c-eur", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job()
    )
    assert first.status == "promoted", first.reason
    reg = ModelRegistry(engine, models)
    seen = reg.get(first.version).metrics["data_series"]["GBPUSD"]["last_open_ms"]  # type: ignore[arg-type]
    for cs in daily.values():
        upsert_candles(engine, cs[-LATE:])
    drifted = daily["GBPUSD"][-1]
    assert drifted.open_ms > seen  # the first version never read the candle that drifted
    out = run_retrain(
        request("c-gbp", symbol="GBPUSD", timeframe="1d", requested_at_ms=drifted.close_ms),
        engine=engine,
        model_dir=models,
        config=job(),
    )
    assert not out.reason.startswith("coalesced"), out.reason
    assert out.version != first.version and out.status in ("promoted", "rejected"), (out.status, out.reason)


def test_a_version_left_registered_by_a_killed_job_does_not_answer_its_redelivered_request(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """A retrain worker killed between ``reg.register`` and ``reg.promote`` (an OOM kill, a
    deploy) leaves the challenger ``registered`` with its ``fetched_ms``, after the request's
    time. The request is redelivered (it was never answered); ``_coalesced`` takes the
    undecided version for an answer and maps its status to ``rejected`` (reason "... it is
    registered"): a challenger that beat the champion is never decided, and the request is
    closed as a rejection without any decision. Before 40db96e the redelivery retrained.
    Expected: an undecided (``registered``) version answers nothing; the request trains."""
    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    champion_of_set(engine, models, daily, tmp_path)

    class Killed(BaseException):
        """The worker process dying (not an error the job handles)."""

    class DiesOnPromote(ModelRegistry):
        def promote(self, version: str, reason: str) -> object:  # type: ignore[override]
            raise Killed(version)

    with pytest.raises(Killed):
        run_retrain(
            request("k1", symbol="EURUSD", timeframe="1d"),
            engine=engine,
            model_dir=models,
            config=job(),
            registry=DiesOnPromote(engine, models),
        )
    reg = ModelRegistry(engine, models)
    left = [v for v in reg.list(SET_KEY) if v.status == "registered"]
    assert len(left) == 1 and left[0].request_id == "k1", [(v.version, v.status) for v in reg.list(SET_KEY)]
    again = run_retrain(request("k1", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert again.status == "promoted", (again.status, again.reason)
    assert not again.reason.startswith("coalesced"), again.reason


# -- decide_global: pure ------------------------------------------------------------------


def test_decide_global_refuses_a_series_far_worse_than_the_random_walk_where_the_champion_scored_none() -> None:
    """``decide_global`` compares the CRPS over the series the champion scored validly only,
    and gates only those series. A series the champion could not score (NaN: its artifact
    failed there, or scored no origin) is then judged by nothing: the challenger is promoted
    while it forecasts GBPUSD five times worse than the random walk. For a per-series key
    the same scores fall to the random-walk rule and are refused
    (``no_champion_worse_than_rw``), and the docstring says "a champion scored on none is no
    champion: the random-walk rule decides" -- a series the champion scored on none should
    be held to that rule too (skill >= ``min_skill_vs_rw`` there, or over those series)."""
    policy = PromotionPolicy()
    challenger = {"EURUSD": _s(0.9), "GBPUSD": _s(5.0)}
    champion = {"EURUSD": _s(1.0), "GBPUSD": _s(math.nan)}
    assert not decide_promotion(challenger["GBPUSD"], champion["GBPUSD"], policy).promote  # per-series: refused
    decision = decide_global(challenger, champion, policy)
    assert not decision.promote, decision.reason


def test_a_first_global_model_is_not_promoted_over_a_series_it_forecasts_twice_worse_than_the_random_walk() -> None:
    """Same gap without any champion (a set's first model, or a champion that scored no
    series): the random-walk rule is applied to the pool only, weighted by origins. A model
    20 % better than the random walk on EURUSD (1,000 origins) and twice worse on GBPUSD (50
    origins: a shorter history, or a feed with gaps) pools at 0.857 and is promoted
    (``no_champion_beats_rw``) to serve GBPUSD, where the per-series rule refuses it.
    Expected: each series held to ``min_skill_vs_rw`` (or a ``max_series_loss`` against the
    random walk) when there is no champion score to gate it."""
    policy = PromotionPolicy()
    challenger = {"EURUSD": _s(0.8, n=1000), "GBPUSD": _s(2.0, n=50)}
    assert not decide_promotion(challenger["GBPUSD"], None, policy).promote  # per-series: refused
    decision = decide_global(challenger, None, policy)
    assert not decision.promote, decision.reason


def test_decide_global_does_not_promote_a_challenger_equal_to_the_champion_on_every_series() -> None:
    """The challenger's CRPS over the compared series is pooled with the **challenger's**
    origin counts, the champion's with the **champion's**: when the two scored a different
    number of origins on a series (a champion whose forecasts failed on some origins, one
    with a longer context), the two pools weigh the series differently, and a challenger
    exactly as good as the champion on every series is "better" by the weighting alone.
    Here EURUSD 0.5 and GBPUSD 2.0 (random-walk units) for both; the champion scored 30
    EURUSD origins, the challenger 100: promoted ``better: ... +24 %``, and the per-series
    gate (0 % worse on each) lets it through. Expected: refused (``not_better``) -- pool both
    with the same weights (e.g. the challenger's ``n`` for both, or the mean of the
    per-series ratios ``c.crps / champion.crps``)."""
    policy = PromotionPolicy()
    challenger = {"EURUSD": _s(0.5, n=100), "GBPUSD": _s(2.0, n=100)}
    champion = {"EURUSD": _s(0.5, n=30), "GBPUSD": _s(2.0, n=100)}
    decision = decide_global(challenger, champion, policy)
    assert not decision.promote, decision.reason


# -- forexd models shadow ------------------------------------------------------------------


def test_models_shadow_finds_a_decided_global_shadow_on_the_series_it_ran_on(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """The set's shadow was asked for by GBPUSD; GBPUSD then got a champion of its own, so the
    shadow runs on EURUSD (``shadow_runs_on``): ``forexd models shadow EURUSD/1d/12`` shows it
    while it waits. Once it is decided (here rejected as ``settle_shadow`` does, on EURUSD's
    realised forecasts), ``_shadow_of`` looks for a decided shadow by the *recorded* series
    (``metrics.shadow.symbol`` = GBPUSD, which never scored it): the same command exits 2 ("no
    version in shadow, and none has been"), and ``models shadow SET… --json`` names GBPUSD as
    its ``series``. A decided shadow is now found by the series of its score rows (where it
    ran), the recorded one only when it has none."""
    from typer.testing import CliRunner

    from streams.cli import app

    from .test_global_retrain_review import _own_champion

    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    champion_of_set(engine, models, daily, tmp_path)
    out = run_retrain(
        request("sh1", symbol="GBPUSD", timeframe="1d"), engine=engine, model_dir=models, config=job(shadow_forecasts=5)
    )
    assert out.status == "shadow", out.reason
    _own_champion(engine, models, daily, tmp_path, "GBPUSD")
    reg = ModelRegistry(engine, models)
    shadow = reg.get(out.version)  # type: ignore[arg-type]
    assert reg.shadow_runs_on(shadow) == "EURUSD"
    runner = CliRunner()
    args = ["--json", "--db", url, "--model-dir", str(models)]
    waiting = runner.invoke(app, ["models", "shadow", "EURUSD/1d/12", *args])
    assert waiting.exit_code == 0 and out.version in waiting.output, waiting.output
    # EURUSD's realised forecasts scored it (the shadow lane's rows), then it was decided on them
    from forex_diffusion.storage.model_registry import insert_shadow_scores

    t0 = daily["EURUSD"][-1].close_ms
    rows = [
        {
            "version": shadow.version,
            "as_of_ms": t0 + i,
            "model_key": "EURUSD/1d/12",
            "champion_version": "c",
            "steps": 12,
            "crps": 0.02,
            "champion_crps": 0.01,
            "rw_crps": 0.01,
            "cover90": 0.9,
            "champion_cover90": 0.9,
            "realised_ms": t0 + i,
        }
        for i in range(5)
    ]
    with engine.begin() as conn:
        insert_shadow_scores(conn, rows)
    reg.reject(shadow.version, "shadow_worse: test", expect_status="shadow")
    decided = runner.invoke(app, ["models", "shadow", "EURUSD/1d/12", *args])
    assert decided.exit_code == 0 and out.version in decided.output, decided.output
    on_set = runner.invoke(app, ["models", "shadow", str(SET_KEY), *args])
    assert '"series": "EURUSD"' in on_set.output, on_set.output
