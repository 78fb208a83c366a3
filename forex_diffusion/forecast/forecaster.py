"""The per-symbol state machine of the forecast path, driven by plain method calls.

For each closed candle of a symbol (any configured timeframe), :meth:`SymbolForecaster.on_candle`

1. updates the multi-timeframe feature builders (no look-ahead: a higher timeframe is
   seen through its last *closed* candle);
2. on a forecast timeframe: updates the diffusion context, steps the online learners
   (delayed labels, prequential), scores the earlier diffusion forecasts whose steps this
   candle realises (CRPS vs the EWMA random walk, interval hits, PIT), feeds the drift
   monitor, asks the trigger policy whether to request a retrain, and returns the
   :class:`ForecastRequest` that the agent batches into one sampling call.

:meth:`SymbolForecaster.record` turns a sampled :class:`Forecast` into the ``fx.forecasts``
record (with the learner's prediction and the random-walk baseline) and remembers it for
scoring. The state snapshots as plain data (binary parts base64, hash-verified), so a
worker that takes over the partition resumes exactly.
"""

from __future__ import annotations

import base64
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from forex_diffusion.diffusion.context import ContextSpec, ForecastRequest, SeriesContext
from forex_diffusion.diffusion.inputs import CrossBook, InputsBuilder, InputSpec
from forex_diffusion.domain import Candle
from forex_diffusion.drift.base import DriftEvent
from forex_diffusion.drift.monitor import DriftConfig, DriftMonitor
from forex_diffusion.errors import ConfigError, StateError
from forex_diffusion.forecast.features import FeatureBuilder, FeatureConfig
from forex_diffusion.forecast.result import Forecast
from forex_diffusion.online.learners import LearnerConfig, LearnerStep, OnlineLearnerSet
from forex_diffusion.quality.evaluation import QUANTILE_LEVELS, StepScore, ewma_random_walk_quantiles, score_step
from forex_diffusion.quality.monitoring import QualityMonitor
from forex_diffusion.quality.trigger import Decision, RetrainRequest, TriggerPolicy, TriggerState, close_request, decide
from forex_diffusion.state import count, malformed, number, price, rows, time_ms, unwrap, wrap
from forex_diffusion.timeframes import Timeframe
from forex_diffusion.wire import encode_paths

if TYPE_CHECKING:
    from forex_diffusion.ingest.candle_spikes import CandleSpikeGuard

__all__ = [
    "CandleOutcome",
    "Evaluation",
    "ForecasterConfig",
    "PendingForecast",
    "RandomWalkPredictor",
    "SymbolForecaster",
    "forecast_record",
    "paths_record",
]

_INT32_MAX = 2**31 - 1  # a candle's tick count on the wire and in the store


