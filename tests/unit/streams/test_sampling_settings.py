"""The sampling budget (FOREXD_FORECAST_[MIN_]SAMPLES, FOREXD_FORECAST_[MIN_]STEPS) is bounded at start.

Regressions pinned: FOREXD_FORECAST_SAMPLES=100000000 was accepted and allocated at the
first forecast; 0 samples (or 0 steps) was accepted and every forecast then failed; a
negative sample count was reported as "paths (0) must be at most forecast_samples (-1)".
Each bad value is now one settings error naming the variable, and the worker exits 78 on
one line before it starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forex_diffusion.errors import SettingsError
from streams.settings import FORECAST_SAMPLES_MAX, FORECAST_SAMPLES_MIN, SAMPLING_STEPS_MAX, Settings

FOREXD = Path(sys.executable).with_name("forexd")
BOUNDS = {
    "FOREXD_FORECAST_SAMPLES": (FORECAST_SAMPLES_MIN, FORECAST_SAMPLES_MAX),
    "FOREXD_FORECAST_MIN_SAMPLES": (FORECAST_SAMPLES_MIN, FORECAST_SAMPLES_MAX),
    "FOREXD_FORECAST_STEPS": (1, SAMPLING_STEPS_MAX),
    "FOREXD_FORECAST_MIN_STEPS": (1, SAMPLING_STEPS_MAX),
}
BAD = [
    ("FOREXD_FORECAST_SAMPLES", "100000000"),
    ("FOREXD_FORECAST_SAMPLES", "0"),
    ("FOREXD_FORECAST_SAMPLES", "1"),  # the predictor needs at least 2
    ("FOREXD_FORECAST_SAMPLES", "-1"),
    ("FOREXD_FORECAST_SAMPLES", "10001"),
    ("FOREXD_FORECAST_MIN_SAMPLES", "0"),
    ("FOREXD_FORECAST_MIN_SAMPLES", "100000000"),
    ("FOREXD_FORECAST_STEPS", "0"),
    ("FOREXD_FORECAST_STEPS", "-5"),
    ("FOREXD_FORECAST_STEPS", "1001"),
    ("FOREXD_FORECAST_MIN_STEPS", "0"),
    ("FOREXD_FORECAST_MIN_STEPS", "100000"),
    ("FOREXD_FORECAST_DEGRADE_BATCH", "-1"),  # 0 is "never"; a negative count was silently "never" too
]


def test_the_settings_bounds_are_the_wire_and_model_bounds() -> None:
    from forex_diffusion import wire

    assert FORECAST_SAMPLES_MAX == wire.PATHS_MAX  # every sample can be published as a path
    assert Settings.from_env({}).forecast_samples is None  # unset: the model's own


@pytest.mark.parametrize(("name", "value"), BAD)
def test_a_bad_sampling_budget_is_one_settings_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as ei:
        Settings.from_env({name: value})
    msg = str(ei.value)
    assert name in msg and f"got {value}" in msg and "\n" not in msg, msg
    assert "paths" not in msg  # not the paths check's message (it named -1 samples that way)


@pytest.mark.parametrize("what", ["SAMPLES", "STEPS"])
def test_a_floor_above_its_full_budget_is_refused(what: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(f"FOREXD_FORECAST_MIN_{what}=9) must be at most")):
        Settings.from_env({f"FOREXD_FORECAST_{what}": "8", f"FOREXD_FORECAST_MIN_{what}": "9"})
    s = Settings.from_env({f"FOREXD_FORECAST_{what}": "8", f"FOREXD_FORECAST_MIN_{what}": "8"})
    assert getattr(s, f"forecast_min_{what.lower()}") == 8


@given(st.sampled_from(sorted(BOUNDS)), st.integers(min_value=-(10**12), max_value=10**12))
def test_any_budget_is_accepted_within_its_bounds_and_refused_outside(name: str, value: int) -> None:
    lo, hi = BOUNDS[name]
    if lo <= value <= hi:
        assert getattr(Settings.from_env({name: str(value)}), name.removeprefix("FOREXD_").lower()) == value
    else:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: str(value)})


@pytest.mark.parametrize(("name", "value"), [("FOREXD_FORECAST_SAMPLES", "0"), ("FOREXD_FORECAST_STEPS", "5000")])
def test_the_worker_refuses_a_bad_budget_on_one_line_with_exit_78(name: str, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    env[name] = value
    env["FOREXD_BROKER_URL"] = "kafka://127.0.0.1:1"  # never reached: settings fail first
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    res = subprocess.run([*cmd, "worker"], capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 78, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], res.stderr
    assert "Traceback" not in res.stderr and "broker" not in lines[0]
