"""``FOREXD_*`` values holding bytes that are not UTF-8, and the SQLite file under a data
directory whose name holds ``?``, ``#`` or ``%``.

Python reads bytes of the environment that are not UTF-8 as lone surrogates (PEP 383:
``$'x\\xffy'`` is ``'x\\udcffy'``). Such a text value passed every check of ``Settings`` and
failed later with ``UnicodeEncodeError`` where it was sent on (aiokafka's topic names and
SASL, hmac's state key, the database driver, the metrics socket); a few gave a clear error
by luck. Now every text setting refuses it with one ``SettingsError`` line naming the
variable and showing the bytes escaped (exit 78). The path settings (``FOREXD_DATA_DIR``,
``FOREXD_MODEL_DIR``) keep such bytes: they are a legal file name, and the SQLite database
under the data directory opens at those very bytes.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect
from typer.testing import CliRunner

from forex_diffusion.errors import DataFormatError, SettingsError
from forex_diffusion.storage import make_engine, sqlite_url
from streams.settings import Settings

FOREXD = Path(sys.executable).with_name("forexd")
DOWN = "kafka://127.0.0.1:1"  # nothing listens on port 1
PATH_VARIABLES = {"FOREXD_DATA_DIR", "FOREXD_MODEL_DIR", "FOREXD_KAFKA_SSL_CAFILE"}
PATH_FIELDS = {v.removeprefix("FOREXD_").lower() for v in PATH_VARIABLES}
VARIABLES = sorted(f"FOREXD_{f.name.upper()}" for f in fields(Settings))
SECRET_VARIABLES = {f"FOREXD_{f.name.upper()}" for f in fields(Settings) if not f.repr}
XFF = os.fsdecode(b"x\xffy")  # what Python makes of the bytes x, 0xff, y in the environment


def _utf8(value: Any) -> bool:
    try:
        if isinstance(value, str):
            value.encode("utf-8")
        elif isinstance(value, tuple):
            return all(_utf8(v) for v in value)
        return True
    except UnicodeEncodeError:
        return False


def _not_utf8_text() -> st.SearchStrategy[str]:
    """Text with at least one lone surrogate: mostly the ones bytes of the environment become
    (U+DC80..U+DCFF), some any surrogate (only a mapping passed in can hold those)."""
    plain = st.text(st.characters(blacklist_characters="\x00"), max_size=40)
    bad = st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF) | st.characters(categories=["Cs"])
    return st.tuples(plain, bad, plain).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variable=st.sampled_from(VARIABLES), value=_not_utf8_text())
@example(variable="FOREXD_DATA_DIR", value="\udc80/")  # a path's trailing / is no part of it
def test_a_value_that_is_not_utf8_is_one_settings_error_or_a_path(variable: str, value: str) -> None:
    try:
        s = Settings.from_env({variable: value})
    except SettingsError as exc:  # any other exception fails the test
        line = str(exc)
        assert "\n" not in line and "\r" not in line, line
        assert line.startswith(variable) and "not UTF-8" in line, line
        assert variable not in PATH_VARIABLES, line
        return
    assert variable in PATH_VARIABLES, f"{variable}={value!r} was taken as a text setting"
    for f in fields(s):
        assert f.name in PATH_FIELDS or _utf8(getattr(s, f.name)), (f.name, getattr(s, f.name))
    # the path as given (a Path drops a trailing / or a ./: the same path, its text differs)
    assert Path(value) in (s.data_dir, s.model_dir) or value == s.kafka_ssl_cafile, (s.data_dir, s.model_dir)


@pytest.mark.parametrize(
    "variable",
    [
        "FOREXD_TOPIC_PREFIX",
        "FOREXD_KAFKA_SASL_USERNAME",
        "FOREXD_METRICS_ADDR",
        "FOREXD_RETRAIN_JOB_CONFIG",
        "FOREXD_SYMBOLS",
        "FOREXD_BROKER_URL",
        "FOREXD_APP_ID",
        "FOREXD_PARTITIONS",
    ],
)
def test_a_text_setting_holding_byte_ff_is_refused_showing_the_bytes(variable: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({variable: XFF})
    assert str(err.value) == (
        f"{variable}='x\\xffy' holds bytes that are not UTF-8: write it in UTF-8 (check the locale or the "
        "file it was read from)"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FOREXD_STATE_KEY", "s3cret-" + "k" * 32 + XFF),  # 32+ characters: hmac got it
        ("FOREXD_KAFKA_SASL_PASSWORD", "s3cret" + XFF),
        ("FOREXD_DATABASE_URL", f"postgresql+psycopg2://u:s3cret@127.0.0.1:5432/{XFF}"),
    ],
)
def test_a_secret_setting_that_is_not_utf8_is_refused_without_showing_it(variable: str, value: str) -> None:
    assert variable in SECRET_VARIABLES
    with pytest.raises(SettingsError) as err:
        Settings.from_env({variable: value})
    line = str(err.value)
    assert line.startswith(f"{variable} holds bytes that are not UTF-8"), line
    assert "s3cret" not in line and "\\xff" not in line, line


def test_a_long_value_is_shown_cut() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"FOREXD_TOPIC_PREFIX": XFF * 1_000})
    line = str(err.value)
    assert "... (3000 bytes)" in line and len(line) < 1_000, line


def test_a_data_dir_that_is_not_utf8_holds_the_sqlite_database_at_those_bytes(tmp_path: Path) -> None:
    data = os.fsencode(tmp_path) + b"/d\xffir"
    s = Settings.from_env({"FOREXD_DATA_DIR": os.fsdecode(data), "FOREXD_MODEL_DIR": os.fsdecode(data + b"/m\xfe")})
    assert os.fsencode(s.data_dir) == data
    os.mkdir(data)
    engine = make_engine(s.db_url)  # creates the tables
    try:
        assert "candles" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert os.path.isfile(data + b"/forexd.db")


def test_a_ca_file_under_a_directory_that_is_not_utf8_gives_the_broker_tls_context(tmp_path: Path) -> None:
    """Review finding: FOREXD_KAFKA_SSL_CAFILE is a file name, which may hold any bytes (ssl
    opens it as given); the UTF-8 check of bc846fd refused it at start (exit 78)."""
    from streams.kafka import client_kwargs

    here = os.fsencode(tmp_path) + b"/ca\xffs"
    os.mkdir(here)
    cafile = here + b"/ca.pem"
    paths = ssl.get_default_verify_paths()
    bundle = next((Path(p) for p in (paths.cafile, paths.openssl_cafile) if p and Path(p).is_file()), None)
    if bundle is None:
        pytest.skip("no CA bundle on this machine")
    with open(cafile, "wb") as fh:
        fh.write(bundle.read_bytes())
    s = Settings.from_env({"FOREXD_KAFKA_SECURITY_PROTOCOL": "SSL", "FOREXD_KAFKA_SSL_CAFILE": os.fsdecode(cafile)})
    assert s.kafka_ssl_cafile is not None and os.fsencode(s.kafka_ssl_cafile) == cafile
    assert isinstance(client_kwargs(s)["ssl_context"], ssl.SSLContext)


def forexd_bytes(*args: str, env: dict[bytes, bytes]) -> subprocess.CompletedProcess[str]:
    """The installed ``forexd`` with an environment given as bytes (as a shell passes
    ``$'x\\xff'``)."""
    full = {k: v for k, v in os.environb.items() if not k.startswith(b"FOREXD_")}
    full.update(env)
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full, timeout=240)


@pytest.mark.parametrize("variable", [b"FOREXD_TOPIC_PREFIX", b"FOREXD_KAFKA_SASL_USERNAME"])
def test_worker_with_a_variable_that_is_not_utf8_exits_78_in_one_line(variable: bytes, tmp_path: Path) -> None:
    res = forexd_bytes(
        "worker",
        env={
            variable: b"x\xffy",
            b"FOREXD_BROKER_URL": DOWN.encode(),  # before: waited for it, then 69
            b"FOREXD_BROKER_WAIT_S": b"0",
            b"FOREXD_DATA_DIR": os.fsencode(tmp_path),
        },
    )
    assert res.returncode == 78, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [
        f"error: {variable.decode()}='x\\xffy' holds bytes that are not UTF-8: write it in UTF-8 (check the "
        "locale or the file it was read from)"
    ], res.stderr


# -- demo --data-dir: the database checked is the file the worker opens -------------------------


class _Param:
    opts = ["--data-dir"]


def _check_data_dir(value: Path) -> Path | None:
    from streams.commands.demo import _data_dir

    return _data_dir(value, _Param())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["q?h", "h#p", "p%41", "q?h#p%41"])
def test_demo_data_dir_with_url_characters_checks_the_database_the_worker_opens(tmp_path: Path, name: str) -> None:
    """``f"sqlite:///{db}"`` read ``a?b/forexd.db`` as ``a`` with a query (refused: "the SQLite
    driver ignores ..."), and ``p%41`` as ``pA``: a garbage file there was never looked at."""
    data = tmp_path / name
    data.mkdir()
    engine = make_engine(Settings(data_dir=data).db_url)  # the worker's database: tables created
    engine.dispose()
    assert _check_data_dir(data) == data.resolve()
    (data / "forexd.db").write_bytes(b"not a database" * 10)
    with pytest.raises(DataFormatError, match="is not a SQLite database") as err:
        _check_data_dir(data)
    assert str(data / "forexd.db") in str(err.value)
    assert sqlite_url(data / "forexd.db") == Settings(data_dir=data).db_url


def test_demo_refuses_a_garbage_database_under_such_a_data_dir_with_exit_65(tmp_path: Path) -> None:
    from streams.cli import app

    data = tmp_path / "q?h#p"
    data.mkdir()
    (data / "forexd.db").write_bytes(b"not a database" * 10)
    res = CliRunner().invoke(app, ["demo", "--data-dir", str(data), "--duration", "1"])
    assert res.exit_code == 65, res.output  # before: 2, "the SQLite driver ignores h#p/forexd.db"
    assert "not a SQLite database" in res.output and "ignores" not in res.output, res.output


@pytest.mark.broker
def test_worker_with_a_data_dir_that_is_not_utf8_keeps_its_database_and_key_there(
    worker_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """End to end: the worker's SQLite database, state key and table store are made under the
    very bytes of ``FOREXD_DATA_DIR`` (and the models under ``FOREXD_MODEL_DIR``'s), and the
    candles of published ticks are stored there."""
    import sqlite3

    from ...faults.harness import make_topics, tick_records
    from ...integration.kafka_io import publish
    from ...waiting import wait_for_workers

    data = os.fsencode(tmp_path) + b"/d\xffir"
    env = dict(worker_env, FOREXD_DATA_DIR=os.fsdecode(data), FOREXD_MODEL_DIR=os.fsdecode(data + b"/m\xfedl"))
    env.pop("FOREXD_STATE_KEY")  # generated into the data dir
    make_topics(kafka_bootstrap, env)
    publish(kafka_bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", tick_records(2_000))
    w = spawn_worker(env, role="ticks", name="bytes-dir")

    def candles() -> int:
        if not os.path.isfile(data + b"/forexd.db"):
            return 0
        with sqlite3.connect(data + b"/forexd.db") as conn:
            try:
                return int(conn.execute("SELECT count(*) FROM candles").fetchone()[0])
            except sqlite3.OperationalError:  # the tables are not made yet
                return 0

    wait_for_workers(lambda: candles() > 0 or not w.alive(), w, what="candles under the non-UTF-8 data dir")
    assert w.alive() and candles() > 0, w.log()[-3000:]
    assert {b"forexd.db", b"state.key"} <= set(os.listdir(data)), os.listdir(data)
    assert "Traceback" not in w.log() and "UnicodeEncodeError" not in w.log(), w.log()[-3000:]
