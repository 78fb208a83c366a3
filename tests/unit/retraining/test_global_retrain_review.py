"""Review of the drift retrain of a global key (issue 16, commit 9e693c2): what it gets wrong.

Real daily OANDA candles (the bundled ``lean_oanda_d1_4pairs`` file) in SQLite databases, and
tiny global models trained on them, as ``test_global_retrain.py`` does. Each test states the
behaviour the change should have; the ones marked FAILS fail on the code of 9e693c2/488e44a.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from forex_diffusion.diffusion import Predictor, TrainConfig, train
from forex_diffusion.domain import Candle
from forex_diffusion.errors import RegistryError
from forex_diffusion.storage import make_engine, upsert_candles
from forex_diffusion.storage.model_registry import ModelKey
from retraining.jobs import run_retrain
from retraining.policy import HoldoutScores, PromotionPolicy, decide_global, pool_scores
from retraining.registry import ModelRegistry, shadow_series
from retraining.serving import ModelBook
from streams.cli import app

from .conftest import HORIZON, TINY_TRAIN, request
from .test_global_retrain import PAIR, SET_KEY, champion_of_set, daily_candles, frame_of, job


@pytest.fixture(scope="module")
def daily() -> dict[str, list[Candle]]:
    return {s: daily_candles(s) for s in PAIR}


def _db(tmp_path: Path, candles: dict[str, list[Candle]]) -> str:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    eng = make_engine(url)
    for cs in candles.values():
        upsert_candles(eng, cs)
    eng.dispose()
    return url


def _s(crps: float, rw: float = 1.0, n: int = 50, cover90: float = 0.9) -> HoldoutScores:
    return HoldoutScores(crps=crps, rw_crps=rw, cover90=cover90, cover50=0.5, n=n)


# -- decide_global / pool_scores: pure ------------------------------------------------------


def test_decide_global_gates_each_series_even_when_the_champion_is_invalid_on_another() -> None:
    """FAILS. The champion scores NaN (or inf) on USDJPY, finite on EURUSD, where the challenger
    is 50 % worse than it. The pooled champion is then NaN, ``decide_promotion`` falls back to
    the no-champion rule (challenger vs random walk), and ``decide_global`` returns before its
    per-series gate: the challenger is promoted over a champion it loses to by 50 % on a
    series both scored. "A gain on some pairs never buys a loss on another" does not hold."""
    challenger = {"EURUSD": _s(0.9), "USDJPY": _s(40.0, 100.0)}
    for bad in (math.nan, math.inf):
        champion = {"EURUSD": _s(0.6), "USDJPY": _s(bad, 100.0)}
        d = decide_global(challenger, champion, PromotionPolicy())
        assert not d.promote, f"champion crps {bad} on USDJPY: {d.reason}"
        # compared on the series both scored (EURUSD): 50 % worse there
        assert d.reason.startswith("not_better: crps 0.9 vs champion 0.6"), d.reason


def test_pool_scores_does_not_let_a_negative_series_crps_lower_the_pool() -> None:
    """FAILS. A CRPS is never negative; ``decide_promotion`` refuses a negative one as
    ``invalid``. ``pool_scores`` checks only finiteness and the random walk's sign, so one
    series' negative CRPS (-0.5) hides another's loss (1.2 × the random walk): the pool is
    0.35, a 65 % skill, and ``decide_global`` promotes."""
    pooled = pool_scores({"EURUSD": _s(-0.5), "GBPUSD": _s(1.2)})
    assert math.isnan(pooled.crps), pooled
    assert not decide_global({"EURUSD": _s(-0.5), "GBPUSD": _s(1.2)}, None, PromotionPolicy()).promote


def test_decide_global_refuses_a_series_the_challenger_cannot_score_beside_a_champion_that_can() -> None:
    """Holds: a series where the challenger scored no origin (n=0, NaN) but the champion did
    is refused by the per-series gate (``series_worse``), not pooled away."""
    d = decide_global(
        {"EURUSD": _s(0.5), "GBPUSD": _s(math.nan, math.nan, n=0, cover90=math.nan)},
        {"EURUSD": _s(1.0), "GBPUSD": _s(1.0)},
        PromotionPolicy(),
    )
    assert not d.promote and d.reason.startswith("series_worse: GBPUSD"), d.reason


# -- the job -----------------------------------------------------------------------------------


def test_every_series_is_held_out_over_the_same_span_when_one_series_is_stale(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """FAILS. Each series' hold-out is its own newest ``holdout_candles`` rows. When one feed
    stopped (GBPUSD's last 400 daily candles are missing here), GBPUSD's hold-out lies more
    than a year before EURUSD's, and the one model is trained on EURUSD candles from inside
    GBPUSD's hold-out span: the hold-out is no longer out of sample for the pool (EURUSD and
    GBPUSD move together), and the decision is taken on a leaked score. Every series'
    training candles must end before any series' hold-out begins (one cut time), or a series
    that lags the others must fail the job."""
    url = _db(tmp_path, {"EURUSD": daily["EURUSD"], "GBPUSD": daily["GBPUSD"][:-400]})
    engine = make_engine(url)
    models = tmp_path / "models"
    champion_of_set(engine, models, daily, tmp_path)
    out = run_retrain(request("st1", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    if out.status == "failed":  # refusing a stale series is a correct answer too
        assert "GBPUSD" in (out.error or ""), out
        return
    data = out.metrics["data"]["series"]
    holdout_starts = {s: d["holdout_first_open_ms"] for s, d in data.items()}
    # the last training candle of a series is the one before its hold-out: the first hold-out
    # of any series must not come before the last training candle of another
    train_ends = {s: d["holdout_first_open_ms"] - 1 for s, d in data.items()}
    assert max(train_ends.values()) < min(holdout_starts.values()), (holdout_starts, out.status)


def _shadow_on_gbpusd(tmp_path: Path, daily: dict[str, list[Candle]]) -> tuple[str, Path, str, str]:
    """A database, a model directory, the set's champion, and its retrained version in shadow
    on GBPUSD (a drift request from GBPUSD)."""
    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    champ = champion_of_set(engine, models, daily, tmp_path)
    out = run_retrain(
        request("sh1", symbol="GBPUSD", timeframe="1d"), engine=engine, model_dir=models, config=job(shadow_forecasts=5)
    )
    assert out.status == "shadow", out.reason
    assert shadow_series(ModelRegistry(engine, models).get(out.version)) == "GBPUSD"  # type: ignore[arg-type]
    return url, models, champ, out.version  # type: ignore[return-value]


def _own_champion(engine: object, models: Path, daily: dict[str, list[Candle]], tmp: Path, symbol: str) -> str:
    cfg = TrainConfig.from_dict({**TINY_TRAIN, "symbol": symbol, "timeframe": "1d", "horizon": HORIZON})
    result = train(cfg, frame_of(daily[symbol][:1500]), tmp / f"own-{symbol}")
    reg = ModelRegistry(engine, models)  # type: ignore[arg-type]
    v = reg.import_artifact(result.checkpoint)
    return reg.promote(v.version, "test").version


def test_a_global_shadow_still_runs_after_its_series_gets_its_own_champion(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """FAILS. The set's shadow runs only on the series that asked (GBPUSD). GBPUSD then gets a
    champion of its own (a ``scope: series`` job, or ``forexd models register`` + promote):
    ``ModelBook`` finds GBPUSD served by its own key (whose shadow is none) and EURUSD's
    shadow is pinned to GBPUSD, so no series runs the set's shadow: no ``shadow_scores`` row
    is ever written, ``settle_shadow`` never decides, and the version holds the key's shadow
    alias (kept by retention) until another retrain of the set supersedes it. EURUSD is still
    served by the set's champion and could run it."""
    url, models, champ, shadow = _shadow_on_gbpusd(tmp_path, daily)
    engine = make_engine(url)
    _own_champion(engine, models, daily, tmp_path, "GBPUSD")
    reg = ModelRegistry(engine, models)
    assert reg.shadow(SET_KEY).version == shadow  # type: ignore[union-attr]
    book = ModelBook(engine, horizon=HORIZON, model_dir=models)
    assert book.predictor("EURUSD", "1d").version == champ  # the set still serves EURUSD
    running = {s: getattr(book.shadow(s, "1d"), "version", None) for s in PAIR}
    assert shadow in running.values(), f"the set's shadow {shadow} runs on no series: {running}"


