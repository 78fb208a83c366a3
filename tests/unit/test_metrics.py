"""Tests for the worker metrics (streams.metrics) and the dashboards that query them."""

from __future__ import annotations

import doctest
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from forex_diffusion.errors import RejectReason
from forex_diffusion.quality.monitoring import QualityMonitor, QualityRow
from streams import metrics as metrics_module
from streams.metrics import (
    DEPENDENCIES,
    DETECTORS,
    QUOTE_FLAGS,
    RETRAIN_OUTCOMES,
    RETRAIN_REASONS,
    SOURCE_KINDS,
    Metrics,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "forexd.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"

SYMBOLS = ("EURUSD", "GBPUSD")
TIMEFRAMES = ("1m", "5m")
TOPICS = ("fx.ticks", "fx.candles")
PARTITIONS = 4
UNKNOWN = "XAUUSD"

# Label name -> allowed values (None: checked per family below).
BOUNDED_LABELS: dict[str, frozenset[str] | None] = {
    "symbol": frozenset(SYMBOLS),
    "timeframe": frozenset(TIMEFRAMES),
    "horizon": frozenset(QualityMonitor().horizon_labels),
    "interval": frozenset({"50", "90"}),
    "source": SOURCE_KINDS,
    "reason": None,
    "detector": DETECTORS,
    "outcome": RETRAIN_OUTCOMES,
    "topic": frozenset(TOPICS),
    "partition": frozenset(str(p) for p in range(PARTITIONS)),
    "dependency": DEPENDENCIES,
    "flag": QUOTE_FLAGS,
    "key": None,
    "python": None,  # forexd_build_info: fixed per process
    "torch": None,
    "version": None,  # model_version_in_service: one value per key (checked below)
    "le": None,  # histogram buckets: fixed at definition
}
#: Families of prometheus_client's process, platform and GC collectors.
STANDARD_FAMILIES = frozenset(
    {
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_cpu_seconds",
        "process_open_fds",
        "process_max_fds",
        "python_info",
        "python_gc_objects_collected",
        "python_gc_objects_uncollectable",
        "python_gc_collections",
    }
)
REASONS_BY_FAMILY = {
    "forexd_dead_letters": frozenset(r.value for r in RejectReason),
    "forexd_retrain_requests": RETRAIN_REASONS,
}
# Units that are not base units (Prometheus: seconds, bytes, ratios; never ms, minutes, percent).
NON_BASE_UNITS = re.compile(
    r"_(ms|milliseconds|microseconds|nanoseconds|minutes|hours|days|kilobytes|megabytes|percent)(_|$)"
)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _make(clock: FakeClock | None = None) -> Metrics:
    return Metrics(
        SYMBOLS,
        timeframes=TIMEFRAMES,
        partitions=PARTITIONS,
        topics=TOPICS,
        **({"clock": clock} if clock else {}),
    )


def _exercise(m: Metrics, symbol: str = "EURUSD") -> None:
    """Drive every recording method once with valid values."""
    m.ticks_processed(symbol, 5)
    m.candles_processed(symbol, "1m")
    m.candles_duplicate(symbol, "1m")
    m.candles_emitted(symbol, "5m", 2)
    m.dead_letter("ticks", RejectReason.LATE)
    m.dead_letter("retrain.requests", "schema")
    m.late_tick(symbol)
    m.late_tick(None)
    m.quote_flagged(symbol, "crossed")
    m.forecast_emitted(symbol, "1m", 0.042, steps=20, samples=64, degraded=True)
    m.forecast_withheld(symbol, "1m")
    mon = QualityMonitor()
    lv = [0.05, 0.25, 0.5, 0.75, 0.95]
    mon.update(symbol, "1m", 1, lv, [1, 2, 3, 4, 5], [0, 1, 3, 5, 6], 3.5)
    m.set_quality(mon.snapshot_metrics())
    m.drift_event("ADWIN", symbol, "1m")
    m.retrain_request("drift")
    m.retrain_outcome("promoted")
    m.retrain_duration(42.0)
    m.model_in_service(f"{symbol}/1m/24", 3)
    m.artifact_rejected()
    m.set_lag("fx.ticks", 3, 17)
    m.feed_seen(symbol, 1_399_000_000.0)
    m.circuit_state("database", "open")


def _exercise_junk(m: Metrics) -> int:
    """Drive every method with out-of-domain values; return how many calls name a bad label."""
    calls = [
        lambda: m.ticks_processed(UNKNOWN),
        lambda: m.candles_processed(UNKNOWN, "1m"),
        lambda: m.candles_duplicate(UNKNOWN, "1m"),
        lambda: m.candles_emitted("EURUSD", "3m"),
        lambda: m.dead_letter("ticks", "kaboom"),
        lambda: m.dead_letter("weird-topic", RejectReason.MALFORMED),
        lambda: m.late_tick(UNKNOWN),
        lambda: m.quote_flagged("EURUSD", "smelly"),
        lambda: m.forecast_emitted(UNKNOWN, "1m", 0.1, 10, 10),
        lambda: m.forecast_withheld(UNKNOWN, "1m"),
        lambda: m.drift_event("my-detector", "EURUSD", "1m"),
        lambda: m.retrain_request("because"),
        lambda: m.retrain_outcome("exploded"),
        lambda: m.model_in_service("EURUSD/1m/24/extra", 1),
        lambda: m.model_in_service("EURUSD/1m/24", "v 7<b>"),  # not a version label: refused
        lambda: m.model_in_service("EURUSD/1m/24", "x" * 65),  # too long: refused
        lambda: m.set_lag("fx.other", 0, 1),
        lambda: m.set_lag("fx.ticks", PARTITIONS, 1),
        lambda: m.set_lag("fx.ticks", -1, 1),
        lambda: m.feed_seen(UNKNOWN, 1.0),
        lambda: m.circuit_state("redis", "open"),
        lambda: m.circuit_state("database", "ajar"),
        lambda: m.set_quality([QualityRow(UNKNOWN, "1m", "1", 1, 0.1, 0.2, 0.5, 1.0, 1.0)]),
        lambda: m.set_quality([QualityRow("EURUSD", "1m", "99", 1, 0.1, 0.2, 0.5, 1.0, 1.0)]),
    ]
    for call in calls:
        call()
    return len(calls)


def _families(m: Metrics) -> list:  # type: ignore[type-arg]
    return list(text_string_to_metric_families(m.render().decode()))


def _samples(m: Metrics) -> Iterator[tuple[str, Sample]]:
    for fam in _families(m):
        for s in fam.samples:
            yield fam.name, s


def _valid_series_names(m: Metrics) -> set[str]:
    names: set[str] = set()
    for fam in m.registry.collect():
        if fam.type == "counter":
            names |= {f"{fam.name}_total", f"{fam.name}_created"}
        elif fam.type == "histogram":
            names |= {f"{fam.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(fam.name)
    return names


# ---------------------------------------------------------------------- conventions


def test_docstring_examples_run() -> None:
    result = doctest.testmod(metrics_module)
    assert result.attempted > 0 and result.failed == 0


def test_every_metric_name_follows_prometheus_conventions() -> None:
    m = _make()
    _exercise(m)
    families = list(m.registry.collect())
    # besides forexd's own families, only prometheus_client's standard collectors
    others = {f.name for f in families if not f.name.startswith("forexd_")}
    assert others <= STANDARD_FAMILIES, others - STANDARD_FAMILIES
    families = [f for f in families if f.name.startswith("forexd_")]
    assert len(families) >= 25
    for fam in families:
        assert re.fullmatch(r"forexd_[a-z][a-z0-9_]*[a-z0-9]", fam.name), fam.name
        assert not NON_BASE_UNITS.search(fam.name), f"{fam.name}: use base units"
        assert fam.documentation, f"{fam.name}: no help text"
        if fam.type == "counter":
            assert {s.name for s in fam.samples} <= {f"{fam.name}_total", f"{fam.name}_created"}
            assert any(s.name.endswith("_total") for s in fam.samples), fam.name
        else:
            assert not fam.name.endswith("_total"), f"{fam.name}: only counters end in _total"
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), f"{fam.name}: latency histograms in seconds"
        assert fam.type in ("counter", "gauge", "histogram"), fam.name
        if "latency" in fam.name or "duration" in fam.name or "staleness" in fam.name:
            assert fam.name.endswith("_seconds"), fam.name
        if "coverage" in fam.name or "skill" in fam.name:
            assert fam.name.endswith("_ratio"), fam.name


def test_every_label_is_bounded_and_takes_only_values_from_its_domain() -> None:
    m = _make()
    _exercise(m, "EURUSD")
    _exercise(m, "GBPUSD")
    _exercise_junk(m)
    seen_labels: set[str] = set()
    for family, s in _samples(m):
        if family in STANDARD_FAMILIES:
            continue  # prometheus_client's collectors: fixed per process or per GC generation
        for label, value in s.labels.items():
            assert label in BOUNDED_LABELS, f"{family}: unbounded label {label!r}"
            seen_labels.add(label)
            domain = BOUNDED_LABELS[label]
            if label == "reason":
                domain = REASONS_BY_FAMILY[family.removesuffix("_created")]
            if label == "key":
                sym, tf, h = value.split("/")
                assert sym in SYMBOLS and tf in TIMEFRAMES and h.isdigit(), value
            elif label == "symbol" and value == "" and family.startswith("forexd_late_ticks"):
                continue  # a late tick whose symbol the agent could not tell
            elif domain is not None:
                assert value in domain, f"{family}: {label}={value!r} outside its domain"
    assert seen_labels >= {"symbol", "timeframe", "reason", "partition", "topic", "key"}


def test_unknown_symbol_is_never_a_label_value_and_is_counted_label_free() -> None:
    m = _make()
    m.ticks_processed(UNKNOWN, 3)
    m.candles_emitted(UNKNOWN, "1m")
    m.late_tick(UNKNOWN)
    m.feed_seen(UNKNOWN, 1.0)
    m.forecast_emitted(UNKNOWN, "1m", 0.01, 10, 10)
    m.drift_event("adwin", UNKNOWN, "1m")
    m.model_in_service(f"{UNKNOWN}/1m/24", 2)
    text = m.render().decode()
    assert UNKNOWN not in text
    fams = {f.name: f for f in _families(m)}
    (total,) = [s for s in fams["forexd_unconfigured_symbol_events"].samples if s.name.endswith("_total")]
    assert total.labels == {} and total.value == 7


def test_out_of_domain_label_values_are_refused_and_counted() -> None:
    m = _make()
    n = _exercise_junk(m)
    unconfigured = m.unconfigured_symbol_events._value.get()
    invalid = m.invalid_label_values._value.get()
    assert unconfigured + invalid == n
    values = {v for _, s in _samples(m) for v in s.labels.values()}
    for junk in (
        "kaboom",
        "weird-topic",
        "weird_topic",
        "smelly",
        "my_detector",
        "my-detector",
        "because",
        "exploded",
        "fx.other",
        "redis",
        "ajar",
        "99",
        "3m",
        "4",
        "-1",
        UNKNOWN,
        "EURUSD/1m/24/extra",
        "EURUSD/1m/24",
        "v 7<b>",
        "x" * 65,
    ):
        assert junk not in values, junk


def test_partition_label_is_bounded_by_configured_partition_count() -> None:
    m = _make()
    for p in range(PARTITIONS + 10):
        m.set_lag("fx.ticks", p, 1)
    parts = {s.labels["partition"] for _, s in _samples(m) if "partition" in s.labels}
    assert parts == {str(p) for p in range(PARTITIONS)}
    assert m.invalid_label_values._value.get() == 10


# ---------------------------------------------------------------------- behaviour


def test_counters_accumulate_per_label_set() -> None:
    m = _make()
    m.ticks_processed("EURUSD", 2)
    m.ticks_processed("EURUSD")
    m.ticks_processed("GBPUSD", 5)
    m.dead_letter("ticks", RejectReason.NON_FINITE)
    m.dead_letter("ticks", "non_finite")
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for _, s in _samples(m)}
    assert values[("forexd_ticks_processed_total", (("symbol", "EURUSD"),))] == 3
    assert values[("forexd_ticks_processed_total", (("symbol", "GBPUSD"),))] == 5
    key = ("forexd_dead_letters_total", (("reason", "non_finite"), ("source", "ticks")))
    assert values[key] == 2


