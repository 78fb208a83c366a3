"""Settings that were checked only where they were first used, after the worker had waited for
the broker and the database (review of the settings): each is now refused when the settings
are built, or by ``forexd worker`` before it waits, as one line naming its variable (exit 78).

Before: ``FOREXD_KAFKA_SASL_MECHANISM=BOGUS`` was a traceback (``ValueError: 'BOGUS' is not a
valid SASLMechanism``, exit 1); ``FOREXD_RETRAIN_SCHEDULE=garbage`` exit 2 after the broker
wait; ``FOREXD_METRICS_ADDR='not a host!'`` exit 74 ``Name or service not known`` after both
waits, naming no variable; a topic prefix or application id that no Kafka topic name may hold
was taken; a key given twice in ``FOREXD_RETRAIN_JOB_CONFIG`` silently took the last value.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from forex_diffusion.errors import SettingsError
from streams.commands.worker import _check_cafile, _check_metrics_addr
from streams.settings import TOPIC_NAME_MAX, Settings
from tests.unit.cli.test_cli_errors import assert_one_line, forexd

SASL = {"FOREXD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FOREXD_KAFKA_SASL_USERNAME": "u"}
SASL |= {"FOREXD_KAFKA_SASL_PASSWORD": "s3cret"}


@pytest.mark.parametrize(
    ("env", "variable", "says"),
    [
        (
            {**SASL, "FOREXD_KAFKA_SASL_MECHANISM": "BOGUS"},
            "FOREXD_KAFKA_SASL_MECHANISM",
            "must be PLAIN, SCRAM-SHA-256",
        ),
        ({"FOREXD_KAFKA_SASL_MECHANISM": "scram-sha-512"}, "FOREXD_KAFKA_SASL_MECHANISM", "not 'scram-sha-512'"),
        ({"FOREXD_RETRAIN_SCHEDULE": "garbage"}, "FOREXD_RETRAIN_SCHEDULE", "bad schedule entry 'garbage'"),
        ({"FOREXD_RETRAIN_SCHEDULE": "EURUSD/1h/24@0m"}, "FOREXD_RETRAIN_SCHEDULE", "bad interval"),
        ({"FOREXD_RETRAIN_SCHEDULE": "EURUSD/1h/24@1d+x"}, "FOREXD_RETRAIN_SCHEDULE", "bad interval"),
        # an entry the retrain agent refused at every slot (unknown_symbol, unknown_key), logged only
        ({"FOREXD_RETRAIN_SCHEDULE": "NZDUSD/1h/24@1d"}, "FOREXD_RETRAIN_SCHEDULE", "symbol NZDUSD is not among"),
        ({"FOREXD_RETRAIN_SCHEDULE": "EURUSD/4h/24@1d"}, "FOREXD_RETRAIN_SCHEDULE", "timeframe 4h is not among"),
        ({"FOREXD_METRICS_ADDR": "not a host!"}, "FOREXD_METRICS_ADDR", "is not a host name or an IP address"),
        ({"FOREXD_METRICS_ADDR": "a..b"}, "FOREXD_METRICS_ADDR", "is not a host name"),
        ({"FOREXD_METRICS_ADDR": "-h"}, "FOREXD_METRICS_ADDR", "is not a host name"),
        ({"FOREXD_METRICS_ADDR": "h" * 64}, "FOREXD_METRICS_ADDR", "is not a host name"),
        ({"FOREXD_METRICS_ADDR": "[::1]"}, "FOREXD_METRICS_ADDR", "is not a host name"),
        ({"FOREXD_METRICS_ADDR": "127.0.0.1:9464"}, "FOREXD_METRICS_ADDR", "holds a port"),
        ({"FOREXD_TOPIC_PREFIX": "my prefix/"}, "FOREXD_TOPIC_PREFIX", "only ASCII letters, digits"),
        ({"FOREXD_TOPIC_PREFIX": "é."}, "FOREXD_TOPIC_PREFIX", "only ASCII letters, digits"),
        ({"FOREXD_TOPIC_PREFIX": "p" * 300}, "FOREXD_TOPIC_PREFIX", f"at most {TOPIC_NAME_MAX}"),
        ({"FOREXD_TOPIC_PREFIX": "p" * 231}, "FOREXD_TOPIC_PREFIX", "the prefix at most 230"),
        ({"FOREXD_APP_ID": "a b/c"}, "FOREXD_APP_ID", "only ASCII letters, digits"),
        ({"FOREXD_APP_ID": "forexd:1"}, "FOREXD_APP_ID", "only ASCII letters, digits"),
        ({"FOREXD_APP_ID": "a" * 230}, "FOREXD_APP_ID", "at most 229 characters"),
    ],
)
def test_a_setting_only_checked_where_it_was_used_is_refused_when_the_settings_are_built(
    env: dict[str, str], variable: str, says: str
) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    line = str(err.value)
    assert says in line and f"fix {variable}" in line, line
    assert "\n" not in line and "s3cret" not in line, line


def test_values_of_those_settings_that_work_are_accepted() -> None:
    s = Settings.from_env(
        {
            **SASL,
            "FOREXD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "FOREXD_RETRAIN_SCHEDULE": "EURUSD/1h/24@1d+2h, GBPUSD/15m/12@6h",
            "FOREXD_METRICS_ADDR": "metrics_host-1.example.",
            "FOREXD_TOPIC_PREFIX": "team-a.prod_",
            "FOREXD_APP_ID": "a" * 229,
        }
    )
    assert s.retrain_schedule == ("EURUSD/1h/24@1d+2h", "GBPUSD/15m/12@6h")
    assert len(s.topic("retrain.requests")) < TOPIC_NAME_MAX
    for addr in ("127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1", "localhost", "worker"):
        assert Settings(metrics_addr=addr).metrics_addr == addr
    assert Settings(topic_prefix="p" * 230).topic("retrain.requests") == "p" * 230 + "fx.retrain.requests"
    assert Settings(kafka_sasl_mechanism="PLAIN").kafka_sasl_mechanism == "PLAIN"


@pytest.mark.parametrize(
    "config",
    ['{"horizon": 24, "horizon": 6}', '{"promotion": {"a": 1, "a": 2}}', '{"horizon": 24, "horizon": 24}'],
)
def test_a_retrain_job_config_giving_a_key_twice_is_refused(config: str) -> None:
    """The wire codec refuses a JSON object with a key given twice; the job's settings took the last one."""
    s = Settings.from_env({"FOREXD_RETRAIN_JOB_CONFIG": config})
    with pytest.raises(SettingsError, match=r"^FOREXD_RETRAIN_JOB_CONFIG: key '(horizon|a)' is given twice"):
        s.retrain_job()


