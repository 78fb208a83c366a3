"""``forexd demo`` end to end: forecasts printed and published, /metrics complete, no process left."""

from __future__ import annotations

import os
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.demo import run_demo

pytestmark = pytest.mark.broker

# every family the issue lists, by its exposed name
REQUIRED = {
    "forexd_ticks_processed_total", "forexd_candles_processed_total", "forexd_dead_letters_total",
    "forexd_late_ticks_total", "forexd_forecast_latency_seconds", "forexd_forecasts_emitted_total",
    "forexd_forecast_crps", "forexd_forecast_crps_skill_ratio", "forexd_forecast_interval_coverage_ratio",
    "forexd_drift_events_total", "forexd_retrain_requests_total", "forexd_retrain_outcomes_total",
    "forexd_model_version_in_service", "forexd_retrain_duration_seconds", "forexd_consumer_lag_records",
    "forexd_feed_staleness_seconds", "forexd_sampling_samples", "forexd_candles_emitted_total",
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not a running process
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_demo_prints_and_publishes_forecasts_serves_metrics_and_leaves_no_process() -> None:
    shown: list[dict[str, Any]] = []
    res = run_demo(duration=75, speed=1000, show=shown.append)
    assert res.published > 10_000
    assert len(shown) > 100 and shown == res.forecasts
    rec = shown[-1]
    assert rec["symbol"] == "EURUSD" and len(rec["quantiles"]) == 24 and len(rec["levels"]) == 11
    fams = {f.name: f for f in text_string_to_metric_families(res.metrics_text)}
    nonzero = {name for name, f in fams.items() if any(s.value for s in f.samples)}
    # names as the parser reports them (counters lose _total, histograms keep the base name)
    def present(name: str) -> bool:
        base = name.removesuffix("_total")
        return base in nonzero or name in nonzero
    # lag is 0 once the worker has caught up with the paced replay: it must be exported, per partition
    lag = fams["forexd_consumer_lag_records"]
    assert {s.labels["partition"] for s in lag.samples} >= {"0"}
    missing = sorted(n for n in REQUIRED - {"forexd_consumer_lag_records"} if not present(n))
    assert not missing, f"families without a non-zero series: {missing}"
    assert not [p for p in res.pids if _alive(p)], "child processes left behind"
