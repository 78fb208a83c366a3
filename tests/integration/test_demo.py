"""``forexd demo`` end to end: forecasts printed and published, /metrics complete, no process left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.demo import DemoResult, run_demo

from ..waiting import log_progress, wait_until

pytestmark = pytest.mark.broker

# every family the issue lists, by its exposed name
REQUIRED = {
    "forexd_ticks_processed_total",
    "forexd_candles_processed_total",
    "forexd_dead_letters_total",
    "forexd_late_ticks_total",
    "forexd_forecast_latency_seconds",
    "forexd_forecasts_emitted_total",
    "forexd_forecast_crps",
    "forexd_forecast_crps_skill_ratio",
    "forexd_forecast_interval_coverage_ratio",
    "forexd_drift_events_total",
    "forexd_retrain_requests_total",
    "forexd_retrain_outcomes_total",
    "forexd_model_version_in_service",
    "forexd_retrain_duration_seconds",
    "forexd_consumer_lag_records",
    "forexd_feed_staleness_seconds",
    "forexd_sampling_samples",
    "forexd_candles_emitted_total",
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


def _missing(metrics_text: str) -> list[str]:
    """Required families without a non-zero series (lag: exported per partition, may be 0)."""
    try:
        fams = {f.name: f for f in text_string_to_metric_families(metrics_text)}
    except ValueError:  # an empty or partial scrape
        return sorted(REQUIRED)
    nonzero = {name for name, f in fams.items() if any(s.value for s in f.samples)}

    # names as the parser reports them (counters lose _total, histograms keep the base name)
    def present(name: str) -> bool:
        base = name.removesuffix("_total")
        return base in nonzero or name in nonzero

    missing = [n for n in REQUIRED - {"forexd_consumer_lag_records"} if not present(n)]
    lag = fams.get("forexd_consumer_lag_records")
    if lag is None or "0" not in {s.labels.get("partition") for s in lag.samples}:
        missing.append("forexd_consumer_lag_records")
    return sorted(missing)


def _done(res: DemoResult) -> bool:
    return res.published > 10_000 and len(res.forecasts) > 100 and not _missing(res.metrics_text)


def test_demo_prints_and_publishes_forecasts_serves_metrics_and_leaves_no_process() -> None:
    """Runs until every family has moved (a retrain included), not for a fixed time.

    On an idle 2-core machine the demo gets there in about a minute; a busy one only takes
    longer. The ceiling is a hang guard, far above what a slow machine needs.
    """
    shown: list[dict[str, Any]] = []
    res = run_demo(duration=480, speed=1000, show=shown.append, until=_done)
    assert res.published > 10_000
    assert len(shown) > 100 and shown == res.forecasts
    rec = shown[-1]
    assert rec["symbol"] == "EURUSD" and len(rec["quantiles"]) == 24 and len(rec["levels"]) == 11
    missing = _missing(res.metrics_text)
    assert not missing, f"families without a non-zero series: {missing}"
    assert not [p for p in res.pids if _alive(p)], "child processes left behind"


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started (Linux ``/proc``; empty once it is gone)."""
    try:
        return {
            int(c) for t in os.listdir(f"/proc/{pid}/task") for c in _read(f"/proc/{pid}/task/{t}/children").split()
        }
    except FileNotFoundError:
        return set()


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_a_demo_killed_with_sigkill_takes_its_broker_and_worker_with_it(tmp_path: Path) -> None:
    """``kill -9`` of ``forexd demo`` runs none of its cleanup: the broker and the worker, each in
    its own session, used to live on (holding their ports and the data directory). The kernel
    now sends them SIGTERM when the demo dies; the worker ends with its final checkpoint."""
    printed, worker_log = tmp_path / "demo.out", tmp_path / "worker.log"
    with printed.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo", "--plain", "--data-dir", str(tmp_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    children: set[int] = set()
    try:
        # both children started, and the demo printing forecasts (the worker consuming)
        wait_until(
            lambda: len(_children(demo.pid)) == 2 and "forecast " in _read(str(printed)),
            120,
            interval=0.5,
            what="the demo's first forecast",
            progress=lambda: log_progress(_read(str(worker_log))) if worker_log.exists() else 0,
        )
        children = _children(demo.pid)
        demo.kill()
        demo.wait(30)
        wait_until(
            lambda: not [p for p in children if _alive(p)],
            120,
            interval=0.5,
            what="the demo's children to end",
            progress=lambda: log_progress(_read(str(worker_log))),
        )
        assert "shutdown.checkpoint" in _read(str(worker_log))  # SIGTERM: the worker's orderly end
    finally:
        children |= _children(demo.pid)  # before the demo is gone: its children are then another's
        if demo.poll() is None:
            demo.kill()
        for p in children:  # what a failure left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p, signal.SIGKILL)