def test_forecast_emitted_records_latency_histogram_budget_and_degraded() -> None:
    m = _make()
    m.forecast_emitted("EURUSD", "1m", 0.02, steps=20, samples=64)
    m.forecast_emitted("EURUSD", "1m", 3.0, steps=8, samples=16, degraded=True)
    v = {(s.name, tuple(sorted(s.labels.items()))): s.value for _, s in _samples(m)}
    ser = (("symbol", "EURUSD"), ("timeframe", "1m"))
    assert v[("forexd_forecasts_emitted_total", ser)] == 2
    assert v[("forexd_forecasts_degraded_total", ser)] == 1
    assert v[("forexd_sampling_samples", ser)] == 16
    assert v[("forexd_sampling_denoising_steps", ser)] == 8
    tf = (("timeframe", "1m"),)
    assert v[("forexd_forecast_latency_seconds_count", tf)] == 2
    assert v[("forexd_forecast_latency_seconds_sum", tf)] == pytest.approx(3.02)
    assert v[("forexd_forecast_latency_seconds_bucket", (("le", "0.025"), ("timeframe", "1m")))] == 1


def test_set_quality_publishes_monitor_rows_and_drops_unmeasurable_coverage() -> None:
    m = _make()
    mon = QualityMonitor()
    lv = [0.05, 0.25, 0.5, 0.75, 0.95]
    for y in (3.0, 4.5, 9.0):
        mon.update("EURUSD", "5m", 1, lv, [1, 2, 3, 4, 5], [0, 1, 3, 5, 6], y)
    (row,) = mon.snapshot_metrics()
    m.set_quality([row])
    v = {(s.name, tuple(sorted(s.labels.items()))): s.value for _, s in _samples(m)}
    key = (("horizon", "1"), ("symbol", "EURUSD"), ("timeframe", "5m"))
    assert v[("forexd_forecast_crps", key)] == pytest.approx(row.crps)
    assert v[("forexd_forecast_crps_random_walk", key)] == pytest.approx(row.crps_rw)
    assert v[("forexd_forecast_crps_skill_ratio", key)] == pytest.approx(row.crps_skill)
    assert v[("forexd_forecast_quality_window_steps", key)] == 3
    assert v[
        (
            "forexd_forecast_interval_coverage_ratio",
            (("horizon", "1"), ("interval", "50"), ("symbol", "EURUSD"), ("timeframe", "5m")),
        )
    ] == pytest.approx(1 / 3)
    # A later window without the interval levels removes the coverage series.
    m.set_quality([QualityRow("EURUSD", "5m", "1", 3, 0.1, 0.2, 0.5, None, None)])
    assert "forexd_forecast_interval_coverage_ratio{" not in m.render().decode()