class PredictorLike(Protocol):
    """What the agent needs of a model: a batched ``forecast`` and its identity."""

    version: str
    horizon: int

    def forecast(
        self, requests: Sequence[ForecastRequest], *, steps: int | None = None, samples: int | None = None
    ) -> list[Forecast]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ForecasterConfig:
    """Settings of a :class:`SymbolForecaster` (shared by every symbol of a worker)."""

    timeframes: tuple[str, ...] = ("1m", "5m", "15m", "1h")
    forecast_timeframes: tuple[str, ...] = ("1m",)
    horizon: int = 24
    context: ContextSpec = field(default_factory=ContextSpec)
    feature_spec: str | None = None
    learner_horizons: tuple[int, ...] | None = None
    drift: DriftConfig = field(default_factory=DriftConfig)
    trigger: TriggerPolicy = field(default_factory=TriggerPolicy)
    pending_forecasts: int = 0  # 0: horizon + 1 (enough to score every step)
    history: int = 512
    # issue 16: (timeframe, horizon) of forecast timeframes whose model horizon is not
    # ``horizon``; with ``keyed_horizons`` retrain requests name each series' horizon
    models: tuple[tuple[str, int], ...] = ()
    keyed_horizons: bool = False

    def __post_init__(self) -> None:
        tfs = {Timeframe.parse(t).name for t in self.timeframes}
        if not {Timeframe.parse(t).name for t in self.forecast_timeframes} <= tfs:
            raise ConfigError("forecast_timeframes must be among timeframes")
        if self.horizon < 1 or any(h < 1 for _, h in self.models):
            raise ConfigError("horizon must be >= 1")

    @property
    def horizons(self) -> tuple[int, ...]:
        """Learner horizons: one step and the full horizon by default."""
        return self.learner_horizons or tuple(sorted({1, self.horizon}))

    def horizon_of(self, timeframe: str) -> int:
        """The model horizon of forecast timeframe ``timeframe``."""
        name = Timeframe.parse(timeframe).name
        return next((h for tf, h in self.models if Timeframe.parse(tf).name == name), self.horizon)

    def learner_horizons_of(self, timeframe: str) -> tuple[int, ...]:
        """Learner horizons of ``timeframe``'s series: one step and its model's horizon."""
        return self.learner_horizons or tuple(sorted({1, self.horizon_of(timeframe)}))


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One realised step of an earlier forecast: inputs of the live quality metrics."""

    symbol: str
    timeframe: str
    as_of_ms: int
    step: int
    model_version: str
    realized: float
    quantiles: np.ndarray
    rw_quantiles: np.ndarray
    crps: float
    crps_rw: float
    score: StepScore  # the step's scores, computed once (crps and crps_rw repeat two of them)


@dataclass(frozen=True, slots=True)
class PendingForecast:
    """A published diffusion forecast awaiting its realised steps (scored one per candle).

    ``quantiles`` and ``rw`` are ``[H, Q]`` (the model's and the random walk's); ``seen`` is
    the number of candles realised since ``as_of_ms``.
    """

    as_of_ms: int
    model_version: str
    quantiles: np.ndarray
    rw: np.ndarray
    seen: int = 0

    @property
    def steps(self) -> int:
        """The forecast's horizon (the steps it states)."""
        return int(self.quantiles.shape[0])

    def to_list(self) -> list[Any]:
        """Plain data: ``[as_of_ms, model_version, quantiles, rw, seen]`` (the layout the
        checkpoints always had)."""
        return [self.as_of_ms, self.model_version, self.quantiles.tolist(), self.rw.tolist(), self.seen]

    @classmethod
    def from_list(cls, p: Sequence[Any]) -> PendingForecast:
        """Inverse of :meth:`to_list`; a malformed entry is a ``StateError``."""
        if not isinstance(p, (list, tuple)) or len(p) != 5:
            raise StateError(f"a pending forecast is a list of 5 fields, got {str(p)[:60]!r}")
        # numbers by type (forex_diffusion.state): a numeric string, True, nan or 1e308 is
        # refused (1e308: the scores of the next candles overflow, their snapshot is no JSON)
        as_of = time_ms(p[0], field="pending as_of_ms")
        seen = count(p[4], field="pending seen")
        q = np.array(rows(p[2], field="pending quantiles"), dtype=np.float64)
        rw = np.array(rows(p[3], field="pending random walk quantiles"), dtype=np.float64)
        if q.ndim != 2 or rw.shape != q.shape:
            raise StateError(f"pending forecast quantiles {q.shape} and random walk {rw.shape} differ")
        if not isinstance(p[1], str):
            raise StateError("a pending forecast's model version is not a string")
        return cls(as_of, p[1], q, rw, seen)


@dataclass(slots=True)
class CandleOutcome:
    """What one candle produced."""

    candle: Candle
    duplicate: bool = False
    request: ForecastRequest | None = None
    learner: LearnerStep | None = None
    drift: list[DriftEvent] = field(default_factory=list)
    retrain: RetrainRequest | None = None
    decision: Decision | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    features: np.ndarray | None = None
    due: bool = False
    indicators: dict[str, float | None] | None = None
    inputs: dict[str, np.ndarray | None] = field(default_factory=dict)  # own part of each model's inputs
    context_requests: dict[str, ForecastRequest | None] = field(default_factory=dict)  # per serving context spec
    sigma: float = float("nan")


