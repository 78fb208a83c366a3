"""Command-line bytes that are not UTF-8: a file name may hold them, any other text is refused.

A byte of ``argv`` that is not UTF-8 (``forexd models promote $'\\xff'``, a Latin-1 terminal)
reaches Python as a lone surrogate (PEP 383). Before the check, a symbol, version, key, topic
or reason holding one went on to the database driver, the broker's JSON or a strict standard
output and raised ``UnicodeEncodeError``: a traceback, exit 1, sometimes after the work.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
import typer

from streams.cli import EXIT_CODES, app

from .test_cli_errors import DOWN, FOREXD, MODEL_1H, assert_one_line, runner, write_candles

BAD = "x\udcffy"  # what Python makes of the bytes b"x\xffy" in argv
CHECKPOINT = next(MODEL_1H.glob("*.pt"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("FOREXD_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("FOREXD_BROKER_URL", DOWN)
    monkeypatch.setenv("FOREXD_BROKER_WAIT_S", "0")


def _dump(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.iterdump())


def _registered_db(tmp: Path) -> str:
    db = f"sqlite:///{tmp}/forexd.db"
    res = runner.invoke(app, ["models", "register", str(CHECKPOINT), "--db", db, "--model-dir", str(tmp / "m")])
    assert res.exit_code == 0, res.output
    return db


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["models", "promote", BAD], "'version'"),
        (["models", "promote", "v1", "--reason", BAD], "'--reason'"),
        (["models", "rollback", BAD], "'key'"),
        (["models", "history", BAD], "'key'"),
        (["models", "shadow", BAD], "'key'"),
        (["models", "list", "--key", BAD], "'--key'"),
        (["report", "-o", "{tmp}/r.html", "--symbol", BAD], "'--symbol'"),
        (["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--reason", BAD], "'--reason'"),
        (["tail", BAD], "'topic'"),
    ],
)
def test_a_text_argument_that_is_not_utf8_is_one_usage_line_naming_it(
    argv: list[str], option: str, tmp_path: Path
) -> None:
    db = _registered_db(tmp_path)
    before = _dump(tmp_path / "forexd.db")
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if args[0] in ("models", "report"):
        args += ["--db", db]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert_one_line(res.stderr, option, "'x\\xffy' holds bytes that are not UTF-8 text")
    assert _dump(tmp_path / "forexd.db") == before  # refused before any work
    assert not (tmp_path / "r.html").exists()


def test_a_file_name_that_is_not_utf8_is_still_a_file_name(tmp_path: Path) -> None:
    name = tmp_path / f"eurusd_{BAD}.csv"  # a Latin-1 file name: os.fsencode gives the bytes back
    name.write_text("ts_ms,bid,ask\n" + "".join(f"{1398902400000 + i * 1000},1.1,1.1001\n" for i in range(120)))
    out = tmp_path / f"out_{BAD}.csv"
    res = runner.invoke(app, ["candles", str(name), "--symbol", "EURUSD", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().count("EURUSD") == 2  # two one-minute candles


def _leaves(command: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    subs = getattr(command, "commands", None)
    if not subs:
        return [(path, command)]
    return [leaf for name, sub in sorted(subs.items()) for leaf in _leaves(sub, (*path, name))]


def test_no_argument_of_any_command_turns_non_utf8_bytes_into_a_traceback(tmp_path: Path) -> None:
    """The sweep: each parameter of each command given ``x\\xffy`` (the others valid enough to
    get that far: a registry holding the bundled model, the broker down, input files missing):
    a documented status and one line."""
    documented = {0, 1, 2, 3} | {code for _cls, code in EXIT_CODES}
    db = _registered_db(tmp_path)
    seen = 0
    for path, command in _leaves(typer.main.get_command(app)):
        if path in (("demo",), ("worker",)):
            continue  # they start services; their text comes from FOREXD_* (test_settings_numbers)
        for param in command.params:  # type: ignore[attr-defined]
            opts = [o for o in param.opts if o.startswith("-")]
            if getattr(param, "is_flag", False):
                continue
            args = [*path, *(opts[:1] or []), BAD]
            if path[0] in ("models", "report"):
                args += ["--db", db]
            res = runner.invoke(app, args)
            seen += 1
            assert res.exit_code in documented and not isinstance(res.exception, UnicodeError), (args, res.output)
            if res.exit_code:
                lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
                assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)
    assert seen > 60


def test_an_output_file_name_that_is_not_utf8_is_printed_as_given_under_a_strict_stdout(tmp_path: Path) -> None:
    """With ``PYTHONIOENCODING=utf-8`` standard output is strict: the closing line naming the
    output raised ``UnicodeEncodeError`` after the backtest had written it (exit 1)."""
    candles = write_candles(tmp_path / "eurusd_1h.csv", n=300)
    out = tmp_path / f"bt{BAD}.csv"
    model = ["--model", str(MODEL_1H), "--every", "50", "-n", "4", "--steps", "2"]
    res = subprocess.run(
        [str(FOREXD), "backtest", str(candles), "--symbol", "EURUSD", "--timeframe", "1h", *model, "-o", str(out)],
        capture_output=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}, "PYTHONIOENCODING": "utf-8"},
        timeout=600,
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert os.fsencode(out) in res.stdout  # the name's own bytes, b"bt\xffy.csv"
    assert len(pd.read_csv(out)) > 0
