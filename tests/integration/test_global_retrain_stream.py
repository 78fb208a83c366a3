"""A drift retrain of a series that a global model serves, through the broker and PostgreSQL
(issue 16): the worker's retrain agent retrains the **global key** and answers the request's
symbol, and the candle worker's ``fx.models`` agent takes the outcome.

PostgreSQL holds the real daily OANDA candles of EURUSD and GBPUSD (the bundled file, each
stored as the stream's daily bar, as ``tests/unit/retraining/test_global_retrain.py`` stores
them) and a tiny global model of both, trained on the older candles, promoted as the champion
of the set's key ``SET…/1d/12``. A ``forexd worker --role all`` serves both symbols at 1d with
horizon 12 and runs the retrain agent with a tiny, lenient job (no shadow). One request for
EURUSD is published on ``fx.retrain.requests``; the job retrains the set's key over both
series, promotes it, and the agent sends the outcome on ``fx.models`` keyed by EURUSD.

Checked: the outcome answers the request (its id, symbol EURUSD, Kafka key EURUSD) and names
the set's key; the registry's champion of the set's key is the new version, over both
symbols; the candle worker accepted the outcome (``models.refreshed``, no ``models.refused``,
no dead letter of ``fx.models``); EURUSD's next candle (held back from the database) is then
forecast by the new global version. Waits follow records and log lines, not the clock.

The second test runs the same retrain with a live shadow (``shadow_forecasts`` 3): the last
20 candles of both series are held back, the challenger enters shadow on EURUSD only, the
held-back candles are streamed, and the worker's shadow lane decides and announces on
``fx.models``; the decision then serves both series.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from forex_diffusion.diffusion import TrainConfig, train
from forex_diffusion.domain import Candle
from forex_diffusion.ingest.readers import read_candle_series
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.storage import make_engine, upsert_candles
from forex_diffusion.storage.model_registry import ModelKey, get_aliases, read_shadow_scores
from forex_diffusion.storage.repository import fetch_forecasts
from forex_diffusion.timeframes import Timeframe
from forex_diffusion.wire import encode_candle
from retraining.jobs import JobConfig, encode_request
from retraining.policy import PromotionPolicy
from retraining.registry import ModelRegistry

from ..realdata import DATA
from .kafka_io import create_topics, publish, read_all

pytestmark = [pytest.mark.broker, pytest.mark.postgres]
TOPICS = ("ticks", "candles", "indicators", "deadletter", "forecasts", "drift", "models", "retrain.requests")
DAILY = DATA / "lean_oanda_d1_4pairs.csv.gz"
PAIR = ("EURUSD", "GBPUSD")
H = 12
SET_KEY = ModelKey.for_symbols(PAIR, "1d", H)
#: Training settings that run in a few seconds on 2 cores (those of tests/unit/retraining).
TINY_TRAIN: dict[str, object] = dict(
    context={"window": 16, "warmup": 12},
    width=32,
    cond_width=32,
    blocks=1,
    max_steps=20,
    eval_every=10,
    batch_size=128,
    val_windows=32,
    val_samples=16,
    calib_windows=64,
    test_windows=64,
    sample_steps=4,
    samples=32,
    device="cpu",
    max_minutes=1.0,
)
#: The worker's retrain job: 2,400 training + 240 hold-out candles of each series, promoting
#: any valid challenger at once (no shadow). No ``scope``: the default (``serving``) applies.
JOB = JobConfig(
    horizon=H,
    train=TINY_TRAIN,
    train_candles=2400,
    holdout_candles=240,
    warmup_candles=200,
    eval_every=4,
    eval_samples=32,
    policy=PromotionPolicy(min_improvement=-1.0, min_skill_vs_rw=-1.0, coverage90_bounds=(0.0, 1.0)),
    shadow_forecasts=0,
)


def daily_candles(symbol: str) -> list[Candle]:
    """The symbol's daily bid candles of the bundled OANDA file, each stored as the stream's
    daily bar that holds its open (the vendor's bars open at 00:00 UTC)."""
    frame = read_candle_series(DAILY, symbol=symbol, timeframe="1d", price="bid").frame
    tf = Timeframe.parse("1d")
    out = []
    for r in frame.itertuples():
        open_ms, close_ms = tf.bounds(int(r.ts_ms))
        out.append(
            Candle(
                symbol=symbol,
                timeframe="1d",
                open_ms=open_ms,
                close_ms=close_ms,
                open=float(r.open),
                high=float(r.high),
                low=float(r.low),
                close=float(r.close),
            )
        )
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


def promote_global_champion(reg: ModelRegistry, stored: dict[str, list[Candle]], stage: Path) -> str:
    """Train the tiny global model of :data:`PAIR` on the older candles (as ``forexd train
    --symbol EURUSD,GBPUSD`` does), register and promote it under the set's key."""
    cfg = TrainConfig.from_dict(
        {**TINY_TRAIN, "symbol": SET_KEY.symbol, "timeframe": "1d", "horizon": H, "series": list(PAIR)}
    )
    result = train(cfg, {s: frame_of(stored[s][:1500]) for s in PAIR}, stage)
    v = reg.import_artifact(result.checkpoint)
    assert v.key == SET_KEY, v.key
    return reg.promote(v.version, "first champion").version


@dataclass(frozen=True)
class GlobalWorker:
    """A worker serving :data:`PAIR` by the global champion, and what the test reads it by."""

    worker: Any
    prefix: str
    engine: Engine
    reg: ModelRegistry
    champion: str


def start_global_worker(
    request: pytest.FixtureRequest,
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    pg_url: str,
    tmp_path: Path,
    stored: dict[str, list[Candle]],
    history: list[Candle],
    job: JobConfig,
) -> GlobalWorker:
    """Store ``history`` in PostgreSQL, promote the tiny global champion of :data:`PAIR` (the
    set's key serves EURUSD, which has no key of its own) and start a ``forexd worker --role
    all`` serving both symbols at 1d with retrain job ``job``."""
    models = tmp_path / "models"
    engine = make_engine(pg_url)
    request.addfinalizer(engine.dispose)  # its pool closed with the test (PostgreSQL's clients are few)
    upsert_candles(engine, history)
    reg = ModelRegistry(engine, models)
    champion = promote_global_champion(reg, stored, tmp_path / "global-train")
    assert reg.resolve_champion("EURUSD", "1d", H).version == champion  # type: ignore[union-attr]
    assert reg.champion(ModelKey(symbol="EURUSD", timeframe="1d", horizon=H)) is None

    env = dict(
        worker_env,
        FOREXD_SYMBOLS=",".join(PAIR),
        FOREXD_TIMEFRAMES="1d",
        FOREXD_FORECAST_TIMEFRAMES="1d",
        FOREXD_HORIZON=str(H),
        FOREXD_DATABASE_URL=pg_url,
        FOREXD_MODEL_DIR=str(models),
        FOREXD_RETRAIN_JOB_CONFIG=json.dumps(job.to_dict()),
    )
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    return GlobalWorker(spawn_worker(env, role="all"), prefix, engine, reg, champion)


def request_retrain(kafka_bootstrap: str, prefix: str, symbol: str) -> RetrainRequest:
    """A drift request for ``symbol``, as the candle worker's trigger sends it (keyed by its symbol)."""
    req = RetrainRequest.create(symbol, "1d", H, "drift", 1_700_000_000_000, detail="test")
    publish(kafka_bootstrap, f"{prefix}fx.retrain.requests", [(symbol.encode(), encode_request(req))])
    return req


def assert_models_accepted(w: Any, kafka_bootstrap: str, prefix: str) -> None:
    """The candle worker's ``fx.models`` agent refused nothing: no ``models.refused`` line, no
    dead letter of ``fx.models`` (an outcome it refuses is dead-lettered and refreshes nothing)."""
    log = w.log()
    assert "models.refused" not in log, log[-4000:]
    dead = read_all(kafka_bootstrap, f"{prefix}fx.deadletter", timeout_s=5)
    from_models = [m for m in dead if dict(m.headers).get("x-orig-topic") == f"{prefix}fx.models".encode()]
    assert not from_models, [(dict(m.headers), m.value[:300]) for m in from_models]


def test_a_drift_request_of_a_series_served_by_a_global_model_retrains_the_global_key_through_the_worker(
    request: pytest.FixtureRequest,
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    pg_url: str,
    tmp_path: Path,
    wait_until: Any,
) -> None:
    stored = {s: daily_candles(s) for s in PAIR}
    last = stored["EURUSD"][-1]  # published on fx.candles after the outcome
    g = start_global_worker(
        request,
        worker_env,
        spawn_worker,
        kafka_bootstrap,
        pg_url,
        tmp_path,
        stored,
        stored["EURUSD"][:-1] + stored["GBPUSD"],
        JOB,
    )
    w, prefix, reg, champion = g.worker, g.prefix, g.reg, g.champion

    # a drift request for EURUSD, as the candle worker's trigger sends it (keyed by its symbol)
    req = request_retrain(kafka_bootstrap, prefix, "EURUSD")

    outs = read_all(kafka_bootstrap, f"{prefix}fx.models", expect=1, timeout_s=300)
    assert len(outs) == 1, (len(outs), w.log()[-4000:])
    msg = outs[0]
    outcome = json.loads(msg.value)
    assert outcome["request_id"] == req.request_id, outcome
    # the global key retrained, answering the request's symbol (keyed by it, as fx.models' check wants)
    assert outcome["key"] == str(SET_KEY), outcome
    assert outcome["symbol"] == "EURUSD" and outcome["timeframe"] == "1d" and outcome["horizon"] == H, outcome
    assert msg.key == b"EURUSD"
    assert outcome["status"] == "promoted", (outcome["status"], outcome["reason"], outcome.get("error"))
    new = outcome["version"]
    assert new and new != champion

    # the registry: the set's key has the new champion, trained over both symbols
    now = reg.champion(SET_KEY)
    assert now is not None and now.version == new == outcome["champion"], (now, outcome)
    assert now.metrics["symbols"] == list(PAIR), now.metrics.get("symbols")
    assert reg.champion(ModelKey(symbol="EURUSD", timeframe="1d", horizon=H)) is None  # no own key made
    assert reg.resolve_champion("GBPUSD", "1d", H).version == new  # type: ignore[union-attr]
    assert Path(outcome["artifact"]).exists()

    # the candle worker's fx.models agent accepted it: its book refreshed on the record (an
    # outcome it refuses is dead-lettered and refreshes nothing), nothing refused
    wait_until(lambda: "models.refreshed" in w.log(), 120, what="the model book refreshed on the outcome")
    assert_models_accepted(w, kafka_bootstrap, prefix)

    # the next EURUSD candle is forecast by the new global version (the book resolves the
    # series to its set's champion)
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(last))])
    fc = read_all(kafka_bootstrap, f"{prefix}fx.forecasts", expect=1, timeout_s=120)
    assert fc, w.log()[-4000:]
    served = {(m.key, json.loads(m.value)["as_of_ms"]): json.loads(m.value)["model_version"] for m in fc}
    assert served == {(b"EURUSD", last.close_ms): new}, served
    assert w.alive()
    print(f"outcome={outcome['status']} reason={outcome['reason']} job_s={outcome['duration_s']:.1f}")


