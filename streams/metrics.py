"""Prometheus metrics of a worker, and the ``/metrics`` endpoint that serves them.

Every family is defined on the :class:`Metrics` instance's own ``CollectorRegistry``, so
two workers (or tests) in one process never collide. Names follow the Prometheus
conventions: a ``forexd_`` prefix, base units (``_seconds``), ``_total`` on counters,
histograms for latencies and ``_ratio`` for shares.

Every label has a bounded domain fixed at construction:

- ``symbol`` only takes the configured symbols. Anything else never becomes a label
  value; the event is counted by the label-free ``forexd_unconfigured_symbol_events_total``.
- ``timeframe`` only the configured timeframes, ``horizon`` only the quality monitor's
  horizon-group labels, ``partition`` only ``0 .. partitions - 1``, ``topic`` only the
  configured topic names. No label ever takes a record's field name (the producer's text):
  ``forexd_unknown_fields_total`` counts unknown fields by topic only, and the warning that
  names a few of them is logged escaped, at most once a minute per topic.
- ``reason`` on dead letters only :class:`~forex_diffusion.errors.RejectReason` values;
  the other enumerated labels (source, detector, retrain reason and outcome, dependency,
  quote flag) only their fixed sets below.
- ``version`` of ``forexd_model_version_in_service`` only the version serving each key
  now (the previous one's series is removed on a swap), at most 64 characters of
  ``[A-Za-z0-9._:+-]``.

Besides the ``forexd_`` families, the registry carries the standard process
(``process_*``: CPU, memory, open files, start time), platform (``python_info``) and
garbage-collector (``python_gc_*``) collectors of ``prometheus_client``, and
``forexd_build_info{version, python, torch}`` = 1.

A value outside its domain is not exported as a label; it is counted by the label-free
``forexd_invalid_label_values_total`` and logged, and the call otherwise does nothing —
a metrics call never stops an agent.

The endpoint binds ``127.0.0.1`` by default; binding more is an explicit choice (the
compose deployment sets ``FOREXD_METRICS_ADDR=0.0.0.0`` inside its private network).
"""

from __future__ import annotations

import logging
import math
import platform
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata as _metadata
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import start_http_server as _start_http_server

from forex_diffusion.errors import RejectReason
from forex_diffusion.quality.monitoring import DEFAULT_HORIZON_GROUPS, QualityRow
from forex_diffusion.timeframes import TIMEFRAME_NAMES

__all__ = [
    "CIRCUIT_STATES",
    "build_info",
    "DEPENDENCIES",
    "DETECTORS",
    "METRIC_PREFIX",
    "QUOTE_FLAGS",
    "RETRAIN_OUTCOMES",
    "RETRAIN_REASONS",
    "SHADOW_DECISIONS",
    "SHADOW_ROLES",
    "SOURCE_KINDS",
    "STANDARD_TOPICS",
    "UNKNOWN_FIELDS_WARN_INTERVAL_S",
    "Metrics",
]

logger = logging.getLogger(__name__)

METRIC_PREFIX = "forexd_"

#: Kinds of source topic a dead letter comes from (``retrain.requests`` is accepted too).
SOURCE_KINDS: frozenset[str] = frozenset({"ticks", "candles", "forecasts", "drift", "retrain_requests", "models"})
#: Drift detectors that may appear as a label (lower case; ``-``/space read as ``_``).
DETECTORS: frozenset[str] = frozenset(
    {
        "adwin",
        "page_hinkley",
        "kswin",
        "ddm",
        "eddm",
        "hddm_a",
        "hddm_w",
        "ks",
        "cusum",
        "coverage50",
        "coverage90",
        "pit_uniformity",
    }
)
RETRAIN_REASONS: frozenset[str] = frozenset({"drift", "manual", "schedule"})
RETRAIN_OUTCOMES: frozenset[str] = frozenset(
    {"registered", "promoted", "shadow", "rejected", "failed", "rolled_back", "skipped"}
)
#: Roles of the live shadow comparison (issue 16) and the decisions that end a shadow.
SHADOW_ROLES: frozenset[str] = frozenset({"champion", "shadow"})
SHADOW_DECISIONS: frozenset[str] = frozenset({"promoted", "rejected"})
DEPENDENCIES: frozenset[str] = frozenset({"database", "broker", "model_store"})
#: Circuit-breaker states and the gauge value that encodes each.
CIRCUIT_STATES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}
QUOTE_FLAGS: frozenset[str] = frozenset({"crossed", "locked"})
#: Topic names as in DESIGN.md (default prefix ``fx.``).
STANDARD_TOPICS: tuple[str, ...] = (
    "fx.ticks",
    "fx.candles",
    "fx.forecasts",
    "fx.drift",
    "fx.retrain.requests",
    "fx.models",
    "fx.deadletter",
)