def test_feed_staleness_is_computed_at_scrape_time_from_last_arrival() -> None:
    clock = FakeClock(1_000.0)
    m = _make(clock)
    m.feed_seen("EURUSD", 1_399_000_000.5)

    def staleness() -> float:
        (s,) = [s for n, s in _samples(m) if n == "forexd_feed_staleness_seconds"]
        return s.value

    clock.now = 1_030.0
    assert staleness() == 30.0
    clock.now = 1_090.0
    assert staleness() == 90.0  # no update in between: the value is computed when scraped
    m.feed_seen("EURUSD", 1_399_000_100.0)
    assert staleness() == 0.0
    (ev,) = [s for n, s in _samples(m) if n == "forexd_feed_last_event_timestamp_seconds"]
    assert ev.value == 1_399_000_100.0


def test_lag_from_positions_and_high_water_marks() -> None:
    m = _make()
    m.set_lag_from_positions("fx.ticks", 0, position=40, highwater=100)
    m.set_lag_from_positions("fx.ticks", 1, position=120, highwater=100)  # clamped
    m.set_lag_from_positions("fx.ticks", 2, position=None, highwater=100)  # unknown: not set
    lags = {s.labels["partition"]: s.value for n, s in _samples(m) if n == "forexd_consumer_lag_records"}
    assert lags == {"0": 60, "1": 0}


