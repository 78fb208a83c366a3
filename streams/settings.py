"""Worker settings, read once from ``FOREXD_*`` environment variables at the entry points."""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forex_diffusion.errors import ConfigError, SettingsError
from forex_diffusion.forecast.batching import SAMPLES_MAX, SAMPLES_MIN, STEPS_MAX
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.timeframes import Timeframe, parse_timeframes

if TYPE_CHECKING:
    from retraining.jobs import JobConfig

__all__ = ["NUMBER_BOUNDS", "OTHER_VARIABLES", "Settings", "parse_number", "unknown_variables"]

#: Most stored candles per timeframe a series is warmed from (each assignment reads them).
MAX_WARM_CANDLES = 100_000

# FOREXD_* variables read elsewhere than Settings (the CLI, the core, the test harness)
OTHER_VARIABLES = frozenset(
    {"FOREXD_LOG_LEVEL", "FOREXD_NO_JIT", "FOREXD_FAILPOINT", "FOREXD_SERVICES", "FOREXD_TANSU_BIN"}
)
_OTHER_PREFIXES = ("FOREXD_TEST_",)


_CUDA = re.compile(r"cuda(:[0-9]{1,2})?")
# forex_diffusion.wire.FORECAST_STEPS_MAX: the longest forecast fx.forecasts carries (not imported:
# the wire module loads sqlalchemy and scipy, and `forexd --help` imports these settings)
FORECAST_STEPS_MAX = 10_000
# forex_diffusion.wire.PATHS_MAX (not imported, as above): most sample paths of one fx.forecasts.paths record
PATHS_MAX = 10_000
# a record we publish stays under Kafka's default message.max.bytes (1,048,588): a larger one is
# refused by the producer, and would fail every checkpoint of its partition
RECORD_BYTES_MAX = 1_000_000
PATHS_RECORD_BYTES_MAX = RECORD_BYTES_MAX
DB_TIMEOUT_MAX_S = 2_147_483  # PostgreSQL's statement/lock timeouts are at most INT_MAX milliseconds
_DURATION_MAX_S = 7 * 86_400.0  # a week: far above any interval or timeout a worker needs
# Shortest duration: a timer or timeout below a millisecond is below the event loop's and the
# clients' resolution (Kafka and PostgreSQL count milliseconds; 1e-310 s became 0 ms, "no limit",
# or a timer firing on every loop turn: a busy loop). A duration whose 0 means "off" takes 0 too.
DURATION_MIN_S = 0.001
#: Most retrain jobs at once: each is a training process with its own model, data and threads
#: (a worker given 10**9 queued every request as runnable and forked until memory ran out).
RETRAIN_CONCURRENCY_MAX = 64
#: Most live forecasts a challenger serves in shadow: their scores are read at the decision, and
#: 100,000 is already ~70 days of 1m forecasts (past it a challenger never leaves shadow).
SHADOW_FORECASTS_MAX = 100_000
#: Largest "behind" batch: a fetched batch of candles is never near this (the consumer's buffer
#: holds a few thousand records); 0 turns degraded sampling off.
DEGRADE_BATCH_MAX = 100_000