#: Live shadow of a global retrain: the last candles of both series are held back from the
#: database and streamed after the challenger entered shadow; it needs ``SHADOW_N`` realised
#: forecasts, which the first ``SHADOW_N + H`` held-back candles realise exactly (the origin of
#: the k-th is realised by the (k + H)-th), so no forecast of those can come after a decision.
SHADOW_N = 3
HELD = 20
SHADOW_JOB = replace(
    JOB,
    shadow_forecasts=SHADOW_N,
    # any valid challenger beats the champion offline, pooled and on each series
    policy=replace(JOB.policy, max_series_loss=100.0),
)


def test_a_global_retrain_in_shadow_runs_on_the_requesting_series_and_its_live_decision_serves_both(
    request: pytest.FixtureRequest,
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    pg_url: str,
    tmp_path: Path,
    wait_until: Any,
) -> None:
    """A drift request for EURUSD retrains the set's key; the challenger beats the champion
    offline and enters shadow **on EURUSD only** (``metrics.shadow.symbol``). The held-back
    candles of both series are then streamed: the worker's shadow lane scores the challenger
    beside the champion on EURUSD, publishes only the champion's forecasts, decides after
    ``SHADOW_N`` realised forecasts and announces on ``fx.models`` (keyed by the set's
    symbol); the decision then serves both series (promoted: the new version; rejected: the
    old champion). With the tiny training both versions calibrate onto the EWMA random walk
    (``rw_weight`` 1 at every step), so their live CRPS tie and the rule (no worse) promotes, in
    every run so far; either branch is checked against the rows for what it must do. Waits
    follow records and rows, not the clock."""
    stored = {s: daily_candles(s) for s in PAIR}
    held = {s: stored[s][-HELD:] for s in PAIR}
    assert [c.open_ms for c in held["EURUSD"]] == [c.open_ms for c in held["GBPUSD"]]
    g = start_global_worker(
        request,
        worker_env,
        spawn_worker,
        kafka_bootstrap,
        pg_url,
        tmp_path,
        stored,
        [c for s in PAIR for c in stored[s][:-HELD]],
        SHADOW_JOB,
    )
    w, prefix, engine, reg, champion = g.worker, g.prefix, g.engine, g.reg, g.champion

    req = request_retrain(kafka_bootstrap, prefix, "EURUSD")
    outs = read_all(kafka_bootstrap, f"{prefix}fx.models", expect=1, timeout_s=300)
    assert len(outs) == 1, (len(outs), w.log()[-4000:])
    msg = outs[0]
    outcome = json.loads(msg.value)
    assert outcome["request_id"] == req.request_id and msg.key == b"EURUSD", (msg.key, outcome)
    assert outcome["key"] == str(SET_KEY) and outcome["symbol"] == "EURUSD", outcome
    assert outcome["status"] == "shadow", (outcome["status"], outcome["reason"], outcome.get("error"))
    new = outcome["version"]
    assert new and new != champion and outcome["champion"] == champion, outcome

    # the registry: the version is the set key's shadow, running on the series that asked;
    # the old champion still serves both
    v = reg.get(new)
    assert v.key == SET_KEY and v.status == "shadow", (v.key, v.status, v.reason)
    assert v.metrics["shadow"]["symbol"] == "EURUSD" and v.metrics["shadow"]["required"] == SHADOW_N, v.metrics
    assert reg.shadow_runs_on(v) == "EURUSD"
    assert get_aliases(engine, SET_KEY) == {"champion": champion, "challenger": new, "shadow": new}
    for s in PAIR:
        assert reg.resolve_champion(s, "1d", H).version == champion  # type: ignore[union-attr]
    wait_until(lambda: "models.refreshed" in w.log(), 120, what="the model book refreshed on the outcome")

    # the held-back candles, in time order, keyed by symbol: first those that realise exactly
    # SHADOW_N shadow forecasts of EURUSD (its first origins), then the decision
    def stream(n0: int, n1: int) -> list[tuple[str, int]]:
        batch = sorted((c for s in PAIR for c in held[s][n0:n1]), key=lambda c: (c.open_ms, c.symbol))
        publish(kafka_bootstrap, f"{prefix}fx.candles", [(c.symbol.encode(), encode_candle(c)) for c in batch])
        return [(c.symbol, c.close_ms) for c in batch]

    live = stream(0, SHADOW_N + H)

    def progress() -> tuple[int, int]:  # the worker's checkpoints: forecast rows, then shadow rows
        return sum(len(fetch_forecasts(engine, s, "1d")) for s in PAIR), len(read_shadow_scores(engine, new))

    wait_until(
        lambda: reg.get(new).status != "shadow", 240, interval=0.5, what="the shadow decision", progress=progress
    )
    v = reg.get(new)
    assert v.status in ("promoted", "rejected"), (v.status, v.reason)

    # announced on fx.models like a job's outcome, keyed by the set's symbol (accepted by the
    # candle worker's fx.models agent)
    outs = read_all(kafka_bootstrap, f"{prefix}fx.models", expect=2, timeout_s=120)
    decisions = [(m.key, json.loads(m.value)) for m in outs if json.loads(m.value)["status"] != "shadow"]
    assert len(decisions) == 1 and len(outs) == 2, ([m.value[:300] for m in outs], w.log()[-4000:])
    key, d = decisions[0]
    assert key == SET_KEY.symbol.encode() and d["key"] == str(SET_KEY) and d["symbol"] == SET_KEY.symbol, (key, d)
    assert (d["version"], d["status"], d["reason"]) == (new, v.status, v.reason), (d, v.reason)
    assert d["reason"].startswith("shadow_") and d["request_id"] == req.request_id, d
    assert d["metrics"]["required"] == SHADOW_N, d["metrics"]
    serving = new if v.status == "promoted" else champion
    assert d["champion"] == serving, d
    # each fx.models record the agent accepts ends in one "models.refreshed" line, one it
    # refuses in "models.refused" (and a dead letter)
    taken = lambda: w.log().count("models.refreshed") >= 2 or "models.refused" in w.log()  # noqa: E731
    wait_until(taken, 120, what="the candle worker took the decision's record")
    assert_models_accepted(w, kafka_bootstrap, prefix)

    # the shadow ran on EURUSD only, its rows scored beside the champion that served them,
    # and the decision is the rule's on the first SHADOW_N of them
    rows = read_shadow_scores(engine, new)
    assert len(rows) >= SHADOW_N, rows
    assert all(r["model_key"].startswith("EURUSD/") for r in rows), {r["model_key"] for r in rows}
    assert {r["champion_version"] for r in rows} == {champion}, rows
    # the worker stored finite scores (both forecasts realised); read back from PostgreSQL they
    # must stay scores, or every shadow there ends shadow_invalid whatever it forecast
    scores = ("crps", "champion_crps", "rw_crps", "cover90", "champion_cover90")
    assert all(math.isfinite(r[c]) for r in rows for c in scores), (v.reason, rows[:1])
    first = read_shadow_scores(engine, new, limit=SHADOW_N)
    assert [r["as_of_ms"] for r in first] == [t for s, t in live if s == "EURUSD"][:SHADOW_N], first
    shadow_crps = math.fsum(r["crps"] for r in first) / SHADOW_N
    champion_crps = math.fsum(r["champion_crps"] for r in first) / SHADOW_N
    if v.status == "promoted":
        assert v.reason.startswith("shadow_not_worse") and shadow_crps <= champion_crps, (v.reason, first)
    else:
        assert v.reason.startswith("shadow_worse") and shadow_crps > champion_crps, (v.reason, first)

    # before the decision only the champion was published, for both series (fx.forecasts and
    # the forecasts table): the shadow forecasts of EURUSD never were
    by_series = lambda m: (m.key, json.loads(m.value)["as_of_ms"])  # noqa: E731
    fc = read_all(kafka_bootstrap, f"{prefix}fx.forecasts", expect=len(live), timeout_s=120, distinct=by_series)
    before = {(m.key.decode(), json.loads(m.value)["as_of_ms"]): json.loads(m.value)["model_version"] for m in fc}
    assert set(before) == set(live), (sorted(set(live) - set(before))[:3], w.log()[-3000:])
    assert {m.key.decode() for m in fc} == set(PAIR) and set(before.values()) == {champion}, before
    for s in PAIR:
        assert {r["model_version"] for r in fetch_forecasts(engine, s, "1d")} == {champion}, s

    # the decision serves the set's key: both series resolve to it, the shadow alias is gone
    aliases = get_aliases(engine, SET_KEY)
    assert "shadow" not in aliases and aliases["champion"] == serving, aliases
    assert reg.champion(SET_KEY).version == serving  # type: ignore[union-attr]
    assert reg.champion(ModelKey(symbol="EURUSD", timeframe="1d", horizon=H)) is None  # no own key made
    for s in PAIR:
        assert reg.resolve_champion(s, "1d", H).version == serving  # type: ignore[union-attr]
    if v.status == "rejected":
        assert reg.get(champion).status == "promoted"

    # the rest of the held-back candles: both series forecast by the serving version
    after = stream(SHADOW_N + H, HELD)
    assert after
    fc = read_all(kafka_bootstrap, f"{prefix}fx.forecasts", expect=2 * HELD, timeout_s=120, distinct=by_series)
    later = {(m.key.decode(), json.loads(m.value)["as_of_ms"]): json.loads(m.value)["model_version"] for m in fc}
    assert set(after) <= set(later), (sorted(set(after) - set(later))[:3], w.log()[-3000:])
    assert {later[k] for k in after} == {serving}, {k: later[k] for k in after}
    assert {s for s, _ in after} == set(PAIR)
    assert w.alive()
    print(
        f"offline {outcome['reason']}; live shadow {shadow_crps:.4g} vs champion {champion_crps:.4g} "
        f"-> {v.status} ({v.reason}); job_s={outcome['duration_s']:.1f}"
    )
