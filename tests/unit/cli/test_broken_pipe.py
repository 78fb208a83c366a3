"""Every ``forexd`` command whose standard output's reader goes away (``| head -1``) stops
quietly with status 141 (128 + SIGPIPE, what a shell shows for ``cat``), as the README's exit
code table says.

Before, each exited 1 (typer answers ``EPIPE`` with ``sys.exit(1)``, rich's help with
``SystemExit(1)``), an error line that could not be written to a closed standard error was a
``BrokenPipeError`` traceback instead of its status, an output that cannot be written
(``> /dev/full``) was Python's ``Exception ignored ... OSError`` and status 120, and
``forexd tail`` on a quiet topic never noticed its reader was gone.

The pipes are real: the reader either reads the first line and closes (outputs larger than a
pipe's buffer, and ``tail``, which goes on waiting for records), or has closed before the
command writes at all (outputs small enough to fit the pipe's buffer whole: read after the
command wrote everything, nothing is lost and the command rightly exits 0).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import Settings

from .test_cli_errors import FOREXD
from .test_cli_hostile import write_ticks

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "lean"
H1 = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
D1 = DATA / "lean_oanda_d1_4pairs.csv.gz"
MODEL = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
EXIT_PIPE = 141
TIMEOUT_S = 300  # a ceiling: a hang fails, slowness does not


def _cmd(*args: str) -> list[str]:
    return [*([str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]), *args]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    env.update(extra or {})
    return env


def reader_closed_first(args: list[str], *, stderr_too: bool = False, **kw: object) -> tuple[int, str]:
    """Run ``forexd args`` writing into a pipe whose reader has already gone; return the
    status and standard error (into the same pipe with ``stderr_too``: then nothing is seen)."""
    r, w = os.pipe()
    os.close(r)
    try:
        res = subprocess.run(
            _cmd(*args),
            stdout=w,
            stderr=w if stderr_too else subprocess.PIPE,
            text=True,
            env=_env(),
            timeout=TIMEOUT_S,
            **kw,  # type: ignore[call-overload]
        )
    finally:
        os.close(w)
    return res.returncode, res.stderr or ""


def reader_reads_one_line(args: list[str], env: dict[str, str] | None = None, **kw: object) -> tuple[int, str, str]:
    """Run ``forexd args`` into a pipe, read its first line and close the pipe; return the
    status, that line and standard error."""
    with subprocess.Popen(
        _cmd(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(env),
        **kw,  # type: ignore[call-overload]
    ) as p:
        assert p.stdout is not None and p.stderr is not None
        first = p.stdout.readline()
        p.stdout.close()
        err = p.stderr.read()
        code = p.wait(timeout=TIMEOUT_S)
    return code, first, err


def _quiet(stderr: str) -> None:
    assert stderr == "", stderr  # no BrokenPipeError, no "Exception ignored", no error line


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite registry holding the bundled model."""
    tmp = tmp_path_factory.mktemp("registry")
    db = f"sqlite:///{tmp / 'r.db'}"
    checkpoint = next(MODEL.glob("*.pt"))
    res = subprocess.run(
        _cmd("models", "register", str(checkpoint), "--db", db, "--model-dir", str(tmp / "m")),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT_S,
    )
    assert res.returncode == 0, res.stderr
    return db


def test_indicators_to_a_reader_that_reads_one_line_stops_quietly_with_141() -> None:
    """Megabytes of CSV: the rest of the output meets the closed pipe."""
    code, first, err = reader_reads_one_line(["indicators", str(H1), "-o", "-"])
    assert first.startswith("ts_ms,symbol,") and code == EXIT_PIPE
    _quiet(err)


def test_help_whose_reader_has_gone_stops_quietly_with_141() -> None:
    """typer's help is printed by rich, which answered EPIPE with ``SystemExit(1)``."""
    code, err = reader_closed_first(["--help"])
    assert code == EXIT_PIPE
    _quiet(err)


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["candles", "TICKS", "--symbol", "EURUSD", "-o", "-"],
        ["indicators", str(D1), "--timeframe", "1d", "-o", "-"],
        ["models", "list", "--db", "REGISTRY"],
    ],
    ids=["version", "candles", "indicators", "models list"],
)
def test_a_command_whose_reader_has_gone_stops_quietly_with_141(args: list[str], registry: str, tmp_path: Path) -> None:
    ticks = write_ticks(tmp_path / "ticks.csv", n=3000)
    args = [str(ticks) if a == "TICKS" else registry if a == "REGISTRY" else a for a in args]
    code, err = reader_closed_first(args, cwd=tmp_path)
    assert code == EXIT_PIPE
    _quiet(err)