def test_model_version_circuit_state_and_retrain_families() -> None:
    m = _make()
    m.model_in_service("EURUSD/5m/24", "v7")
    m.model_in_service("GBPUSD/1m/12", 2)
    m.circuit_state("database", "half-open")
    m.circuit_state("broker", "closed")
    m.producer_reset()
    m.producer_reset()
    m.retrain_request("manual")
    m.retrain_outcome("rolled-back")
    m.retrain_duration(90.0)
    m.retrain_duration(float("nan"))  # ignored
    v = {(s.name, tuple(sorted(s.labels.items()))): s.value for _, s in _samples(m)}
    assert v[("forexd_model_version_in_service", (("key", "EURUSD/5m/24"), ("version", "v7")))] == 1
    assert v[("forexd_model_version_in_service", (("key", "GBPUSD/1m/12"), ("version", "2")))] == 1
    assert v[("forexd_circuit_breaker_state", (("dependency", "database"),))] == 1
    assert v[("forexd_circuit_breaker_state", (("dependency", "broker"),))] == 0
    assert v[("forexd_producer_resets_total", ())] == 2
    assert v[("forexd_retrain_requests_total", (("reason", "manual"),))] == 1
    assert v[("forexd_retrain_outcomes_total", (("outcome", "rolled_back"),))] == 1
    assert v[("forexd_retrain_duration_seconds_count", ())] == 1


