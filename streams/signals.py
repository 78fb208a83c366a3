"""SIGTERM and SIGHUP for the commands that leave something behind if killed (a spool, a
temporary directory, child processes): raised as ``SystemExit(128 + signal)`` so that ``with``
and ``finally`` blocks clean up (:func:`terminating_exits`), and held back where a cut would
leave a half-made or half-removed thing (:func:`terminating_masked`).

>>> import signal
>>> with terminating_exits():
...     signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
True
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["TERMINATING", "terminating_exits", "terminating_masked"]

#: Signals that end a command: each exits with 128 + its number, the status a shell gives a
#: process the signal killed, after what the command made is removed.
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Within, in the main thread: ``handler`` takes SIGTERM and SIGHUP; a signal ignored
    (``nohup``) or handled outside Python stays so, and the previous handlers come back
    after. Only the main thread may set handlers: elsewhere this does nothing.

    A Ctrl-C (``KeyboardInterrupt``) may come at any step: each previous handler is noted
    before its swap, inside the ``try``, and they are put back twice, the second time after a
    Ctrl-C cut the first (it left SIGHUP's handler in place, or SIGTERM's when it came during
    the swaps: a stale handler after the block)."""
    previous: dict[signal.Signals, Any] = {}
    try:
        try:
            if threading.current_thread() is threading.main_thread():
                for sig in TERMINATING:
                    old = signal.getsignal(sig)
                    if old is not signal.SIG_IGN and old is not None:  # None: set outside Python, kept
                        previous[sig] = old  # before the swap: a Ctrl-C just after it has it undone
                        signal.signal(sig, handler)
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
    finally:  # all again (each is idempotent): a Ctrl-C in the pass above cut it
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def terminating_exits() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP raise ``SystemExit(128 + signal)``, so that ``with`` blocks
    (a temporary directory) clean up on the way out (:func:`_handled_by`: the main thread
    only; a signal ignored stays ignored)."""

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    with _handled_by(_exit):
        yield


@contextmanager
def terminating_masked() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP wait, and are delivered on the way out (after the handlers
    that were in place come back).

    In the main thread their handlers are swapped for one that notes them: a signal sent to
    the process goes to any thread that does not block it (rich's refresh thread, a BLAS
    pool), and Python runs its handler in the main thread whatever that thread's mask says.
    The mask (where the platform has one) keeps a default disposition from ending the process
    through this thread meanwhile. Elsewhere than the main thread only the mask applies.
    """
    # the mask as it is (blocking nothing), then blocked inside the ``try``: a Ctrl-C is taken
    # as pthread_sigmask returns, and one then left the signals blocked with no mask to restore
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ()) if hasattr(signal, "pthread_sigmask") else None
    caught: list[int] = []
    try:
        try:
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATING)
            with _handled_by(lambda signum, frame: caught.append(signum)):
                yield
        finally:
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # one pending for this thread: delivered here
    finally:  # again: a Ctrl-C as the handlers came back cut the one above
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if caught:
            signal.raise_signal(caught[0])
