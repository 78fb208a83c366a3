"""``forexd demo | head -1`` stops as soon as its reader goes away, ends its broker and worker
and exits 141 with nothing on standard error, as every ``forexd`` command does.

Before, ``--plain`` logged a ``demo.show_failed ... BrokenPipeError`` traceback for every later
forecast and ran on to ``--duration`` (without one: for ever); the live table, which writes
nothing to a pipe until the end, never noticed at all. The demo runs here without
``--duration``: only its reader going away can end it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ...integration.test_demo import _alive, _children
from ...waiting import wait_until
from .test_broken_pipe import EXIT_PIPE, TIMEOUT_S, _cmd, _env

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the demo's children are read from /proc"),
]


@pytest.mark.parametrize("mode", [["--plain"], []], ids=["plain", "live table"])
def test_a_demo_whose_reader_reads_one_line_stops_cleans_up_and_exits_141(mode: list[str], tmp_path: Path) -> None:
    """The first line (a forecast; the live table's 'starting ...'), then the reader waits for
    the broker and the worker to run (they have, with a forecast) and closes the pipe."""
    with subprocess.Popen(
        _cmd("demo", *mode),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env({"TMPDIR": str(tmp_path)}),  # the demo's temporary directory, seen here
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
    assert first.startswith(b"forecast EURUSD | 1m | " if mode else b"starting embedded broker")
    assert demo.returncode == EXIT_PIPE
    assert err == b"", err.decode(errors="replace")
    assert not [p for p in children if _alive(p)], "broker or worker left running"
    assert not list(tmp_path.glob("forexd-demo-*")), "temporary directory left behind"
