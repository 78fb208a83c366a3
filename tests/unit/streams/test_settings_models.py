"""FOREXD_MODELS, FOREXD_DEVICE and FOREXD_WARM_CANDLES (issue 16): valid values, invalid
ones and conflicting ones are refused with a config error (exit 78 at the CLI)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import ConfigError, SettingsError
from streams.settings import Settings, unknown_variables


def test_models_set_the_forecast_timeframes_and_each_horizon() -> None:
    s = Settings.from_env({"FOREXD_MODELS": "1m:60, 1h:24"})
    assert s.models == ("1m:60", "1h:24")
    assert s.forecast_timeframes == ("1m", "1h") and s.horizon == 60  # the first model's
    assert s.model_horizons == {"1m": 60, "1h": 24}
    assert s.with_(warm_candles=10).model_horizons == {"1m": 60, "1h": 24}  # copies keep them
    # spelled as a timeframe alias, named as FOREXD_TIMEFRAMES names it
    assert Settings.from_env({"FOREXD_TIMEFRAMES": "1m,60m", "FOREXD_MODELS": "1h:6"}).model_horizons == {"60m": 6}
    assert "FOREXD_MODELS" not in " ".join(unknown_variables({"FOREXD_MODELS": "1m:60"}))


def test_without_models_the_horizon_serves_every_forecast_timeframe_as_before() -> None:
    s = Settings.from_env({"FOREXD_HORIZON": "12", "FOREXD_FORECAST_TIMEFRAMES": "1m,5m"})
    assert s.models == () and s.horizon == 12 and s.model_horizons == {"1m": 12, "5m": 12}
    assert Settings.from_env({}).model_horizons == {"1m": 24}
    d = Settings.from_env({})
    assert (d.device, d.warm_candles) == ("cpu", 512)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FOREXD_MODELS": "1m"}, "not TIMEFRAME:HORIZON"),
        ({"FOREXD_MODELS": "1m:x"}, "not TIMEFRAME:HORIZON"),
        ({"FOREXD_MODELS": "1m:-3"}, "not TIMEFRAME:HORIZON"),
        ({"FOREXD_MODELS": "1m:0"}, "horizon must be >= 1"),
        # non-ASCII digits pass str.isdigit() but not int(): a config error, not a ValueError
        ({"FOREXD_MODELS": "1m:\u00b2"}, "not TIMEFRAME:HORIZON"),
        ({"FOREXD_MODELS": "1m:\u0663"}, "not TIMEFRAME:HORIZON"),
        ({"FOREXD_MODELS": "1m:" + "9" * 5000}, "not TIMEFRAME:HORIZON"),  # int() refuses > 4300 digits
        ({"FOREXD_MODELS": "1m:10001"}, "at most 10000"),  # fx.forecasts holds at most 10000 steps
        ({"FOREXD_HORIZON": "99999999999999999999"}, "at most 10000"),
        ({"FOREXD_MODELS": "3x:5"}, "unknown timeframe"),
        ({"FOREXD_MODELS": "4h:6"}, "4h is not among timeframes"),
        # two horizons of one timeframe would share its forecasts' key, drift events and metrics
        ({"FOREXD_MODELS": "1h:24,1h:6"}, "1h twice"),
        ({"FOREXD_MODELS": "1m:60", "FOREXD_HORIZON": "24"}, "FOREXD_MODELS replaces FOREXD_HORIZON"),
        ({"FOREXD_MODELS": "1m:60", "FOREXD_FORECAST_TIMEFRAMES": "1m"}, "replaces FOREXD_FORECAST_TIMEFRAMES"),
        ({"FOREXD_DEVICE": "gpu"}, "device must be cpu, cuda, cuda:N or auto"),
        ({"FOREXD_DEVICE": "cuda:x"}, "device must be"),
        ({"FOREXD_WARM_CANDLES": "-1"}, "warm_candles must be in 0..100000"),
        ({"FOREXD_WARM_CANDLES": "100001"}, "warm_candles must be in 0..100000"),
        ({"FOREXD_WARM_CANDLES": "many"}, "not a valid int"),
    ],
)
def test_invalid_or_conflicting_values_are_a_config_error(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings.from_env(env)


def test_models_given_directly_must_agree_with_the_horizon_and_timeframes() -> None:
    with pytest.raises(ConfigError, match="conflicts"):
        Settings(models=("1m:60",), horizon=12)
    with pytest.raises(ConfigError, match="conflicts"):
        Settings(models=("1m:60",), forecast_timeframes=("5m",))
    assert Settings(models=("1m:60",), horizon=60).horizon == 60


@pytest.mark.parametrize("device", ["cpu", "auto", "cuda", "cuda:1"])
def test_devices_parse_and_cuda_without_cuda_is_refused(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings.from_env({"FOREXD_DEVICE": device})
    assert s.device == device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if device.startswith("cuda"):
        with pytest.raises(SettingsError, match="CUDA is not available"):
            s.check_device()
    else:
        s.check_device()  # cpu, and auto (which falls back to the CPU), start anywhere
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    if device == "cuda:1":
        with pytest.raises(SettingsError, match="1 CUDA device"):
            s.check_device()
    else:
        s.check_device()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=24))
def test_any_models_string_is_a_config_or_a_config_error(text: str) -> None:
    try:
        s = Settings.from_env({"FOREXD_MODELS": "1m:" + text})
    except SettingsError:
        return
    assert all(1 <= h <= 10_000 for h in s.model_horizons.values())


def test_the_horizon_bound_is_the_wire_s() -> None:
    from forex_diffusion.wire import FORECAST_STEPS_MAX
    from streams import settings

    assert settings.FORECAST_STEPS_MAX == FORECAST_STEPS_MAX