def test_model_version_is_a_label_with_one_series_per_key_that_a_swap_replaces() -> None:
    m = _make()
    registry_version = "20261128T201504588185Z-7ab98944"
    m.model_in_service("EURUSD/1m/24", "rw-ewma")  # the random walk serves before any model
    m.model_in_service("EURUSD/1m/24", registry_version)  # hot swap
    m.model_in_service("EURUSD/1m/24", registry_version)  # the next forecast: unchanged
    m.model_in_service("GBPUSD/1m/24", "rw-ewma")
    served = sorted(
        (s.labels["key"], s.labels["version"], s.value)
        for n, s in _samples(m)
        if n == "forexd_model_version_in_service"
    )
    assert served == [("EURUSD/1m/24", registry_version, 1.0), ("GBPUSD/1m/24", "rw-ewma", 1.0)]
    m.model_in_service("EURUSD/1m/24", "rw-ewma")  # rollback to the baseline
    served = sorted(
        (s.labels["key"], s.labels["version"]) for n, s in _samples(m) if n == "forexd_model_version_in_service"
    )
    assert served == [("EURUSD/1m/24", "rw-ewma"), ("GBPUSD/1m/24", "rw-ewma")]


def test_build_info_and_default_process_platform_gc_collectors_are_exported() -> None:
    import platform
    from importlib import metadata

    fams = {f.name: f for f in _families(_make())}
    (build,) = fams["forexd_build_info"].samples
    assert build.value == 1
    assert build.labels == {
        "version": metadata.version("forex-diffusion-streaming"),
        "python": platform.python_version(),
        "torch": metadata.version("torch"),
    }
    assert "python_info" in fams and "python_gc_objects_collected" in fams
    if Path("/proc/self/stat").exists():  # the process collector reads /proc (Linux)
        for name in (
            "process_cpu_seconds",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
        ):
            assert name in fams, name
    # each Metrics has its own collectors: a second instance in the process does not collide
    assert b"forexd_build_info" in _make().render()


