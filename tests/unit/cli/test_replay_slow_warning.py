"""``forexd replay --speed`` below 1 warns about the tick worker's idle close, in one line.

A replay slower than real time stretches every gap of the file: a gap of
``FOREXD_IDLE_CLOSE_S × speed`` or more reaches the worker as a quiet feed, and the idle close
may emit a bar before its last ticks come (they are then refused as ``late``). The worker now
moves its clock only as far as the bars it closed (``tests/unit/ingest/test_thin_feed_holds.py``),
but a bar closed early stays closed: the user is told before anything is published. The
warning comes before the broker is reached, so an unreachable broker shows it too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli.test_cli_errors import DOWN, forexd, write_candles


def _ticks(tmp_path: Path) -> Path:
    path = tmp_path / "eurusd_ticks.csv"
    path.write_text("ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n1398902405000,1.38677,1.38687\n")
    return path


@pytest.mark.parametrize(("speed", "idle", "gap"), [("0.5", "10", "5 s"), ("0.01", "3", "0.03 s")])
def test_a_tick_replay_slower_than_real_time_names_the_gap_the_idle_close_takes_for_quiet(
    tmp_path: Path, speed: str, idle: str, gap: str
) -> None:
    res = forexd(
        "replay", str(_ticks(tmp_path)), "--speed", speed, env={"FOREXD_BROKER_URL": DOWN, "FOREXD_IDLE_CLOSE_S": idle}
    )
    assert res.returncode == 69, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2 and lines[1].startswith("error: broker unreachable"), res.stderr
    assert lines[0].startswith(f"warning: --speed {speed} is slower than real time"), res.stderr
    assert f"idle close is {idle} s (FOREXD_IDLE_CLOSE_S)" in lines[0] and f"a gap of {gap} or more" in lines[0]
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("speed", ["1", "60", "max"])
def test_a_tick_replay_at_real_time_or_faster_does_not_warn(tmp_path: Path, speed: str) -> None:
    res = forexd("replay", str(_ticks(tmp_path)), "--speed", speed, env={"FOREXD_BROKER_URL": DOWN})
    assert res.returncode == 69 and "warning" not in res.stderr, res.stderr


def test_a_candle_replay_does_not_warn_the_candle_worker_has_no_idle_close(tmp_path: Path) -> None:
    candles = tmp_path / "eurusd_m1.csv"
    write_candles(candles)
    res = forexd("replay", str(candles), "--timeframe", "1m", "--speed", "0.5", env={"FOREXD_BROKER_URL": DOWN})
    assert res.returncode == 69 and "warning" not in res.stderr, res.stderr
