"""FOREXD_PATHS (issue 16): sample paths per forecast on fx.forecasts.paths, 0 (off) by default;
a bad value is one settings error, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion import wire
from forex_diffusion.errors import SettingsError
from streams.settings import PATHS_MAX, PATHS_RECORD_BYTES_MAX, Settings, paths_record_bytes, unknown_variables


def test_paths_are_off_by_default_and_set_from_the_environment() -> None:
    assert Settings.from_env({}).paths == 0
    assert Settings.from_env({"FOREXD_PATHS": "100"}).paths == 100
    assert Settings.from_env({"FOREXD_PATHS": "32", "FOREXD_FORECAST_SAMPLES": "32"}).paths == 32
    assert not unknown_variables({"FOREXD_PATHS": "1"})
    assert PATHS_MAX == wire.PATHS_MAX  # the settings' copy of the wire bound


@pytest.mark.parametrize(
    ("paths", "more", "says"),
    [
        ("-1", {}, "paths must be in 0..10000"),
        ("10001", {}, "paths must be in 0..10000"),
        ("all", {}, "FOREXD_PATHS='all' is not a valid int"),
        ("1e3", {}, "not a valid int"),
        ("64", {"FOREXD_FORECAST_SAMPLES": "32"}, r"paths \(64\) must be at most forecast_samples \(32\)"),
        # 1000 paths of 720 steps: up to 3.9 MB, over what one Kafka message holds by default
        ("1000", {"FOREXD_HORIZON": "720"}, r"at most 255 at that horizon"),
        ("100", {"FOREXD_MODELS": "1m:24,1h:2000"}, r"horizon \(2000\)"),
    ],
)
def test_bad_paths_values_are_one_settings_error(paths: str, more: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says) as ei:
        Settings.from_env({"FOREXD_PATHS": paths, **more})
    assert "\n" not in str(ei.value)


def test_the_size_bound_is_that_of_the_largest_record_the_encoder_writes() -> None:
    """int32 paths (the widest), every rw_weight a 25-character float: within the estimate."""
    n, h = 255, 720
    header = {
        "symbol": "EURUSD",
        "timeframe": "1m",
        "as_of": 253_402_300_799_999,
        "horizon": h,
        "model_version": "v" * 128,
        "last_close": 1.0987654321234567,
        "sigma": 1.2345678901234567e-05,
        "rw_weight": [0.12345678901234567] * h,
        "samples": 2**31 - 1,
    }
    prices = [[1.0 if i % 2 else 1e5 for i in range(h)] for _ in range(n)]  # log returns beyond int16
    raw = wire.encode_paths(header, prices)
    assert b'"dtype":"<i4"' in raw
    assert len(raw) <= paths_record_bytes(n, h) <= PATHS_RECORD_BYTES_MAX


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(st.integers(-(10**6), 10**6).map(str), st.text(max_size=12)), st.sampled_from(["", "8", "24", "720"]))
def test_any_paths_value_is_a_setting_or_a_settings_error(text: str, horizon: str) -> None:
    env = {"FOREXD_PATHS": text, "FOREXD_HORIZON": horizon}
    try:
        s = Settings.from_env(env)
    except SettingsError as exc:
        assert "\n" not in str(exc) and ("paths" in str(exc) or "FOREXD_" in str(exc))
        return
    assert 0 <= s.paths <= PATHS_MAX
    assert paths_record_bytes(s.paths, s.horizon) <= PATHS_RECORD_BYTES_MAX or s.paths == 0