def test_tick_agent_counts_accepted_crossed_and_locked_quotes(tmp_path: Path) -> None:
    """Regression: forexd_quotes_flagged_total was on the dashboard but never incremented."""
    import asyncio
    from types import SimpleNamespace

    from forex_diffusion.instruments import InstrumentRegistry
    from forex_diffusion.wire import encode
    from streams.agents.ticks import TickAgent
    from streams.app import Runtime
    from streams.settings import Settings

    s = Settings(symbols=("EURUSD",), timeframes=("1m",), data_dir=tmp_path, status_interval_s=0)
    m = Metrics(["EURUSD"], timeframes=["1m"])
    rt = Runtime(
        settings=s,
        app=SimpleNamespace(consumer=None),
        topics={},
        instruments=InstrumentRegistry.of(s.symbols),
        engine=None,
        metrics=m,
    )
    agent = TickAgent(rt)
    t0 = 1_399_273_200_000  # Monday 2014-05-05 07:00 UTC: the market is open
    quotes = [
        (1.38700, 1.38710),
        (1.38712, 1.38705),
        (1.38705, 1.38705),
        (1.38703, 1.38709),
        (1.38712, 1.38706),
        (1.50000, 1.38700),
    ]  # normal, crossed, locked, normal, crossed, refused

    async def go() -> None:
        for off, (bid, ask) in enumerate(quotes):
            await agent.handle(
                SimpleNamespace(
                    topic="fx.ticks",
                    partition=0,
                    offset=off,
                    key=b"EURUSD",
                    value=encode({"v": 1, "symbol": "EURUSD", "ts": t0 + 1_000 * off, "bid": bid, "ask": ask}),
                )
            )

    asyncio.run(go())
    flagged = {
        s.labels["flag"]: s.value for n, s in _samples(m) if n == "forexd_quotes_flagged" and s.name.endswith("_total")
    }
    assert flagged == {"crossed": 2, "locked": 1}
    assert len(agent.effects.dead) == 1  # crossed beyond the tolerance: refused, not flagged
    counters = agent.pipeline.validator.counters
    assert (counters.crossed_accepted, counters.locked) == (2, 1)  # the same count as the validator's


def test_two_instances_in_one_process_do_not_collide() -> None:
    a, b = _make(), _make()
    a.ticks_processed("EURUSD", 4)
    assert b'forexd_ticks_processed_total{symbol="EURUSD"} 4.0' in a.render()
    assert b"forexd_ticks_processed_total{symbol=" not in b.render()


def test_invalid_partition_count_is_refused() -> None:
    with pytest.raises(ValueError):
        Metrics(SYMBOLS, partitions=0)


# ---------------------------------------------------------------------- endpoint


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def test_endpoint_binds_loopback_by_default_and_serves_parseable_text() -> None:
    m = _make()
    m.ticks_processed("EURUSD", 9)
    port = m.serve()
    try:
        assert port > 0 and m.port == port
        assert m._server is not None
        assert m._server.server.server_address[0] == "127.0.0.1"
        fams = {f.name: f for f in text_string_to_metric_families(_get(port))}
        assert {"forexd_ticks_processed", "forexd_forecast_latency_seconds", "forexd_consumer_lag_records"} <= set(fams)
        (tick,) = [s for s in fams["forexd_ticks_processed"].samples if s.name == "forexd_ticks_processed_total"]
        assert tick.value == 9
        with pytest.raises(RuntimeError):
            m.serve()
    finally:
        m.stop()
    assert m.port is None
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _get(port)
    m.stop()  # idempotent


