"""``forexd demo | head -1`` stops as soon as its reader goes away, ends its broker and worker
and exits 141 with nothing on standard error, as every ``forexd`` command does.

Before, ``--plain`` logged a ``demo.show_failed ... BrokenPipeError`` traceback for every later
forecast and ran on to ``--duration`` (without one: for ever); the live table, which writes
nothing to a pipe until the end, never noticed at all. The demo runs here without
``--duration``: only its reader going away can end it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.demo import DemoResult, _OutputGone, _take, run_demo

from ...integration.test_demo import _alive, _children
from ...waiting import wait_until
from ..streams.test_demo_bounded import _value
from .test_broken_pipe import EXIT_PIPE, TIMEOUT_S, _cmd, _env


def _broken_pipe(rec: dict[str, Any]) -> None:
    raise BrokenPipeError(32, "Broken pipe")


def _rich_broken_pipe(rec: dict[str, Any]) -> None:
    """What rich's console does on a broken pipe (``Console.on_broken_pipe``)."""
    try:
        _broken_pipe(rec)
    except BrokenPipeError:
        raise SystemExit(1)  # noqa: B904 - as rich: its __context__ is the BrokenPipeError


@pytest.mark.parametrize("show", [_broken_pipe, _rich_broken_pipe], ids=["BrokenPipeError", "rich's SystemExit"])
def test_a_broken_pipe_from_show_is_raised_not_logged_as_a_display_bug(
    show: Callable[[dict[str, Any]], None], caplog: pytest.LogCaptureFixture
) -> None:
    """Before: logged as ``demo.show_failed`` with its traceback, for every later forecast."""
    result = DemoResult()
    with caplog.at_level(logging.WARNING), pytest.raises(_OutputGone) as gone:
        _take(_value(0), result, show, "offset=0")
    assert isinstance(gone.value.error, BrokenPipeError | SystemExit) and result.unshown == 0
    assert not caplog.records


@pytest.mark.broker
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the demo's children are read from /proc")
@pytest.mark.parametrize(
    ("args", "force_terminal", "first_line"),
    [
        (["--plain"], False, b"forecast EURUSD | 1m | "),
        ([], False, b"starting embedded broker"),  # the table itself is written at the end only
        ([], True, b"\x1b[?25l"),  # the table is written 4 times a second, by rich's refresh thread
    ],
    ids=["plain", "live table", "live table forced as a terminal"],
)
def test_a_demo_whose_reader_reads_one_line_stops_cleans_up_and_exits_141(
    args: list[str], force_terminal: bool, first_line: bytes, tmp_path: Path
) -> None:
    """The first line, then the reader waits for the broker and the worker to run (with
    ``--plain`` they have: that line is a forecast) and closes the pipe. Forced as a terminal
    (``FORCE_COLOR``), the live table met the broken pipe in rich's refresh thread, where
    rich's ``SystemExit(1)`` ended that thread only: the demo ran on, then exited 0."""
    env = {k: v for k, v in _env({"TMPDIR": str(tmp_path)}).items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    with subprocess.Popen(
        _cmd("demo", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "FORCE_COLOR": "1"} if force_terminal else env,  # TMPDIR: the demo's temporary directory
    ) as demo:
        assert demo.stdout is not None
        try:
            first = demo.stdout.readline()
            children = wait_until(lambda: len(c := _children(demo.pid)) == 2 and c, TIMEOUT_S, what="its children")
            demo.stdout.close()
            _, err = demo.communicate(timeout=TIMEOUT_S)  # a ceiling: the demo no longer stops by itself
        finally:
            if demo.poll() is None:
                demo.kill()  # its children die with it (PR_SET_PDEATHSIG)
    assert first.startswith(first_line)
    assert demo.returncode == EXIT_PIPE
    assert err == b"", err.decode(errors="replace")
    assert not [p for p in children if _alive(p)], "broker or worker left running"
    assert not list(tmp_path.glob("forexd-demo-*")), "temporary directory left behind"


@pytest.mark.broker
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the demo's children are read from /proc")
def test_run_demo_whose_output_goes_while_its_worker_starts_raises_once_all_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gone()`` says no before anything starts, yes once the broker and the worker run: the
    demo stops them, removes its directory and raises, as for a broken pipe from ``show``."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before, started = _children(os.getpid()), set[int]()

    def gone() -> bool:
        started.update(_children(os.getpid()) - before)
        return bool(started)

    with pytest.raises(BrokenPipeError):
        run_demo(duration=TIMEOUT_S, gone=gone)
    assert len(started) == 2 and not [p for p in started if _alive(p)], started
    assert not list(tmp_path.glob("forexd-demo-*")), "temporary directory left behind"
