"""RELIABILITY.md §5: SCRAM needs TLS, secrets never leak (repr, logs, dead letters,
metrics, storage errors), the metrics endpoint binds loopback by default, no string-built
SQL in ``text()``, and ``torch.load`` only with ``weights_only=True``."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from forex_diffusion.errors import ConfigError, RejectReason, ValidationError
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("forex_diffusion", "retraining", "streams")
SENTINEL = "__SENTINEL_7f3a__"
PG_SENTINEL_URL = f"postgresql+psycopg2://forexd:{SENTINEL}@127.0.0.1:1/forexd"


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_settings_scram_over_plaintext_is_refused() -> None:
    """SASL_PLAINTEXT with a SCRAM mechanism raises ConfigError (SCRAM only with TLS)."""
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        with pytest.raises(ConfigError):
            Settings(
                kafka_security_protocol="SASL_PLAINTEXT",
                kafka_sasl_mechanism=mech,
                kafka_sasl_username="u",
                kafka_sasl_password=SENTINEL,
            )
    with pytest.raises(ConfigError):
        Settings.from_env({"FOREXD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FOREXD_KAFKA_SASL_PASSWORD": SENTINEL})
    assert Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password=SENTINEL).kafka_sasl_password == SENTINEL


def test_settings_repr_hides_kafka_password() -> None:
    """The Kafka SASL password set through the environment is absent from repr/str."""
    s = Settings.from_env(
        {
            "FOREXD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FOREXD_KAFKA_SASL_USERNAME": "u",
            "FOREXD_KAFKA_SASL_PASSWORD": SENTINEL,
        }
    )
    assert SENTINEL not in repr(s) and SENTINEL not in str(s)


def test_settings_repr_hides_database_password() -> None:
    """A password inside FOREXD_DATABASE_URL is absent from repr(Settings)."""
    s = Settings.from_env({"FOREXD_DATABASE_URL": PG_SENTINEL_URL})
    assert SENTINEL not in repr(s)


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def test_storage_error_messages_hide_database_password() -> None:
    """Reading from an unreachable PostgreSQL with a sentinel password raises a project
    StorageError whose text, and every exception in its cause chain, holds no sentinel;
    the same for the engine's table creation."""
    from forex_diffusion.errors import StorageError
    from forex_diffusion.storage import count_candles, make_engine

    eng = make_engine(PG_SENTINEL_URL, create=False, connect_args={"connect_timeout": 2})
    with pytest.raises(StorageError) as info:
        count_candles(eng)
    for exc in _chain(info.value):
        assert SENTINEL not in str(exc) and SENTINEL not in repr(exc)
    with pytest.raises(Exception) as created:  # noqa: PT011 - any error; its text is what matters
        make_engine(PG_SENTINEL_URL, connect_args={"connect_timeout": 2})
    for exc in _chain(created.value):
        assert SENTINEL not in str(exc) and SENTINEL not in repr(exc)


def test_make_engine_on_unreachable_db_raises_a_storage_error() -> None:
    """Creating the tables on an unreachable database raises the project's StorageError."""
    from forex_diffusion.errors import StorageError
    from forex_diffusion.storage import make_engine

    with pytest.raises(StorageError):
        make_engine(PG_SENTINEL_URL, connect_args={"connect_timeout": 2})