def test_endpoint_is_not_reachable_on_a_non_loopback_address() -> None:
    # Find an address of this host other than loopback; without one, the bind check above suffices.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        host_ip = probe.getsockname()[0]
    except OSError:
        host_ip = "127.0.0.1"
    finally:
        probe.close()
    m = _make()
    port = m.serve()
    try:
        if host_ip.startswith("127."):
            assert m._server is not None and m._server.server.server_address[0] == "127.0.0.1"
        else:
            with pytest.raises(OSError):
                socket.create_connection((host_ip, port), timeout=2).close()
    finally:
        m.stop()


def test_endpoint_serves_on_an_explicit_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    m = _make()
    try:
        assert m.serve(port=free) == free
        assert "forexd_" in _get(free)
    finally:
        m.stop()


# ---------------------------------------------------------------------- dashboards


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "query", "definition") and isinstance(v, str):
                    exprs.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dash)
    return exprs


def test_grafana_dashboard_references_only_metrics_that_exist() -> None:
    valid = _valid_series_names(_make())
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    referenced = {name for e in exprs for name in re.findall(r"\bforexd_\w+", e)}
    missing = referenced - valid
    assert not missing, f"dashboard queries unknown metrics: {sorted(missing)}"
    # Each section of the issue is covered: throughput, lag, latency, quality, drift,
    # retraining, model versions.
    for needed in (
        "forexd_ticks_processed_total",
        "forexd_candles_emitted_total",
        "forexd_consumer_lag_records",
        "forexd_forecast_latency_seconds_bucket",
        "forexd_forecast_crps_skill_ratio",
        "forexd_forecast_interval_coverage_ratio",
        "forexd_drift_events_total",
        "forexd_retrain_requests_total",
        "forexd_retrain_outcomes_total",
        "forexd_model_version_in_service",
        "forexd_feed_staleness_seconds",
        "forexd_dead_letters_total",
    ):
        assert needed in referenced, needed


def test_dashboard_name_check_catches_a_misspelt_metric() -> None:
    # The check above must be able to fail: a typo'd or unit-less name is not valid.
    valid = _valid_series_names(_make())
    assert "forexd_ticks_processed" not in valid  # counter without _total
    assert "forexd_forecast_latency_seconds" not in valid  # histogram without a suffix
    assert "forexd_forecast_latency_ms_bucket" not in valid


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] in uids


def test_alert_rules_reference_only_metrics_that_exist() -> None:
    valid = _valid_series_names(_make())
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs
    referenced = {name for e in exprs for name in re.findall(r"\bforexd_\w+", e)}
    assert referenced and referenced <= valid, sorted(referenced - valid)


def test_late_tick_without_symbol_is_counted_with_an_empty_symbol_label() -> None:
    m = _make()
    m.late_tick(None)
    m.late_tick("EURUSD")
    m.late_tick(UNKNOWN)
    late = {
        s.labels["symbol"]: s.value for n, s in _samples(m) if n == "forexd_late_ticks" and s.name.endswith("_total")
    }
    assert late == {"": 1, "EURUSD": 1}
    assert m.unconfigured_symbol_events._value.get() == 1


def test_a_withheld_forecast_is_counted_per_series() -> None:
    m = _make()
    m.forecast_withheld("EURUSD", "1m")
    m.forecast_withheld("EURUSD", "1m")
    m.forecast_withheld("GBPUSD", "5m")
    v = {(s.name, tuple(sorted(s.labels.items()))): s.value for _, s in _samples(m)}
    assert v[("forexd_forecasts_withheld_total", (("symbol", "EURUSD"), ("timeframe", "1m")))] == 2
    assert v[("forexd_forecasts_withheld_total", (("symbol", "GBPUSD"), ("timeframe", "5m")))] == 1