@dataclass(slots=True)
class _Open:
    """A candle processed while a forecast of an earlier origin of its series may still be
    recorded (:meth:`SymbolForecaster.record`): its outcome, and the trigger state before it."""

    outcome: CandleOutcome
    trigger: TriggerState


class RandomWalkPredictor:
    """The EWMA Gaussian random walk as a predictor (served while no model is registered).

    Deterministic: quantiles in closed form, the mean ``last_close·exp(σ²h/2)``,
    ``p_up = 1/2``.
    """

    version = "rw-ewma"

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon

    def forecast(
        self, requests: Sequence[ForecastRequest], *, steps: int | None = None, samples: int | None = None
    ) -> list[Forecast]:
        h = np.sqrt(np.arange(1, self.horizon + 1, dtype=np.float64))
        out = []
        for r in requests:
            s = r.sigma * h
            q = rw_quantiles(r.last_close, r.sigma, self.horizon)
            out.append(
                Forecast(
                    symbol=r.symbol,
                    timeframe=r.timeframe,
                    as_of_ms=r.as_of_ms,
                    horizon=self.horizon,
                    model_version=self.version,
                    last_close=r.last_close,
                    levels=tuple(QUANTILE_LEVELS),
                    quantiles=q,
                    mean=r.last_close * np.exp(s**2 / 2),
                    p_up=np.full(self.horizon, 0.5),
                    steps=0,
                    samples=0,
                    latency_s=0.0,
                )
            )
        return out


def rw_quantiles(last_close: float, sigma: float, horizon: int) -> np.ndarray:
    """``[horizon, Q]`` quantiles of the EWMA random walk from ``last_close``."""
    return ewma_random_walk_quantiles(last_close, sigma, horizon)


def paths_record(fc: Forecast, sigma: float, n: int) -> bytes | None:
    """The ``fx.forecasts.paths`` value (:func:`~forex_diffusion.wire.encode_paths`) of ``fc``'s first ``n`` sample paths (None: ``n`` 0 or none sampled)."""
    if n <= 0 or fc.paths is None or not fc.samples:
        return None
    w = fc.rw_weight.tolist() if fc.rw_weight is not None else [None] * fc.horizon
    header = {
        "symbol": fc.symbol,
        "timeframe": fc.timeframe,
        "as_of": fc.as_of_ms,
        "horizon": fc.horizon,
        "model_version": fc.model_version,
        "last_close": fc.last_close,
        "sigma": sigma,
        "rw_weight": w,
        "samples": fc.samples,
    }
    return encode_paths(header, fc.paths[: min(n, fc.samples)])


def forecast_record(
    f: Forecast, *, learner: LearnerStep | None, rw: np.ndarray, degraded: bool = False
) -> dict[str, Any]:
    """The ``fx.forecasts`` value (JSON-able) of a forecast."""
    rec = f.to_dict()
    rec["v"] = 1
    rec["as_of_ms"] = f.as_of_ms
    rec["rw_quantiles"] = rw.tolist()
    rec["degraded"] = degraded
    rec["learner"] = [p.to_dict() for p in learner.predictions] if learner is not None else []
    return rec


class _Series:
    """State of one forecast timeframe of a symbol."""

    def __init__(self, symbol: str, tf: str, cfg: ForecasterConfig) -> None:
        self.features = FeatureBuilder(
            FeatureConfig(
                forecast_timeframe=tf,
                timeframes=tuple(
                    t for t in cfg.timeframes if Timeframe.parse(t).duration_ms >= Timeframe.parse(tf).duration_ms
                ),
                spec=cfg.feature_spec,
            ),
            symbol=symbol,
        )
        self.symbol, self.tf = symbol, tf
        self.horizon = cfg.horizon_of(tf)
        self.policy = replace(cfg.trigger, model_horizon=self.horizon) if cfg.keyed_horizons else cfg.trigger
        self.context = SeriesContext(symbol=symbol, timeframe=tf, spec=cfg.context)
        # contexts of the serving models' specs (built from the history when a model appears)
        self.contexts: dict[str, SeriesContext] = {}
        # builders of the serving models' named inputs (built from the history when a model appears)
        self.inputs: dict[str, InputsBuilder] = {}
        self.history: deque[Candle] = deque(maxlen=cfg.history)
        self.learners = OnlineLearnerSet(symbol, tf, LearnerConfig(horizons=cfg.learner_horizons_of(tf)))
        self.drift = DriftMonitor(symbol, tf, cfg.drift)
        self.trigger = TriggerState()
        # published diffusion forecasts awaiting their realised steps
        self.pending: deque[PendingForecast] = deque(maxlen=cfg.pending_forecasts or self.horizon + 1)
        # not state (a batch's, settled within it): the origins of due candles whose forecast
        # may still be recorded, and the candles processed since the first of them
        self.awaiting: deque[int] = deque(maxlen=cfg.history)
        self.open: deque[_Open] = deque(maxlen=cfg.history)