# Every numeric setting, its lowest and highest value, what 0 means where 0 is allowed below a
# positive floor ("" if it is not), and what it is: the documented bounds, checked together when
# settings are built (docs/operations.md, "Worker variables"). A bound with a special message
# elsewhere in this module (horizon, warm_candles, paths, the sampling budget) is listed too, so
# the table says every setting's range; ``None`` (unset) is allowed for the sampling budget.
NUMBER_BOUNDS: dict[str, tuple[float, float, str, str]] = {
    "partitions": (1, 10_000, "", "partitions per topic"),
    "horizon": (1, FORECAST_STEPS_MAX, "", "forecast steps"),
    "warm_candles": (0, MAX_WARM_CANDLES, "", "stored candles per timeframe; 0: no warm start"),
    "allowed_lateness_ms": (0, 7 * 86_400_000, "", "milliseconds, at most a week"),
    "max_message_bytes": (1_024, 16 * 1_048_576, "", "bytes of one input record"),
    "metrics_port": (-1_000_000, 65_535, "", "a TCP port; 0 picks a free one, negative turns /metrics off"),
    "forecast_steps": (1, STEPS_MAX, "", "denoising steps per sample"),
    "forecast_min_steps": (1, STEPS_MAX, "", "denoising steps per sample"),
    "forecast_samples": (SAMPLES_MIN, SAMPLES_MAX, "", "diffusion samples per forecast"),
    "forecast_min_samples": (SAMPLES_MIN, SAMPLES_MAX, "", "diffusion samples per forecast"),
    "forecast_degrade_batch": (0, DEGRADE_BATCH_MAX, "", "candles in one batch; 0: never"),
    "paths": (0, PATHS_MAX, "", "sample paths per forecast; 0: off"),
    "retrain_concurrency": (1, RETRAIN_CONCURRENCY_MAX, "", "retrain jobs at once, each a training process"),
    "shadow_forecasts": (0, SHADOW_FORECASTS_MAX, "", "realised live forecasts; 0: no shadow"),
    "idle_close_s": (DURATION_MIN_S, _DURATION_MAX_S, "", "seconds"),
    "snapshot_interval_s": (DURATION_MIN_S, _DURATION_MAX_S, "", "seconds"),
    "status_interval_s": (DURATION_MIN_S, _DURATION_MAX_S, "no status lines", "seconds"),
    "broker_rebalance_timeout_s": (DURATION_MIN_S, _DURATION_MAX_S, "", "seconds"),
    "broker_session_timeout_s": (DURATION_MIN_S, _DURATION_MAX_S, "", "seconds"),
    "broker_heartbeat_interval_s": (DURATION_MIN_S, _DURATION_MAX_S, "", "seconds"),
    "producer_request_timeout_s": (DURATION_MIN_S, _DURATION_MAX_S, "", "seconds"),
    "producer_reset_after_s": (DURATION_MIN_S, _DURATION_MAX_S, "", "seconds"),
    "broker_wait_s": (DURATION_MIN_S, _DURATION_MAX_S, "one attempt", "seconds"),
    "db_fatal_after_s": (DURATION_MIN_S, _DURATION_MAX_S, "fatal after 3 attempts", "seconds"),
    "db_connect_timeout_s": (DURATION_MIN_S, DB_TIMEOUT_MAX_S, "no limit", "seconds; PostgreSQL takes INT_MAX ms"),
    "db_statement_timeout_s": (DURATION_MIN_S, DB_TIMEOUT_MAX_S, "no limit", "seconds; PostgreSQL takes INT_MAX ms"),
    "db_lock_timeout_s": (DURATION_MIN_S, DB_TIMEOUT_MAX_S, "no limit", "seconds; PostgreSQL takes INT_MAX ms"),
    "db_wait_s": (DURATION_MIN_S, _DURATION_MAX_S, "one attempt", "seconds"),
    "retrain_timeout_s": (DURATION_MIN_S, _DURATION_MAX_S, "", "seconds of one retrain job"),
}
# checked where their own messages are (the models' horizon, the warm start, the sampling budget, paths)
_OWN_CHECKS = frozenset(
    {"horizon", "warm_candles", "paths", "forecast_steps", "forecast_min_steps", "forecast_samples"}
    | {"forecast_min_samples", "forecast_degrade_batch"}
)


#: The SASL mechanisms a worker logs in with (docs/operations.md).
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Longest Kafka topic name (the broker refuses a longer one).
TOPIC_NAME_MAX = 249
#: The topics a worker reads and writes, ``<prefix>fx.<name>`` (streams/app.py).
TOPIC_NAMES: tuple[str, ...] = ("ticks", "candles", "indicators", "forecasts", "forecasts.paths", "drift")
TOPIC_NAMES += ("retrain.requests", "models", "deadletter")
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")  # Kafka's legal topic characters
_LEADER_SUFFIX = "-__assignor-__leader"  # Faust's leader topic is <app_id> with this
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")  # one label of a host name


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_host_name(text: str) -> bool:
    """A DNS name: dot-separated labels of ASCII letters, digits, '-' and '_', at most 253 characters."""
    labels = text.removesuffix(".").split(".")
    return 0 < len(text) <= 253 and all(_LABEL.fullmatch(x) for x in labels)


def _num(x: float) -> str:
    """``x`` as a bound is written: ``604,800``, ``0.001``."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


_HOST = re.compile(r"[A-Za-z0-9._-]+|\[?[0-9A-Fa-f:.]+\]?")  # a name, IPv4, or IPv6 (bracketed or not)
_PAIR = re.compile(r"[A-Z]{6}")  # a canonical symbol the registry does not know yet (the wire's pattern)
# The sampling budget (FOREXD_FORECAST_[MIN_]SAMPLES, FOREXD_FORECAST_[MIN_]STEPS). Samples: the
# predictor draws at least 2 (antithetic pairs; a quantile needs a spread), and at most as many
# as a fx.forecasts.paths record may carry (PATHS_MAX); each forecast holds samples x horizon
# floats per series. Steps: DDIM steps, each one denoiser pass over every sample; a model
# accepts at most its schedule's T (200 for the bundled models), which only the model knows.
FORECAST_SAMPLES_MIN, FORECAST_SAMPLES_MAX, SAMPLING_STEPS_MAX = SAMPLES_MIN, SAMPLES_MAX, STEPS_MAX


def _parse_models(items: tuple[str, ...], timeframes: tuple[str, ...]) -> list[tuple[str, int]]:
    """``("1m:60", "1h:24")`` → ``[("1m", 60), ("1h", 24)]``, each timeframe written as in
    ``timeframes``; ``ConfigError`` on a malformed entry, an unknown or unconfigured
    timeframe, a horizon < 1, or a timeframe listed twice."""
    configured = {Timeframe.parse(t).name: t for t in timeframes}
    out: list[tuple[str, int]] = []
    for item in items:
        tf, sep, h = item.partition(":")
        h = h.strip()
        if not sep or re.fullmatch(r"[0-9]{1,9}", h) is None:  # ASCII digits only ('²' is a digit)
            raise ConfigError(f"models entry {item[:32]!r} is not TIMEFRAME:HORIZON (e.g. 1m:60,1h:24)")
        try:  # the entry named: "'1M': M is a month" did not say which setting held it
            name = Timeframe.parse(tf.strip()).name
        except ConfigError as exc:
            raise ConfigError(f"models entry {item[:32]!r}: {exc}") from None
        if name not in configured:
            raise ConfigError(f"models entry {item[:32]!r}: timeframe {name} is not among timeframes")
        horizon = int(h)
        if not 1 <= horizon <= FORECAST_STEPS_MAX:
            raise ConfigError(f"models entry {item[:32]!r}: horizon must be >= 1 and at most {FORECAST_STEPS_MAX}")
        if any(configured[name] == t for t, _ in out):
            # its forecasts, drift events, quality metrics and served model are keyed by
            # (symbol, timeframe): two horizons of one timeframe would collide there
            raise ConfigError(f"models lists timeframe {name} twice: one horizon per timeframe")
        out.append((configured[name], horizon))
    return out


def _check_timeframes(name: str, timeframes: tuple[str, ...]) -> None:
    """``parse_timeframes`` with the setting named in its error: from_env names the variable
    a message names (FOREXD_TIMEFRAMES), and "'1M': M is a month" named none."""
    try:
        parse_timeframes(timeframes)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def paths_record_bytes(n_paths: int, horizon: int) -> int:
    """Most bytes of one ``fx.forecasts.paths`` record: int32 paths in base64, ``rw_weight``, the rest."""
    return 4 * -(-(n_paths * horizon * 4) // 3) + 26 * horizon + 1024


def bootstrap_of(url: str) -> str:
    """``kafka://h:p;h2:p2`` → ``h:p,h2:p2``."""
    out = []
    for part in url.replace(";", ",").split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        part = part.strip("/")
        if part:
            out.append(part)
    return ",".join(out)