#: Seconds between two ``wire.unknown_fields`` warnings of one topic (the first is logged at once).
UNKNOWN_FIELDS_WARN_INTERVAL_S = 60.0
_UNKNOWN_SHOWN = 3  # names of unknown fields one warning shows
_UNKNOWN_SHOWN_CHARS = 32  # characters of each

_HORIZON_LABELS: tuple[str, ...] = tuple(group.label for group in DEFAULT_HORIZON_GROUPS)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RETRAIN_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


_VERSION_LABEL = re.compile(r"^[A-Za-z0-9._:+-]{1,64}$")


def _dist_version(name: str) -> str:
    try:
        return _metadata.version(name)
    except _metadata.PackageNotFoundError:
        return "unknown"


def build_info() -> dict[str, str]:
    """Return the ``forexd_build_info`` labels: the package, Python and torch versions.

    Read from the installed distributions' metadata, so torch is never imported for it.
    """
    return {
        "version": _dist_version("forex-diffusion-streaming"),
        "python": platform.python_version(),
        "torch": _dist_version("torch"),
    }


def _norm(value: str) -> str:
    return value.strip().lower().replace("-", "_").replace(" ", "_").replace(".", "_")


@dataclass(frozen=True, slots=True)
class _Server:
    server: WSGIServer
    thread: threading.Thread


