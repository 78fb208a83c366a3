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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forex_diffusion.diffusion import TrainConfig, train
from forex_diffusion.domain import Candle
from forex_diffusion.ingest.readers import read_candle_series
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.storage import make_engine, upsert_candles
from forex_diffusion.storage.model_registry import ModelKey
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


def test_a_drift_request_of_a_series_served_by_a_global_model_retrains_the_global_key_through_the_worker(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    pg_url: str,
    tmp_path: Path,
    wait_until: Any,
) -> None:
    models = tmp_path / "models"
    stored = {s: daily_candles(s) for s in PAIR}
    engine = make_engine(pg_url)
    last = stored["EURUSD"][-1]  # published on fx.candles after the outcome
    upsert_candles(engine, stored["EURUSD"][:-1] + stored["GBPUSD"])
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
        FOREXD_RETRAIN_JOB_CONFIG=json.dumps(JOB.to_dict()),
    )
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    w = spawn_worker(env, role="all")

    # a drift request for EURUSD, as the candle worker's trigger sends it (keyed by its symbol)
    req = RetrainRequest.create("EURUSD", "1d", H, "drift", 1_700_000_000_000, detail="test")
    publish(kafka_bootstrap, f"{prefix}fx.retrain.requests", [(b"EURUSD", encode_request(req))])

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
    log = w.log()
    assert "models.refused" not in log, log[-4000:]
    dead = read_all(kafka_bootstrap, f"{prefix}fx.deadletter", timeout_s=5)
    from_models = [m for m in dead if dict(m.headers).get("x-orig-topic") == f"{prefix}fx.models".encode()]
    assert not from_models, [(dict(m.headers), m.value[:300]) for m in from_models]

    # the next EURUSD candle is forecast by the new global version (the book resolves the
    # series to its set's champion)
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(last))])
    fc = read_all(kafka_bootstrap, f"{prefix}fx.forecasts", expect=1, timeout_s=120)
    assert fc, w.log()[-4000:]
    served = {(m.key, json.loads(m.value)["as_of_ms"]): json.loads(m.value)["model_version"] for m in fc}
    assert served == {(b"EURUSD", last.close_ms): new}, served
    assert w.alive()
    print(f"outcome={outcome['status']} reason={outcome['reason']} job_s={outcome['duration_s']:.1f}")