def test_start_shadow_refuses_a_series_outside_the_global_models_set(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """FAILS. ``start_shadow(..., series=...)`` stores any string as ``metrics.shadow.symbol``
    (a symbol outside the set, a lower-case one): ModelBook compares it as written with the
    series it serves, so such a shadow runs nowhere and never settles. It should be refused
    (``RegistryError``) unless it is a symbol of the version's set (and only for a global
    key)."""
    url, models, _champ, shadow = _shadow_on_gbpusd(tmp_path, daily)
    engine = make_engine(url)
    reg = ModelRegistry(engine, models)
    # a second version of the set's key: the tiny global model trained again on other candles
    cfg = TrainConfig.from_dict(
        {**TINY_TRAIN, "symbol": SET_KEY.symbol, "timeframe": "1d", "horizon": HORIZON, "series": list(PAIR)}
    )
    result = train(cfg, {s: frame_of(daily[s][100:1600]) for s in PAIR}, tmp_path / "second")
    v = reg.import_artifact(result.checkpoint)
    assert v.key == SET_KEY
    for bad in ("USDJPY", "EUR/USD", "", "GBPUSD\n"):
        with pytest.raises(RegistryError, match="no shadow on it"):
            reg.start_shadow(v.version, "test", required=5, series=bad)
    assert reg.shadow(SET_KEY).version == shadow  # type: ignore[union-attr]
    # a per-series version has no series to name
    own = _own_champion(engine, models, daily, tmp_path, "EURUSD")
    with pytest.raises(RegistryError, match="no shadow on it"):
        reg.start_shadow(own, "test", required=5, series="EURUSD")
    # lower case names the symbol, stored canonical (as every symbol field of the registry)
    assert shadow_series(reg.start_shadow(v.version, "test", required=5, series="gbpusd")) == "GBPUSD"


def test_a_hand_written_shadow_symbol_in_lower_case_still_runs(tmp_path: Path, daily: dict[str, list[Candle]]) -> None:
    """FAILS. A registry row whose ``metrics.shadow.symbol`` is ``gbpusd`` (written by hand, or
    by a request that spelt it so) names GBPUSD as every other symbol field of the registry
    does (``model_symbols`` reads lower case as upper case); ``shadow_series`` returns it as
    written and ModelBook compares it with ``GBPUSD``: the shadow runs on no series."""
    from forex_diffusion.storage.model_registry import model_versions

    url, models, _champ, shadow = _shadow_on_gbpusd(tmp_path, daily)
    engine = make_engine(url)
    reg = ModelRegistry(engine, models)
    metrics = dict(reg.get(shadow).metrics)
    metrics["shadow"] = {**metrics["shadow"], "symbol": "gbpusd"}
    with engine.begin() as conn:
        conn.execute(update(model_versions).where(model_versions.c.version == shadow).values(metrics=metrics))
    book = ModelBook(engine, horizon=HORIZON, model_dir=models)
    assert getattr(book.shadow("GBPUSD", "1d"), "version", None) == shadow


def test_models_shadow_on_a_global_key_names_the_series_it_runs_on(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """FAILS. ``forexd models shadow SET…`` shows the shadow, its counts and the champion, but
    not the one series of the set it is scored on (``metrics.shadow.symbol``): an operator
    cannot tell which worker/series must realise its forecasts (or why it does not move, as
    in the tests above). Neither the text nor the ``--json`` form names GBPUSD."""
    url, models, _champ, shadow = _shadow_on_gbpusd(tmp_path, daily)
    runner = CliRunner()
    text = runner.invoke(app, ["models", "shadow", str(SET_KEY), "--db", url, "--model-dir", str(models)])
    assert text.exit_code == 0 and shadow in text.output, text.output
    as_json = runner.invoke(app, ["models", "shadow", str(SET_KEY), "--json", "--db", url, "--model-dir", str(models)])
    assert as_json.exit_code == 0, as_json.output
    assert "GBPUSD" in text.output, text.output
    assert "GBPUSD" in json.dumps(json.loads(as_json.output.strip().splitlines()[-1])), as_json.output


def test_a_retrained_global_model_keeps_its_champions_series_embedding(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """FAILS. The set's champion was trained with a series embedding (``forexd train
    --series-embedding 4``); the retrain takes every training setting from
    ``JobConfig.train``, where ``series_embedding`` cannot even be set (the job config is
    validated as a per-series EURUSD model: "needs several series"). So "retraining the
    global model" silently replaces it with one without an embedding, another architecture
    than the one that serves the set, decided on the offline rule only."""
    from forex_diffusion.errors import ConfigError

    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    cfg = TrainConfig.from_dict(
        {
            **TINY_TRAIN,
            "symbol": SET_KEY.symbol,
            "timeframe": "1d",
            "horizon": HORIZON,
            "series": list(PAIR),
            "series_embedding": 4,
        }
    )
    result = train(cfg, {s: frame_of(daily[s][:1500]) for s in PAIR}, tmp_path / "emb")
    reg = ModelRegistry(engine, models)
    champ = reg.promote(reg.import_artifact(result.checkpoint).version, "test")
    assert Predictor.load(reg.path_of(champ)).manifest["series_embedding"] == 4
    with pytest.raises(ConfigError):  # no job config can ask for one
        job(train={**TINY_TRAIN, "series_embedding": 4})
    out = run_retrain(request("e1", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert out.version is not None, out
    got = Predictor.load(reg.path_of(reg.get(out.version))).manifest.get("series_embedding")
    assert got == 4, f"the retrained global model has series_embedding={got}, its champion 4"


def test_a_one_symbol_set_of_two_vendors_is_retrained_over_its_symbol(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """Holds: a global model of ``EURUSD@oanda`` and ``EURUSD@fxcm`` (symbols {EURUSD}, key
    SET(EURUSD)) serves EURUSD; a drift request for EURUSD retrains that key over the one
    series the database holds, and the champion (two embedding-less series sharing the
    symbol) is scored on it beside the challenger."""
    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    key = ModelKey.for_symbols(["EURUSD"], "1d", HORIZON)
    names = ["EURUSD@oanda", "EURUSD@fxcm"]
    cfg = TrainConfig.from_dict(
        {**TINY_TRAIN, "symbol": key.symbol, "timeframe": "1d", "horizon": HORIZON, "series": names}
    )
    frames = {"EURUSD@oanda": frame_of(daily["EURUSD"][:1500]), "EURUSD@fxcm": frame_of(daily["EURUSD"][100:1600])}
    result = train(cfg, frames, tmp_path / "vendors")
    reg = ModelRegistry(engine, models)
    champ = reg.promote(reg.import_artifact(result.checkpoint).version, "test")
    assert champ.key == key and reg.symbols_of(champ) == frozenset({"EURUSD"})
    out = run_retrain(request("v1", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert out.status in ("promoted", "rejected"), (out.reason, out.error)
    assert out.key == str(key) and out.metrics["scope"]["symbols"] == ["EURUSD"]
    row = ModelRegistry(engine, models).get(out.version).metrics  # type: ignore[arg-type]
    assert set(row["champion_holdout_series"]) == {"EURUSD"} and row["champion_holdout_series"]["EURUSD"]["n"] > 0


def test_two_series_of_one_set_drifting_together_retrain_the_set_once(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """FAILS. EURUSD and GBPUSD drift on the same candle (a market move hits both pairs) and
    send two requests. ``JobQueue``/``InFlight`` coalesce by the *requested* key, so both are
    admitted; at the default ``FOREXD_RETRAIN_CONCURRENCY=1`` they run one after the other
    (the docs' "the second job finds the global key claimed" holds only with concurrency > 1):
    the second trains the whole set again, and its challenger supersedes the first one's
    shadow before any of its forecasts is realised. A request made before the set's
    retrain started should be answered by that retrain (no second training, the shadow
    left running)."""
    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    champion_of_set(engine, models, daily, tmp_path)
    cfg = job(shadow_forecasts=5)
    first = run_retrain(request("d-eur", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=cfg)
    assert first.status == "shadow", first.reason
    # GBPUSD's request was made at the same time (requested_at_ms=0, before the first job ran)
    second = run_retrain(request("d-gbp", symbol="GBPUSD", timeframe="1d"), engine=engine, model_dir=models, config=cfg)
    reg = ModelRegistry(engine, models)
    assert reg.get(first.version).status == "shadow", reg.get(first.version).reason  # type: ignore[arg-type]
    assert second.version in (None, first.version), (second.status, second.reason)


@pytest.mark.parametrize("symbols", [["EURUSD", "GBPUSD", "EURGBP"], ["EURUSD"]])
def test_a_set_key_whose_row_names_another_set_fails_as_an_outcome(
    tmp_path: Path, daily: dict[str, list[Candle]], symbols: list[str]
) -> None:
    """Holds: a champion row of the pair's key whose ``metrics.symbols`` (written by hand) names
    another set, one that still holds EURUSD: the job fails (an outcome, not a traceback),
    registers nothing and leaves no staging directory."""
    from forex_diffusion.storage.model_registry import model_versions

    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    champ = champion_of_set(engine, models, daily, tmp_path)
    reg = ModelRegistry(engine, models)
    metrics = {**reg.get(champ).metrics, "symbols": symbols}
    with engine.begin() as conn:
        conn.execute(update(model_versions).where(model_versions.c.version == champ).values(metrics=metrics))
    out = run_retrain(request("h1", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert out.status == "failed" and out.key == str(SET_KEY) and out.symbol == "EURUSD", out
    assert [v.version for v in ModelRegistry(engine, models).list(SET_KEY)] == [champ]
    assert list((models / ".staging").glob("*")) == []


def test_a_request_for_a_series_of_a_claimed_set_fails_claimed_answering_its_symbol(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """Holds: while the set's key is claimed (another job of the set runs), a request for GBPUSD
    fails ``claimed: ClaimHeld`` under the set's key, answering GBPUSD (the candle worker
    closes GBPUSD's request)."""
    from retraining.claims import JobClaims

    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    champion_of_set(engine, models, daily, tmp_path)
    with JobClaims(engine).hold(str(SET_KEY), "other-job"):
        out = run_retrain(request("c1", symbol="GBPUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert out.status == "failed" and out.reason == "claimed: ClaimHeld", out
    assert out.key == str(SET_KEY) and out.symbol == "GBPUSD"


def test_the_outcome_of_a_set_of_many_symbols_is_taken_by_the_candle_worker(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """FAILS. The outcome of a global retrain carries, per series of the set, ``data.series``,
    ``challenger_series``, ``champion_series`` and ``scope.symbols`` (~430 bytes each; a set
    may name up to 4,096 symbols). From ~150 symbols it passes the 64 KiB that the candle
    worker's ``check_outcome`` reads from ``fx.models``: the outcome is dead-lettered
    (``oversize``) and the request it answers is never closed there (the retrain agent
    encodes and sends it all the same; ``forexd retrain --wait`` reads up to 1 MiB).
    Here the real outcome of a 2-series job, its per-series parts repeated for 170 symbols."""
    import itertools
    import string

    from forex_diffusion.errors import ValidationError
    from retraining.records import JobOutcome, check_outcome, encode_outcome

    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    champion_of_set(engine, models, daily, tmp_path)
    out = run_retrain(request("big", symbol="EURUSD", timeframe="1d"), engine=engine, model_dir=models, config=job())
    assert out.status == "promoted", out.reason
    # the per-series parts stay in the registry row; the outcome names the set alone, which
    # may hold up to SYMBOLS_MAX symbols
    from retraining.registry import SYMBOLS_MAX

    symbols = ["".join(p) for p in itertools.islice(itertools.product(string.ascii_uppercase, repeat=6), SYMBOLS_MAX)]
    m = json.loads(json.dumps(out.to_dict()["metrics"]))
    assert not {"challenger_series", "champion_series"} & set(m) and m["data"]["series"] == 2, sorted(m)
    m["scope"]["symbols"] = symbols
    big = JobOutcome.from_dict({**out.to_dict(), "metrics": m})
    value = encode_outcome(big)  # the retrain agent sends this
    try:
        check_outcome(b"EURUSD", value, symbols={"EURUSD"}, timeframes={"1d"})
    except ValidationError as exc:
        pytest.fail(f"the candle worker refuses the outcome ({len(value)} bytes): {exc.reason.value}")


def test_a_request_spelt_in_lower_case_shadows_and_answers_the_canonical_symbol(
    tmp_path: Path, daily: dict[str, list[Candle]]
) -> None:
    """FAILS. ``run_retrain`` reads the request's symbol through ``ModelKey`` (upper case: the
    job retrains for GBPUSD), but the global path stores the request's spelling as it came:
    ``metrics.shadow.symbol`` ``gbpusd`` (a shadow that no series runs) and the outcome's
    ``symbol`` ``gbpusd`` (before 9e693c2 it was ``key.symbol``, canonical; a candle worker
    refuses ``gbpusd`` as ``unknown_symbol``). The worker's own requests are canonical; an
    API caller's need not be."""
    url = _db(tmp_path, daily)
    engine = make_engine(url)
    models = tmp_path / "models"
    champion_of_set(engine, models, daily, tmp_path)
    out = run_retrain(
        request("lc1", symbol="gbpusd", timeframe="1d"), engine=engine, model_dir=models, config=job(shadow_forecasts=5)
    )
    assert out.status == "shadow", out.reason
    assert out.symbol == "GBPUSD"
    assert shadow_series(ModelRegistry(engine, models).get(out.version)) == "GBPUSD"  # type: ignore[arg-type]