class Metrics:
    """Define a worker's metric families and record what its agents report.

    Parameters
    ----------
    symbols
        The configured symbols: the only values a ``symbol`` label ever takes.
    timeframes
        The configured timeframes (candles and forecasts): the only ``timeframe`` values.
    partitions
        Partition count of the consumed topics: ``partition`` labels lie in
        ``0 .. partitions - 1``.
    topics
        Topic names allowed as the ``topic`` label of consumer lag.
    horizon_labels
        Horizon-group labels of forecast quality (the monitor's ``horizon_labels``).
    clock
        Wall clock in epoch seconds, for feed staleness (injectable for tests).
    monotonic
        Monotonic clock in seconds, for the pace of rate-limited warnings (injectable for tests).

    Examples
    --------
    >>> m = Metrics(["EURUSD"], timeframes=["5m"])
    >>> m.ticks_processed("EURUSD", 3)
    >>> m.ticks_processed("XXXYYY")
    >>> b'forexd_ticks_processed_total{symbol="EURUSD"} 3.0' in m.render()
    True
    >>> b"XXXYYY" in m.render()
    False
    """

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        timeframes: Iterable[str] = TIMEFRAME_NAMES,
        partitions: int = 1,
        topics: Iterable[str] = STANDARD_TOPICS,
        horizon_labels: Iterable[str] = _HORIZON_LABELS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.symbols = frozenset(symbols)
        self.timeframes = frozenset(timeframes)
        self.partitions = partitions
        self.topics = frozenset(topics)
        self.horizon_labels = frozenset(horizon_labels)
        self.clock = clock
        self.monotonic = monotonic
        self.registry = CollectorRegistry(auto_describe=True)
        self._server: _Server | None = None
        self._last_arrival: dict[str, float] = {}
        self._ticks_of: dict[str, Counter] = {}  # symbol -> its ticks_processed_total child
        self._feed_last_of: dict[str, Gauge] = {}  # symbol -> its feed_last_event_timestamp_seconds child
        self._serving: dict[str, str] = {}  # key -> version label currently exported
        self._shadowing: dict[str, str] = {}  # key -> version label in shadow (issue 16)
        self._unknown_warned: dict[str, float] = {}  # topic -> monotonic time of its last unknown-fields warning
        self._unknown_quiet: dict[str, int] = {}  # topic -> records with unknown fields not warned about since
        self._define()

    # ------------------------------------------------------------------ definitions

    def _define(self) -> None:
        """Define every family on this instance's registry, one concern at a time.

        The order of the calls is the order of the families in the exposition.
        """
        self._define_process()
        self._define_ingest()
        self._define_forecasts()
        self._define_quality()
        self._define_drift_and_retraining()
        self._define_models()
        self._define_shadow()
        self._define_feed()
        self._define_dependencies()

    def _counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(f"{METRIC_PREFIX}{name}", doc, labels, registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(f"{METRIC_PREFIX}{name}", doc, labels, registry=self.registry)

    def _histogram(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> Histogram:
        return Histogram(f"{METRIC_PREFIX}{name}", doc, labels, buckets=buckets, registry=self.registry)

    def _define_process(self) -> None:
        """The process itself: standard collectors, build info, refused label values."""
        # the defaults prometheus_client puts on its global registry, on this one
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.build = self._gauge(
            "build_info",
            "Always 1; the labels name the forexd package, Python and torch versions.",
            ["version", "python", "torch"],
        )
        info = build_info()
        self.build.labels(info["version"], info["python"], info["torch"]).set(1)
        self.unconfigured_symbol_events = self._counter(
            "unconfigured_symbol_events_total",
            "Events about a symbol outside the configured set (never exported as a label).",
        )
        self.invalid_label_values = self._counter(
            "invalid_label_values_total",
            "Metric updates refused because a label value lay outside its bounded domain.",
        )

    def _define_ingest(self) -> None:
        """What comes in: ticks and candles processed, records refused or flagged."""
        self.ticks = self._counter("ticks_processed_total", "Valid ticks processed.", ["symbol"])
        self.candles_in = self._counter(
            "candles_processed_total",
            "Candles consumed from the candle topic (external feed).",
            ["symbol", "timeframe"],
        )
        self.candles_out = self._counter(
            "candles_emitted_total", "Closed candles emitted by the aggregator.", ["symbol", "timeframe"]
        )
        self.candles_again = self._counter(
            "candles_duplicate_total",
            "Candles from the candle topic not after the series' last one (a redelivery, a replay's "
            "copy, or bars a forged later one overtook): dropped and counted (B13), not dead-lettered.",
            ["symbol", "timeframe"],
        )
        self.dead_letters = self._counter(
            "dead_letters_total",
            "Records sent to the dead-letter topic, by source topic kind and reason.",
            ["source", "reason"],
        )
        self.late_ticks = self._counter(
            "late_ticks_total", "Ticks later than the allowed lateness (dead-lettered, never merged).", ["symbol"]
        )
        self.quotes_flagged = self._counter(
            "quotes_flagged_total",
            "Accepted quotes that were crossed (within tolerance) or locked.",
            ["symbol", "flag"],
        )
        self.unknown_fields_in = self._counter(
            "unknown_fields_total",
            "Fields no schema names in records decoded from an input topic: ignored, the record "
            "processed (B2). By topic only, never by field name.",
            ["topic"],
        )
        for topic in sorted(self.topics):
            self.unknown_fields_in.labels(topic)  # exported at 0 from the start: rates and alerts see it

    def _define_forecasts(self) -> None:
        """Forecasts emitted: latency, counts, and the sampling budget they used."""
        self.forecast_latency = self._histogram(
            "forecast_latency_seconds",
            "Time from the closing candle's arrival to the forecast being sent.",
            ["timeframe"],
            _LATENCY_BUCKETS,
        )
        self.forecasts = self._counter("forecasts_emitted_total", "Forecasts emitted.", ["symbol", "timeframe"])
        self.forecasts_degraded = self._counter(
            "forecasts_degraded_total",
            "Forecasts emitted with a reduced sampling budget (load shedding) or a fallback.",
            ["symbol", "timeframe"],
        )
        self.forecasts_withheld = self._counter(
            "forecasts_withheld_total",
            "Forecasts neither stored nor published: a price of the record is no price "
            "(non-finite, <= 0 or past PRICE_MAX).",
            ["symbol", "timeframe"],
        )
        self.sampling_samples = self._gauge(
            "sampling_samples",
            "Diffusion samples drawn per forecast in the latest forecast (sampling budget).",
            ["symbol", "timeframe"],
        )
        self.sampling_steps = self._gauge(
            "sampling_denoising_steps",
            "Denoising steps per sample in the latest forecast (sampling budget).",
            ["symbol", "timeframe"],
        )

    def _define_quality(self) -> None:
        """Rolling forecast quality per series and horizon group (the quality monitor's rows)."""
        q_labels = ["symbol", "timeframe", "horizon"]
        self.quality_crps = self._gauge(
            "forecast_crps", "Rolling mean CRPS of the forecasts, in price units (quantile-loss form).", q_labels
        )
        self.quality_crps_rw = self._gauge(
            "forecast_crps_random_walk",
            "Rolling mean CRPS of the EWMA random-walk reference, in price units.",
            q_labels,
        )
        self.quality_skill = self._gauge(
            "forecast_crps_skill_ratio",
            "Rolling CRPS skill against the random walk: 1 - CRPS_model / CRPS_rw.",
            q_labels,
        )
        self.quality_coverage = self._gauge(
            "forecast_interval_coverage_ratio",
            "Rolling share of realised prices inside the central prediction interval.",
            [*q_labels, "interval"],
        )
        self.quality_steps = self._gauge(
            "forecast_quality_window_steps", "Number of realised horizon steps in the rolling quality window.", q_labels
        )

    def _define_drift_and_retraining(self) -> None:
        """Drift detections, and the retrain requests and jobs they lead to."""
        self.drift_events = self._counter(
            "drift_events_total", "Drift detections, by detector and series.", ["detector", "symbol", "timeframe"]
        )
        self.retrain_requests = self._counter("retrain_requests_total", "Retrain requests, by reason.", ["reason"])
        self.retrain_outcomes = self._counter(
            "retrain_outcomes_total", "Finished retrain jobs, by outcome.", ["outcome"]
        )
        self.retrain_seconds = self._histogram(
            "retrain_duration_seconds", "Wall-clock duration of retrain jobs.", (), _RETRAIN_BUCKETS
        )

    def _define_models(self) -> None:
        """The model serving each key, and artifacts refused at load."""
        self.model_version = self._gauge(
            "model_version_in_service",
            "Always 1 per key (symbol/timeframe/horizon); the version label names the model serving it.",
            ["key", "version"],
        )
        self.artifacts_rejected = self._counter(
            "model_artifacts_rejected_total", "Model artifacts refused at load (hash mismatch, pickle, corrupt)."
        )

    def _define_shadow(self) -> None:
        """Issue 16: a challenger in live shadow, beside the champion on the same origins."""
        self.shadow_version = self._gauge(
            "model_version_in_shadow",
            "Always 1 per key in shadow; the version label names the challenger in shadow.",
            ["key", "version"],
        )
        self.shadow_crps = self._gauge(
            "shadow_crps",
            "Mean CRPS (price units) over the shadow's realised forecasts, of the shadow and of the "
            "champion on the same origins (role).",
            ["key", "role"],
        )
        self.shadow_skill = self._gauge(
            "shadow_skill_ratio",
            "1 - CRPS_shadow / CRPS_champion over the shadow's realised forecasts; >= 0 promotes.",
            ["key"],
        )
        self.shadow_realised = self._gauge(
            "shadow_realised_forecasts",
            "Realised forecasts of the version in shadow (the decision needs the required number).",
            ["key"],
        )
        self.shadow_required = self._gauge(
            "shadow_required_forecasts",
            "Realised forecasts the version in shadow needs before it is promoted or rejected.",
            ["key"],
        )
        self.shadow_decisions = self._counter(
            "shadow_decisions_total",
            "Shadows decided by their live scores, by outcome (promoted, rejected).",
            ["outcome"],
        )
        for outcome in sorted(SHADOW_DECISIONS):
            self.shadow_decisions.labels(outcome)  # exported at 0 from the start

    def _define_feed(self) -> None:
        """How far behind the worker is: consumer lag, and the age of each symbol's last tick."""
        self.consumer_lag = self._gauge(
            "consumer_lag_records",
            "Records between the consumer's position and the high-water mark.",
            ["topic", "partition"],
        )
        self.feed_staleness = self._gauge(
            "feed_staleness_seconds",
            "Seconds since the last tick of each symbol arrived (computed at scrape time).",
            ["symbol"],
        )
        self.feed_last_event = self._gauge(
            "feed_last_event_timestamp_seconds",
            "Event time of the last tick of each symbol, in epoch seconds.",
            ["symbol"],
        )

    def _define_dependencies(self) -> None:
        """The broker, database and model store: producer resets and circuit breakers."""
        self.producer_resets = self._counter(
            "producer_resets_total",
            "Kafka producers re-created after their sends kept failing (fault F16, docs/reliability.md).",
        )
        self.circuit = self._gauge(
            "circuit_breaker_state",
            "Circuit-breaker state per dependency: 0 closed, 1 half-open, 2 open.",
            ["dependency"],
        )

    # ------------------------------------------------------------------ label guards

    def _symbol_ok(self, symbol: str) -> bool:
        if symbol in self.symbols:
            return True
        self.unconfigured_symbol_events.inc()
        return False

    def _invalid(self, label: str, value: object) -> None:
        self.invalid_label_values.inc()
        logger.warning("metric label refused label=%s value=%.40r", label, value)

    def _series_ok(self, symbol: str, timeframe: str) -> bool:
        if not self._symbol_ok(symbol):
            return False
        if timeframe not in self.timeframes:
            self._invalid("timeframe", timeframe)
            return False
        return True

    def _enum(self, label: str, value: str, domain: frozenset[str]) -> str | None:
        norm = _norm(value) if isinstance(value, str) else ""
        if norm in domain:
            return norm
        self._invalid(label, value)
        return None

    # ------------------------------------------------------------------ recording

    def ticks_processed(self, symbol: str, n: int = 1) -> None:
        """Count ``n`` valid ticks of ``symbol``."""
        child = self._ticks_of.get(symbol)  # once per tick: the labelled child is looked up once per symbol
        if child is None:
            if not self._symbol_ok(symbol):
                return
            child = self._ticks_of[symbol] = self.ticks.labels(symbol)
        child.inc(n)

    def candles_processed(self, symbol: str, timeframe: str, n: int = 1) -> None:
        """Count ``n`` candles consumed from the candle topic."""
        if self._series_ok(symbol, timeframe):
            self.candles_in.labels(symbol, timeframe).inc(n)

    def candles_duplicate(self, symbol: str, timeframe: str, n: int = 1) -> None:
        """Count ``n`` candles dropped as not after their series' last one."""
        if self._series_ok(symbol, timeframe):
            self.candles_again.labels(symbol, timeframe).inc(n)

    def candles_emitted(self, symbol: str, timeframe: str, n: int = 1) -> None:
        """Count ``n`` closed candles emitted for a series."""
        if self._series_ok(symbol, timeframe):
            self.candles_out.labels(symbol, timeframe).inc(n)

    def dead_letter(self, source_topic_kind: str, reason: RejectReason | str) -> None:
        """Count one dead-lettered record by source topic kind and reject reason."""
        source = self._enum("source", source_topic_kind, SOURCE_KINDS)
        try:
            why = RejectReason(reason)
        except ValueError:
            self._invalid("reason", reason)
            return
        if source is not None:
            self.dead_letters.labels(source, why.value).inc()

    def late_tick(self, symbol: str | None = None) -> None:
        """Count one tick refused as later than the allowed lateness.

        ``symbol=None`` (the caller could not tell) counts it with an empty ``symbol``
        label, which Prometheus reads as no label.
        """
        if symbol is None:
            self.late_ticks.labels("").inc()
        elif self._symbol_ok(symbol):
            self.late_ticks.labels(symbol).inc()

    def quote_flagged(self, symbol: str, flag: str) -> None:
        """Count one accepted but crossed (within tolerance) or locked quote."""
        kind = self._enum("flag", flag, QUOTE_FLAGS)
        if kind is not None and self._symbol_ok(symbol):
            self.quotes_flagged.labels(symbol, kind).inc()

    def forecast_withheld(self, symbol: str, timeframe: str) -> None:
        """Count a forecast the candle agent withheld: a price of its record is no price."""
        if self._series_ok(symbol, timeframe):
            self.forecasts_withheld.labels(symbol, timeframe).inc()

    def forecast_emitted(
        self,
        symbol: str,
        timeframe: str,
        latency_s: float,
        steps: int,
        samples: int,
        degraded: bool = False,
    ) -> None:
        """Record one emitted forecast: its latency and the sampling budget it used.

        Parameters
        ----------
        symbol, timeframe
            The series.
        latency_s
            Seconds from the closing candle's arrival to the forecast being sent.
        steps
            Denoising steps per sample used.
        samples
            Number of diffusion samples drawn.
        degraded
            Whether the budget was reduced (load shedding) or a fallback served.
        """
        if not self._series_ok(symbol, timeframe):
            return
        if math.isfinite(latency_s) and latency_s >= 0:
            self.forecast_latency.labels(timeframe).observe(latency_s)
        self.forecasts.labels(symbol, timeframe).inc()
        if degraded:
            self.forecasts_degraded.labels(symbol, timeframe).inc()
        self.sampling_samples.labels(symbol, timeframe).set(samples)
        self.sampling_steps.labels(symbol, timeframe).set(steps)

    def set_quality(self, rows: Iterable[QualityRow]) -> None:
        """Publish the quality monitor's rows (rows outside the label domains are skipped)."""
        for row in rows:
            if not self._series_ok(row.symbol, row.timeframe):
                continue
            if row.horizon not in self.horizon_labels:
                self._invalid("horizon", row.horizon)
                continue
            key = (row.symbol, row.timeframe, row.horizon)
            self.quality_crps.labels(*key).set(row.crps)
            self.quality_crps_rw.labels(*key).set(row.crps_rw)
            self.quality_steps.labels(*key).set(row.count)
            self._set_or_remove(self.quality_skill, key, row.crps_skill)
            self._set_or_remove(self.quality_coverage, (*key, "50"), row.coverage_50)
            self._set_or_remove(self.quality_coverage, (*key, "90"), row.coverage_90)

    @staticmethod
    def _set_or_remove(gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
        if value is not None:
            gauge.labels(*labels).set(value)
            return
        try:
            gauge.remove(*labels)
        except KeyError:
            pass

    def drift_event(self, detector: str, symbol: str, timeframe: str) -> None:
        """Count one drift detection by ``detector`` on a series."""
        name = self._enum("detector", detector, DETECTORS)
        if name is not None and self._series_ok(symbol, timeframe):
            self.drift_events.labels(name, symbol, timeframe).inc()

    def retrain_request(self, reason: str) -> None:
        """Count one retrain request (reason: drift, manual or schedule)."""
        why = self._enum("reason", reason, RETRAIN_REASONS)
        if why is not None:
            self.retrain_requests.labels(why).inc()

    def retrain_outcome(self, outcome: str) -> None:
        """Count one finished retrain job by outcome (promoted, rejected, failed, ...)."""
        kind = self._enum("outcome", outcome, RETRAIN_OUTCOMES)
        if kind is not None:
            self.retrain_outcomes.labels(kind).inc()

    def retrain_duration(self, seconds: float) -> None:
        """Observe the duration of one retrain job."""
        if math.isfinite(seconds) and seconds >= 0:
            self.retrain_seconds.observe(seconds)

    def model_in_service(self, key: str, version: int | str) -> None:
        """Set the model version serving ``key`` (``SYMBOL/TIMEFRAME/HORIZON``).

        ``forexd_model_version_in_service{key, version}`` is 1 for the version serving the
        key now; a swap removes the previous version's series, so ``version`` has one value
        per key at a time. ``version`` is a registry version
        (``YYYYmmddTHHMMSSffffffZ-hash``), ``rw-ewma`` (the random-walk baseline) or any
        string of at most 64 characters of ``[A-Za-z0-9._:+-]`` (an integer is its digits).
        """
        parts = key.split("/") if isinstance(key, str) else []
        if len(parts) != 3:
            self._invalid("key", key)
            return
        symbol, timeframe, horizon = parts
        if not self._series_ok(symbol, timeframe):
            return
        if not (horizon.isdigit() and 0 < len(horizon) <= 4):
            self._invalid("key", key)
            return
        label = str(version).strip() if isinstance(version, int | str) and not isinstance(version, bool) else ""
        if not _VERSION_LABEL.match(label):
            self._invalid("version", version)
            return
        previous = self._serving.get(key)
        if previous == label:
            return
        if previous is not None:
            try:
                self.model_version.remove(key, previous)
            except KeyError:
                pass
        self._serving[key] = label
        self.model_version.labels(key, label).set(1)

    def artifact_rejected(self) -> None:
        """Count one model artifact refused at load."""
        self.artifacts_rejected.inc()

    def _key_ok(self, key: str) -> bool:
        parts = key.split("/") if isinstance(key, str) else []
        if len(parts) != 3 or not (parts[2].isdigit() and 0 < len(parts[2]) <= 4):
            self._invalid("key", key)
            return False
        return self._series_ok(parts[0], parts[1])

    def shadow_progress(
        self, key: str, version: str, *, realised: int, required: int, crps: float | None, champion_crps: float | None
    ) -> None:
        """Export where the shadow of ``key`` stands: its version, realised/required counts and
        both roles' mean CRPS over its realised forecasts (one version per key at a time)."""
        if not self._key_ok(key):
            return
        label = str(version).strip()
        if not _VERSION_LABEL.match(label):
            self._invalid("version", version)
            return
        previous = self._shadowing.get(key)
        if previous is not None and previous != label:
            self._remove(self.shadow_version, (key, previous))
        self._shadowing[key] = label
        self.shadow_version.labels(key, label).set(1)
        self.shadow_realised.labels(key).set(realised)
        self.shadow_required.labels(key).set(required)
        mine = crps if crps is not None and math.isfinite(crps) else None
        theirs = champion_crps if champion_crps is not None and math.isfinite(champion_crps) else None
        self._set_or_remove(self.shadow_crps, (key, "shadow"), mine)
        self._set_or_remove(self.shadow_crps, (key, "champion"), theirs)
        skill = 1.0 - mine / theirs if mine is not None and theirs is not None and theirs > 0 else None
        self._set_or_remove(self.shadow_skill, (key,), skill)

    def shadow_ended(self, key: str, decision: str | None = None) -> None:
        """Remove ``key``'s shadow series; count the ``decision`` (promoted, rejected) that ended it."""
        if decision is not None:
            kind = self._enum("outcome", decision, SHADOW_DECISIONS)
            if kind is not None:
                self.shadow_decisions.labels(kind).inc()
        previous = self._shadowing.pop(key, None)
        if previous is not None:
            self._remove(self.shadow_version, (key, previous))
        for gauge, labels in (
            (self.shadow_realised, (key,)),
            (self.shadow_required, (key,)),
            (self.shadow_skill, (key,)),
            (self.shadow_crps, (key, "shadow")),
            (self.shadow_crps, (key, "champion")),
        ):
            self._remove(gauge, labels)

    @staticmethod
    def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
        try:
            gauge.remove(*labels)
        except KeyError:
            pass

    def unknown_fields(self, topic: str, n: int, names: Sequence[str] = ()) -> None:
        """Count the ``n`` unknown fields of one record decoded from ``topic`` (B2) and warn.

        The warning ``wire.unknown_fields`` names the topic and the first ``names`` (escaped,
        clipped: a producer's text); it is logged for a topic's first such record, then at
        most once per :data:`UNKNOWN_FIELDS_WARN_INTERVAL_S`, saying how many records it
        stood for, so a flood of them cannot flood the log.
        """
        if n <= 0:
            return
        if topic not in self.topics:
            self._invalid("topic", topic)
            return
        self.unknown_fields_in.labels(topic).inc(n)
        now, last = self.monotonic(), self._unknown_warned.get(topic)
        quiet = self._unknown_quiet.get(topic, 0)
        if last is not None and now - last < UNKNOWN_FIELDS_WARN_INTERVAL_S:
            self._unknown_quiet[topic] = quiet + 1
            return
        self._unknown_warned[topic], self._unknown_quiet[topic] = now, 0
        shown = [repr(name[:_UNKNOWN_SHOWN_CHARS]) for name in names[:_UNKNOWN_SHOWN]]
        logger.warning(
            "wire.unknown_fields topic=%s fields=%s more=%d records=%d: fields no schema names, ignored (the "
            "records are processed): a producer on a newer schema, or a misspelt field? Counted in "
            "forexd_unknown_fields_total; logged at most every %.0f s per topic (records: those with "
            "unknown fields since the last line)",
            topic,
            ",".join(shown) or "-",
            n - len(shown),
            quiet + 1,
            UNKNOWN_FIELDS_WARN_INTERVAL_S,
        )

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Set the consumer lag of one partition of a configured topic."""
        if topic not in self.topics:
            self._invalid("topic", topic)
            return
        if not (isinstance(partition, int) and 0 <= partition < self.partitions):
            self._invalid("partition", partition)
            return
        self.consumer_lag.labels(topic, str(partition)).set(max(0, lag))

    def set_lag_from_positions(self, topic: str, partition: int, position: int | None, highwater: int | None) -> None:
        """Set the lag from the consumer's position and the partition's high-water mark.

        Nothing is set while either is unknown (no fetch yet).
        """
        if position is None or highwater is None:
            return
        self.set_lag(topic, partition, highwater - position)

    def feed_seen(self, symbol: str, event_ts_s: float) -> None:
        """Note a tick of ``symbol`` arriving now, with event time ``event_ts_s``."""
        child = self._feed_last_of.get(symbol)  # once per tick: as ticks_processed
        if child is None and not self._symbol_ok(symbol):
            return
        self._last_arrival[symbol] = self.clock()
        if child is None:
            child = self._feed_last_of[symbol] = self.feed_last_event.labels(symbol)
            self.feed_staleness.labels(symbol).set_function(self._staleness_of(symbol))
        child.set(event_ts_s)

    def _staleness_of(self, symbol: str) -> Callable[[], float]:
        def staleness() -> float:
            return max(0.0, self.clock() - self._last_arrival[symbol])

        return staleness

    def producer_reset(self) -> None:
        """Count a re-created producer."""
        self.producer_resets.inc()

    def circuit_state(self, dependency: str, state: str) -> None:
        """Set a dependency's circuit-breaker state (closed, half_open or open)."""
        dep = self._enum("dependency", dependency, DEPENDENCIES)
        st = _norm(state) if isinstance(state, str) else ""
        if st not in CIRCUIT_STATES:
            self._invalid("state", state)
            return
        if dep is not None:
            self.circuit.labels(dep).set(CIRCUIT_STATES[st])

    # ------------------------------------------------------------------ exposition

    def render(self) -> bytes:
        """Return the registry in the Prometheus text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    @property
    def port(self) -> int | None:
        """Return the port the endpoint listens on, or None when not serving."""
        return None if self._server is None else int(self._server.server.server_port)

    def serve(
        self,
        addr: str = "127.0.0.1",
        port: int = 0,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> int:
        """Start serving ``/metrics`` on ``addr:port`` in a daemon thread; return the port.

        Parameters
        ----------
        addr
            Address to bind; loopback by default. Exposing more is an explicit choice.
        port
            Port to bind; 0 picks a free one.
        certfile, keyfile
            Serve HTTPS with this certificate and key.

        Returns
        -------
        int
            The bound port.
        """
        if self._server is not None:
            raise RuntimeError(f"metrics endpoint already serving on port {self.port}")
        server, thread = _start_http_server(port, addr=addr, registry=self.registry, certfile=certfile, keyfile=keyfile)
        self._server = _Server(server, thread)
        bound = int(server.server_port)
        logger.info("metrics endpoint serving addr=%s port=%d", addr, bound)
        return bound

    def stop(self) -> None:
        """Stop the endpoint (no-op when not serving)."""
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.server.shutdown()
        srv.server.server_close()
        srv.thread.join(timeout=5)
