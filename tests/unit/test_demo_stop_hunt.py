"""``forexd demo``'s cleanup (``_stop_all``) interrupted at each of its steps (found by an
adversarial review).

Its Ctrl-C handler raised ``KeyboardInterrupt`` on the first Ctrl-C, wherever the main thread
stood. Between two steps (the worker stopped, the broker not yet) that left the broker running,
the worker's log open and the ``forexd-demo-*`` directory behind; in its ``finally`` (or just
after it set the handler) the handler itself stayed in place after the return: Ctrl-C was then
only noted, and no longer stopped the command. A Ctrl-C is now only noted while the cleanup
runs and hurries what it waits for (the worker's and the broker's SIGTERM grace: killed at
once); one that comes before its handler is set (the default one raises) has the steps done
again, each once whatever was done before.

The signal is raised from a trace function at each line the cleanup runs (in ``streams/demo.py``
and ``streams/broker.py``), so each interleaving is hit every time; the worker and the broker
are real processes (``sleep``). A Ctrl-C meant for a wait (a SIGTERM grace) is sent once the
process waited for says it got its SIGTERM (:func:`signal_at_term`), not after a delay: a timer
of 0.5 s fired before the worker had stopped, or after the wait, on a loaded machine.
"""

from __future__ import annotations

import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import streams.demo as demo
from streams.broker import EmbeddedBroker
from streams.signals import terminating_exits, terminating_masked

#: A stand-in for a worker slow to write its final checkpoint (or a broker slow to stop): it
#: does not end on SIGTERM, and says ``term`` on its standard output each time one comes.
STUBBORN = ["sh", "-c", "trap 'echo term' TERM; echo up; while :; do sleep 0.05; done"]

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and sleep(1)"),
    pytest.mark.usefixtures("ctrl_c_raises"),  # tests/conftest.py: a background suite ignores SIGINT
]

_FILES = ("streams/demo.py", "streams/broker.py")
_SRC, _START = inspect.getsourcelines(demo._stop_all)
#: The first line of ``_stop_all`` inside its retry loop: a signal at its entry, before any
#: ``try`` of its own, is ``run_demo``'s to retry (it calls it again on a ``KeyboardInterrupt``).
_FIRST = _START + next(
    (i for i, line in enumerate(_SRC) if "_stop_steps(" in line),
    next(i for i, line in enumerate(_SRC) if line.strip() == "try:"),  # the code before: its first try
)


def _tracer(at: dict[int, signal.Signals], count: list[int]) -> Callable[[FrameType, str, Any], Any]:
    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if not frame.f_code.co_filename.endswith(_FILES):
            return None
        if event == "line" and not (frame.f_code.co_name == "_stop_all" and frame.f_lineno < _FIRST):
            count[0] += 1
            if count[0] in at:
                signal.raise_signal(at[count[0]])
        return trace

    return trace


def signal_at_term(proc: subprocess.Popen[bytes], sig: signal.Signals) -> threading.Thread:
    """Send ``sig`` to this process as soon as ``proc`` (a :data:`STUBBORN` stand-in) says it got
    its SIGTERM: the cleanup then waits out that process's grace, the window a test means,
    reached at the machine's own pace. The thread reads ``proc``'s output to its end and closes
    it: join it once ``proc`` is ended. (A ``term`` that never comes sends nothing; the grace
    the cleanup waits, 20 s or 10 s, bounds how late it may come.)"""
    out = proc.stdout
    assert out is not None and out.readline() == b"up\n"  # its first line run: SIGTERM trapped
    sent: list[bool] = []

    def follow() -> None:
        with out:
            for line in out:
                if line == b"term\n" and not sent:
                    sent.append(True)
                    os.kill(os.getpid(), sig)

    thread = threading.Thread(target=follow, name=f"{sig.name} at term", daemon=True)
    thread.start()
    return thread


class _Demo:
    """A worker, a broker, a log and a directory as ``run_demo`` leaves them to ``_stop_all``;
    the ``stubborn`` one (if any) a :data:`STUBBORN` stand-in, its output a pipe."""

    def __init__(self, stubborn: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="forexd-demo-hunt-"))
        (self.dir / "broker.log").write_text("x")
        procs = {}
        for name in ("worker", "broker"):
            cmd, out = (STUBBORN, subprocess.PIPE) if name == stubborn else (["sleep", "60"], None)
            procs[name] = subprocess.Popen(cmd, start_new_session=True, stdout=out)
        self.worker = procs["worker"]
        self.broker = EmbeddedBroker(port=1)
        self.broker_proc = self.broker.proc = procs["broker"]
        self.log = open(self.dir / "worker.log", "ab")  # noqa: SIM115 - _stop_all closes it

    def left(self) -> list[str]:
        """What the cleanup left (and ends it, for the next case)."""
        left = []
        for name, proc in (("worker", self.worker), ("broker", self.broker_proc)):
            if proc.poll() is None:
                left.append(name)
                proc.kill()
                proc.wait()
        if not self.log.closed:
            left.append("log")
            self.log.close()
        if self.dir.exists():
            left.append("directory")
            shutil.rmtree(self.dir)
        return left


