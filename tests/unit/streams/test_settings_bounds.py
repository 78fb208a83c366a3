"""Worker settings outside what the broker, the sockets and the clock take are refused when the
settings are built (exit 78 for ``forexd worker``), instead of failing later or silently
doing something else. Found by the hostile sweep of the command line: each value below was
accepted before."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import SettingsError
from streams.settings import Settings, broker_addresses
from tests.unit.cli.test_cli_errors import assert_one_line, forexd


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        # a port past 65535 failed only when /metrics was started, after the broker and database waits
        ("FOREXD_METRICS_PORT", "70000", "metrics_port must be in"),
        # every tick is larger than a negative limit: each one was dead-lettered as oversize
        ("FOREXD_MAX_MESSAGE_BYTES", "-1", "max_message_bytes must be in"),
        ("FOREXD_MAX_MESSAGE_BYTES", "99999999999999", "max_message_bytes must be in"),
        # a negative lateness refused ticks of the forming bar itself as late
        ("FOREXD_ALLOWED_LATENESS_MS", "-5", "allowed_lateness_ms must be in"),
        # an idle close of 0 s closed a caught-up series' bars at every timer tick
        ("FOREXD_IDLE_CLOSE_S", "0", "idle_close_s must be > 0"),
        ("FOREXD_IDLE_CLOSE_S", "-3", "idle_close_s must be > 0"),
        ("FOREXD_SNAPSHOT_INTERVAL_S", "-1", "snapshot_interval_s must be > 0"),
        ("FOREXD_STATUS_INTERVAL_S", "-1", "status_interval_s must be >= 0 (0: no status lines"),
        ("FOREXD_BROKER_SESSION_TIMEOUT_S", "0", "broker_session_timeout_s must be > 0"),
        ("FOREXD_BROKER_HEARTBEAT_INTERVAL_S", "30", "must be less than broker_session_timeout_s"),
        # the topics could not be made: Kafka counts partitions in 32 bits
        ("FOREXD_PARTITIONS", "100000000000000000000", "partitions must be in"),
        ("FOREXD_PARTITIONS", "0", "partitions must be in"),
        # a symbol no tick can carry (the wire's symbols are six letters): nothing was ever consumed
        ("FOREXD_SYMBOLS", "garbage", "symbols must be currency pairs"),
        ("FOREXD_SYMBOLS", "EURUSD,EUR-USD-X", "symbols must be currency pairs"),
        # the worker's wait tried port 9092 instead (a port it could not parse), and the
        # Kafka client failed in its loop (ValueError, OverflowError)
        ("FOREXD_BROKER_URL", "kafka://127.0.0.1:99999", "FOREXD_BROKER_URL="),
        ("FOREXD_BROKER_URL", "kafka://127.0.0.1:x", "FOREXD_BROKER_URL="),
        ("FOREXD_BROKER_URL", "kafka://:9092", "FOREXD_BROKER_URL="),
        # hosts no resolver takes: accepted, then exit 69 "Name or service not known" (hostile pass)
        ("FOREXD_BROKER_URL", "kafka://h :9092", "FOREXD_BROKER_URL="),
        ("FOREXD_BROKER_URL", "kafka://kafka://h:1", "FOREXD_BROKER_URL="),
        ("FOREXD_BROKER_URL", "kafka://h\x01:9092", "FOREXD_BROKER_URL="),
        # credentials in the URL were taken as part of the host, and the password printed
        ("FOREXD_BROKER_URL", "kafka://user:s3cret@h:9092", "holds credentials"),
        # upper() made 'ßßß' SSSSSS and 'EURUſD' EURUSD: pairs the user never named
        ("FOREXD_SYMBOLS", "ßßß", "symbols must be currency pairs"),
        ("FOREXD_SYMBOLS", "EURUſD", "symbols must be currency pairs"),
    ],
)
def test_the_worker_refuses_a_setting_out_of_bounds_on_one_line_exit_78(variable: str, value: str, says: str) -> None:
    env = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:1", "FOREXD_BROKER_WAIT_S": "0", variable: value}
    res = forexd("worker", env=env)
    assert res.returncode == 78, res.stderr
    assert_one_line(res.stderr, says)
    assert "s3cret" not in res.stderr


def test_values_at_the_bounds_are_accepted() -> None:
    s = Settings.from_env(
        {
            "FOREXD_METRICS_PORT": "65535",
            "FOREXD_MAX_MESSAGE_BYTES": "1024",
            "FOREXD_ALLOWED_LATENESS_MS": "0",
            "FOREXD_STATUS_INTERVAL_S": "0",
            "FOREXD_PARTITIONS": "10000",
            "FOREXD_SYMBOLS": "eur/usd,XAUUSD",
            "FOREXD_BROKER_URL": "kafka://[::1]:9093;broker-2",
        }
    )
    assert (s.metrics_port, s.partitions, s.symbols) == (65535, 10000, ("EURUSD", "XAUUSD"))
    assert broker_addresses(s.broker_url) == [("::1", 9093), ("broker-2", 9092)]
    assert Settings.from_env({"FOREXD_METRICS_PORT": "-1"}).metrics_port == -1  # negative: /metrics off
    # pairs the instrument registry does not know, in any spelling, as the ticks spell them
    pairs = Settings.from_env({"FOREXD_SYMBOLS": "USD/CNH,usdcnh,XAU/USD,xau_usd,EURUSD"}).symbols
    assert pairs == ("USDCNH", "XAUUSD", "EURUSD")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_broker_url_gives_addresses_with_a_host_and_a_valid_port_or_a_settings_error(url: str) -> None:
    try:
        addrs = broker_addresses(url)
    except SettingsError as exc:
        assert "FOREXD_BROKER_URL=" in str(exc) and "\n" not in str(exc)
        return
    assert addrs and all(host and 1 <= port <= 65535 for host, port in addrs)


# -- every number has a floor and a ceiling (review of the settings' bounds) ---------------------

WEEK = "604,800 s"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        # 10**9 jobs at once: every queued request runnable, a training process forked for each
        ("FOREXD_RETRAIN_CONCURRENCY", "1000000000", "retrain_concurrency must be in 1..64"),
        ("FOREXD_RETRAIN_CONCURRENCY", "0", "retrain_concurrency must be in 1..64"),
        # a challenger that never leaves shadow (and a LIMIT past PostgreSQL's bigint)
        ("FOREXD_SHADOW_FORECASTS", "1000000000000000000000", "shadow_forecasts must be in 0..100,000"),
        ("FOREXD_SHADOW_FORECASTS", "-1", "shadow_forecasts must be in 0..100,000"),
        ("FOREXD_FORECAST_DEGRADE_BATCH", "99999999999999999999", "at most 100,000"),
        # 1e308 s: the clock's deadline (monotonic() + 1e308) and asyncio's timers overflow
        ("FOREXD_RETRAIN_TIMEOUT_S", "1e308", f"retrain_timeout_s must be > 0 (at least 0.001 s) and at most {WEEK}"),
        ("FOREXD_PRODUCER_REQUEST_TIMEOUT_S", "1e308", f"at most {WEEK}"),
        ("FOREXD_PRODUCER_RESET_AFTER_S", "1e308", f"at most {WEEK}"),
        ("FOREXD_BROKER_WAIT_S", "1e308", "broker_wait_s must be >= 0 (0: one attempt"),
        ("FOREXD_DB_FATAL_AFTER_S", "1e308", "db_fatal_after_s must be >= 0 (0: fatal after 3 attempts"),
        (
            "FOREXD_DB_WAIT_S",
            "1e308",
            f"db_wait_s must be >= 0 (0: one attempt; else at least 0.001 s) and at most {WEEK}",
        ),
        # positive but subnormal: an idle-close timer on every loop turn, a busy loop
        ("FOREXD_IDLE_CLOSE_S", "1e-310", "idle_close_s must be > 0 (at least 0.001 s)"),
        ("FOREXD_SNAPSHOT_INTERVAL_S", "4.9e-324", "snapshot_interval_s must be > 0 (at least 0.001 s)"),
        ("FOREXD_STATUS_INTERVAL_S", "1e-310", "status_interval_s must be >= 0 (0: no status lines; else at least"),
        ("FOREXD_BROKER_REBALANCE_TIMEOUT_S", "0.0001", "at least 0.001 s"),
        ("FOREXD_PRODUCER_REQUEST_TIMEOUT_S", "1e-310", "at least 0.001 s"),
        ("FOREXD_RETRAIN_TIMEOUT_S", "-0", "retrain_timeout_s must be > 0"),
        # rounded up to 1 ms / 1 s by the engine: a limit nobody asked for, or read as "no limit"
        ("FOREXD_DB_STATEMENT_TIMEOUT_S", "1e-310", "db_statement_timeout_s must be >= 0 (0: no limit; else at least"),
        ("FOREXD_DB_CONNECT_TIMEOUT_S", "1e-310", "db_connect_timeout_s must be >= 0"),
    ],
)
def test_a_number_past_its_documented_bounds_is_one_settings_error_naming_variable_range_and_value(
    variable: str, value: str, says: str
) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({variable: value})
    message = str(exc.value)
    assert says in message and f"fix {variable}" in message and "\n" not in message, message
    assert "got " in message, message  # and the value refused


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("FOREXD_RETRAIN_CONCURRENCY", "1000000000", "retrain_concurrency must be in 1..64"),
        ("FOREXD_IDLE_CLOSE_S", "1e-310", "idle_close_s must be > 0 (at least 0.001 s)"),
        ("FOREXD_DB_WAIT_S", "1e308", "fix FOREXD_DB_WAIT_S"),
    ],
)
def test_the_worker_refuses_them_on_one_line_exit_78(variable: str, value: str, says: str) -> None:
    env = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:1", "FOREXD_BROKER_WAIT_S": "0", variable: value}
    res = forexd("worker", env=env)
    assert res.returncode == 78, res.stderr
    assert_one_line(res.stderr, says)


def _numeric_fields() -> dict[str, type]:
    from dataclasses import fields

    return {
        f.name: (int if str(f.type).startswith("int") else float)
        for f in fields(Settings)
        if str(f.type).startswith(("int", "float"))
    }


def test_every_numeric_setting_has_documented_bounds_and_its_default_is_within_them() -> None:
    from pathlib import Path

    from streams.settings import NUMBER_BOUNDS

    assert set(NUMBER_BOUNDS) == set(_numeric_fields())
    docs = (Path(__file__).parents[3] / "docs" / "operations.md").read_text()
    defaults = Settings()
    for name, (lo, hi, off, _) in NUMBER_BOUNDS.items():
        assert lo <= hi and (lo > 0 or not off), name
        value = getattr(defaults, name)
        assert value is None or lo <= value <= hi or (off and value == 0), name
        assert f"`FOREXD_{name.upper()}`" in docs, name  # the operator's table lists it


@pytest.mark.parametrize("name", sorted(_numeric_fields()))
def test_both_ends_of_each_range_are_accepted(name: str) -> None:
    from streams.settings import NUMBER_BOUNDS

    lo, hi, off, _ = NUMBER_BOUNDS[name]
    # the companions a bound needs: a heartbeat below the session timeout; paths that fit one record
    needs: dict[str, dict[str, float]] = {
        "broker_heartbeat_interval_s": {"broker_session_timeout_s": hi},
        "broker_session_timeout_s": {"broker_heartbeat_interval_s": lo},
        "paths": {"horizon": 1},
        "forecast_min_steps": {"forecast_steps": hi},
        "forecast_min_samples": {"forecast_samples": hi},
    }
    companions = needs.get(name, {})
    ends = [lo, hi, *([0] if off else [])]
    for value in ends:
        if (name, value) in {("broker_heartbeat_interval_s", hi), ("broker_session_timeout_s", lo)}:
            continue  # the heartbeat must stay below the session timeout: these ends exclude each other
        env = {f"FOREXD_{k.upper()}": repr(v) for k, v in {**companions, name: value}.items()}
        assert getattr(Settings.from_env(env), name) == value, (name, value)


_BOUND_TEXTS = st.sampled_from(
    ["0", "-0", "-0.0", "+0", "1e-310", "4.9e-324", "2.2250738585072014e-308", "1e308", "1.7976931348623157e308"]
    + ["0.001", "0.0009999", "604800", "604800.0000001", "2147483", "2147483.001", "65535", "65536", "64", "65"]
    + ["100000", "100001", "10000", "10001", "1000", "2", "1", "-1", "nan", "-inf", "1e400", "١٢", "９", " 5 "]
)
_NUMBER_TEXTS = st.one_of(
    _BOUND_TEXTS,
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True).map(repr),
    st.floats(allow_subnormal=True).map(lambda x: f"{x:.3e}"),
    st.integers(-(10**45), 10**45).map(str),
    st.text(alphabet="0123456789+-.eE_ \t\r\n\u3000\xa0١٢٣９０²", max_size=14),
    st.text(max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(values=st.dictionaries(st.sampled_from(sorted(_numeric_fields())), _NUMBER_TEXTS, min_size=1, max_size=3))
def test_any_text_in_any_numeric_variable_is_a_setting_within_its_bounds_or_one_settings_error(
    values: dict[str, str],
) -> None:
    """Property over every numeric ``FOREXD_*`` variable (several at once, so their relations
    are exercised too): the settings built hold each number within :data:`NUMBER_BOUNDS`
    (``None`` only for the unset sampling budget; 0 where it means off), or building them is
    one ``SettingsError`` line naming a variable given. Never another exception."""
    from streams.settings import NUMBER_BOUNDS

    env = {f"FOREXD_{k.upper()}": v for k, v in values.items()}
    try:
        s = Settings.from_env(env)
    except SettingsError as exc:  # any other exception type fails the test
        message = str(exc)
        assert "\n" not in message and any(v in message for v in env), message
        return
    for name, (lo, hi, off, _) in NUMBER_BOUNDS.items():
        value = getattr(s, name)
        if value is None:
            assert name.startswith("forecast_") and not env.get(f"FOREXD_{name.upper()}"), name  # unset
            continue
        assert type(value) is _numeric_fields()[name], (name, value)
        number = cast(float, value)
        assert (lo <= number <= hi) or (off and number == 0 and str(number) == "0.0"), (name, number)
