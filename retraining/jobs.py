"""Retraining jobs: fetch → train a challenger → evaluate both on one hold-out → decide → register.

:func:`run_retrain` is a plain function (the retrain agent runs it in a separate process
through :mod:`retraining.runner`; ``forexd retrain --local`` runs it in-process):

0. the job claims its model key in the database (:mod:`retraining.claims`, issue 15): a key
   another live job (of any retrain worker) holds is not trained twice (``failed`` with
   ``claimed: ClaimHeld``); the claim is renewed while the job runs and checked before it
   registers anything, and released at its end;
1. :meth:`ModelRegistry.recover` removes what a killed job of the same key left;
2. the most recent ``train_candles + holdout_candles`` closed candles come from the
   database (:func:`~forex_diffusion.storage.fetch_candles`, retried with backoff), read as
   warm start reads them: a stored row the stream could not have written (a NaN or zero price,
   high below low, an open time off the grid) is skipped, counted in ``metrics.data.skipped``;
3. the challenger trains on the candles before the hold-out (it never sees it) in a
   staging directory, and is published into the key's directory atomically;
4. challenger and serving champion forecast the same hold-out origins walk-forward
   (:func:`~forex_diffusion.reports.backtest.backtest`); CRPS, 90 %/50 % coverage and the EWMA
   random walk's CRPS are computed on them;
5. :func:`~retraining.policy.decide_promotion` decides; the version is registered (as the
   challenger) and promoted or rejected, each a single transaction -- or, with
   ``shadow_forecasts`` and a champion it beat, put in shadow (issue 16: the candle agent
   scores it live and decides, :mod:`retraining.shadow_verdict`);
6. retention deletes what the rule no longer keeps.

A job for one key at a time: :class:`InFlight` admits one request per model key (and
never the same request id twice within its memory).

A request is a hostile input like any other record (issue 13): its ``request_id`` must
match :data:`REQUEST_ID_PATTERN` (:func:`check_request_id`) before any path is built from
it, and :func:`check_key` refuses model keys outside the worker's configuration. The free
text of both records (a request's ``detail``; an outcome's ``request_id``, ``key``,
``symbol``, ``timeframe``, ``reason``, ``artifact``) is bounded and holds no control,
line-separator, bidi or surrogate character: the topics' schemas refuse such a record
(``schema``, the dead-letter path) and their encoders write U+FFFD in place of one.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace  # noqa: F401  (replace: doctest)
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from forex_diffusion.diffusion.predictor import Predictor
from forex_diffusion.diffusion.training import TrainConfig, TrainProgress, train
from forex_diffusion.errors import (
    ConfigError,
    ForexDiffusionError,
    ModelError,
    RegistryError,
    RejectReason,
    StorageError,
    ValidationError,
    check_field_types,
)
from forex_diffusion.forecast.batching import SAMPLES_MAX, SAMPLES_MIN, STEPS_MAX
from forex_diffusion.quality.evaluation import summarize_forecasts
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.reports.backtest import BacktestConfig, backtest
from forex_diffusion.storage import fetch_candles
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion
from forex_diffusion.timeframes import Timeframe, ms_to_datetime

from .claims import Claim, ClaimHeld, ClaimLost, JobClaims
from .failpoints import failpoint
from .policy import (
    HoldoutScores,
    PromotionDecision,
    PromotionPolicy,
    decide_global,
    decide_promotion,
    pool_scores,
)
from .records import (
    OUTCOME_SCHEMA,
    REQUEST_ID_PATTERN,
    JobOutcome,
    JobStatus,
    check_request_id,
    decode_outcome,
    decode_request,
    encode_outcome,
    encode_request,
)
from .registry import ModelRegistry, read_manifest, serving_champion, summarise_train_metrics

__all__ = [
    "OUTCOME_SCHEMA",
    "REQUEST_ID_PATTERN",
    "SCOPES",
    "InFlight",
    "JobConfig",
    "JobOutcome",
    "JobStatus",
    "check_key",
    "check_request_id",
    "decode_outcome",
    "decode_request",
    "encode_outcome",
    "encode_request",
    "evaluate_holdout",
    "key_of",
    "run_retrain",
    "serving_champion",
]

logger = logging.getLogger(__name__)

_FIXED_TRAIN_KEYS = frozenset({"symbol", "timeframe", "horizon", "series", "series_embedding"})

#: What a request for a symbol retrains (:attr:`JobConfig.scope`).
SCOPES: tuple[str, ...] = ("serving", "series")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobConfig:
    """How a retrain job trains, evaluates and decides.

    Parameters
    ----------
    train
        :class:`~forex_diffusion.diffusion.TrainConfig` fields other than symbol,
        timeframe, horizon, series and series_embedding (plain data; unknown keys are
        refused; a global key's series and embedding are its champion's).
    horizon
        Horizon of a request that names none.
    train_candles, holdout_candles
        Candles the challenger trains on, and the most recent candles it never sees, on
        which both models are scored.
    warmup_candles
        Candles before the hold-out fed to each model's context before scoring.
    eval_every, eval_samples, eval_steps
        Score every ``eval_every``-th hold-out origin with this many sample paths and
        DDIM steps (None: the model's defaults).
    policy
        The promotion rule.
    keep_last, audit_window_ms
        Retention: the newest versions kept, and how far back forecasts pin a version.
    shadow_forecasts
        Issue 16: a challenger that wins against a champion enters **shadow** instead of
        being promoted, until this many of its live forecasts are realised (the candle
        agent then promotes or rejects it); 0 promotes at once. A challenger with no
        champion to face is promoted at once either way.
    scope
        Issue 16: which key a request for a symbol retrains. ``serving`` (default): the key
        whose registry champion serves the symbol -- a global model's (a symbol set) is
        retrained over every symbol of its set, and decided on all of them; else the
        symbol's own key. ``series``: always the symbol's own key (a per-series model,
        which then overrides a global one for that symbol).
    """

    train: Mapping[str, Any] = field(default_factory=dict)
    horizon: int = 24
    train_candles: int = 6000
    holdout_candles: int = 480
    warmup_candles: int = 500
    eval_every: int = 4
    eval_samples: int | None = 64
    eval_steps: int | None = None
    policy: PromotionPolicy = field(default_factory=PromotionPolicy)
    keep_last: int = 3
    audit_window_ms: int = 7 * 86_400_000
    shadow_forecasts: int = 0
    scope: str = "serving"

    def __post_init__(self) -> None:
        bad = _FIXED_TRAIN_KEYS & set(self.train)
        if bad:
            raise ConfigError(f"train must not set {sorted(bad)} (they come from the request)")
        built = self.train_config("EURUSD", "1h", self.horizon)  # validates keys and values
        plain = built.to_dict()
        object.__setattr__(self, "train", MappingProxyType({k: plain[k] for k in self.train}))
        for name in ("horizon", "train_candles", "holdout_candles", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_candles < 0 or self.keep_last < 0 or self.audit_window_ms < 0 or self.shadow_forecasts < 0:
            raise ConfigError("warmup_candles, keep_last, audit_window_ms and shadow_forecasts must be >= 0")
        if self.eval_samples is not None and not SAMPLES_MIN <= self.eval_samples <= SAMPLES_MAX:
            raise ConfigError(f"eval_samples must be in {SAMPLES_MIN}..{SAMPLES_MAX}, got {self.eval_samples}")
        if self.eval_steps is not None and not 1 <= self.eval_steps <= STEPS_MAX:
            raise ConfigError(f"eval_steps must be in 1..{STEPS_MAX}, got {self.eval_steps}")
        if self.holdout_candles <= self.horizon:
            raise ConfigError(f"holdout_candles {self.holdout_candles} must exceed the horizon {self.horizon}")
        if self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {list(SCOPES)}, got {self.scope!r:.40}")

    def train_config(
        self, symbol: str, timeframe: str, horizon: int, series: Collection[str] = (), series_embedding: int = 0
    ) -> TrainConfig:
        """The training configuration of one key (with ``series``: a global model's, ``symbol``
        its set's key, with a series embedding of that width)."""
        fixed: dict[str, Any] = {"symbol": symbol, "timeframe": timeframe, "horizon": horizon}
        if series:
            fixed |= {"series": list(series), "series_embedding": series_embedding}
        return TrainConfig.from_dict({**self.train, **fixed})

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return {
            "train": dict(self.train),
            "horizon": self.horizon,
            "train_candles": self.train_candles,
            "holdout_candles": self.holdout_candles,
            "warmup_candles": self.warmup_candles,
            "eval_every": self.eval_every,
            "eval_samples": self.eval_samples,
            "eval_steps": self.eval_steps,
            "policy": self.policy.to_dict(),
            "keep_last": self.keep_last,
            "audit_window_ms": self.audit_window_ms,
            "shadow_forecasts": self.shadow_forecasts,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobConfig:
        """Inverse of :meth:`to_dict`; unknown keys and values of the wrong type (a JSON file or
        ``FOREXD_RETRAIN_JOB_CONFIG`` written by hand) raise ``ConfigError``."""
        d: dict[str, Any] = check_field_types(cls, data, "JobConfig")
        if not isinstance(d.get("train", {}), Mapping):
            raise ConfigError(f"JobConfig: train must be a JSON object of TrainConfig fields, got {d['train']!r:.40}")
        if "policy" in d and not isinstance(d["policy"], PromotionPolicy):
            d["policy"] = PromotionPolicy.from_dict(d["policy"])
        return cls(**d)


def key_of(request: RetrainRequest, default_horizon: int) -> ModelKey:
    """The model key a request retrains (its horizon, else ``default_horizon``)."""
    return ModelKey(
        symbol=request.symbol,
        timeframe=request.timeframe,
        horizon=default_horizon if request.horizon is None else request.horizon,
    )


def check_key(
    request: RetrainRequest,
    *,
    symbols: Collection[str],
    timeframes: Collection[str],
    horizons: Collection[int],
    default_horizon: int,
) -> ModelKey:
    """The model key of ``request`` if the worker is configured to serve it.

    The symbol must be one of ``symbols`` as written (the canonical form: an alias such as
    ``EUR/USD`` is refused, never guessed), the timeframe one of ``timeframes`` and the
    horizon (``default_horizon`` when the request names none) one of ``horizons``.

    Raises
    ------
    ValidationError
        ``unknown_symbol`` for the symbol, ``unknown_key`` for the timeframe or horizon.
    """
    if request.symbol not in symbols:
        raise ValidationError(RejectReason.UNKNOWN_SYMBOL, f"symbol {request.symbol[:32]!r} is not configured")
    if request.timeframe not in timeframes:
        raise ValidationError(RejectReason.UNKNOWN_KEY, f"timeframe {request.timeframe[:16]!r} is not configured")
    horizon = default_horizon if request.horizon is None else request.horizon
    if horizon not in horizons:
        raise ValidationError(RejectReason.UNKNOWN_KEY, f"horizon {horizon} is not configured ({sorted(horizons)})")
    try:
        return key_of(request, default_horizon)
    except ConfigError as exc:  # configured but still not a model key: refuse, never raise
        raise ValidationError(RejectReason.UNKNOWN_KEY, str(exc)[:200]) from None


class InFlight:
    """Admit at most one running job per model key, and each request id once (pure, no clock).

    Parameters
    ----------
    default_horizon
        Horizon of requests that name none.
    remember
        How many finished request ids are remembered (a redelivered request is not run again).

    >>> from forex_diffusion.quality.trigger import RetrainRequest
    >>> r = RetrainRequest(request_id="a", symbol="EURUSD", timeframe="1h", horizon=24,
    ...                    reason="manual", requested_at_ms=0)
    >>> f = InFlight()
    >>> f.admit(r), f.admit(replace(r, request_id="b")), f.admit(r)
    (True, False, False)
    >>> f.done(r); f.admit(replace(r, request_id="c")), f.admit(r)
    (True, False)
    """

    def __init__(self, *, default_horizon: int = 24, remember: int = 4096) -> None:
        if remember < 0:
            raise ConfigError("remember must be >= 0")
        self.default_horizon = default_horizon
        self.remember = remember
        self._running: dict[str, str] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()

    def key(self, request: RetrainRequest) -> str:
        """The de-duplication key of a request."""
        return str(key_of(request, self.default_horizon))

    def admit(self, request: RetrainRequest) -> bool:
        """Start tracking ``request`` and return True, or return False for a duplicate."""
        k = self.key(request)
        if k in self._running or request.request_id in self._seen:
            logger.info("retrain duplicate request=%s key=%s running=%s", request.request_id, k, self._running.get(k))
            return False
        self._running[k] = request.request_id
        self._remember(request.request_id)
        return True

    def done(self, request: RetrainRequest) -> None:
        """Mark the job of ``request`` finished (whatever its outcome)."""
        k = self.key(request)
        if self._running.get(k) == request.request_id:
            del self._running[k]

    def running(self) -> dict[str, str]:
        """``{model key: request id}`` of the jobs in flight."""
        return dict(self._running)

    def _remember(self, request_id: str) -> None:
        if not self.remember:
            return
        self._seen[request_id] = None
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)


def _iso(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%MZ")


def _frame(candles: list[Any]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts_ms": np.array([c.open_ms for c in candles], dtype=np.int64),
            "open": [c.open for c in candles],
            "high": [c.high for c in candles],
            "low": [c.low for c in candles],
            "close": [c.close for c in candles],
        }
    )


def evaluate_holdout(
    predictor: Predictor,
    frame: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    holdout_start: int,
    every: int,
    samples: int | None,
    steps: int | None,
) -> HoldoutScores:
    """Score a model walk-forward on the hold-out rows ``frame[holdout_start:]``.

    Origins are the hold-out candles whose whole horizon lies in ``frame``; the rows
    before ``holdout_start`` only warm the context up. CRPS is the quantile form in price
    units averaged over origins and steps.
    """
    h = predictor.horizon
    last_origin = len(frame) - 1 - h
    if last_origin < holdout_start:
        raise ModelError(f"hold-out of {len(frame) - holdout_start} candles is shorter than the horizon {h}")
    tf = Timeframe.parse(timeframe)
    ts = frame["ts_ms"].to_numpy(dtype=np.int64)
    cfg = BacktestConfig(
        symbol=symbol,
        timeframe=timeframe,
        from_ms=tf.end_of(int(ts[holdout_start])),
        to_ms=tf.end_of(int(ts[last_origin])),
        every=every,
        steps=steps,
        samples=samples,
    )
    rows = backtest(frame, predictor, cfg)
    if rows.empty:
        return HoldoutScores(crps=math.nan, rw_crps=math.nan, cover90=math.nan, cover50=math.nan, n=0)
    s = summarize_forecasts(rows, groups=[(1, h)])[0]
    n = int(rows.loc[np.isfinite(rows["realized"].to_numpy(dtype=np.float64)), "as_of"].nunique())
    return HoldoutScores(crps=s.crps, rw_crps=s.rw_crps, cover90=s.cover90, cover50=s.cover50, n=n)


@dataclass
class _Job:
    """One retrain job's context, shared by its stages (:func:`run_retrain`)."""

    request: RetrainRequest
    key: ModelKey
    cfg: JobConfig
    engine: Engine
    reg: ModelRegistry
    t0: float
    progress: Callable[[str, Any], None] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    version: ModelVersion | None = None
    staging: Path | None = None
    #: A global key's symbols (:func:`_scope_stage`); empty for a symbol's own key.
    series: tuple[str, ...] = ()
    #: A global key's series embedding width, its champion's (:func:`_scope_stage`).
    embedding: int = 0
    #: The canonical symbol the request names (the outcome answers it).
    symbol: str = ""
    #: Wall-clock ms when the candles were read (stored with the version, for people).
    fetched_ms: int = 0

    def __post_init__(self) -> None:
        self.metrics["timings"] = self.timings

    @property
    def log_ctx(self) -> str:
        return f"request={self.request.request_id} key={self.key}"

    def note(self, stage_name: str, detail: Any = None) -> None:
        if self.progress is not None:
            self.progress(stage_name, detail)

    def published_metrics(self) -> dict[str, Any]:
        """The outcome's metrics: a global key's without its per-series parts, whose size grows
        with the set (the registry row keeps them: ``data_series``, ``holdout_series``,
        ``champion_holdout_series``); the candle worker reads at most 64 KiB of an outcome."""
        if not self.series:
            return self.metrics
        out = {k: v for k, v in self.metrics.items() if k not in ("challenger_series", "champion_series")}
        data = out.get("data")
        if isinstance(data, dict) and isinstance(data.get("series"), dict):
            out["data"] = {**data, "series": len(data["series"])}
        return out

    def outcome(self, status: JobStatus, reason: str, error: str | None = None) -> JobOutcome:
        reg, key, version = self.reg, self.key, self.version
        try:  # the decision is stored (a promotion cannot be undone here): a failed lookup
            champ = serving_champion(reg, key)  # only leaves the champion unnamed
        except ForexDiffusionError as exc:
            logger.warning(
                "retrain.champion_unresolved %s status=%s error_type=%s error=%s",
                self.log_ctx,
                status,
                type(exc).__name__,
                exc,
            )
            champ = None
        out = JobOutcome(
            request_id=self.request.request_id,
            key=str(key),
            symbol=self.symbol or self.key.symbol,  # the series whose request this answers (a global key's too)
            timeframe=key.timeframe,
            horizon=key.horizon,
            version=None if version is None else version.version,
            status=status,
            reason=reason,
            metrics=self.published_metrics(),
            duration_s=time.monotonic() - self.t0,
            champion=None if champ is None else champ.version,
            artifact=None if version is None else str(reg.path_of(version)),
            sha256=None if version is None else version.sha256,
            finished_at_ms=int(time.time() * 1000),
            error=error,
        )
        logger.info(
            "retrain done %s status=%s version=%s seconds=%.1f reason=%s",
            self.log_ctx,
            status,
            out.version,
            out.duration_s,
            reason,
        )
        return out


def _refused(request: RetrainRequest, cfg: JobConfig, exc: ForexDiffusionError, t0: float) -> JobOutcome:
    """The outcome of a request refused before anything is built from it (issue 13)."""
    logger.error("retrain refused request=%r error=%s", request.request_id[:64], exc)
    return JobOutcome(
        request_id=request.request_id[:64],
        key=request.key[:64],
        symbol=request.symbol[:32],
        timeframe=request.timeframe[:16],
        horizon=cfg.horizon if request.horizon is None else request.horizon,
        version=None,
        status="failed",
        reason=_failure_reason(exc),
        duration_s=time.monotonic() - t0,
        finished_at_ms=int(time.time() * 1000),
        error=str(exc) or type(exc).__name__,
    )


def _fetch_series(job: _Job, tc: TrainConfig, symbol: str) -> tuple[pd.DataFrame, int, dict[str, Any]]:
    """One series' most recent candles as a frame, the index where its hold-out starts, and
    what was read (``metrics.data``)."""
    cfg, key = job.cfg, job.key
    skipped: Counter[str] = Counter()  # stored rows the stream could not have written, by reason
    candles = fetch_candles(
        job.engine,
        symbol,
        key.timeframe,
        limit=cfg.train_candles + cfg.holdout_candles,
        checked=True,
        skipped=skipped,
    )
    if len(candles) < cfg.holdout_candles + max(cfg.train_candles // 4, 2 * tc.batch_size):
        what = str(key) if symbol == key.symbol else f"{key} (series {symbol})"
        raise ModelError(f"not enough candles for {what}: {len(candles)} in the database")
    frame = _frame(candles)
    hold = len(frame) - cfg.holdout_candles
    data = {
        "candles": len(frame),
        "train_first_open_ms": int(frame["ts_ms"].iloc[0]),
        "holdout_first_open_ms": int(frame["ts_ms"].iloc[hold]),
        "last_open_ms": int(frame["ts_ms"].iloc[-1]),
        "skipped": dict(sorted(skipped.items())),
    }
    return frame, hold, data


def _fetch_stage(job: _Job, tc: TrainConfig) -> tuple[pd.DataFrame, int]:
    """The key's most recent candles as a frame, and the index where the hold-out starts."""
    job.note("fetch", None)
    t = time.monotonic()
    frame, hold, job.metrics["data"] = _fetch_series(job, tc, job.key.symbol)
    job.metrics["data"]["fetched_ms"] = job.fetched_ms
    job.timings["fetch_s"] = time.monotonic() - t
    return frame, hold


@dataclass(frozen=True, slots=True)
class _Series:
    """One series' candles in a job: trained on ``frame[:train_end]``, scored on ``frame[hold:]``."""

    frame: pd.DataFrame
    train_end: int
    hold: int


def _fetch_set_stage(job: _Job, tc: TrainConfig) -> dict[str, _Series]:
    """A global key's candles: each symbol of its set as :func:`_fetch_stage` reads one
    (every one must have enough: the model serves them all), cut at one time.

    Every series trains on its candles before the **earliest** hold-out start of the set, so
    no series' hold-out span is seen in training through another (pairs move together). A
    series whose newest candle is older than another's hold-out start (its feed stopped) fails
    the job, naming it: its hold-out would lie inside the others' training span.
    """
    job.note("fetch", None)
    t = time.monotonic()
    fetched: dict[str, tuple[pd.DataFrame, int]] = {}
    data: dict[str, Any] = {}
    for symbol in job.series:
        frame, hold, data[symbol] = _fetch_series(job, tc, symbol)
        fetched[symbol] = frame, hold
    starts = {sym: int(f["ts_ms"].iloc[h]) for sym, (f, h) in fetched.items()}
    latest = max(starts, key=lambda sym: (starts[sym], sym))
    for sym, (f, _h) in fetched.items():
        if int(f["ts_ms"].iloc[-1]) < starts[latest]:
            raise ModelError(
                f"series {sym} of {job.key} ends at {_iso(int(f['ts_ms'].iloc[-1]))}, before the hold-out of "
                f"{latest} starts ({_iso(starts[latest])}): its candles are stale (is its feed running?)"
            )
    cut = min(starts.values())
    out: dict[str, _Series] = {}
    for sym, (f, h) in fetched.items():
        end = int(np.searchsorted(f["ts_ms"].to_numpy(dtype=np.int64), cut, side="left"))
        out[sym] = _Series(f, end, h)
        data[sym]["train_candles"] = end
    job.metrics["data"] = {
        "candles": sum(d["candles"] for d in data.values()),
        "train_before_ms": cut,
        "fetched_ms": job.fetched_ms,
        "series": data,
    }
    job.timings["fetch_s"] = time.monotonic() - t
    return out


def _train_stage(job: _Job, tc: TrainConfig, frames: Mapping[str, _Series]) -> Path:
    """Train the challenger on each series' training candles (before the hold-out) in a
    staging directory, and publish its checkpoint into the key's directory; return the
    published path."""
    job.staging = job.reg.staging_dir(job.key, f"{job.request.request_id}-{uuid.uuid4().hex[:6]}")

    def on_train(p: TrainProgress) -> None:
        failpoint("retrain.training")  # crash mid-training
        job.note("train", p)

    t = time.monotonic()
    before = {name: x.frame.iloc[: x.train_end].reset_index(drop=True) for name, x in frames.items()}
    candles = before if tc.series else before[job.key.symbol]
    result = train(tc, candles, job.staging, progress=on_train)
    job.timings["train_s"] = time.monotonic() - t
    job.metrics["train"] = summarise_train_metrics(result.metrics)
    final = job.reg.publish(result.checkpoint, job.key)
    shutil.rmtree(job.staging, ignore_errors=True)
    return final


#: Each series' hold-out scores of the challenger and of the champion (None: none scored).
_SeriesScores = tuple[dict[str, HoldoutScores], dict[str, HoldoutScores] | None]


def _evaluate_stage(
    job: _Job, final: Path, frames: Mapping[str, _Series]
) -> tuple[HoldoutScores, HoldoutScores | None, _SeriesScores]:
    """Challenger and serving champion forecast the same hold-out of each series: their
    scores (the champion's None when there is none, or it cannot be loaded), and each
    series' own (challenger's, champion's).

    A global key's scores are pooled over its series in units of each series' random walk
    (:func:`~retraining.policy.pool_scores`; price units differ between pairs), each
    series' own kept in ``metrics.challenger_series`` / ``champion_series``.
    """
    cfg, key, reg, metrics = job.cfg, job.key, job.reg, job.metrics
    job.note("evaluate", None)
    t = time.monotonic()

    def score(p: Predictor, symbol: str) -> HoldoutScores:
        frame, hold = frames[symbol].frame, frames[symbol].hold
        lo = max(0, hold - cfg.warmup_candles)
        return evaluate_holdout(
            p,
            frame.iloc[lo:].reset_index(drop=True),
            symbol=symbol,
            timeframe=key.timeframe,
            holdout_start=hold - lo,
            every=cfg.eval_every,
            samples=cfg.eval_samples,
            steps=cfg.eval_steps,
        )

    def scores(p: Predictor) -> tuple[HoldoutScores, dict[str, HoldoutScores]]:
        each = {symbol: score(p, symbol) for symbol in frames}
        return (pool_scores(each) if job.series else each[key.symbol]), each

    challenger, each = scores(Predictor.load(final))
    metrics["challenger"] = challenger.to_dict()
    if job.series:
        metrics["challenger_series"] = {k: v.to_dict() for k, v in each.items()}
    # a global key faces its own champion (what it would replace); a symbol's key the one serving it
    champ = reg.champion(key) if job.series else reg.resolve_champion(key.symbol, key.timeframe, key.horizon)
    champ_scores: HoldoutScores | None = None
    champ_each: dict[str, HoldoutScores] | None = None
    if champ is not None:
        metrics["champion_version"] = champ.version
        try:
            champ_scores, champ_each = scores(reg.load(champ))
            metrics["champion"] = champ_scores.to_dict()
            if job.series:
                metrics["champion_series"] = {k: v.to_dict() for k, v in champ_each.items()}
        except ForexDiffusionError as exc:
            metrics["champion_error"] = str(exc)
            logger.warning("retrain champion unusable %s champion=%s error=%s", job.log_ctx, champ.version, exc)
    job.timings["evaluate_s"] = time.monotonic() - t
    return challenger, champ_scores, (each, champ_each)


def _register_stage(
    job: _Job, final: Path, challenger: HoldoutScores, champ_scores: HoldoutScores | None, decision: PromotionDecision
) -> tuple[JobStatus, str]:
    """Register the challenger, then promote it, put it in shadow or reject it."""
    reg, cfg = job.reg, job.cfg
    metrics: dict[str, Any] = {
        "train": job.metrics["train"],
        "holdout": challenger.to_dict(),
        "champion_holdout": job.metrics.get("champion"),
        "fetched_ms": job.fetched_ms,
    }
    if job.series:  # a global model: its set (what serving reads), and each series' data and scores
        metrics |= {
            "symbols": list(job.series),
            "data_series": job.metrics["data"]["series"],
            "holdout_series": job.metrics["challenger_series"],
            "champion_holdout_series": job.metrics.get("champion_series"),
        }
    version = reg.register(final, key=job.key, request_id=job.request.request_id, metrics=metrics)
    job.version = version
    status: JobStatus
    if decision.promote and cfg.shadow_forecasts > 0 and champ_scores is not None:
        try:  # issue 16: a challenger that beat a champion offline first serves in shadow
            # a global key's shadow runs on the series that asked (shadow rows are one per origin)
            series = job.symbol if job.series else None
            job.version = reg.start_shadow(
                version.version, decision.reason, required=cfg.shadow_forecasts, series=series
            )
            return "shadow", decision.reason
        except RegistryError as exc:
            job.version = reg.reject(version.version, f"shadow refused: {exc}")
            return "rejected", f"shadow refused: {exc}"
    if decision.promote:
        try:
            job.version = reg.promote(version.version, decision.reason)
            status = "promoted"
            return status, decision.reason
        except RegistryError as exc:
            job.version = reg.reject(version.version, f"promotion refused: {exc}")
            return "rejected", f"promotion refused: {exc}"
    job.version = reg.reject(version.version, decision.reason)
    return "rejected", decision.reason


def _retention_stage(job: _Job) -> None:
    """Delete what the retention rule no longer keeps (a failure is logged: the decision
    stands, and retention runs again at the next job)."""
    try:
        retained = job.reg.apply_retention(
            job.key, keep_last=job.cfg.keep_last, audit_window_ms=job.cfg.audit_window_ms
        )
        job.metrics["retention_deleted"] = list(retained.deleted)
    except ForexDiffusionError as exc:
        logger.warning("retrain retention failed %s error=%s", job.log_ctx, exc)


#: The widest series embedding a retrain carries over from a champion's manifest.
EMBEDDING_MAX = 1024


def _scope_stage(job: _Job) -> None:
    """Scope ``serving``: when the registry champion serving the request's symbol is a global
    model's, the job retrains that global key over its symbol set (``job.key``, ``job.series``)
    with its champion's series embedding width (``job.embedding``). A symbol with its own
    champion, or served by ``*`` or by nothing, keeps its own key."""
    key = job.key
    if job.cfg.scope != "serving":
        return
    champ = job.reg.resolve_champion(key.symbol, key.timeframe, key.horizon)
    if champ is None or not champ.key.is_symbol_set:
        return
    symbols = tuple(sorted(job.reg.symbols_of(champ)))
    if key.symbol not in symbols:  # resolve_champion picked it for this symbol: a set read anew since
        raise RegistryError(f"global model {champ.version} of {champ.key} no longer names {key.symbol}")
    job.key, job.series = champ.key, symbols
    job.note("scope", str(champ.key))  # the runner's parent names a killed job by it
    job.embedding = _embedding_of(job.reg, champ) if len(symbols) > 1 else 0
    job.metrics["scope"] = {
        "key": str(champ.key),
        "champion": champ.version,
        "symbols": list(symbols),
        "series_embedding": job.embedding,
    }
    logger.info(
        "retrain scope request=%s symbol=%s key=%s symbols=%s",
        job.request.request_id,
        key.symbol,
        champ.key,
        ",".join(symbols),
    )


def _embedding_of(reg: ModelRegistry, champion: ModelVersion) -> int:
    """The series embedding width of a global champion's manifest (0 when it has none, or one
    that is no width: a manifest written by hand is logged, never trusted)."""
    try:
        width = read_manifest(reg.path_of(champion).with_suffix(".json")).get("series_embedding", 0)
    except (OSError, ForexDiffusionError) as exc:
        logger.warning("retrain.embedding_unread version=%s error=%s: trained without one", champion.version, exc)
        return 0
    if isinstance(width, bool) or not isinstance(width, int) or not 0 <= width <= EMBEDDING_MAX:
        logger.warning("retrain.embedding_refused version=%s value=%.40r: trained without one", champion.version, width)
        return 0
    return width


#: Versions whose decision may answer a later request of their set (:func:`_coalesced`): not
#: one left ``registered`` by a killed job (its request is redelivered and must be decided).
_ANSWERING: dict[str, JobStatus] = {
    "promoted": "promoted",
    "shadow": "shadow",
    "rejected": "rejected",
    "rolled_back": "rejected",
}


def _coalesced(job: _Job) -> JobOutcome | None:
    """A global key already retrained on the candle this request is about answers it: two
    series of one set drifting on one market move ask twice, and the set is trained once.

    A request's ``requested_at_ms`` is the close of the candle that drifted (a manual or
    scheduled request: its wall-clock time); a version answers when the candles it read of
    the request's symbol reached that close (``data_series[symbol].last_open_ms``, event
    time, never a clock: a stream behind, or a replay, compares like a live one). The newest
    decided such version names the outcome (its status: promoted, in shadow, else rejected),
    which trains nothing and leaves its shadow running. A stored time past this machine's
    clock is not believed. Run under the key's claim."""
    tf = Timeframe.parse(job.key.timeframe)
    horizon_ok = int(time.time() * 1000) + _CLOCK_SKEW_MS
    made = []
    for v in job.reg.list(job.key, include_deleted=False):
        series = v.metrics.get("data_series") if isinstance(v.metrics, Mapping) else None
        data = series.get(job.symbol) if isinstance(series, Mapping) else None
        last = data.get("last_open_ms") if isinstance(data, Mapping) else None
        if v.status not in _ANSWERING or isinstance(last, bool) or not isinstance(last, int):
            continue
        if 0 <= last <= horizon_ok and tf.end_of(last) >= job.request.requested_at_ms:
            made.append(v)
    if not made:
        return None
    v = max(made, key=lambda v: (v.created_ms, v.version))
    job.version = v
    return job.outcome(
        _ANSWERING[v.status],
        f"coalesced: version {v.version} of {job.key} was trained on {job.symbol}'s candles up to this "
        f"request's (request {v.request_id}); it is {v.status}",
    )


#: How far ahead of this machine's clock a stored time may be and still be believed.
_CLOCK_SKEW_MS = 60_000


def _train_and_decide(job: _Job, claim: Claim | None) -> JobOutcome:
    """The stages of a claimed job: recover → fetch → train → evaluate → decide → register → retention."""
    key = job.key
    job.reg.recover(key)  # under the claim: what it removes is no live job's
    if job.series and (answered := _coalesced(job)) is not None:
        return answered
    tc = job.cfg.train_config(key.symbol, key.timeframe, key.horizon, job.series, job.embedding)
    job.fetched_ms = int(time.time() * 1000)  # when the candles were read (shown; never compared)
    if job.series:
        frames = _fetch_set_stage(job, tc)
    else:
        frame, hold = _fetch_stage(job, tc)
        frames = {key.symbol: _Series(frame, hold, hold)}
    final = _train_stage(job, tc, frames)
    challenger, champ_scores, (each, champ_each) = _evaluate_stage(job, final, frames)
    if job.series:  # pooled, and no series much worse (issue 16)
        decision = decide_global(each, champ_each, job.cfg.policy)
    else:
        decision = decide_promotion(challenger, champ_scores, job.cfg.policy)
    job.note("decide", decision)
    failpoint("retrain.register")  # crash after publishing, before registering
    if claim is not None:
        claim.check()  # fencing: a job whose claim expired under it registers nothing
    status, reason = _register_stage(job, final, challenger, champ_scores, decision)
    _retention_stage(job)
    return job.outcome(status, reason)


def run_retrain(
    request: RetrainRequest,
    *,
    engine: Engine,
    model_dir: str | Path,
    config: JobConfig | None = None,
    registry: ModelRegistry | None = None,
    progress: Callable[[str, Any], None] | None = None,
    claims: JobClaims | None | Literal["database"] = "database",
) -> JobOutcome:
    """Run one retrain job to its end and return its outcome (never raises the project's errors).

    Parameters
    ----------
    request
        What to retrain.
    engine
        Database with the candles and the registry.
    model_dir
        Artifact root.
    config
        Job settings (defaults: :class:`JobConfig`).
    registry
        A registry to use (default: one on ``engine`` and ``model_dir``).
    progress
        Called with ``(stage, detail)``: ``scope`` (a global key the job retrains, as text),
        ``fetch``, ``train`` (a :class:`~forex_diffusion.diffusion.TrainProgress`),
        ``evaluate``, ``decide``.
    claims
        Where the job claims its model key first (issue 15: one trainer per key across
        retrain workers, :mod:`retraining.claims`): ``"database"`` (default) a
        :class:`~retraining.claims.JobClaims` on ``engine``; None claims nothing.

    Returns
    -------
    JobOutcome
        ``promoted`` or ``rejected`` with the version and the decision's reason, or
        ``failed`` with the error (a :class:`~forex_diffusion.errors.ForexDiffusionError`);
        ``failed`` with reason ``claimed: ClaimHeld`` when another job holds the key.
    """
    cfg = config or JobConfig()
    t0 = time.monotonic()
    try:  # issue 13: nothing is built from a request before its parts are validated
        check_request_id(request.request_id)
        key = key_of(request, cfg.horizon)
    except ForexDiffusionError as exc:
        return _refused(request, cfg, exc, t0)
    job = _Job(request, key, cfg, engine, registry or ModelRegistry(engine, model_dir), t0, progress, symbol=key.symbol)
    try:
        if key.symbol == "*":
            raise ConfigError(
                "a job trains on one symbol's candles; '*' models are registered with `forexd models register`"
            )
        _scope_stage(job)  # before the claim: a global key is claimed as the key it is
        if claims is None:
            return _train_and_decide(job, None)
        book = JobClaims(engine) if claims == "database" else claims
        with book.hold(str(job.key), request.request_id) as claim:
            return _train_and_decide(job, claim)
    except ForexDiffusionError as exc:
        logger.error("retrain failed %s error_type=%s error=%s", job.log_ctx, type(exc).__name__, exc)
        return job.outcome("failed", _failure_reason(exc), str(exc) or type(exc).__name__)
    finally:
        if job.staging is not None:  # exactly the directory this job made (never a glob: issue 13)
            shutil.rmtree(job.staging, ignore_errors=True)


def _failure_reason(exc: ForexDiffusionError) -> str:
    """A failed job's published reason: a short code and the exception type, never its text
    (which may hold paths, SQL or a child's output; the log has it)."""
    if isinstance(exc, ValidationError):
        code = exc.reason.value
    elif isinstance(exc, (ClaimHeld, ClaimLost)):
        code = "claimed"
    elif isinstance(exc, StorageError):
        code = "storage"
    elif isinstance(exc, ModelError):
        code = "model"
    elif isinstance(exc, RegistryError):
        code = "registry"
    elif isinstance(exc, ConfigError):
        code = "config"
    else:
        code = "error"
    return f"{code}: {type(exc).__name__}"