@pytest.fixture(autouse=True)
def _handlers() -> Iterator[None]:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in before.items():
        signal.signal(s, h)


def _interrupted(at: dict[int, signal.Signals], masked: bool) -> tuple[int, BaseException | None, list[str]]:
    d = _Demo()
    before = signal.getsignal(signal.SIGINT)
    count = [0]
    raised: BaseException | None = None
    try:
        sys.settrace(_tracer(at, count))
        try:
            if masked:  # as run_demo calls it
                with terminating_exits(), terminating_masked():
                    demo._stop_all(d.worker, d.log, d.broker, d.dir)
            else:
                demo._stop_all(d.worker, d.log, d.broker, d.dir)
        finally:
            sys.settrace(None)
    except BaseException as exc:  # noqa: BLE001 - what it raised is the subject
        raised = exc
    left = d.left()
    if signal.getsignal(signal.SIGINT) is not before:
        left.append("SIGINT handler")
    return count[0], raised, left


def _each_line(signals: list[signal.Signals], masked: bool) -> list[str]:
    """The failures of ``_stop_all`` with ``signals`` raised from line n on, for every n."""
    failures, n = [], 1
    while True:
        at = {n + k: s for k, s in enumerate(signals)}
        lines, raised, left = _interrupted(at, masked)
        want = KeyboardInterrupt if signals[0] == signal.SIGINT else SystemExit
        if n > lines:  # past its last line: nothing was raised, nothing may be
            assert raised is None and not left, (raised, left)
            return failures
        if left or not isinstance(raised, want):
            failures.append(f"line {n}/{lines}: {type(raised).__name__} {raised!r}, left {left}")
        if isinstance(raised, SystemExit):
            assert raised.code == 128 + signal.SIGTERM
        n += 1


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGINT, signal.SIGINT]],
    ids=["one Ctrl-C", "two Ctrl-C at once"],
)
def test_ctrl_c_at_any_step_of_the_cleanup_leaves_nothing_and_the_handler_back(signals: list[signal.Signals]) -> None:
    assert _each_line(signals, masked=False) == []


def test_ctrl_c_at_any_step_under_run_demos_masks_leaves_nothing() -> None:
    assert _each_line([signal.SIGINT], masked=True) == []


def test_sigterm_at_any_step_of_the_cleanup_waits_for_it_then_exits_143() -> None:
    assert _each_line([signal.SIGTERM], masked=True) == []


def test_ctrl_c_while_a_worker_ignores_sigterm_kills_it_instead_of_waiting() -> None:
    """The worker's SIGTERM grace is 20 s: a Ctrl-C meanwhile kills it (and the broker) at once."""
    d = _Demo(stubborn="worker")
    before = signal.getsignal(signal.SIGINT)
    ctrl_c = signal_at_term(d.worker, signal.SIGINT)  # the worker got its SIGTERM: the cleanup waits
    try:
        with pytest.raises(KeyboardInterrupt):
            demo._stop_all(d.worker, d.log, d.broker, d.dir)
    finally:
        left = d.left()
        ctrl_c.join(10)
    assert d.worker.returncode == -signal.SIGKILL  # killed: it ignored the SIGTERM
    assert d.broker_proc.returncode == -signal.SIGKILL  # at once, not its own SIGTERM grace
    assert left == [] and signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_while_the_broker_ignores_sigterm_kills_it_instead_of_waiting() -> None:
    """The broker's SIGTERM grace is 10 s: a Ctrl-C meanwhile kills it at once."""
    d = _Demo(stubborn="broker")
    ctrl_c = signal_at_term(d.broker_proc, signal.SIGINT)  # the broker got its SIGTERM: the worker is stopped
    try:
        with pytest.raises(KeyboardInterrupt):
            demo._stop_all(d.worker, d.log, d.broker, d.dir)
    finally:
        left = d.left()
        ctrl_c.join(10)
    assert d.worker.returncode == -signal.SIGTERM  # stopped as asked, before the Ctrl-C
    assert d.broker_proc.returncode == -signal.SIGKILL
    assert left == []
