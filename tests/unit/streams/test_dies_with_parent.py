"""``streams.broker.dies_with_parent``: a child started with it ends when its starter is killed.

``forexd demo`` starts its broker and worker this way, so a ``kill -9`` of the demo leaves
neither behind (tests/integration/test_demo.py runs the demo itself). Here the starter is a
small Python process, started with SIGTERM ignored as well: an ignored signal stays ignored
across exec, and the kernel's SIGTERM would then not end the child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from ...waiting import wait_until

STARTER = """
import signal, subprocess, sys
from streams.broker import dies_with_parent
if sys.argv[1] == "ignored":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "300"], preexec_fn=dies_with_parent())
print(child.pid, flush=True)
signal.pause()
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a reparented child is reaped by whoever adopted it, or not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
@pytest.mark.parametrize("sigterm", ["default", "ignored"])
def test_a_child_ends_when_its_starter_is_killed(sigterm: str) -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, sigterm], stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    child = int(starter.stdout.readline())
    try:
        assert _running(child)
        starter.kill()
        starter.wait(30)
        wait_until(lambda: not _running(child), 60, interval=0.1, what="the child to end")
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)
