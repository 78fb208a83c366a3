"""``forexd`` leftovers of the boundary hunts (6), each a failure left unfixed by 2dd98e3:

1. ``indicators --timeframe 1H`` of a file with a timeframe column said "holds no 1H candles";
   ``indicators -o x.json``/``--rejects r.parquet`` wrote CSV under those names; ``replay
   --timeframe 1H`` kept the 1H it had parsed (not the 1h of the file's column).
2. ``FOREXD_TIMEFRAMES=1M`` (and FORECAST_TIMEFRAMES, MODELS) said "fix the FOREXD_* environment
   variables", naming none.
3. ``--symbol Eur/Usd`` was refused ("symbol 'EUR/USD' must be six upper-case letters") where
   ``eur/usd`` and ``EUR/USD`` were EURUSD; train keyed it ``EUR/USD``.
4. Among dates of a format pandas cannot infer (each read alone), a month alone ('May 2014')
   was 1 May and 'May 5' a 5 May of year 1.
5. A Ctrl-C while ``streams.signals`` swapped or restored the SIGTERM/SIGHUP handlers left one
   of the block's in place after it (or the signals blocked).
6. ``forexd demo``: a SIGTERM or SIGHUP during its cleanup waited out the worker's 20 s grace
   and the broker's 10 s: it now hurries it as a Ctrl-C does.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import streams.demo as demo
import streams.signals as streams_signals
from forex_diffusion.errors import RejectReason
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.instruments import DEFAULT_INSTRUMENTS, InstrumentRegistry
from forex_diffusion.storage.model_registry import ModelKey
from streams.broker import EmbeddedBroker
from streams.cli import app
from streams.commands.candles import check_symbol
from streams.commands.models import _key
from streams.commands.replay import _candle_selection
from streams.settings import Settings, SettingsError
from streams.signals import TERMINATING, terminating_exits, terminating_masked

from ..test_demo_stop_hunt import STUBBORN, signal_at_term
from .test_cli_boundary_3 import one_line

pytestmark = pytest.mark.usefixtures("ctrl_c_raises")  # tests/conftest.py: a background suite ignores SIGINT


START_MS = 1_451_606_400_000  # 2016-01-01 00:00 UTC
HOUR = 3_600_000
runner = CliRunner()


def ticks_file(path: Path, symbols: list[str], n: int = 240) -> Path:
    """``n`` ticks a second apart, row ``i`` of ``symbols[i % len]`` (its price on its own scale)."""
    scale = {"GBPUSD": 1.6, "USDJPY": 150.0}
    rows = ["timestamp,symbol,bid,ask"]
    for i in range(n):
        s = symbols[i % len(symbols)]
        p = scale.get(s, 1.1) * (1 + 1e-4 * math.sin(i / 7))
        iso = pd.Timestamp(START_MS + i * 1000, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(f"{iso},{s},{p:.5f},{p * 1.0001:.5f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def tf_bars(path: Path, timeframes: tuple[str, ...] = ("1h",), n: int = 60) -> Path:
    """``n`` EURUSD bars an hour apart per timeframe, in ``forexd candles``' layout."""
    rows = ["symbol,timeframe,open_time,open,high,low,close"]
    for tf in timeframes:
        for i in range(n):
            p = 1.1 * (1 + 0.002 * math.sin(i / 5))
            iso = pd.Timestamp(START_MS + i * HOUR, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
            rows.append(f"EURUSD,{tf},{iso},{p:.5f},{p * 1.001:.5f},{p * 0.999:.5f},{p:.5f}")
    path.write_text("\n".join(rows) + "\n")
    return path


# -- 1: indicators/replay --timeframe 1H, indicators outputs named for another format ------------


@pytest.mark.parametrize("given", ["1H", "60m", "1h"])
def test_indicators_timeframe_1H_selects_the_1h_of_the_files_timeframe_column(given: str, tmp_path: Path) -> None:
    """Before: ``--timeframe 1H`` exited 65, "holds no 1H candles (it holds 1h, 4h)"."""
    src = tf_bars(tmp_path / "bars.csv", ("1h", "4h"))
    out = tmp_path / "ind.csv"
    res = runner.invoke(app, ["indicators", str(src), "--timeframe", given, "--spec", "sma_5", "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    assert len(pd.read_csv(out)) == 60


@pytest.mark.parametrize(("option", "name"), [("-o", "ind.json"), ("-o", "ind.csv.gz"), ("--rejects", "rej.parquet")])
def test_indicators_output_named_for_another_format_is_a_usage_error(option: str, name: str, tmp_path: Path) -> None:
    """Before: the CSV was written under a name saying JSON, gzip or Parquet."""
    src = tf_bars(tmp_path / "bars.csv")
    args = ["indicators", str(src), "--spec", "sma_5", option, str(tmp_path / name)]
    if option != "-o":
        args += ["-o", str(tmp_path / "ind.csv")]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.stderr
    assert "writes CSV" in res.stderr and name in res.stderr
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("timeframes", [("1h",), ("1h", "4h")])
@pytest.mark.parametrize("given", ["1H", "60m"])
def test_replay_timeframe_1H_is_published_as_the_1h_of_the_file(
    given: str, timeframes: tuple[str, ...], tmp_path: Path
) -> None:
    """Before: the 1H parsed was thrown away: published as 1H, or "holds no 1H candles"."""
    src = tf_bars(tmp_path / "bars.csv", timeframes)
    timeframe, mask = _candle_selection(src, symbol=None, timeframe=given)
    assert timeframe == "1h"
    assert mask is None or sum(mask) == 60


def test_replay_timeframe_1H_gets_to_the_broker(tmp_path: Path) -> None:
    """The whole command with ``--timeframe 1H``: as far as the (unreachable) broker, exit 69."""
    src = tf_bars(tmp_path / "bars.csv")
    res = runner.invoke(
        app, ["replay", str(src), "--timeframe", "1H"], env={"FOREXD_BROKER_URL": "kafka://127.0.0.1:9"}
    )
    assert res.exit_code == 69, res.stderr
    one_line(res.stderr)


# -- 2: a timeframe setting's error names its variable -------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"FOREXD_TIMEFRAMES": "1m,1M"}, "FOREXD_TIMEFRAMES"),
        ({"FOREXD_TIMEFRAMES": "1m,7x"}, "FOREXD_TIMEFRAMES"),
        ({"FOREXD_FORECAST_TIMEFRAMES": "1M"}, "FOREXD_FORECAST_TIMEFRAMES"),
        ({"FOREXD_MODELS": "1M:24"}, "FOREXD_MODELS"),
        ({"FOREXD_MODELS": "1m:24,7x:5"}, "FOREXD_MODELS"),
    ],
)
def test_a_bad_timeframe_setting_names_its_variable(env: dict[str, str], variable: str) -> None:
    """Before: "'1M': M is a month …: fix the FOREXD_* environment variables", naming none."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert f"fix {variable} (" in str(info.value)
    assert "FOREXD_* environment variables" not in str(info.value)


def test_worker_with_a_1M_timeframe_setting_is_one_line_naming_it_exit_78() -> None:
    res = runner.invoke(app, ["worker"], env={"FOREXD_TIMEFRAMES": "1M"})
    assert res.exit_code == 78, res.stderr
    one_line(res.stderr, "M is a month", "fix FOREXD_TIMEFRAMES")


# -- 3: a symbol in any case of a spelling the registry knows ------------------------------------

ALIAS_FORMS = ("{b}{q}", "{b}/{q}", "{b}_{q}", "{b}-{q}")


@st.composite
def cased_alias(draw: st.DrawFn) -> tuple[str, str]:
    """``(a known symbol, one of its aliases with each letter's case drawn)``."""
    inst = draw(st.sampled_from(DEFAULT_INSTRUMENTS))
    form = draw(st.sampled_from(ALIAS_FORMS)).format(b=inst.base, q=inst.quote)
    flips = draw(st.lists(st.booleans(), min_size=len(form), max_size=len(form)))
    return inst.symbol, "".join(c.lower() if f else c.upper() for c, f in zip(form, flips, strict=True))


@settings(max_examples=200, deadline=None)
@given(cased_alias())
def test_every_case_of_a_known_spelling_normalises_to_its_symbol(pair: tuple[str, str]) -> None:
    """Before: ``eur/usd`` and ``EUR/USD`` were EURUSD, ``Eur/Usd`` unknown (``--symbol`` refused
    it: "symbol 'EUR/USD' must be six upper-case letters")."""
    symbol, spelt = pair
    reg = InstrumentRegistry()
    assert reg.normalise(spelt) == symbol
    assert reg.with_symbol(spelt) is reg
    assert check_symbol(spelt) is not None


@pytest.mark.parametrize("spelt", ["EURU\u017fD", "\u0131EUR/USD", "EUR/USD ", "Eur//Usd", "Euro/Usd"])
def test_a_spelling_no_case_of_a_known_one_stays_unknown(spelt: str) -> None:
    """The long s and dotless i upper-case to S and I: not ASCII, not a case of EURUSD."""
    assert InstrumentRegistry().normalise(spelt) is None


@pytest.mark.parametrize("spelt", ["Eur/Usd", "eUR_uSD", "Eur-usd"])
def test_candles_symbol_in_mixed_case_selects_that_symbols_ticks(spelt: str, tmp_path: Path) -> None:
    src = ticks_file(tmp_path / "ticks.csv", ["EURUSD", "GBPUSD"])
    out = tmp_path / "c.csv"
    res = runner.invoke(app, ["candles", str(src), "--symbol", spelt, "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    assert set(pd.read_csv(out).symbol) == {"EURUSD"}


def test_indicators_symbol_in_mixed_case_is_that_symbol(tmp_path: Path) -> None:
    src = tf_bars(tmp_path / "bars.csv")
    out = tmp_path / "i.csv"
    res = runner.invoke(app, ["indicators", str(src), "--symbol", "Eur/Usd", "--spec", "sma_5", "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    assert set(pd.read_csv(out).symbol) == {"EURUSD"}


def test_train_symbol_in_mixed_case_keys_the_model_by_its_symbol(tmp_path: Path) -> None:
    """Before: ``--symbol Eur/Usd`` was upper-cased to ``EUR/USD``, no symbol of the file."""
    src = tf_bars(tmp_path / "bars.csv", n=1300)
    args = ["train", str(src), "--symbol", "Eur/Usd", "--timeframe", "1h", "--horizon", "2", "--window", "8"]
    tiny = {
        "--max-steps": "3",
        "--calib-windows": "64",
        "--width": "8",
        "--blocks": "1",
        "--model-dir": str(tmp_path / "m"),
    }
    res = runner.invoke(app, args + [a for kv in tiny.items() for a in kv])
    assert res.exit_code == 0, res.stderr
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["EURUSD-1h-h2"]


def test_replay_and_models_key_take_a_symbol_in_mixed_case(tmp_path: Path) -> None:
    bars = tf_bars(tmp_path / "tf.csv")
    assert _candle_selection(bars, symbol="Eur/Usd", timeframe="1h")[0] == "1h"
    assert _key("EurUsd/1H/24") == ModelKey(symbol="EURUSD", timeframe="1h", horizon=24)


# -- 4: a month alone among dates of no format pandas infers -------------------------------------


@pytest.mark.parametrize("part", ["May 2014", "May 5", "Jun 2014 10:00", "Jun 2014 23:00 -09:00", "May-14"])
def test_a_part_of_a_date_among_dates_of_no_inferable_format_is_refused(part: str, tmp_path: Path) -> None:
    """Before: the column's first date ('5-May-14 …') gives pandas no format, each date is read
    alone by dateutil, and 'May 2014' was 1 May 2014 ('May 5' year 1, 'Jun 2014 10:00' 1 June)."""
    rows = ["timestamp,symbol,bid,ask", "5-May-14 10:00:01,EURUSD,1.10000,1.10020"]
    rows += [f"{part},EURUSD,1.10001,1.10021", "1-May-14 10:00:03,EURUSD,1.10002,1.10022"]
    src = tmp_path / "ticks.csv"
    src.write_text("\n".join(rows) + "\n")
    loaded = read_ticks(src)
    assert [r.line for r in loaded.rejects] == [3]
    (rej,) = loaded.rejects
    assert rej.reason is RejectReason.BAD_TS and "is no date" in rej.detail and part in rej.detail
    got = pd.to_datetime(loaded.frame["ts_ms"], unit="ms").dt.strftime("%Y-%m-%d %H:%M:%S").tolist()
    assert got == ["2014-05-05 10:00:01", "2014-05-01 10:00:03"]


# -- 5: a Ctrl-C while streams.signals sets or restores the SIGTERM/SIGHUP handlers ---------------


def _signals_with_ctrl_c_at(at: set[int], cm: Callable[[], AbstractContextManager[None]]) -> tuple[int, list[str]]:
    """Lines of ``streams/signals.py`` run through ``with cm(): pass``, with SIGINT raised (the
    default handler: ``KeyboardInterrupt``) at the lines numbered ``at``; what was left behind."""
    before = {s: signal.getsignal(s) for s in TERMINATING}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    count = [0]

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != streams_signals.__file__:
            return None
        if event == "line":
            count[0] += 1
            if count[0] in at:
                signal.raise_signal(signal.SIGINT)
        return trace

    raised: BaseException | None = None
    try:
        sys.settrace(trace)
        try:
            with cm():
                pass
        finally:
            sys.settrace(None)
    except KeyboardInterrupt as exc:
        raised = exc
    left = [s.name for s in TERMINATING if signal.getsignal(s) is not before[s]]
    if signal.pthread_sigmask(signal.SIG_SETMASK, mask) != mask:
        left.append("mask")
    for s, h in before.items():
        signal.signal(s, h)
    if at and min(at) <= count[0] and raised is None:
        left.append("no KeyboardInterrupt")
    return count[0], left


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="a signal mask")
@pytest.mark.parametrize("ctrl_c", [1, 2], ids=["one Ctrl-C", "two Ctrl-C at once"])
@pytest.mark.parametrize("cm", [terminating_exits, terminating_masked])
def test_ctrl_c_at_any_line_of_the_signal_context_managers_leaves_no_handler_behind(
    cm: Callable[[], AbstractContextManager[None]], ctrl_c: int
) -> None:
    """Before: a Ctrl-C between the two restores left SIGHUP's handler (the block's) installed
    after the block; one between the two swaps SIGTERM's (the swaps were before the ``try``);
    one just after ``terminating_masked`` blocked the signals left them blocked."""
    assert threading.current_thread() is threading.main_thread()
    lines, left = _signals_with_ctrl_c_at(set(), cm)
    assert lines > 5 and left == []
    failures = []
    for n in range(1, lines + 1):
        _, left = _signals_with_ctrl_c_at({n + k for k in range(ctrl_c)}, cm)
        if left:
            failures.append(f"line {n}/{lines}: left {left}")
    assert failures == []


# -- 6: forexd demo: SIGTERM or SIGHUP during the cleanup hurries it as Ctrl-C does ---------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups, sh and sleep")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("slow", ["worker", "broker"])
def test_a_signal_during_the_demos_cleanup_kills_what_it_waits_for_then_exits_by_it(
    sig: signal.Signals, slow: str, tmp_path: Path
) -> None:
    """Before: a SIGTERM while the cleanup waited for a worker ignoring SIGTERM (its final
    checkpoint) was held until the end: the 20 s of the worker's grace, then the broker's 10 s.
    Now, as a Ctrl-C, it kills what the cleanup waits for, does the rest, and ends it (128 + sig).
    The signal is sent once the slow one got its SIGTERM (the cleanup waits out its grace; a
    timer of 0.5 s could fire before the worker was stopped, or after, on a loaded machine)."""
    procs = {}
    for name in ("worker", "broker"):
        cmd, out = (STUBBORN, subprocess.PIPE) if name == slow else (["sleep", "60"], None)
        procs[name] = subprocess.Popen(cmd, start_new_session=True, stdout=out)
    broker = EmbeddedBroker(port=1)
    broker.proc = procs["broker"]
    (tmp_path / "demo").mkdir()
    log = open(tmp_path / "demo" / "worker.log", "ab")  # noqa: SIM115 - _stop_all closes it
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, *TERMINATING)}
    signalling = signal_at_term(procs[slow], sig)  # the slow one got its SIGTERM: the cleanup waits
    try:
        with pytest.raises(SystemExit) as info, terminating_exits(), terminating_masked():  # as run_demo calls it
            demo._stop_all(procs["worker"], log, broker, tmp_path / "demo")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        signalling.join(10)  # the slow one's output read to its end, and closed
    assert info.value.code == 128 + sig
    assert procs[slow].returncode == -signal.SIGKILL  # killed: it ignored the SIGTERM, not waited for
    if slow == "worker":
        assert procs["broker"].returncode == -signal.SIGKILL  # at once, not its own SIGTERM grace
    else:
        assert procs["worker"].returncode == -signal.SIGTERM  # stopped as asked, before the signal
    assert log.closed and not (tmp_path / "demo").exists()
    assert {s: signal.getsignal(s) for s in before} == before
