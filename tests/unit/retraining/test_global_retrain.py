"""A retrain of a series that a global model serves retrains the global model (issue 16).

Real daily OANDA candles of EURUSD, GBPUSD and EURGBP in a database; a tiny global model of
EURUSD and GBPUSD (trained by ``train`` on those candles, as ``forexd train --symbol
EURUSD,GBPUSD`` trains one) is the champion of its set's key. A drift request names one
symbol, as the candle worker's trigger sends it:

- scope ``serving`` (the default) retrains the **global key** over every symbol of its set:
  both series' candles fetched, one model trained over both, each scored on its own hold-out
  beside the global champion, the decision taken on the pooled relative scores, the version
  registered under the set's key with its symbols; the outcome answers the request's symbol;
- a challenger that beats it enters shadow **on the series that asked** (score rows are one
  per origin): the model book shadows it for EURUSD, not for GBPUSD;
- scope ``series`` trains the symbol's own key, which then overrides the global model;
- a symbol with its own champion retrains its own key whatever the scope, and a set whose
  other series has too few stored candles fails naming that series, leaving nothing.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forex_diffusion.diffusion import TrainConfig, train
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError
from forex_diffusion.ingest.readers import read_candle_series
from forex_diffusion.storage import make_engine, upsert_candles
from forex_diffusion.storage.model_registry import ModelKey
from forex_diffusion.timeframes import Timeframe
from retraining.jobs import JobConfig, run_retrain
from retraining.policy import HoldoutScores, PromotionPolicy, decide_global, pool_scores
from retraining.registry import ModelRegistry, shadow_series
from retraining.serving import ModelBook
from streams.cli import app

from ...realdata import DATA
from .conftest import HORIZON, TINY_TRAIN, request, tiny_job

DAILY = DATA / "lean_oanda_d1_4pairs.csv.gz"
PAIR = ("EURUSD", "GBPUSD")
SET_KEY = ModelKey.for_symbols(PAIR, "1d", HORIZON)
OWN = ModelKey(symbol="EURUSD", timeframe="1d", horizon=HORIZON)
#: Promotes any valid challenger that is not more than twice the champion's CRPS.
LENIENT = PromotionPolicy(min_improvement=-1.0, min_skill_vs_rw=-1.0, coverage90_bounds=(0.0, 1.0))


def daily_candles(symbol: str) -> list[Candle]:
    """The symbol's daily bid candles of the bundled OANDA file (real data), each stored as the
    stream's daily bar that holds its open (the vendor's bars open at 00:00 UTC, the stream's
    at the 17:00 New York roll: the bar of the previous evening)."""
    frame = read_candle_series(DAILY, symbol=symbol, timeframe="1d", price="bid").frame
    tf = Timeframe.parse("1d")
    return [
        Candle(
            symbol=symbol,
            timeframe="1d",
            open_ms=tf.bounds(int(r.ts_ms))[0],
            close_ms=tf.bounds(int(r.ts_ms))[1],
            open=float(r.open),
            high=float(r.high),
            low=float(r.low),
            close=float(r.close),
        )
        for r in frame.itertuples()
    ]


def frame_of(candles: list[Candle]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            k: [getattr(c, k if k != "ts_ms" else "open_ms") for c in candles]
            for k in ("ts_ms", "open", "high", "low", "close")
        }
    )


@pytest.fixture(scope="module")
def stored() -> dict[str, list[Candle]]:
    return {s: daily_candles(s) for s in (*PAIR, "EURGBP")}


@pytest.fixture
def db(tmp_path: Path, stored: dict[str, list[Candle]]) -> str:
    url = f"sqlite:///{tmp_path / 'global.db'}"
    eng = make_engine(url)
    for candles in stored.values():
        upsert_candles(eng, candles)
    eng.dispose()
    return url


def job(**kw: object) -> JobConfig:
    return tiny_job(**{"policy": LENIENT, **kw})


def champion_of_set(engine: object, models: Path, stored: dict[str, list[Candle]], tmp: Path) -> str:
    """Train the tiny global model of :data:`PAIR` on the older candles, register and promote it."""
    cfg = TrainConfig.from_dict(
        {**TINY_TRAIN, "symbol": SET_KEY.symbol, "timeframe": "1d", "horizon": HORIZON, "series": list(PAIR)}
    )
    result = train(cfg, {s: frame_of(stored[s][:1500]) for s in PAIR}, tmp / "global-train")
    reg = ModelRegistry(engine, models)  # type: ignore[arg-type]
    v = reg.import_artifact(result.checkpoint)
    assert v.key == SET_KEY, v.key
    return reg.promote(v.version, "test").version


def test_a_series_served_by_a_global_model_retrains_the_global_key(
    db: str, tmp_path: Path, stored: dict[str, list[Candle]]
) -> None:
    engine = make_engine(db)
    models = tmp_path / "models"
    champ = champion_of_set(engine, models, stored, tmp_path)
    reg = ModelRegistry(engine, models)
    assert reg.resolve_champion("EURUSD", "1d", HORIZON).version == champ  # type: ignore[union-attr]

    out = run_retrain(request("g1", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert out.status == "promoted", out.reason
    assert out.key == str(SET_KEY) and out.symbol == "EURUSD"  # answers EURUSD's request
    assert out.metrics["scope"] == {
        "key": str(SET_KEY),
        "champion": champ,
        "symbols": list(PAIR),
        "series_embedding": 0,
    }
    # both series fetched (each its own train + hold-out), scored on its own hold-out; the
    # per-series parts are in the registry row (the outcome's size must not grow with the set)
    v = reg.get(out.version)  # type: ignore[arg-type]
    assert out.metrics["data"]["series"] == 2 and "challenger_series" not in out.metrics
    data = v.metrics["data_series"]
    assert set(data) == set(PAIR) and all(d["candles"] == 2400 + 240 for d in data.values())
    # one cut: every series trains on candles before the earliest hold-out start
    cut = out.metrics["data"]["train_before_ms"]
    assert cut == min(d["holdout_first_open_ms"] for d in data.values())
    assert all(d["train_candles"] <= 2400 for d in data.values())
    ch, cs = v.metrics["holdout_series"], v.metrics["champion_holdout_series"]
    assert set(ch) == set(cs) == set(PAIR) and all(ch[s]["n"] >= 50 for s in PAIR)
    # the decision's scores are the pooled relative ones of the series' own
    pooled = pool_scores({s: HoldoutScores.from_dict(ch[s]) for s in PAIR})
    assert math.isclose(out.metrics["challenger"]["crps"], pooled.crps)
    assert out.metrics["challenger"]["rw_crps"] == 1.0 and out.metrics["challenger"]["n"] == pooled.n
    assert out.metrics["champion_version"] == champ
    # registered and promoted under the set's key; the set serves both symbols
    assert v.key == SET_KEY and v.metrics["symbols"] == list(PAIR) and reg.symbols_of(v) == frozenset(PAIR)
    assert reg.champion(SET_KEY).version == out.version == out.champion  # type: ignore[union-attr]
    assert reg.champion(OWN) is None
    book = ModelBook(engine, horizon=HORIZON, model_dir=models)
    assert book.predictor("GBPUSD", "1d").version == out.version == book.predictor("EURUSD", "1d").version
    assert reg.resolve_champion("EURGBP", "1d", HORIZON) is None  # outside the set: nothing changed


def test_a_global_challenger_shadows_on_the_series_that_asked(
    db: str, tmp_path: Path, stored: dict[str, list[Candle]]
) -> None:
    engine = make_engine(db)
    models = tmp_path / "models"
    champ = champion_of_set(engine, models, stored, tmp_path)
    out = run_retrain(
        request("g2", symbol="GBPUSD", timeframe="1d"),
        engine=engine,
        model_dir=models,
        config=job(shadow_forecasts=5),
    )
    assert out.status == "shadow", out.reason
    reg = ModelRegistry(engine, models)
    v = reg.get(out.version)  # type: ignore[arg-type]
    assert v.key == SET_KEY and reg.shadow(SET_KEY).version == v.version  # type: ignore[union-attr]
    assert shadow_series(v) == "GBPUSD" and v.metrics["shadow"]["required"] == 5
    assert reg.champion(SET_KEY).version == champ  # type: ignore[union-attr]
    book = ModelBook(engine, horizon=HORIZON, model_dir=models)
    assert book.predictor("GBPUSD", "1d").version == champ == book.predictor("EURUSD", "1d").version
    assert book.shadow("GBPUSD", "1d").version == v.version  # scored on GBPUSD's live candles
    assert book.shadow("EURUSD", "1d") is None  # one series: its rows are one per origin
    # `forexd models shadow` reads it under the set's key
    res = CliRunner().invoke(
        app, ["models", "shadow", str(SET_KEY), "--db", db, "--model-dir", str(models)], catch_exceptions=False
    )
    assert res.exit_code == 0 and v.version in res.output, res.output
    # and under the key of the series it runs on (which has no version of its own)
    res = CliRunner().invoke(app, ["models", "shadow", "GBPUSD/1d/12", "--db", db, "--model-dir", str(models)])
    assert res.exit_code == 0, res.output
    assert f"shadow {v.version} (of {SET_KEY})  on GBPUSD  state waiting" in res.stdout, res.stdout
    assert f"champion now {champ} ({SET_KEY})" in res.stdout, res.stdout
    res = CliRunner().invoke(app, ["models", "shadow", "EURUSD/1d/12", "--db", db, "--model-dir", str(models)])
    assert res.exit_code == 2 and "unknown key EURUSD/1d/12" in res.stderr, res.output


def test_scope_series_trains_the_symbols_own_key_and_a_symbols_champion_keeps_its_key(
    db: str, tmp_path: Path, stored: dict[str, list[Candle]]
) -> None:
    engine = make_engine(db)
    models = tmp_path / "models"
    champ = champion_of_set(engine, models, stored, tmp_path)
    own = run_retrain(
        request("s1", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job(scope="series")
    )
    assert own.status == "promoted", own.reason
    assert own.key == str(OWN) and "scope" not in own.metrics and "challenger_series" not in own.metrics
    assert own.metrics["champion_version"] == champ  # it faced the global model serving EURUSD
    reg = ModelRegistry(engine, models)
    assert reg.resolve_champion("EURUSD", "1d", HORIZON).version == own.version  # type: ignore[union-attr]
    assert reg.resolve_champion("GBPUSD", "1d", HORIZON).version == champ  # type: ignore[union-attr]
    # EURUSD now has its own champion: scope serving retrains that key, not the set's
    again = run_retrain(request("s2", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert again.key == str(OWN) and again.metrics["champion_version"] == own.version
    assert reg.champion(SET_KEY).version == champ  # type: ignore[union-attr]


def test_a_set_whose_other_series_has_too_few_candles_fails_naming_it(
    tmp_path: Path, stored: dict[str, list[Candle]]
) -> None:
    url = f"sqlite:///{tmp_path / 'thin.db'}"
    engine = make_engine(url)
    upsert_candles(engine, stored["EURUSD"])
    upsert_candles(engine, stored["GBPUSD"][:400])
    models = tmp_path / "models"
    champ = champion_of_set(engine, models, stored, tmp_path)
    out = run_retrain(request("t1", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert out.status == "failed" and out.reason == "model: ModelError", out.reason
    assert out.key == str(SET_KEY) and "series GBPUSD" in (out.error or "") and "400" in (out.error or "")
    reg = ModelRegistry(engine, models)
    assert [v.version for v in reg.list(SET_KEY)] == [champ]  # nothing registered
    assert sorted(p.name for p in (models / SET_KEY.dir_name).iterdir()) == [f"{champ}.json", f"{champ}.pt"]


def test_scope_is_checked_and_round_trips() -> None:
    assert JobConfig.from_dict(job(scope="series").to_dict()).scope == "series"
    assert JobConfig().scope == "serving"
    with pytest.raises(ConfigError, match="scope must be one of"):
        replace(job(), scope="global")
    with pytest.raises(ConfigError, match="series"):
        tiny_job(train={**TINY_TRAIN, "series": ["EURUSD"]})


def test_pool_scores_weights_series_by_origins_in_random_walk_units() -> None:
    jpy = HoldoutScores(crps=95.0, rw_crps=100.0, cover90=0.9, cover50=0.5, n=10)
    eur = HoldoutScores(crps=0.0011, rw_crps=0.001, cover90=0.8, cover50=0.4, n=30)
    p = pool_scores({"USDJPY": jpy, "EURUSD": eur})
    assert math.isclose(p.crps, (10 * 0.95 + 30 * 1.1) / 40) and p.rw_crps == 1.0 and p.n == 40
    assert math.isclose(p.skill, 1 - p.crps)
    # a series with no origin adds nothing; one with no valid random walk makes the pool invalid
    empty = HoldoutScores(crps=math.nan, rw_crps=math.nan, cover90=math.nan, cover50=math.nan, n=0)
    assert pool_scores({"A": eur, "B": empty}) == pool_scores({"A": eur})
    assert math.isnan(pool_scores({"A": eur, "B": replace(jpy, rw_crps=0.0)}).crps)
    assert pool_scores({}).n == 0 and math.isnan(pool_scores({}).crps)


def test_decide_global_pools_then_refuses_a_series_much_worse() -> None:
    def s(crps: float, rw: float = 1.0, n: int = 50, cover90: float = 0.9) -> HoldoutScores:
        return HoldoutScores(crps=crps, rw_crps=rw, cover90=cover90, cover50=0.5, n=n)

    policy = PromotionPolicy(max_series_loss=0.05)
    # pooled 5 % better, every series better: promoted; price units of each series do not matter
    ok = decide_global(
        {"EURUSD": s(0.95), "USDJPY": s(95.0, 100.0)}, {"EURUSD": s(1.0), "USDJPY": s(100.0, 100.0)}, policy
    )
    assert ok.promote and ok.reason.startswith("better"), ok.reason
    # pooled 6 % better, but GBPUSD 6 % worse than its champion: refused, naming it
    worse = decide_global({"EURUSD": s(0.82), "GBPUSD": s(1.06)}, {"EURUSD": s(1.0), "GBPUSD": s(1.0)}, policy)
    assert not worse.promote and worse.reason.startswith("series_worse: GBPUSD"), worse.reason
    # 4 % worse there is within the bound
    assert decide_global({"EURUSD": s(0.82), "GBPUSD": s(1.04)}, {"EURUSD": s(1.0), "GBPUSD": s(1.0)}, policy).promote
    # a series the challenger scored NaN on makes the pool invalid
    bad = decide_global({"EURUSD": s(0.8), "GBPUSD": s(math.nan)}, {"EURUSD": s(1.0), "GBPUSD": s(1.0)}, policy)
    assert not bad.promote and bad.reason.startswith("invalid"), bad.reason
    # no champion: the pooled skill against the random walk decides
    assert decide_global({"EURUSD": s(0.99)}, None, policy).reason.startswith("no_champion_beats_rw")
    with pytest.raises(ConfigError, match="max_series_loss"):
        PromotionPolicy(max_series_loss=math.nan)
    assert PromotionPolicy.from_dict(PromotionPolicy(max_series_loss=0.1).to_dict()).max_series_loss == 0.1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "series"], "--scope applies to --local"),
        (["--local", "--scope", "global"], "--scope must be one of serving, series"),
    ],
)
def test_retrain_scope_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["retrain", "--symbol", "EURUSD", "--timeframe", "1h", *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output


def test_the_global_shadow_is_found_before_the_series_was_served(
    db: str, tmp_path: Path, stored: dict[str, list[Candle]]
) -> None:
    """A model book asked for a series' shadow first resolves what serves it (the shadow lane
    asks after the champion's forecast; a fresh book must not cache "no shadow")."""
    engine = make_engine(db)
    models = tmp_path / "models"
    champion_of_set(engine, models, stored, tmp_path)
    out = run_retrain(
        request("g3", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job(shadow_forecasts=3)
    )
    assert out.status == "shadow", out.reason
    book = ModelBook(engine, horizon=HORIZON, model_dir=models)
    assert book.shadow("EURUSD", "1d").version == out.version
    assert book.shadow_versions() == {("EURUSD", "1d"): out.version}


def test_a_series_a_little_behind_moves_the_cut_for_every_series(
    tmp_path: Path, stored: dict[str, list[Candle]]
) -> None:
    """GBPUSD's newest 30 candles are missing (a feed a month behind): every series trains on
    candles before GBPUSD's hold-out start, the earliest of the set, so no candle of EURUSD's
    training lies in GBPUSD's hold-out span; each series is still scored on its own newest
    candles."""
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    engine = make_engine(url)
    upsert_candles(engine, stored["EURUSD"])
    upsert_candles(engine, stored["GBPUSD"][:-30])
    models = tmp_path / "models"
    champion_of_set(engine, models, stored, tmp_path)
    out = run_retrain(request("b1", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert out.status == "promoted", (out.reason, out.error)
    data = ModelRegistry(engine, models).get(out.version).metrics["data_series"]  # type: ignore[arg-type]
    cut = out.metrics["data"]["train_before_ms"]
    assert cut == data["GBPUSD"]["holdout_first_open_ms"] < data["EURUSD"]["holdout_first_open_ms"]
    assert data["GBPUSD"]["train_candles"] == 2400 and data["EURUSD"]["train_candles"] == 2400 - 30
    eur = [c.open_ms for c in stored["EURUSD"]][-2640:]
    assert eur[data["EURUSD"]["train_candles"] - 1] < cut <= eur[data["EURUSD"]["train_candles"]]


def test_a_set_whose_series_stopped_before_the_others_hold_out_fails_naming_it(
    tmp_path: Path, stored: dict[str, list[Candle]]
) -> None:
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    engine = make_engine(url)
    upsert_candles(engine, stored["EURUSD"])
    upsert_candles(engine, stored["GBPUSD"][:-400])
    models = tmp_path / "models"
    champ = champion_of_set(engine, models, stored, tmp_path)
    out = run_retrain(request("s9", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert out.status == "failed" and out.reason == "model: ModelError", out.reason
    assert "series GBPUSD" in (out.error or "") and "stale" in (out.error or ""), out.error
    assert [v.version for v in ModelRegistry(engine, models).list(SET_KEY)] == [champ]


@pytest.mark.parametrize("forged", [10**15, True, "9999999999999", 1.7e12, -1])
def test_a_hand_written_data_time_never_stops_the_set_from_retraining(
    db: str, tmp_path: Path, stored: dict[str, list[Candle]], forged: object
) -> None:
    """A version's ``data_series[symbol].last_open_ms`` (how far its candles reached) answers
    later requests of the set about candles before it (coalescing): one written by hand far
    in the future, or no integer, would answer every request for ever. It is not believed:
    the request trains; the version trained then answers a request about its candles."""
    from sqlalchemy import update

    from forex_diffusion.storage.model_registry import model_versions

    engine = make_engine(db)
    models = tmp_path / "models"
    champ = champion_of_set(engine, models, stored, tmp_path)
    reg = ModelRegistry(engine, models)
    with engine.begin() as conn:
        forged_series = {s: {"last_open_ms": forged} for s in PAIR}
        metrics = {**reg.get(champ).metrics, "data_series": forged_series}
        conn.execute(update(model_versions).where(model_versions.c.version == champ).values(metrics=metrics))
    last = stored["EURUSD"][-1]
    out = run_retrain(
        request("f1", symbol="EURUSD", timeframe="1d", requested_at_ms=last.close_ms),
        engine=engine,
        model_dir=models,
        config=job(),
    )
    assert out.status == "promoted" and out.version != champ and not out.reason.startswith("coalesced"), out.reason
    # that version read GBPUSD's candles up to the last: it answers a request about that candle
    again = run_retrain(
        request("f2", symbol="GBPUSD", timeframe="1d", requested_at_ms=stored["GBPUSD"][-1].close_ms),
        engine=engine,
        model_dir=models,
        config=job(),
    )
    assert again.version == out.version and again.reason.startswith("coalesced: version"), again.reason
    assert again.status == "promoted" and again.symbol == "GBPUSD"
    assert [v.version for v in reg.list(SET_KEY)] == [champ, out.version]
    # a request about a later candle (or a manual one, stamped now) trains
    later = run_retrain(
        request("f3", symbol="GBPUSD", timeframe="1d", requested_at_ms=stored["GBPUSD"][-1].close_ms + 86_400_000),
        engine=engine,
        model_dir=models,
        config=job(),
    )
    assert not later.reason.startswith("coalesced") and later.version not in (None, out.version), later.reason


def test_forexd_retrain_local_retrains_the_set_or_with_scope_series_the_symbols_key(
    db: str, tmp_path: Path, stored: dict[str, list[Candle]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command a user runs: ``forexd retrain --local`` on a symbol a global model serves
    retrains the set's key (its JSON line names it and answers the symbol); ``--scope series``
    trains the symbol's own key instead."""
    import json

    engine = make_engine(db)
    models = tmp_path / "models"
    champion_of_set(engine, models, stored, tmp_path)
    config = tmp_path / "job.json"
    config.write_text(json.dumps(job().to_dict()))
    monkeypatch.setenv("FOREXD_SHADOW_FORECASTS", "0")
    base = ["retrain", "--local", "--symbol", "EUR/USD", "--timeframe", "1D", "--horizon", str(HORIZON)]
    where = ["--db", db, "--model-dir", str(models), "--config", str(config), "--threads", "1"]
    res = CliRunner().invoke(app, [*base, *where])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["key"] == str(SET_KEY) and out["symbol"] == "EURUSD" and out["status"] == "promoted", out
    assert res.stdout.startswith(f"promoted key={SET_KEY} ")
    res = CliRunner().invoke(app, [*base, *where, "--scope", "series"])
    assert res.exit_code == 0, res.output
    own = json.loads(res.stdout.strip().splitlines()[-1])
    assert own["key"] == str(OWN) and own["metrics"]["champion_version"] == out["version"], own


def test_a_killed_child_job_of_a_set_is_reported_under_the_sets_key(
    db: str, tmp_path: Path, stored: dict[str, list[Candle]]
) -> None:
    """The retrain agent runs a job in a child process; a child killed mid-training (a
    failpoint exits it as SIGKILL would) was reported under the requested symbol's own key,
    though it claimed and trained the set's: it says the key it retrains as soon as it knows."""
    import os

    from retraining.runner import run_job

    engine = make_engine(db)
    models = tmp_path / "models"
    champ = champion_of_set(engine, models, stored, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "FOREXD_FAILPOINT"}
    env.update(FOREXD_FAILPOINT="retrain.training", FOREXD_LOG_LEVEL="WARNING")
    out = run_job(
        request("k1", symbol="GBPUSD", timeframe="1d"),
        db_url=db,
        model_dir=models,
        config=job(),
        threads=1,
        timeout_s=300,
        env=env,
    )
    assert out.status == "failed" and "status 137" in out.reason, out.reason
    assert out.key == str(SET_KEY) and out.symbol == "GBPUSD" and out.version is None
    assert [v.version for v in ModelRegistry(engine, models).list(SET_KEY)] == [champ]