def test_dead_letter_record_and_headers_hold_no_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With sentinel secrets in the environment, a dead-letter record and its headers for a
    refused message carry only the message and its origin."""
    from streams.deadletter import dead_letter_headers, dead_letter_record

    monkeypatch.setenv("FOREXD_KAFKA_SASL_PASSWORD", SENTINEL)
    monkeypatch.setenv("FOREXD_DATABASE_URL", PG_SENTINEL_URL)
    err = ValidationError(RejectReason.MALFORMED, "bad json")
    rec = dead_letter_record(topic="fx.ticks", partition=0, offset=1, raw=b"{oops", key=b"EURUSD", error=err)
    hdr = dead_letter_headers(topic="fx.ticks", partition=0, offset=1, error=err)
    assert SENTINEL.encode() not in rec
    assert all(SENTINEL.encode() not in v and SENTINEL not in k for k, v in hdr)


def test_metrics_text_holds_no_secret_and_binds_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Metrics.render()`` after some activity holds no sentinel; the default bind address
    of the endpoint is 127.0.0.1."""
    from streams.metrics import Metrics

    monkeypatch.setenv("FOREXD_KAFKA_SASL_PASSWORD", SENTINEL)
    s = Settings.from_env(
        {
            "FOREXD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FOREXD_KAFKA_SASL_PASSWORD": SENTINEL,
            "FOREXD_DATABASE_URL": PG_SENTINEL_URL,
        }
    )
    m = Metrics(
        s.symbols,
        timeframes=s.timeframes,
        partitions=s.partitions,
        topics=[s.topic(n) for n in ("ticks", "candles", "deadletter")],
    )
    m.ticks_processed("EURUSD")
    m.dead_letter("ticks", "malformed")
    text = m.render()
    text = text.decode() if isinstance(text, bytes) else text
    assert "forexd_" in text and SENTINEL not in text
    assert s.metrics_addr == "127.0.0.1" and Settings().metrics_addr == "127.0.0.1"


@pytest.mark.parametrize("unreachable", ["broker", "database"])
def test_worker_log_holds_no_secret_when_what_it_waits_for_never_answers(unreachable: str, tmp_path: Path) -> None:
    """A worker started with a sentinel DB password and a sentinel SASL password, whose broker
    (then, with a port answering as the broker, whose PostgreSQL) never answers, retries with
    one WARNING line per attempt and exits 69: neither its log (stdout+stderr) nor its last
    line holds the sentinel. Before, one run waited out 60 s of broker retries and never
    reached the database. The start-up waits only probe TCP: no SASL login is tried here
    (tests/security/test_live_tls_scram.py logs in with a wrong password)."""
    with socket.create_server(("127.0.0.1", 0)) as listening:  # accepts the broker wait's probe
        port = 1 if unreachable == "broker" else listening.getsockname()[1]
        _run_waiting_worker(port, tmp_path, "broker.wait" if unreachable == "broker" else "database.wait")


def _run_waiting_worker(broker_port: int, tmp_path: Path, wait_line: str) -> None:
    """Run a ticks worker with both sentinel passwords until it gives up (exit 69) on what it waits for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    env.update(
        {
            "FOREXD_DATABASE_URL": PG_SENTINEL_URL,
            "FOREXD_DATA_DIR": str(tmp_path / "var"),
            "FOREXD_BROKER_URL": f"kafka://127.0.0.1:{broker_port}",
            "FOREXD_BROKER_WAIT_S": "4",
            "FOREXD_DB_WAIT_S": "4",
            "FOREXD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FOREXD_KAFKA_SASL_USERNAME": "forexd",
            "FOREXD_KAFKA_SASL_PASSWORD": SENTINEL,
            "FOREXD_METRICS_PORT": "-1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    res = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", "--role", "ticks", "--loglevel", "debug"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard: the worker gives up after its 4 s wait
    )
    out = res.stdout + res.stderr
    assert res.returncode == 69, out[-3000:]
    assert wait_line in out, out[-3000:]  # it did retry what is unreachable
    assert SENTINEL not in out, out[-3000:]


def test_no_string_built_sql_inside_text_calls() -> None:
    """No f-string, ``%`` formatting, ``.format`` or concatenation as the argument of a
    SQLAlchemy ``text(...)`` call in the packages (RELIABILITY.md §5.4)."""
    offenders: list[str] = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name != "text":
                continue
            arg = node.args[0]
            built = (
                isinstance(arg, ast.JoinedStr)
                or isinstance(arg, ast.BinOp)
                or (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format")
            )
            if built:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_torch_load_is_always_weights_only() -> None:
    """Every ``torch.load(...)`` call in the packages passes ``weights_only=True``."""
    calls, offenders = 0, []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                calls += 1
                kw = {k.arg: k.value for k in node.keywords}
                v = kw.get("weights_only")
                if not (isinstance(v, ast.Constant) and v.value is True):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
    assert calls >= 1, "no torch.load call found: the scan is looking at the wrong sources"