def test_a_metrics_address_that_does_not_resolve_is_refused_before_the_worker_waits() -> None:
    with pytest.raises(SettingsError) as err:
        _check_metrics_addr("no-such-host.invalid", 9464)
    line = str(err.value)
    assert line.startswith("FOREXD_METRICS_ADDR='no-such-host.invalid' does not resolve") and "\n" not in line
    _check_metrics_addr("no-such-host.invalid", -1)  # /metrics off: the address is not used
    _check_metrics_addr("127.0.0.1", 0)


def test_a_ca_file_tls_cannot_load_is_refused_before_the_worker_waits(tmp_path: Path) -> None:
    """It failed when the app was built, after the waits: ``[Errno 2] No such file or directory``, exit 66."""
    (tmp_path / "not.pem").write_text("no certificate here\n")
    for cafile in (str(tmp_path / "missing.pem"), str(tmp_path / "not.pem"), str(tmp_path)):
        with pytest.raises(SettingsError, match=r"^FOREXD_KAFKA_SSL_CAFILE=.* cannot be loaded as CA certificates"):
            _check_cafile("SSL", cafile)
    _check_cafile("PLAINTEXT", str(tmp_path / "missing.pem"))  # no TLS: the file is not read
    _check_cafile("SASL_SSL", None)  # the system's CAs