def test_backtest_whose_reader_has_gone_stops_quietly_with_141(tmp_path: Path) -> None:
    args = ["backtest", str(H1), "--symbol", "EURUSD", "--timeframe", "1h", "--model", str(MODEL)]
    args += [
        "--from",
        "2017-12-28",
        "--every",
        "24",
        "-n",
        "4",
        "--touch-bands",
        "none",
        "-o",
        str(tmp_path / "bt.csv"),
    ]
    code, err = reader_closed_first(args)
    assert code == EXIT_PIPE
    _quiet(err)


def test_an_error_line_to_a_closed_standard_error_keeps_its_status(tmp_path: Path) -> None:
    """Before: the error line's write raised in the handler, a traceback nobody saw, status 1."""
    code, _err = reader_closed_first(["candles", str(tmp_path / "missing.csv"), "-o", "-"], stderr_too=True)
    assert code == 66


def test_an_output_that_cannot_be_written_is_one_line_and_74(tmp_path: Path) -> None:
    """``> /dev/full`` is no reader gone: one error line and 74, as before (a guard: the
    final flush that now catches a reader gone must not hide a full disk)."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    ticks = write_ticks(tmp_path / "ticks.csv", n=3000)
    with open("/dev/full", "w") as full:
        res = subprocess.run(
            _cmd("candles", str(ticks), "--symbol", "EURUSD", "-o", "-"),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            timeout=TIMEOUT_S,
        )
    assert res.returncode == 74
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "No space left on device" in lines[0], res.stderr


@pytest.mark.broker
@pytest.mark.parametrize("records", [1, 300], ids=["quiet topic", "more than the pipe holds"])
def test_tail_whose_reader_reads_one_line_stops_quietly_with_141(
    kafka_bootstrap: str, topic_prefix: str, records: int
) -> None:
    """300 records of 1 kB: a write meets the closed pipe (before: exit 1). One record: then
    the topic is quiet, nothing more is written, and tail must notice the reader is gone by
    itself (before: it waited until --timeout, then exit 0)."""
    from aiokafka import AIOKafkaProducer

    from streams import kafka

    s = Settings(broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=topic_prefix, partitions=1)

    async def publish() -> None:
        await kafka.ensure_topics(s, [s.topic("ticks")])
        p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await p.start()
        try:
            for i in range(records):
                value = b'{"bid": %d, "pad": "%s"}' % (i, b"x" * 1000)
                await p.send_and_wait(s.topic("ticks"), value=value, key=b"EURUSD", partition=0)
        finally:
            await p.stop()

    asyncio.run(publish())
    env = {"FOREXD_BROKER_URL": f"kafka://{kafka_bootstrap}", "FOREXD_TOPIC_PREFIX": topic_prefix}
    code, first, err = reader_reads_one_line(["tail", "ticks", "--from-beginning", "--timeout", "60"], env=env)
    assert first.startswith('{"partition": 0, "offset": 0, ') and code == EXIT_PIPE
    _quiet(err)


def test_a_broken_pipe_that_is_not_standard_outputs_is_an_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``EPIPE`` from elsewhere (a socket to the broker or the database) while standard
    output is fine is an error like any ``OSError`` (one line, 74), never the quiet 141:
    the reader is asked of the descriptor. Before, typer answered any ``EPIPE`` with exit 1."""
    from typer.testing import CliRunner

    from streams.cli import app

    def broken(*_a: object, **_k: object) -> Settings:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(Settings, "from_env", broken)
    res = CliRunner().invoke(app, ["tail", "ticks", "-n", "1"])
    assert res.exit_code == 74
    assert res.stderr == "error: [Errno 32] Broken pipe\n", res.stderr


def test_a_socket_epipe_with_only_standard_error_gone_is_74_not_141() -> None:
    """Review: with standard error's reader gone (a supervisor's log pipe died) and standard
    output fine, an ``EPIPE`` from a socket (the broker's, the database's) exited 141, the
    quiet status of a reader that left, hiding a failure. Only standard output's reader
    makes the quiet exit; the error keeps 74 (its line cannot be written)."""
    script = (
        "import socket\n"
        "import streams.cli as cli\n"
        "@cli.app.command('boom')\n"
        "def boom() -> None:\n"
        "    a, b = socket.socketpair()\n"
        "    b.close()\n"
        "    for _ in range(3):\n"
        "        a.send(b'x' * 100_000)\n"
        "cli.app(['boom'])\n"
    )
    r, w = os.pipe()
    os.close(r)  # standard error's reader is gone before the command starts
    try:
        res = subprocess.run(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=w,
            cwd=Path(__file__).parents[3],
            timeout=120,
            check=False,
        )
    finally:
        os.close(w)
    assert res.returncode == 74, res.returncode
    assert res.stdout == b""