def _ctx(symbol: str, timeframe: str, part: str) -> bytes:
    """What a signed state part belongs to: ``EURUSD/1m/learners``."""
    return f"{symbol}/{timeframe}/{part}".encode()


class SymbolForecaster:
    """Everything the forecast path keeps for one symbol.

    Its live forecast quality (:attr:`quality`, a :class:`QualityMonitor` of its series) is
    part of its state: snapshotted and restored with it, so a rebalance or a restart keeps it.
    """

    state_kind = "symbol_forecaster"
    state_version = 1

    def __init__(self, symbol: str, config: ForecasterConfig, *, book: CrossBook | None = None) -> None:
        self.symbol = symbol
        self.config = config
        # the worker's recent closes of every pair it serves (models with a ``cross`` input)
        self.book = book
        self.inputs_skipped = 0  # due candles not forecast: the model's inputs not ready (warm-up, other pair behind)
        self.series = {
            Timeframe.parse(tf).name: _Series(symbol, Timeframe.parse(tf).name, config)
            for tf in config.forecast_timeframes
        }
        self.last_open: dict[str, int] = {}
        # forecast timeframes whose series has no state yet: neither restored from a
        # snapshot nor warmed (:meth:`warm`); the agent warms them from stored candles
        self.cold: set[str] = set(self.series)
        # rolling CRPS, skill and coverage of this symbol's scored forecast steps (its state)
        self.quality = QualityMonitor()

    def on_candle(self, candle: Candle) -> CandleOutcome:
        """Process one closed candle of this symbol (any configured timeframe)."""
        out = CandleOutcome(candle)
        if not candle.final or candle.symbol != self.symbol:
            out.duplicate = True
            return out
        last = self.last_open.get(candle.timeframe)
        if last is not None and candle.open_ms <= last:
            out.duplicate = True  # redelivery or replay: state already holds it
            return out
        self.last_open[candle.timeframe] = candle.open_ms
        if self.book is not None:
            self.book.update(candle)
        for each in self.series.values():
            each.features.on_candle(candle)
        for each in self.series.values():
            if candle.timeframe in each.features.config.timeframes:
                out.indicators = {
                    k: (v if v is not None and math.isfinite(v) else None)
                    for k, v in each.features.indicator_values(candle.timeframe).items()
                }
                break
        s = self.series.get(candle.timeframe)
        if s is None:
            return out
        s.context.update(candle)
        s.history.append(candle)
        for ctx in s.contexts.values():
            ctx.update(candle)
        for key, builder in s.inputs.items():
            builder.update(candle)
            out.inputs[key] = builder.own(candle.close_ms)
        fv = s.features.features(candle.timeframe, candle.close_ms)
        feats = fv.as_dict() if fv is not None else {}
        sigma = s.context.sigma
        out.sigma = sigma
        out.learner = s.learners.step(candle, feats, sigma if sigma and math.isfinite(sigma) else float("nan"))
        events = s.drift.update_learner(out.learner)
        if feats:
            events += s.drift.update_features(feats, candle.close_ms)
        out.evaluations = self._score(s, candle)
        for ev in out.evaluations:
            self.quality.add(ev.symbol, ev.timeframe, ev.step, ev.score, at=(candle.close_ms, ev.as_of_ms))
            if ev.step in (1, s.horizon):
                events += s.drift.update_score(ev.step, candle.close_ms, ev.score)
        out.drift = events
        if s.awaiting:  # a forecast recorded later may score steps on this candle (record)
            s.open.append(_Open(out, s.trigger))
        decision, s.trigger = decide(events, s.trigger, s.policy, candle.close_ms)
        out.decision = decision
        out.retrain = decision.request
        out.features = fv.values if fv is not None else None
        out.request = s.context.request(candle.close_ms, extra=out.features)
        out.due = out.request is not None
        if out.due:
            s.awaiting.append(candle.close_ms)
        # the serving models' own-spec requests, taken now: later candles of the same batch move the contexts on
        out.context_requests = {k: c.request(candle.close_ms, extra=out.features) for k, c in s.contexts.items()}
        return out

    def on_final(self, candle: Candle, spikes: CandleSpikeGuard, *, ref: Any = None) -> list[CandleOutcome]:
        """The outcomes of one final candle from a candle feed, through its series' price-jump
        guard (B9, :class:`~forex_diffusion.ingest.candle_spikes.CandleSpikeGuard`): none while
        it is held; the held candles' then its own, in order, when it confirms their level. A
        candle not after the series' last one, or after one it holds, is a duplicate
        (``ref``: the caller's, returned with the candle if it is quarantined later).
        """
        last = self.last_open.get(candle.timeframe)
        if spikes.behind(candle):
            return [CandleOutcome(candle, duplicate=True)]
        if candle.symbol != self.symbol or not candle.final or (last is not None and candle.open_ms <= last):
            return [self.on_candle(candle)]  # a duplicate: nothing to guard
        return [self.on_candle(c) for c in spikes.admit(candle, ref)]

    def warm(self, candles: Iterable[Candle]) -> int:
        """Rebuild the :attr:`cold` series (no checkpointed state) from stored ``candles``.

        ``candles`` are this symbol's closed candles of every configured timeframe that come
        before the first new one, in stream order (close time, then the shorter timeframe
        first, as the aggregator emits them). Each cold series ends in the state it would
        have had seeing them live -- context, history, features, learners, drift monitor --
        so the next candle is forecast at once. Nothing is published for them: no forecast
        is pending for scoring, and the trigger state starts empty (no request is open).
        A forecaster with no state at all also takes their last open times. Returns the
        number of candles replayed.
        """
        if not self.cold:
            return 0
        tfs = tuple(tf for tf in self.series if tf in self.cold)
        fresh = SymbolForecaster(self.symbol, replace(self.config, forecast_timeframes=tfs), book=self.book)
        n = 0
        for c in candles:
            n += not fresh.on_candle(c).duplicate
        for tf in tfs:
            s = fresh.series[tf]
            s.trigger = TriggerState()
            s.pending.clear()
            s.awaiting.clear()
            s.open.clear()
            self.series[tf] = s
        if len(tfs) == len(self.series) and not self.last_open:
            self.last_open = dict(fresh.last_open)
        self.cold = set()
        return n

    def request(
        self, outcome: CandleOutcome, spec: ContextSpec | None, inputs: InputSpec | None = None
    ) -> ForecastRequest | None:
        """The forecast request of ``outcome``'s candle for a model with context ``spec`` and ``inputs``.

        A model with named inputs gets them from an :class:`InputsBuilder` of this series
        (the builder ``forexd train``/``backtest`` run); None while they are not ready, or
        while a ``cross`` pair's stream has not reached the candle's close (see
        ``docs/diffusion.md``).
        """
        req = self._request(outcome, spec)
        if req is None or not inputs:
            return req
        extra = self._inputs(outcome, inputs)
        if extra is None:
            self.inputs_skipped += 1
            return None
        return replace(req, extra=extra)

    def _inputs(self, outcome: CandleOutcome, inputs: InputSpec) -> np.ndarray | None:
        s = self.series[outcome.candle.timeframe]
        as_of = outcome.candle.close_ms
        key = ",".join(inputs.names)
        builder = s.inputs.get(key)
        if builder is None:
            builder = s.inputs[key] = InputsBuilder(inputs, self.symbol)
        if builder.last_close_ms is None or builder.last_close_ms < as_of:
            for c in s.history:  # a new builder catches up from the history (bounded)
                if c.close_ms <= as_of:
                    builder.update(c)
        own = builder.own(as_of) if builder.last_close_ms == as_of else outcome.inputs.get(key)
        if own is None:
            return None
        return builder.vector(as_of, self.book, own=own)

    def _request(self, outcome: CandleOutcome, spec: ContextSpec | None) -> ForecastRequest | None:
        if not outcome.due:
            return None
        s = self.series[outcome.candle.timeframe]
        if spec is None or spec == s.context.spec:
            return outcome.request
        key = repr(spec.to_dict())
        if key in outcome.context_requests:
            return outcome.context_requests[key]
        as_of = outcome.candle.close_ms
        ctx = s.contexts.get(key)
        if ctx is None:
            ctx = SeriesContext(symbol=self.symbol, timeframe=s.tf, spec=spec)
            for c in s.history:
                ctx.update(c)
            s.contexts[key] = ctx
        if ctx.last_close_ms != as_of:  # created after this candle, within its batch: rebuild up to it
            ctx = SeriesContext(symbol=self.symbol, timeframe=s.tf, spec=spec)
            for c in s.history:
                if c.close_ms <= as_of:
                    ctx.update(c)
            if ctx.last_close_ms != as_of:
                return None
        return ctx.request(as_of, extra=outcome.features)

    def _score(self, s: _Series, candle: Candle) -> list[Evaluation]:
        s.pending = deque((replace(p, seen=p.seen + 1) for p in s.pending), maxlen=s.pending.maxlen)
        evals = [self._evaluation(p, candle) for p in s.pending if p.seen <= p.steps]
        while s.pending and s.pending[0].seen >= s.pending[0].steps:
            s.pending.popleft()
        return evals

    def _evaluation(self, p: PendingForecast, candle: Candle) -> Evaluation:
        """Step ``p.seen`` of ``p``, realised by ``candle``, scored."""
        q, rw = p.quantiles[p.seen - 1], p.rw[p.seen - 1]
        sc = score_step(q, rw, candle.close)
        return Evaluation(
            self.symbol,
            candle.timeframe,
            p.as_of_ms,
            p.seen,
            p.model_version,
            candle.close,
            q,
            rw,
            sc.crps,
            sc.crps_rw,
            sc,
        )

    def _catch_up(self, s: _Series, p: PendingForecast) -> PendingForecast | None:
        """Score the steps of ``p`` that candles of its series processed already realised.

        The agent records a batch's forecasts after all of the batch's candles (one sampling
        call per model), so step ``k`` of a forecast made on the ``i``-th candle of a batch is
        realised by its ``(i + k)``-th candle, processed already. Each such step is scored as
        candle-by-candle scoring scores it, into that candle's outcome (``evaluations``,
        ``drift``) and the quality and drift monitors; when it brings drift events, the
        trigger decisions from that candle on are taken again (``decision``, ``retrain``), so
        the agent publishes a batch's drift events and retrain requests after its forecasts.
        Returns the forecast with its realised steps counted, or None when none is left (or
        its origin is older than the candles kept, so its later steps cannot be placed).
        """
        after = 0
        for c in reversed(s.history):
            if c.close_ms <= p.as_of_ms:
                break
            after += 1
        if after == 0:
            return p
        later = list(s.open)[max(0, len(s.open) - after) :]
        if len(later) < after or later[0].outcome.candle.close_ms != s.history[-after].close_ms:
            return None
        first: int | None = None
        for i, o in enumerate(later[: p.steps]):
            c = o.outcome.candle
            p = replace(p, seen=p.seen + 1)
            ev = self._evaluation(p, c)
            o.outcome.evaluations.append(ev)
            self.quality.add(ev.symbol, ev.timeframe, ev.step, ev.score, at=(c.close_ms, ev.as_of_ms))
            if ev.step in (1, s.horizon) and (events := s.drift.update_score(ev.step, c.close_ms, ev.score)):
                o.outcome.drift += events
                first = i if first is None else first
        if first is not None:  # the decisions from the first candle with new events on, again
            trigger = later[first].trigger
            for o in later[first:]:
                o.trigger = trigger
                o.outcome.decision, trigger = decide(o.outcome.drift, trigger, s.policy, o.outcome.candle.close_ms)
                o.outcome.retrain = o.outcome.decision.request
            s.trigger = trigger
        return p if p.seen < p.steps else None

    def settle(self) -> None:
        """The forecasts of the candles processed so far are all recorded (or never will be):
        forget what :meth:`record` keeps to score the steps of a late one. The agent calls it
        after each batch; without it a series keeps at most ``history`` candles for that."""
        for s in self.series.values():
            s.awaiting.clear()
            s.open.clear()

    def record(self, forecast: Forecast, outcome: CandleOutcome, *, degraded: bool = False) -> dict[str, Any]:
        """Remember ``forecast`` (made on ``outcome``'s candle) for scoring; return its ``fx.forecasts`` record.

        The random-walk baseline uses the EWMA volatility at the forecast's ``as_of``. Step
        ``k`` is scored against the ``k``-th candle of the series after ``as_of``: the steps
        whose candles this forecaster has processed already (later candles of the agent's
        batch) are scored now, into those candles' outcomes (see :meth:`_catch_up`).
        Forecasts of one series are recorded in the order of their origins.
        """
        s = self.series[forecast.timeframe]
        learner = outcome.learner
        rw = rw_quantiles(forecast.last_close, outcome.sigma, forecast.horizon)
        p = PendingForecast(forecast.as_of_ms, forecast.model_version, np.asarray(forecast.quantiles), rw)
        while s.awaiting and s.awaiting[0] <= p.as_of_ms:
            s.awaiting.popleft()  # this one, and earlier ones never recorded
        if (left := self._catch_up(s, p)) is not None:
            s.pending.append(left)
        while s.open and (not s.awaiting or s.open[0].outcome.candle.close_ms <= s.awaiting[0]):
            s.open.popleft()  # no forecast still to come scores a step on it
        return forecast_record(forecast, learner=learner, rw=rw, degraded=degraded)

    def close_request(self, timeframe: str, request_id: str) -> None:
        """The retrain request ``request_id`` is finished: allow new ones (after cooldown)."""
        s = self.series.get(timeframe)
        if s is not None:
            s.trigger = close_request(s.trigger, request_id)
            for o in s.open:  # a decision taken again (record) starts from a state that knows it
                o.trigger = close_request(o.trigger, request_id)

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain-data (JSON-able) state."""
        ser = {}
        for tf, s in self.series.items():
            ser[tf] = {
                "horizon": s.horizon,
                "features": s.features.snapshot(),
                "context": s.context.snapshot(),
                "learners": base64.b64encode(s.learners.snapshot(context=_ctx(self.symbol, tf, "learners"))).decode(
                    "ascii"
                ),
                "drift": base64.b64encode(s.drift.snapshot(context=_ctx(self.symbol, tf, "drift"))).decode("ascii"),
                "trigger": s.trigger.to_dict(),
                "pending": [p.to_list() for p in s.pending],
                "history": [c.to_dict() for c in s.history],
                "contexts": {k: c.snapshot() for k, c in s.contexts.items()},
                "inputs": {k: b.snapshot() for k, b in s.inputs.items()},
            }
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "last_open": dict(self.last_open),
            "series": ser,
            "quality": self.quality.snapshot(),
        }
        if self.book is not None and not self.book.is_empty(self.symbol):
            out["cross_book"] = self.book.snapshot(self.symbol)  # this pair's recent closes
        return wrap(self, out)

    @classmethod
    def restore(
        cls, data: dict[str, Any], config: ForecasterConfig, *, symbol: str | None = None, book: CrossBook | None = None
    ) -> SymbolForecaster:
        """Inverse of :meth:`snapshot` (binary parts are signed for their series).

        ``symbol``: the series the caller restores (the checkpoint's key). A snapshot of
        another symbol is refused (``StateError``), and its signed parts name their series:
        one copied into another place fails its signature (``ArtifactError``). The layout
        before the envelope (``{"version": 1, ...}``, no quality monitor) is read too: its
        quality monitor starts empty.
        """
        data = unwrap(data, cls, legacy=_legacy)
        with malformed(cls):
            return cls._load(data, config, symbol=symbol, book=book)

    @classmethod
    def _load(
        cls, data: dict[str, Any], config: ForecasterConfig, *, symbol: str | None, book: CrossBook | None
    ) -> SymbolForecaster:
        if symbol is not None and data.get("symbol") != symbol:
            raise StateError(f"the state stored for {symbol} is {str(data.get('symbol'))[:16]!r}'s")
        f = cls(data["symbol"], config, book=book)
        if book is not None and "cross_book" in data:
            book.restore(f.symbol, data["cross_book"])
        f.last_open = {k: time_ms(v, field="last_open") for k, v in data["last_open"].items()}
        if data.get("quality") is not None:
            f.quality = QualityMonitor.restore(data["quality"])
        for tf, d in data["series"].items():
            if tf not in f.series:
                continue  # a timeframe this config does not forecast
            if count(d.get("horizon", f.series[tf].horizon), low=1, field="horizon") != f.series[tf].horizon:
                continue  # a series of another model horizon (issue 16) starts afresh (cold)
            f.cold.discard(tf)
            s = f.series[tf]
            # the signed parts first: a state relabelled for another series fails its signature
            s.learners = OnlineLearnerSet.restore(
                base64.b64decode(d["learners"]), context=_ctx(f.symbol, tf, "learners")
            )
            s.drift = DriftMonitor.restore(base64.b64decode(d["drift"]), context=_ctx(f.symbol, tf, "drift"))
            s.features = FeatureBuilder.restore(d["features"], symbol=f.symbol)
            s.context = SeriesContext.restore(d["context"], symbol=f.symbol, timeframe=tf)
            s.trigger = TriggerState.from_dict(d["trigger"])
            s.history.extend(_history_candle(c, f.symbol, tf) for c in d.get("history", []))
            s.contexts = {
                k: SeriesContext.restore(c, symbol=f.symbol, timeframe=tf) for k, c in d.get("contexts", {}).items()
            }
            s.inputs = {
                k: InputsBuilder.restore(b, symbol=f.symbol, timeframe=tf) for k, b in d.get("inputs", {}).items()
            }
            s.pending.extend(PendingForecast.from_list(p) for p in d["pending"])
        return f


def _history_candle(d: dict[str, Any], symbol: str, tf: str) -> Candle:
    """A candle of a series' history read from a state (or StateError): of that series, with
    integer times and counts and finite prices > 0 (the contexts built from the history divide
    by them, and the next snapshot writes them back)."""
    c = Candle.from_dict(d)
    # numbers by type and range (forex_diffusion.state): times in the wire's range, counts
    # integers (a 32-bit tick count, as the wire and the store bound it), prices > 0
    for name in ("open_ms", "close_ms"):
        time_ms(getattr(c, name), field=f"history {name}")
    count(c.tick_count, high=_INT32_MAX, field="history tick_count")
    count(c.revision, field="history revision")
    for name in ("open", "high", "low", "close"):
        price(getattr(c, name), field=f"history {name}")
    for name in ("volume", "spread_mean", "spread_min", "spread_max"):
        if getattr(c, name) is not None:
            number(getattr(c, name), field=f"history {name}")
    if c.symbol != symbol or c.timeframe != tf or type(c.final) is not bool:
        raise StateError(f"a {symbol}/{tf} history candle that no stream made")
    return c


def _legacy(old: dict[str, Any]) -> dict[str, Any]:
    """The layout before the envelope: the same fields beside ``"version": 1``."""
    if old.get("version") != 1:
        raise StateError(f"unsupported forecaster snapshot version {str(old.get('version'))[:20]}")
    return {k: v for k, v in old.items() if k != "version"}
