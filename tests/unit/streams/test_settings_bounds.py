"""Worker settings outside what the broker, the sockets and the clock take are refused when the
settings are built (exit 78 for ``forexd worker``), instead of failing later or silently
doing something else. Found by the hostile sweep of the command line: each value below was
accepted before."""

from __future__ import annotations

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
        ("FOREXD_STATUS_INTERVAL_S", "-1", "status_interval_s must be in"),
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
