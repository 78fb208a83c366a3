"""Review of eb81a7d and 0619157 (symbols in any ASCII case, SIGTERM hurrying the demo's cleanup).

A. ``forexd replay`` of a tick file keyed each record by the symbol as the file wrote it
   (``eur/usd``, ``EurUsd``, ``EUR_USD``), while the worker's decoder requires the key to be the
   canonical symbol: every such tick was dead-lettered as ``key_mismatch`` (and the aliases of
   one pair went to different partitions). Candle files were already read with canonical
   symbols; tick files now are too (an unknown symbol stays as written, refused downstream).
B. ``forexd demo``: a SIGTERM that hurried the cleanup was only passed on when every step
   returned; one whose step then raised (the broker or the worker not reaped within its
   10 s) was lost: the error left with no 143 (before eb81a7d, the mask held it and it ended
   the demo with 143).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streams.demo as demo
from forex_diffusion.ingest.replaying import records_from_file
from forex_diffusion.wire import decode_tick
from streams.signals import terminating_exits, terminating_masked


@pytest.fixture(autouse=True)
def _signals_as_they_were() -> Iterator[None]:
    """SIGINT as Python's default for each test (a suite started in the background inherits
    it ignored); every handler and the mask as they were after it."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {s: signal.getsignal(s) for s in sigs}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ()) if hasattr(signal, "pthread_sigmask") else None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if mask is not None:
        assert signal.pthread_sigmask(signal.SIG_SETMASK, mask) == mask  # nothing left blocked
    for s, h in before.items():
        assert s == signal.SIGINT or signal.getsignal(s) is h  # no handler left behind
        signal.signal(s, h)


# -- A: replayed ticks keyed by the canonical symbol ------------------------------------------


def test_replayed_ticks_are_keyed_by_their_canonical_symbol_as_the_worker_requires(tmp_path: Path) -> None:
    f = tmp_path / "ticks.csv"
    f.write_text(
        "timestamp,symbol,bid,ask\n"
        "2014-05-02 10:00:00,EurUsd,1.38670,1.38680\n"
        "2014-05-02 10:00:01,eur/usd,1.38670,1.38680\n"
        "2014-05-02 10:00:02,EUR_USD,1.38670,1.38680\n"
        "2014-05-02 10:00:03,EURUSD,1.38670,1.38680\n"
    )
    kind, total, records = records_from_file(f)
    assert (kind, total) == ("ticks", 4)
    got = []
    for key, _ts, value in records:
        tick = decode_tick(value, key=key.encode())  # as the worker decodes it: key_mismatch before
        got.append((key, tick.symbol))
    assert got == [("EURUSD", "EURUSD")] * 4


def test_an_unknown_tick_symbol_is_still_replayed_as_written(tmp_path: Path) -> None:
    """Only aliases become canonical: an unknown symbol is the stream's to refuse, named as written."""
    f = tmp_path / "ticks.csv"
    f.write_text("timestamp,symbol,bid,ask\n2014-05-02 10:00:00,XauUsd,1300.1,1300.5\n")
    _kind, _total, records = records_from_file(f)
    assert [key for key, _ts, _value in records] == ["XauUsd"]


# -- B: a SIGTERM that hurried the demo's cleanup is passed on even when a step raises --------


class _BrokerThatFailsToStop:
    """A broker whose stop is cut by SIGTERM, then fails (its process not reaped in time)."""

    proc: Any = None

    def stop(self, timeout_s: float = 10.0, *, at_once: bool = False, cut: Any = None) -> None:
        signal.raise_signal(signal.SIGTERM)  # the demo's own hurry handler takes it here
        raise OSError("the broker could not be stopped")


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="the mask is POSIX's")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as Linux delivers them")
def test_a_sigterm_during_the_cleanup_still_ends_the_demo_with_143_when_a_step_fails() -> None:
    with pytest.raises(SystemExit) as raised:  # as run_demo calls it
        with terminating_exits(), terminating_masked():
            demo._stop_all(None, None, _BrokerThatFailsToStop(), None)  # type: ignore[arg-type]
    assert raised.value.code == 128 + signal.SIGTERM
    assert isinstance(raised.value.__context__, OSError)  # the step's error is kept as its context


def test_replayed_records_of_a_file_naming_no_symbol_are_keyed_by_the_canonical_symbol_given(tmp_path: Path) -> None:
    """``forexd replay --symbol eur/usd`` of a file without a symbol column: the same."""
    ticks = tmp_path / "ticks.csv"
    ticks.write_text("timestamp,bid,ask\n2014-05-02 10:00:00,1.38670,1.38680\n")
    candles = tmp_path / "candles.csv"
    candles.write_text("timestamp,open,high,low,close\n2014-05-02 10:00:00,1.3867,1.3869,1.3866,1.3868\n")
    for f, tf in ((ticks, None), (candles, "1m")):
        _kind, _total, records = records_from_file(f, symbol="eur/usd", timeframe=tf)
        assert [key for key, _ts, _value in records] == ["EURUSD"], f.name