def _no_query(text: str) -> str:
    """``text`` without what follows a ``?``: a query (``?password=...``) may hold a secret."""
    head, mark, _ = text.partition("?")
    return f"{head}?(not shown)" if mark else head


def broker_addresses(url: str) -> list[tuple[str, int]]:
    """``kafka://h:p;h2:p2`` → ``[(h, p), (h2, p2)]`` (port 9092 where none is given).

    Raises :class:`SettingsError` for an address without a host or with a port that is not
    1..65535: the Kafka client would fail deep in its loop (``ValueError``, ``OverflowError``)
    and the worker's wait would try another port than the one configured.

    >>> broker_addresses("kafka://a:9093;b")
    [('a', 9093), ('b', 9092)]
    """
    servers = bootstrap_of(url)
    if "@" in servers:  # never echoed: it may hold a password
        raise SettingsError(
            "FOREXD_BROKER_URL=(not shown) holds credentials (user@host): give the address alone, kafka://HOST:PORT, "
            "and the login in FOREXD_KAFKA_SASL_USERNAME / FOREXD_KAFKA_SASL_PASSWORD"
        )
    out = []
    for server in servers.split(",") if servers else [""]:
        host, colon, port = server.rpartition(":")
        if not colon or host.endswith(":"):  # no port, or an IPv6 address without brackets
            host, port = server, "9092"  # the Kafka clients' default port
        if not _HOST.fullmatch(host) or not (re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
            raise SettingsError(
                f"FOREXD_BROKER_URL={_no_query(url)[:200]!r} has no valid address in {_no_query(server)[:100]!r}: "
                "set it to kafka://HOST:PORT (port 1..65535)"
            )
        out.append((host.strip("[]"), int(port)))
    return out


def _symbol(name: str, registry: InstrumentRegistry) -> str:
    """A configured symbol as the ticks spell it: the registry's alias (``EUR/USD`` → ``EURUSD``),
    else the letters of a pair it does not know, upper-cased (``usd/cnh`` → ``USDCNH``)."""
    letters = re.sub(r"[/_. -]", "", name)
    # ASCII only: upper() would make 'ßßß' SSSSSS and 'ſ' S, a pair the user never named
    return registry.normalise(name) or (letters.upper() if letters.isascii() else letters)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a worker needs; unknown keys are rejected.

    Secrets (``kafka_sasl_password``) never appear in ``repr``.
    """

    app_id: str = "forexd"
    broker_url: str = "kafka://127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = 4
    data_dir: Path = Path("var")
    database_url: str = field(default="", repr=False)  # may hold a password
    symbols: tuple[str, ...] = ("EURUSD", "GBPUSD", "USDJPY")
    timeframes: tuple[str, ...] = ("1m", "5m", "15m", "1h")
    forecast_timeframes: tuple[str, ...] = ("1m",)
    horizon: int = 24
    # issue 16: several (timeframe, horizon) models per worker, "1m:60,1h:24"; when set it
    # replaces forecast_timeframes and horizon (horizon becomes the first model's)
    models: tuple[str, ...] = ()
    # issue 16: device of the serving models: cpu, cuda, cuda:N or auto (cuda when present)
    device: str = "cpu"
    # issue 16: warm start: stored candles per timeframe replayed into a series that has no
    # checkpointed state, so its first new candle is forecast (0: off)
    warm_candles: int = 512
    price: str = "mid"
    allowed_lateness_ms: int = 2_000
    idle_close_s: float = 10.0
    snapshot_interval_s: float = 1.0
    status_interval_s: float = 30.0
    max_message_bytes: int = 64 * 1024
    model_dir: Path | None = None
    metrics_addr: str = "127.0.0.1"
    metrics_port: int = 9464
    broker_rebalance_timeout_s: float = 5.0
    broker_session_timeout_s: float = 20.0
    broker_heartbeat_interval_s: float = 2.0
    producer_request_timeout_s: float = 20.0
    producer_reset_after_s: float = 120.0
    # a worker starting while the broker is not up yet waits this long for it, then exits 69
    broker_wait_s: float = 60.0
    # F14: a checkpoint failing with a permanent storage error (read-only database, disk I/O
    # error, missing table) is retried at least this long (and 3 times), then the worker exits
    db_fatal_after_s: float = 30.0
    # issue 15: PostgreSQL bounds (0: no limit). A statement running past the statement timeout
    # or waiting past the lock timeout fails as transient: consumption pauses, as in an outage.
    db_connect_timeout_s: float = 10.0
    db_statement_timeout_s: float = 60.0
    db_lock_timeout_s: float = 10.0
    # a worker starting while the database does not answer waits this long for it, then exits 69
    db_wait_s: float = 300.0
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_cafile: str | None = None
    forecast_steps: int | None = None
    forecast_samples: int | None = None
    forecast_min_steps: int | None = None
    forecast_min_samples: int | None = None
    forecast_degrade_batch: int = 0
    # issue 16: bands whose touch probabilities each forecast carries ([+|-]<size><pip|sigma|vol>,
    # comma-separated; vol = sigma * sqrt(horizon); "none": no touch field), see forex_diffusion/forecast/touch.py
    touch_bands: str = "0.5vol,1vol"
    # issue 16: sample paths of each forecast published on fx.forecasts.paths (the first N of
    # those sampled, compact encoding: forex_diffusion.wire.encode_paths); 0: off
    paths: int = 0
    retrain_schedule: tuple[str, ...] = ()
    retrain_job_config: str = ""
    # issue 13: retrain jobs at once per worker (more wait in a bounded queue), and the
    # wall-clock limit after which a job's process group is killed (reported failed/timeout)
    retrain_concurrency: int = 1
    retrain_timeout_s: float = 3 * 3600.0
    # issue 16: a challenger that beats a champion offline serves in shadow until this many of
    # its live forecasts are realised, then is promoted or rejected on them (0: promote at once)
    shadow_forecasts: int = 96
    # issue 13: HMAC key of the pickle-bearing state snapshots (unset: generated once into
    # data_dir/state.key, mode 0600); "accept" loads old unsigned snapshots (migration only)
    state_key: str | None = field(default=None, repr=False)
    state_unsigned: str = "refuse"

    def __post_init__(self) -> None:
        self._check_bounds()
        if self.database_url != self.database_url.strip():  # a .env file written on Windows ends it in \r
            raise ConfigError("database_url has white space around it (a CR at its end?): remove it")
        if self.database_url.startswith("postgres"):
            from forex_diffusion.storage.engine import check_url_options  # lazily: it loads sqlalchemy

            try:  # a bad port, host or option: the worker waited FOREXD_DB_WAIT_S, then called it unreachable
                check_url_options(self.database_url)
            except ConfigError as exc:  # the URL is not echoed: it may hold a password
                raise ConfigError(f"database_url {exc}") from None
        if self.touch_bands != "0.5vol,1vol":
            from forex_diffusion.forecast.touch import parse_touch_bands

            parse_touch_bands(self.touch_bands)  # ConfigError on a bad spec
        if self.state_unsigned not in ("refuse", "accept"):
            raise ConfigError("state_unsigned must be refuse or accept")
        if self.state_key is not None and len(self.state_key) < 32:
            raise ConfigError("state_key must be at least 32 characters (e.g. 64 hex digits)")
        _check_timeframes("timeframes", self.timeframes)
        if self.models:
            self._derive_from_models()
        if self.device not in ("cpu", "auto") and not _CUDA.fullmatch(self.device):
            raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, not {self.device[:32]!r}")
        if not 0 <= self.warm_candles <= MAX_WARM_CANDLES:
            raise ConfigError(f"warm_candles must be in 0..{MAX_WARM_CANDLES} (0: no warm start)")
        _check_timeframes("forecast_timeframes", self.forecast_timeframes)
        if not set(self.forecast_timeframes) <= set(self.timeframes):
            raise ConfigError("forecast_timeframes must be among timeframes")
        if self.price not in ("mid", "bid", "ask"):
            raise ConfigError("price must be mid, bid or ask")
        if not 1 <= self.horizon <= FORECAST_STEPS_MAX:  # a longer forecast cannot be encoded on fx.forecasts
            raise ConfigError(f"horizon must be >= 1 and at most {FORECAST_STEPS_MAX}")
        self._check_sampling()
        self._check_paths()
        self._canonical_symbols()
        if self.kafka_security_protocol not in ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"):
            raise ConfigError("kafka_security_protocol must be PLAINTEXT, SSL, SASL_SSL or SASL_PLAINTEXT")
        if self.kafka_sasl_mechanism not in SASL_MECHANISMS:  # aiokafka refused it at start: a traceback
            raise ConfigError(
                f"kafka_sasl_mechanism must be {', '.join(SASL_MECHANISMS[:-1])} or {SASL_MECHANISMS[-1]}, "
                f"not {self.kafka_sasl_mechanism[:32]!r}"
            )
        if self.kafka_security_protocol == "SASL_PLAINTEXT" and self.kafka_sasl_mechanism.startswith("SCRAM"):
            raise ConfigError("SCRAM needs TLS: use SASL_SSL")
        self._check_names()
        self._check_metrics_addr()
        if self.retrain_schedule:
            self._check_schedule()

    def _check_names(self) -> None:
        """``app_id`` and ``topic_prefix`` make Kafka topic names: ``[A-Za-z0-9._-]``, at most
        :data:`TOPIC_NAME_MAX` characters in all (the broker refused them at start, or a
        topic was never created). ``app_id`` names Faust's leader topic and the consumer group."""
        for name, value in (("app_id", self.app_id), ("topic_prefix", self.topic_prefix)):
            if not _TOPIC_CHARS.fullmatch(value):
                raise ConfigError(
                    f"{name} may hold only ASCII letters, digits, '.', '_' and '-' (Kafka topic names), "
                    f"not {value[:_SHOWN_MAX]!r}"
                )
        if not self.app_id or self.app_id in (".", ".."):
            raise ConfigError(f"app_id must be a name of letters, digits, '.', '_' or '-', not {self.app_id!r}")
        if len(self.app_id) + len(_LEADER_SUFFIX) > TOPIC_NAME_MAX:
            raise ConfigError(
                f"app_id must be at most {TOPIC_NAME_MAX - len(_LEADER_SUFFIX)} characters (Faust's topic "
                f"<app_id>{_LEADER_SUFFIX} is at most {TOPIC_NAME_MAX}), got {len(self.app_id)}"
            )
        longest = max((self.topic(n) for n in TOPIC_NAMES), key=len)
        if len(longest) > TOPIC_NAME_MAX:
            raise ConfigError(
                f"topic_prefix makes topic names of up to {len(longest)} characters ({longest[:40]}...): "
                f"Kafka takes at most {TOPIC_NAME_MAX}, so the prefix at most "
                f"{TOPIC_NAME_MAX - len(longest) + len(self.topic_prefix)}"
            )

    def _check_metrics_addr(self) -> None:
        """``metrics_addr`` is a host name or an IP address (the port is ``metrics_port``); a name
        that does not resolve is refused by ``forexd worker`` before it waits for anything."""
        addr = self.metrics_addr
        if _is_ip(addr) or _is_host_name(addr):
            return
        host, sep, port = addr.rpartition(":")
        if sep and (_is_ip(host.strip("[]")) or _is_host_name(host)) and re.fullmatch(r"[0-9]{1,5}", port):
            raise ConfigError(
                f"metrics_addr {addr[:_SHOWN_MAX]!r} holds a port: give the address alone, "
                f"the port in FOREXD_METRICS_PORT"
            )
        raise ConfigError(
            f"metrics_addr {addr[:_SHOWN_MAX]!r} is not a host name or an IP address "
            "(e.g. 127.0.0.1, 0.0.0.0, ::1, localhost)"
        )

    def _check_schedule(self) -> None:
        """Each ``retrain_schedule`` entry parses and names a symbol and a timeframe this worker
        serves (as written; the retrain agent refuses any other at every slot)."""
        from retraining.schedule import ScheduleEntry  # lazily: it loads the model registry

        for text in self.retrain_schedule:
            try:
                entry = ScheduleEntry.parse(text)
            except ConfigError as exc:
                raise ConfigError(f"retrain_schedule: {exc}") from None
            if entry.key.symbol not in self.symbols:
                raise ConfigError(
                    f"retrain_schedule entry {text[:64]!r}: symbol {entry.key.symbol} is not among symbols "
                    f"({', '.join(self.symbols)})"
                )
            if entry.key.timeframe not in self.timeframes:
                raise ConfigError(
                    f"retrain_schedule entry {text[:64]!r}: timeframe {entry.key.timeframe} is not among "
                    f"timeframes ({', '.join(self.timeframes)})"
                )

    def _check_bounds(self) -> None:
        """Every number within :data:`NUMBER_BOUNDS`: what the broker, the sockets, the clock and
        memory take. A value outside was accepted and failed later, or silently did something
        else (a negative message limit dead-lettered every tick, a port of 70000 failed at
        start, an idle close of 1e-310 s was a busy loop, a wait of 1e308 s overflowed the
        clock, 10**9 retrain jobs at once forked until memory ran out)."""
        for name, (lo, hi, off, meaning) in NUMBER_BOUNDS.items():
            value = getattr(self, name)
            if name in _OWN_CHECKS or lo <= value <= hi:  # nan is in no range
                continue
            if off and value == 0:  # 0 (or -0.0) means off
                object.__setattr__(self, name, 0.0)
                continue
            if off:
                raise ConfigError(
                    f"{name} must be >= 0 (0: {off}; else at least {_num(lo)} s) and at most {_num(hi)} s, "
                    f"got {value!r}"
                )
            if meaning == "seconds" or meaning.startswith("seconds "):
                raise ConfigError(f"{name} must be > 0 (at least {_num(lo)} s) and at most {_num(hi)} s, got {value!r}")
            raise ConfigError(f"{name} must be in {lo:,}..{hi:,} ({meaning}), got {value!r}")
        if self.broker_heartbeat_interval_s >= self.broker_session_timeout_s:
            raise ConfigError(
                f"broker_heartbeat_interval_s ({self.broker_heartbeat_interval_s:g}) must be less than "
                f"broker_session_timeout_s ({self.broker_session_timeout_s:g}): the group would evict the worker"
            )

    def _canonical_symbols(self) -> None:
        """Set ``symbols`` as the ticks spell them, each once; refuse any that is no currency pair."""
        reg = InstrumentRegistry()
        canon = {s: _symbol(s, reg) for s in self.symbols}
        bad = [s for s, c in canon.items() if not _PAIR.fullmatch(c)]
        if bad or not canon:
            raise ConfigError(
                f"symbols must be currency pairs such as EURUSD or EUR/USD, not {', '.join(map(repr, bad[:3])) or 'none'}"
            )
        object.__setattr__(self, "symbols", tuple(dict.fromkeys(canon.values())))

    def check_broker_url(self) -> None:
        """Refuse a broker URL without a valid ``host:port`` (:func:`broker_addresses`)."""
        broker_addresses(self.broker_url)

    def _derive_from_models(self) -> None:
        """Check ``models`` and set ``forecast_timeframes`` and ``horizon`` from it."""
        pairs = _parse_models(self.models, self.timeframes)
        tfs = tuple(tf for tf, _ in pairs)
        # set directly too (not only through FOREXD_*): they must agree or be the defaults
        if self.forecast_timeframes not in (("1m",), tfs) or self.horizon not in (24, pairs[0][1]):
            raise ConfigError("models conflicts with forecast_timeframes/horizon: set models alone")
        object.__setattr__(self, "models", tuple(f"{tf}:{h}" for tf, h in pairs))
        object.__setattr__(self, "forecast_timeframes", tfs)
        object.__setattr__(self, "horizon", pairs[0][1])

    def _check_sampling(self) -> None:
        """The sampling budget within bounds, each floor at most its full value (when both are set)."""
        # 0 is "never"; a negative count was read as never too, and one past any batch is never in effect
        if not 0 <= self.forecast_degrade_batch <= DEGRADE_BATCH_MAX:
            raise ConfigError(
                f"forecast_degrade_batch (FOREXD_FORECAST_DEGRADE_BATCH) must be >= 0 (0: never) and at most "
                f"{DEGRADE_BATCH_MAX:,} (candles in one batch), got {self.forecast_degrade_batch}"
            )
        bounds = {"samples": (FORECAST_SAMPLES_MIN, FORECAST_SAMPLES_MAX), "steps": (1, SAMPLING_STEPS_MAX)}
        for what, (lo, hi) in bounds.items():
            full, floor = f"forecast_{what}", f"forecast_min_{what}"
            for name in (full, floor):
                value = getattr(self, name)
                if value is not None and not lo <= value <= hi:
                    raise ConfigError(
                        f"{name} (FOREXD_{name.upper()}) must be in {lo}..{hi} "
                        f"({'diffusion samples per forecast' if what == 'samples' else 'denoising steps per sample'}; "
                        f"unset: the model's own), got {value}"
                    )
            top, low = getattr(self, full), getattr(self, floor)
            if top is not None and low is not None and low > top:
                raise ConfigError(
                    f"{floor} (FOREXD_{floor.upper()}={low}) must be at most {full} (FOREXD_{full.upper()}={top}): "
                    "it is the reduced budget used when the forecaster falls behind"
                )

    def _check_paths(self) -> None:
        """``paths`` in ``0..PATHS_MAX``, at most the paths sampled, a record within one Kafka message."""
        if not 0 <= self.paths <= PATHS_MAX:
            raise ConfigError(f"paths must be in 0..{PATHS_MAX} (sample paths per forecast; 0: off)")
        if self.forecast_samples is not None and self.paths > self.forecast_samples:
            raise ConfigError(f"paths ({self.paths}) must be at most forecast_samples ({self.forecast_samples})")
        h = max(self.model_horizons.values())
        if self.paths and paths_record_bytes(self.paths, h) > PATHS_RECORD_BYTES_MAX:
            fit = max(n for n in range(PATHS_MAX + 1) if paths_record_bytes(n, h) <= PATHS_RECORD_BYTES_MAX)
            raise ConfigError(
                f"paths ({self.paths}) x horizon ({h}) makes fx.forecasts.paths records of up to "
                f"{paths_record_bytes(self.paths, h):,} bytes, over {PATHS_RECORD_BYTES_MAX:,}: at most {fit} at that horizon"
            )

    @property
    def model_horizons(self) -> dict[str, int]:
        """Horizon per forecast timeframe: ``models``, else ``horizon`` for every one of
        ``forecast_timeframes`` (the worker serves one model per timeframe)."""
        if self.models:
            return dict(_parse_models(self.models, self.timeframes))
        return {tf: self.horizon for tf in self.forecast_timeframes}

    def retrain_job(self) -> JobConfig:
        """The retrain jobs' settings: ``FOREXD_RETRAIN_JOB_CONFIG`` (else the defaults at the
        worker's horizon), with ``FOREXD_SHADOW_FORECASTS`` unless that JSON names
        ``shadow_forecasts``. A malformed value is a ``SettingsError`` (exit 78): the worker
        checks it before it starts."""
        import json

        from retraining.jobs import JobConfig

        try:
            # a key given twice is refused, as the wire codec refuses it (json took the last one)
            text = self.retrain_job_config
            data = json.loads(text, object_pairs_hook=_unique_keys) if text else {"horizon": self.horizon}
            if isinstance(data, dict) and "shadow_forecasts" not in data:
                data = {**data, "shadow_forecasts": self.shadow_forecasts}
            return JobConfig.from_dict(data)
        except (json.JSONDecodeError, RecursionError, ConfigError) as exc:  # RecursionError: nested too deep
            raise SettingsError(f"FOREXD_RETRAIN_JOB_CONFIG: {exc} (a JSON object of JobConfig fields)") from None
        except ValueError:  # int() of a number past 4,300 digits (not a JSONDecodeError): was a traceback
            raise SettingsError(
                "FOREXD_RETRAIN_JOB_CONFIG: a number of more than 4,300 digits (a JSON object of JobConfig fields)"
            ) from None

    def check_device(self) -> None:
        """Refuse a CUDA ``device`` on a machine without CUDA (``SettingsError``, exit 78).

        Imports torch: called where the serving models run (the worker), not by every command.
        """
        if not self.device.startswith("cuda"):
            return
        import torch

        if not torch.cuda.is_available():
            raise SettingsError(
                f"FOREXD_DEVICE={self.device} but CUDA is not available on this machine: "
                "set FOREXD_DEVICE=cpu (or auto, which takes CUDA only when present)"
            )
        n = int(self.device.split(":")[1]) if ":" in self.device else 0
        if n >= torch.cuda.device_count():
            raise SettingsError(
                f"FOREXD_DEVICE={self.device} but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )

    @property
    def send_ack_timeout_s(self) -> float:
        """How long a checkpoint waits for the broker's acks of its output records: past the
        producer's own request timeout (so the producer retries a lost request first); a
        checkpoint that still has no ack fails and is retried, never hangs."""
        return self.producer_request_timeout_s * 2 + 5.0

    @property
    def db_url(self) -> str:
        """The database URL (a SQLite file under ``data_dir`` by default)."""
        if self.database_url:
            return self.database_url
        # as forex_diffusion.storage.sqlite_url (not imported: it loads sqlalchemy): a '%', '?' or
        # '#' of FOREXD_DATA_DIR escaped, else SQLAlchemy opened another file (/data/50%41 -> /data/50A)
        path = str((self.data_dir / "forexd.db").resolve())
        return "sqlite:///" + path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")

    def make_db_engine(self, *, create: bool = True) -> Any:
        """An engine on :attr:`db_url` with the configured PostgreSQL timeouts (``make_engine``)."""
        from forex_diffusion.storage import make_engine  # lazily: `forexd --help` loads no sqlalchemy

        return make_engine(
            self.db_url,
            create=create,
            connect_timeout_s=self.db_connect_timeout_s,
            statement_timeout_s=self.db_statement_timeout_s,
            lock_timeout_s=self.db_lock_timeout_s,
        )

    def topic(self, name: str) -> str:
        """Full topic name of ``fx.<name>`` with the configured prefix."""
        return f"{self.topic_prefix}fx.{name}"

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes``."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``FOREXD_<FIELD>`` variables (upper-case field names)."""
        env = os.environ if env is None else env
        if env.get("FOREXD_MODELS"):
            given = [n for n in ("FOREXD_HORIZON", "FOREXD_FORECAST_TIMEFRAMES") if env.get(n)]
            if given:
                raise SettingsError(
                    f"FOREXD_MODELS replaces {' and '.join(given)}: unset "
                    f"{'them' if len(given) > 1 else 'it'} (FOREXD_MODELS=1m:24 is "
                    "FOREXD_FORECAST_TIMEFRAMES=1m with FOREXD_HORIZON=24)"
                )
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"FOREXD_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if "\x00" in raw:  # no process environment holds one; a path with one fails in the OS call
                raise SettingsError(f"FOREXD_{f.name.upper()} holds a NUL character: remove it")
            if f.name not in _PATH_FIELDS:  # a file name may hold any bytes; a text value is sent on as UTF-8
                _check_utf8(f"FOREXD_{f.name.upper()}", raw, secret=not f.repr)
            values[f.name] = _convert(f.name, f.type, raw)
        given = [n for n in values if n not in overrides]
        values.update(overrides)
        try:
            return cls(**values)
        except SettingsError:
            raise
        except ConfigError as exc:
            # name the variables the message is about ("partitions must be in ..." is FOREXD_PARTITIONS)
            named = [f"FOREXD_{n.upper()}" for n in given if re.search(rf"\b{n}\b", str(exc))]
            fix = f"fix {', '.join(named)}" if named else "fix the FOREXD_* environment variables"
            raise SettingsError(f"{exc}: {fix} (docs/operations.md lists the settings)") from exc


#: Settings that name a file or directory: any bytes but NUL are a legal file name there (the
#: OS takes them back as they came; SQLite's file name too; ssl's CA file too), so such a value
#: is not refused.
_PATH_FIELDS = frozenset({"data_dir", "model_dir", "kafka_ssl_cafile"})
#: Longest value a refusal echoes (as ``forexd``'s error lines cut a value).
_SHOWN_MAX = 200


def _check_utf8(variable: str, raw: str, *, secret: bool) -> None:
    """Refuse a text value holding bytes that are not UTF-8.

    Python reads such bytes of the environment as lone surrogates (PEP 383, ``'x\\udcffy'``);
    they passed every check here and failed later, as an ``UnicodeEncodeError`` where the
    value is sent on: to aiokafka (topic names, SASL), hmac (the state key), the database
    driver, the metrics socket. One ``SettingsError`` line names ``variable`` and shows the
    bytes escaped (``'x\\xffy'``), cut to :data:`_SHOWN_MAX` characters; a ``secret`` one (a
    password, a key, a URL that may hold a password) is not shown, only where its first
    such byte is.
    """
    try:
        raw.encode("utf-8")
        return
    except UnicodeEncodeError as exc:
        at = exc.start
    fix = "write it in UTF-8 (check the locale or the file it was read from)"
    if secret:
        raise SettingsError(
            f"{variable} holds bytes that are not UTF-8 (the first at character {at + 1}; "
            f"its value is not shown: it may hold a secret): {fix}"
        )
    raise SettingsError(f"{variable}={shown_bytes(raw)} holds bytes that are not UTF-8: {fix}")


def shown_bytes(raw: str) -> str:
    """``raw`` as the bytes the environment or command line held, escaped and quoted
    (``'x\\xffy'``, not ``'x\\udcffy'``), cut to :data:`_SHOWN_MAX` characters."""
    try:
        data = raw.encode("utf-8", "surrogateescape")  # the bytes as given
    except UnicodeEncodeError:  # a surrogate no byte decodes to (only a mapping passed in holds one)
        data = raw.encode("utf-8", "backslashreplace")
    return repr(data[:_SHOWN_MAX])[1:] + (f"... ({len(data)} bytes)" if len(data) > _SHOWN_MAX else "")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; ``ConfigError`` for a key given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"key {key[:64]!r} is given twice")
        out[key] = value
    return out


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per ``FOREXD_*`` variable in ``env`` that nothing reads (a typo).

    Each line names the variable and, when one is close, the setting it was probably meant
    to be.
    """
    env = os.environ if env is None else env
    known = {f"FOREXD_{f.name.upper()}" for f in fields(Settings)} | OTHER_VARIABLES
    out = []
    for name in sorted(env):
        if not name.startswith("FOREXD_") or name in known or name.startswith(_OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; see docs/operations.md for the settings"
        out.append(f"warning: unknown environment variable {name} is ignored{hint}")
    return out


# Numbers as an operator writes them: ASCII digits, a sign, for a float a point and an exponent.
# Python's int()/float() take more: other scripts' digits ('١٢٣' is 123, '９０９２' 9092), '_'
# between digits ('1_000'), Unicode spaces, and for float 'nan', 'inf' and '1e400' (inf).
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ASCII_SPACE = " \t\n\r\f\v"  # stripped around a number (a trailing CR of a .env file written on Windows)
NUMBER_CHARS_MAX = 40  # longest number read: far past every bound (a longer one is refused unread)


def parse_number(variable: str, raw: str, kind: type[int] | type[float]) -> int | float:
    """``raw`` as ``kind``: ASCII digits with an optional sign (for a float also a point and an
    exponent), surrounding ASCII whitespace ignored. Anything else, and a float that is not
    finite (nan passes every "< 0" check: a wait of nan never ends), is a ``SettingsError``
    naming ``variable``.

    >>> parse_number("FOREXD_PARTITIONS", " 12\\r", int), parse_number("FOREXD_IDLE_CLOSE_S", "2.5e1", float)
    (12, 25.0)
    """
    text = raw.strip(_ASCII_SPACE)
    pattern = _INT if kind is int else _FLOAT
    if len(text) <= NUMBER_CHARS_MAX and pattern.fullmatch(text):
        value = kind(text)
        if math.isfinite(value):
            return value
    shown = f"{raw[:NUMBER_CHARS_MAX]!r}{'…' if len(raw) > NUMBER_CHARS_MAX else ''}"
    why = f" (more than {NUMBER_CHARS_MAX} characters)" if len(text) > NUMBER_CHARS_MAX else ""
    example = (
        "a whole number in ASCII digits (such as 4)" if kind is int else "a finite number in ASCII digits (such as 2.5)"
    )
    raise SettingsError(f"{variable}={shown} is not a valid {kind.__name__}{why}: set it to {example} or unset it")


def _convert(name: str, typ: Any, raw: str) -> Any:
    t = str(typ)
    if "tuple" in t:
        return _csv(raw)
    if "Path" in t:
        return Path(raw)
    if t.startswith("int"):  # int and int | None
        return parse_number(f"FOREXD_{name.upper()}", raw, int)
    if t.startswith("float"):
        return parse_number(f"FOREXD_{name.upper()}", raw, float)
    return raw