def test_worker_with_a_bad_retrain_schedule_exits_78_on_one_line_before_it_waits(tmp_path: Path) -> None:
    """Before: the broker was waited for (here: one attempt, exit 69), then the retrain agent
    parsed the schedule (``error: bad schedule entry ...``, exit 2)."""
    env = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:1", "FOREXD_BROKER_WAIT_S": "0", "FOREXD_DATA_DIR": str(tmp_path)}
    res = forexd("worker", "--role", "retrain", env={**env, "FOREXD_RETRAIN_SCHEDULE": "garbage"})
    assert res.returncode == 78, res.stderr
    assert_one_line(res.stderr, "bad schedule entry 'garbage'", "FOREXD_RETRAIN_SCHEDULE")


def test_worker_whose_metrics_port_is_taken_exits_78_on_one_line_before_it_waits(tmp_path: Path) -> None:
    """Before: the broker and the database were waited for, then the endpoint's bind failed as
    ``[Errno 98] Address already in use`` (exit 74), naming no variable."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {
            "FOREXD_BROKER_URL": "kafka://127.0.0.1:1",  # never reached: the refusal comes first
            "FOREXD_BROKER_WAIT_S": "0",
            "FOREXD_DATA_DIR": str(tmp_path),
            "FOREXD_METRICS_PORT": str(port),
        }
        res = forexd("worker", "--role", "ticks", env=env)
        assert res.returncode == 78, res.stderr
        assert_one_line(res.stderr, f"FOREXD_METRICS_PORT={port} cannot be bound", "FOREXD_METRICS_ADDR='127.0.0.1'")
        _check_metrics_addr("127.0.0.1", 0)  # any free port: nothing to try
        _check_metrics_addr("127.0.0.1", -1)  # off
    _check_metrics_addr("127.0.0.1", port)  # released: the port binds again


def test_a_metrics_port_taken_after_the_check_is_the_same_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The port taken between ``forexd worker``'s check and the endpoint's start (or
    ``run_worker`` called without the check): the same one line, not an ``OSError``."""
    from streams import launch

    monkeypatch.setattr(launch, "wait_for_broker", lambda *a, **k: None)
    monkeypatch.setattr(launch, "wait_for_database", lambda *a, **k: None)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(SettingsError, match=rf"^FOREXD_METRICS_PORT={port} cannot be bound on FOREXD_METRICS_ADDR"):
            launch.run_worker(role="ticks", settings=Settings(metrics_port=port))


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (OSError(errno.EADDRINUSE, "Address already in use"), "another process may hold it; choose another port"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), "set FOREXD_METRICS_ADDR to an address"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "set FOREXD_METRICS_ADDR to an address"),
        (OSError(errno.EACCES, "Permission denied"), "a port below 1024 needs privilege"),
    ],
    ids=["in-use", "not-this-host", "no-longer-resolves", "privileged"],
)
def test_the_metrics_refusal_names_what_to_change(error: OSError, says: str) -> None:
    """An address that is not this host's was told "another process may hold it; choose another port"."""
    from streams.launch import metrics_unbindable

    line = str(metrics_unbindable("192.0.2.1", 80, error))
    assert line.startswith("FOREXD_METRICS_PORT=80 cannot be bound on FOREXD_METRICS_ADDR='192.0.2.1' (")
    assert says in line and "\n" not in line, line


def test_an_address_that_is_not_this_hosts_is_refused_naming_the_address() -> None:
    with pytest.raises(SettingsError, match=r"set FOREXD_METRICS_ADDR to an address of this host"):
        _check_metrics_addr("192.0.2.1", 9464)  # TEST-NET-1: assigned to no host


@pytest.mark.parametrize("port", [65_536, 70_000, 2**31, 2**63])
def test_a_metrics_port_past_65535_is_refused_not_wrapped(port: int) -> None:
    """``getaddrinfo`` took it modulo 2**16 (65536 probed port 0, 70000 port 4464), or raised
    ``OverflowError``: reached by a caller that builds ``Settings`` itself (the variable is bounded)."""
    with pytest.raises(SettingsError, match=rf"^FOREXD_METRICS_PORT={port} is not a TCP port"):
        _check_metrics_addr("127.0.0.1", port)


def test_the_metrics_refusal_is_one_line_whatever_the_error_says() -> None:
    from streams.launch import metrics_unbindable

    line = str(metrics_unbindable("x", 5, OSError(errno.EADDRINUSE, "in\nuse\r\x0bhere")))
    assert "\n" not in line and "\r" not in line and "(in use here)" in line, line
