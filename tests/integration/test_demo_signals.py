"""SIGTERM while ``forexd demo`` starts (its broker and worker take seconds to come up, before
the demo's own signal handlers exist) killed it outright: its ``forexd-demo-*`` directory, the
broker's log in it, stayed in TMPDIR. It now ends through the demo's cleanup, with status
128 + 15, its broker stopped and the directory removed. The signal is sent from inside the
demo's own start (a wrapper around ``mkdtemp`` or ``EmbeddedBroker.start``), so each case
hits its window every time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .test_demo import _alive

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's"),
]

_DEMO_SIGNALLED = """
import os, signal, sys, tempfile
from streams.broker import EmbeddedBroker
if sys.argv[1] == "mkdtemp":
    made_dir = tempfile.mkdtemp
    def mkdtemp(*args, **kwargs):
        made = made_dir(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return made
    tempfile.mkdtemp = mkdtemp
else:
    started = EmbeddedBroker.start
    def start(self):
        out = started(self)
        print("broker", self.proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        return out
    EmbeddedBroker.start = start
sys.argv = ["forexd", "demo", "--plain", "--duration", "120"]
from streams.cli import main
main()
"""


@pytest.mark.parametrize("where", ["mkdtemp", "broker_started"])
def test_sigterm_while_the_demo_starts_stops_its_broker_and_removes_its_directory(where: str, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")} | {"TMPDIR": str(tmp)}
    res = subprocess.run(
        [sys.executable, "-c", _DEMO_SIGNALLED, where], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 128 + signal.SIGTERM, res.stdout + res.stderr
    assert list(tmp.iterdir()) == []  # the demo's directory (and the broker's log in it) removed
    assert "Traceback" not in res.stderr
    brokers = [int(line.split()[1]) for line in res.stdout.splitlines() if line.startswith("broker ")]
    assert len(brokers) == (where == "broker_started")
    assert not any(_alive(pid) for pid in brokers)  # stopped by the demo's cleanup, before it exited


#: The demo's topics, readiness, replay and forecast watch as stand-ins (the broker is real):
#: the live phase waits for the demo's stop.
_STAND_INS = """
import asyncio
import streams.demo as d
async def nothing(*args, **kwargs):
    return None
async def until_stopped(settings, *args):
    await next(a for a in args if isinstance(a, asyncio.Event)).wait()
d.ensure_topics, d._wait_ready, d._replay, d._watch = nothing, nothing, until_stopped, until_stopped
"""

#: ``forexd demo`` (the live table: rich runs a refresh thread) with a stand-in worker and replay
#: (the broker is real), signalling itself as its cleanup starts, i.e. under the mask.
_DEMO_SIGNALLED_IN_CLEANUP = (
    _STAND_INS
    + """
import os, signal, subprocess, sys
sig = getattr(signal, sys.argv[1])
d._start_worker = lambda settings, log: subprocess.Popen(
    ["sleep", "60"], start_new_session=True, preexec_fn=d.dies_with_parent()  # a group, as the worker's
)
stop_worker, rmtree = d._stop_worker, d.shutil.rmtree
def stopping(worker):
    print("cleanup", flush=True)
    os.kill(os.getpid(), sig)
    stop_worker(worker)
    print("worker stopped", flush=True)
def removing(path, **kwargs):
    rmtree(path, **kwargs)
    print("removed", flush=True)
d._stop_worker, d.shutil.rmtree = stopping, removing
sys.argv = ["forexd", "demo", "--duration", "1"]
from streams.cli import main
main()
"""
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_live_demos_cleanup_waits_for_it_to_finish(sig: signal.Signals, tmp_path: Path) -> None:
    """Signals were held back in the main thread only: taken by the live table's refresh
    thread, SIGTERM (reset to its default when asyncio's loop closed) killed the demo in its
    cleanup and SIGHUP raised out of it, leaving the directory (logs, database, models)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")} | {"TMPDIR": str(tmp)}
    res = subprocess.run(
        [sys.executable, "-c", _DEMO_SIGNALLED_IN_CLEANUP, sig.name],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 128 + sig, res.stdout[-2000:] + res.stderr[-2000:]
    marks = [res.stdout.find(m) for m in ("cleanup", "worker stopped", "removed")]  # among the live table's output
    assert -1 not in marks and marks == sorted(marks), res.stdout[-2000:]
    assert list(tmp.iterdir()) == []


#: ``forexd demo`` with a stand-in worker that ignores SIGTERM (a worker slow to write its final
#: checkpoint: the demo waits up to 20 s for it), telling when its cleanup starts waiting.
_DEMO_INTERRUPTED_IN_CLEANUP = (
    _STAND_INS
    + """
import subprocess, sys
d._start_worker = lambda settings, log: subprocess.Popen(
    ["bash", "-c", "trap '' TERM; sleep 120 & wait"],
    stdout=subprocess.DEVNULL,  # not the demo's: the test reads those to their end
    stderr=subprocess.DEVNULL,
    start_new_session=True,
    preexec_fn=d.dies_with_parent(),
)
stop_worker = d._stop_worker
def stopping(worker):
    wait = worker.wait
    def waiting(timeout=None):
        print("waiting for", worker.pid, flush=True)
        return wait(timeout)
    worker.wait = waiting
    stop_worker(worker)
d._stop_worker = stopping
sys.argv = ["forexd", "demo", "--plain", "--duration", "1"]
from streams.cli import main
main()
"""
)


def test_ctrl_c_during_the_demos_cleanup_hurries_it_and_still_removes_its_directory(tmp_path: Path) -> None:
    """A second Ctrl-C while the demo waited for its worker's final checkpoint raised out of
    its cleanup: the directory stayed in TMPDIR and the broker ran until the demo's exit. It
    now kills what it waits for, stops the broker, removes the directory, then ends as an
    interrupted command (130)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")} | {"TMPDIR": str(tmp)}
    with subprocess.Popen(
        [sys.executable, "-c", _DEMO_INTERRUPTED_IN_CLEANUP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("waiting for "):
                worker = int(line.split()[2])
                proc.send_signal(signal.SIGINT)  # the user's second Ctrl-C, while the demo waits
                break
        else:
            pytest.fail("the demo never reached its cleanup: " + "".join(seen)[-2000:] + proc.stderr.read()[-2000:])
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert not _alive(worker)  # killed (it ignores SIGTERM), not waited for
    assert list(tmp.iterdir()) == []  # the directory (broker log, database, models) removed
    assert "Traceback" not in err
