"""``forexd candles`` and ``forexd indicators`` at their boundary: bad candles, spec parameters,
``-`` as an output, standard input closed, the stdin spool under signals and a full disk,
and hostile arguments. Each test says what the command did before its fix.
"""

from __future__ import annotations

import errno
import gzip
import io
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import DataFormatError, OutputError, RejectReason, ValidationError
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.wire import decode_candle, encode_unchecked
from streams.cli import app

from ...realdata import require
from .test_cli_errors import FOREXD, assert_one_line, runner

HEADER = "timestamp,symbol,open,high,low,close,volume"
T0 = 1_398_902_400_000  # 2014-05-01T00:00:00Z


def candle_rows(prices: list[tuple[float | str, ...]], symbol: str = "EURUSD") -> str:
    """A generic candle file, one minute apart, of ``(open, high, low, close)`` rows."""
    rows = [HEADER]
    for i, (o, h, lo, c) in enumerate(prices):
        rows.append(f"{T0 + i * 60_000},{symbol},{o},{h},{lo},{c},1")
    return "\n".join(rows) + "\n"


def write_ticks(path: Path, n: int = 50) -> Path:
    path.write_text("ts_ms,bid,ask\n" + "".join(f"{T0 + i * 1000},1.1,1.1001\n" for i in range(n)))
    return path


def real_slice(path: Path, rows: int) -> Path:
    """The first ``rows`` hourly EUR/USD candles of the bundled Lean file."""
    with gzip.open(require("lean_oanda_eurusd_h1_2007_2017.csv.gz"), "rt") as fh:
        path.write_text("".join(next(fh) for _ in range(rows + 1)))
    return path


# -- 1. indicators refuse the candles the stream refuses -----------------------------------------

GOOD = (1.1, 1.2, 1.0, 1.15)
BAD = {
    2: (("inf", 1.2, 1.0, 1.15), "non_finite"),
    3: (("nan", 1.2, 1.0, 1.15), "non_finite"),
    4: ((1.1, 1.2, 1.0, "-inf"), "non_finite"),
    5: ((-1.1, 1.2, 1.0, 1.15), "non_positive"),
    6: ((1.1, 1.2, 0.0, 1.15), "non_positive"),
    7: ((1.1, 1.0, 1.2, 1.15), "inconsistent"),  # high < low
    8: ((1.1, 1.2, 1.0, 1.5), "inconsistent"),  # close above high
    9: ((0.9, 1.2, 1.0, 1.15), "inconsistent"),  # open below low
    10: ((1.1, 1e12, 1.0, 1.15), "out_of_range"),  # past PRICE_MAX
    11: ((1000.0, 1000.0, 1000.0, 1000.0), "out_of_range"),  # no EURUSD price
}


def test_indicators_refuse_bad_candles_count_and_list_them_and_compute_nothing_from_them(tmp_path: Path) -> None:
    """Rows with inf/nan/negative/zero prices, high < low, or open/close outside [low, high]
    were written through into the indicator output (``rejected=0``) and fed to every indicator."""
    prices: list[tuple[float | str, ...]] = [GOOD]
    prices += [BAD[line][0] for line in sorted(BAD)]
    prices += [(1.1, 1.2, 1.0, 1.10), (1.1, 1.2, 1.0, 1.20)]
    src = tmp_path / "eurusd_1m.csv"
    src.write_text(candle_rows(prices))
    out, rej = tmp_path / "o.csv", tmp_path / "r.csv"
    res = runner.invoke(app, ["indicators", str(src), "--spec", "sma_2,bb_2", "-o", str(out), "--rejects", str(rej)])
    assert res.exit_code == 0, res.output
    assert f"rejected={len(BAD)} (" in res.stderr and "inconsistent=3" in res.stderr, res.stderr
    got = pd.read_csv(out)
    assert got["close"].tolist() == [1.15, 1.10, 1.20]  # the good rows only
    assert got["sma_2"].tolist()[1:] == pytest.approx([1.125, 1.15])  # from good closes only
    refused = pd.read_csv(rej)
    assert dict(zip(refused["line"], refused["reason"], strict=True)) == {
        line + 1: why
        for line, (_, why) in BAD.items()  # +1: the header is line 1
    }


def test_indicators_rejects_dash_is_standard_output_beside_an_output_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a file named '-' (the old behaviour) lands there
    src = tmp_path / "eurusd_1m.csv"
    src.write_text(candle_rows([GOOD, ("nan", 1.2, 1.0, 1.15), GOOD]))
    res = runner.invoke(
        app, ["indicators", str(src), "--spec", "sma_2", "-o", str(tmp_path / "o.csv"), "--rejects", "-"]
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "line,reason,detail"
    assert res.stdout.splitlines()[1].startswith("3,non_finite,")


def test_indicators_refuse_rows_of_a_symbol_with_control_characters(tmp_path: Path) -> None:
    """A symbol column holding ``EUR\\x1b[31mUSD`` went into the output as it was."""
    src = tmp_path / "c.csv"
    src.write_text(candle_rows([GOOD, GOOD]) + f"{T0 + 120_000},EUR\x1b[31mUSD,1.1,1.2,1.0,1.15,1\n")
    out = tmp_path / "o.csv"
    res = runner.invoke(app, ["indicators", str(src), "--spec", "sma_2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "unknown_symbol=1" in res.stderr
    assert set(pd.read_csv(out)["symbol"]) == {"EURUSD"}


_PRICE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1.1, 1.2, 1.0, 0.0, -0.0, -1.0, 1e9, 1e9 + 1, 1e-5, 1.1e-5, 1e7, 1.1e7, 110.0, 5e-324]),
)
_VOLUME = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.0, 1e24, 1.1e24]))
_SYMBOL = st.sampled_from(["EURUSD", "USDJPY", "ABCDEF", "AB\x1bCD", "EUR", ""])


@settings(max_examples=400, deadline=None)
@given(symbol=_SYMBOL, ohlc=st.tuples(_PRICE, _PRICE, _PRICE, _PRICE), volume=_VOLUME)
def test_candle_rows_are_refused_with_the_stream_decoders_reason(
    symbol: str, ohlc: tuple[float, float, float, float], volume: float
) -> None:
    """``check_candle_rows`` (``forexd indicators``) admits a candle exactly when the candle
    agent's ``decode_candle`` does, and refuses it with the same reason."""
    from forex_diffusion.offline import check_candle_rows

    o, h, lo, c = ohlc
    reg = InstrumentRegistry()
    stream_reg = reg.with_symbol(symbol) if symbol.isascii() and symbol.isalpha() and len(symbol) == 6 else reg
    # a bar of 2014: the stream refuses one before 2000 as bad_ts (B18), which is no price's reason
    record = {"symbol": symbol, "timeframe": "1m", "open_time": T0, "close_time": T0 + 60_000}
    record |= {"open": o, "high": h, "low": lo, "close": c, "volume": volume}
    try:
        decode_candle(encode_unchecked("candles", record), instruments=stream_reg)
        stream: RejectReason | None = None
    except ValidationError as exc:
        # a symbol the wire's pattern refuses is ``schema`` there; a file's rows of it are
        # ``unknown_symbol``, as ``forexd candles`` refuses a tick of an unknown symbol
        stream = RejectReason.UNKNOWN_SYMBOL if exc.reason is RejectReason.SCHEMA else exc.reason
    frame = pd.DataFrame(
        {"line": [2], "ts_ms": [0], "symbol": [symbol], "open": [o], "high": [h], "low": [lo], "close": [c]}
        | {"volume": [volume]}
    )
    kept, refused = check_candle_rows(frame, instruments=reg)
    ours = refused[0].reason if refused else None
    assert ours == stream, (record, refused)
    assert len(kept) == (ours is None)


# -- 2. --spec parameters -------------------------------------------------------------------------


def test_the_candle_check_loads_no_wire_module() -> None:
    """Review finding: ``check_candle_rows`` imported :mod:`forex_diffusion.wire` for two
    bounds, which loads scipy and river: ``forexd indicators`` on a 5,000-row file took
    2.2 s instead of 1.4 s. The bounds now come from where the validator keeps them."""
    code = (
        "import sys, pandas as pd\n"
        "from forex_diffusion.offline import check_candle_rows\n"
        "f = pd.DataFrame({'line': [2, 3], 'symbol': ['EURUSD', 'EURUSD'], 'open': [1.1, 1.1],"
        " 'high': [1.2, 1e10], 'low': [1.0, 1.0], 'close': [1.1, 1.1], 'volume': [0.0, 1e25]})\n"
        "kept, refused = check_candle_rows(f)\n"
        "assert len(kept) == 1 and [r.reason.value for r in refused] == ['out_of_range'], refused\n"
        "print(','.join(m for m in ('forex_diffusion.wire', 'scipy', 'river') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", res.stdout


def test_the_wire_bounds_are_the_candle_checks() -> None:
    from forex_diffusion import wire
    from forex_diffusion.ingest import validation

    assert (wire.PRICE_MAX, wire.CANDLE_VOLUME_MAX) == (validation.MAX_PRICE, validation.MAX_CANDLE_VOLUME)


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("bb_20_1e-320", "k must be at least 0.01, not 1e-320"),  # a subnormal: was accepted
        ("bb_20_5e-324", "k must be at least 0.01"),
        ("bb_20_1e-400", "k must be at least 0.01"),  # underflows to 0
        ("bb_20_0", "k must be at least 0.01, not 0"),
        ("bb_20_-0", "k must be at least 0.01, not -0"),
        ("bb_20_-1", "k must be at least 0.01, not -1"),
        ("bb_20_0.001", "k must be at least 0.01"),
        ("keltner_20_1e-300", "multiplier must be at least 0.01"),
        ("bb_20_nan", "bad value 'nan' for k"),
        ("bb_20_inf", "bad value 'inf' for k"),
        ("bb_20_1e999", "k may be at most 100000"),
        ("bb_20_" + "9" * 5000, "bad value '9999"),
        ("bb_20_2.50000001", "k may have at most 6 significant digits"),  # its token said 2.5
        ("keltner_20_1.0000001", "multiplier may have at most 6 significant digits"),
    ],
)
def test_indicators_refuse_a_band_multiplier_that_is_no_sensible_number(token: str, says: str) -> None:
    """``--spec bb_20_1e-320`` ran, under a column ``bb_lower_20_9.99989e-321``."""
    res = runner.invoke(app, ["indicators", "missing.csv", "--spec", f"sma_5,{token}"])
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "'--spec'", token[:20], says)


@pytest.mark.parametrize("token", ["bb_20_0.01", "bb_20_2.5", "keltner_20_1.5_10", "bb_20_100000", "bb_20_+3"])
def test_indicators_take_band_multipliers_in_bounds(token: str, tmp_path: Path) -> None:
    src = real_slice(tmp_path / "eurusd_h1.csv", 60)
    res = runner.invoke(app, ["indicators", str(src), "--spec", token, "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 0, res.output


_PARAM = st.one_of(
    st.integers(1, 60).map(str),  # valid mostly: the spec then runs on the file
    st.integers(-3, 200_001).map(str),
    st.floats(min_value=0.001, max_value=10).map(lambda x: f"{x:.3g}"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda x: f"{x:g}"),
    st.sampled_from(["1e-320", "1e999", "nan", "-0", "0", "", " 1", "1_0", "0x10", "٣", "9" * 60, "2.5", ".5", "+3"]),
    st.text(max_size=5),
)
_SPEC_TOKEN = st.builds(
    lambda name, params: "_".join([name, *params]),
    st.sampled_from(["sma", "ema", "rsi", "atr", "bb", "macd", "keltner", "stoch", "adx", "rv", "hurst", "max", "x"]),
    st.lists(_PARAM, max_size=4),
)
_PLAUSIBLE_TOKEN = st.builds(  # names and small parameters: most run, some clash or break an order
    lambda name, params: "_".join([name, *params]),
    st.sampled_from(["sma", "ema", "rsi", "atr", "bb", "macd", "keltner", "stoch", "adx", "rv", "hurst", "donchian"]),
    st.lists(st.one_of(st.integers(1, 60).map(str), st.sampled_from(["0.5", "1.5", "2", "3.25"])), max_size=3),
)
_SPECS = st.one_of(
    st.lists(_SPEC_TOKEN, min_size=1, max_size=3).map(",".join),
    st.lists(_PLAUSIBLE_TOKEN, min_size=1, max_size=3).map(",".join),
    st.text(max_size=20),
)


@pytest.fixture(scope="module")
def real_candles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_slice(tmp_path_factory.mktemp("spec") / "eurusd_h1.csv", 150)


@pytest.mark.timeout(600)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(spec=_SPECS)
def test_any_spec_computes_finite_or_empty_values_on_a_real_file_or_is_one_line(spec: str, real_candles: Path) -> None:
    res = runner.invoke(app, ["indicators", str(real_candles), "--spec", spec])
    event(f"exit {res.exit_code}")
    if res.exit_code == 2:
        assert_one_line(res.stderr, "'--spec'")
        return
    assert res.exit_code == 0, (spec, res.output, res.exception)
    got = pd.read_csv(io.StringIO(res.stdout))
    assert len(got) == 150
    values = got.iloc[:, 7:].to_numpy(dtype=float).ravel()
    assert all(math.isfinite(v) or math.isnan(v) for v in values), spec  # NaN: an empty cell


# -- 3. "-" as an output --------------------------------------------------------------------------


def test_candles_output_dash_is_standard_output_not_a_file_named_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``forexd candles -o -`` wrote a file named ``-``."""
    monkeypatch.chdir(tmp_path)
    ticks = write_ticks(tmp_path / "eurusd_ticks.csv")
    res = runner.invoke(app, ["candles", str(ticks), "-o", "-"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("symbol,timeframe,open_time,")
    assert not (tmp_path / "-").exists()


def test_indicators_output_dash_is_standard_output_not_a_file_named_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``forexd indicators -o -`` wrote a file named ``-``."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "eurusd_1m.csv"
    src.write_text(candle_rows([GOOD, GOOD, GOOD]))
    res = runner.invoke(app, ["indicators", str(src), "--spec", "sma_2", "-o", "-"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("ts_ms,symbol,open,high,low,close,volume,sma_2")
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("command", ["candles", "indicators"])
def test_rejects_and_output_both_on_standard_output_is_a_usage_error(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a file named '-' (the old behaviour) lands there
    src = write_ticks(tmp_path / "eurusd_ticks.csv") if command == "candles" else tmp_path / "eurusd_1m.csv"
    if command == "indicators":
        src.write_text(candle_rows([GOOD]))
    res = runner.invoke(app, [command, str(src), "--rejects", "-"])
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "--rejects - and the -o output would both go to standard output")
    assert not (tmp_path / "-").exists()


def test_candles_rejects_dash_is_standard_output_beside_an_output_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a file named '-' (the old behaviour) lands there
    ticks = tmp_path / "eurusd_ticks.csv"
    ticks.write_text(f"ts_ms,bid,ask\n{T0},1.1,1.1001\n{T0 + 1000},nan,1.1\n")
    res = runner.invoke(app, ["candles", str(ticks), "-o", str(tmp_path / "o.csv"), "--rejects", "-"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "line,reason,detail"
    assert res.stdout.splitlines()[1].startswith("3,non_finite,")


# -- 4. standard input closed ---------------------------------------------------------------------


def test_candles_dash_with_standard_input_closed_says_closed_not_terminal() -> None:
    """``forexd candles - <&-`` said standard input was a terminal."""
    res = subprocess.run(
        ["sh", "-c", 'exec "$0" candles - <&-', str(FOREXD) if FOREXD.exists() else "forexd"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 66, res.stderr
    assert_one_line(res.stderr, "standard input, and it is closed")
    assert "terminal" not in res.stderr


# -- 5. the stdin spool ---------------------------------------------------------------------------


def _spools(tmp: Path) -> list[Path]:
    return [p for p in tmp.iterdir() if p.name.startswith("forexd-candles-")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminating_signal_while_spooling_removes_the_spool_and_exits_128_plus_it(
    sig: signal.Signals, tmp_path: Path
) -> None:
    """SIGTERM or SIGHUP while ``forexd candles -`` read a pipe left ``forexd-candles-*`` with
    the copied input in /tmp (the TemporaryDirectory's cleanup never ran)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")} | {"TMPDIR": str(tmp)}
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    proc = subprocess.Popen(
        [*cmd, "candles", "-", "--symbol", "EURUSD"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"ts_ms,bid,ask\n" + b"".join(b"%d,1.1,1.1001\n" % (T0 + i) for i in range(1000)))
        proc.stdin.flush()  # and kept open: the command is still spooling
        deadline = time.monotonic() + 150  # a bound on the wait, not what the test measures
        while not _spools(tmp) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _spools(tmp), "the spool never appeared"
        proc.send_signal(sig)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 128 + sig, proc.stderr.read() if proc.stderr else rc
    assert _spools(tmp) == []
    assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()


#: ``forexd candles -`` with a SIGTERM sent to itself the moment the spool directory exists,
#: before ``tempfile.mkdtemp`` has returned: the window the test above hit on a busy machine.
_SIGNAL_AT_MKDTEMP = """
import os, signal, sys, tempfile
real = tempfile.mkdtemp
def mkdtemp(*args, **kwargs):
    made = real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return made
tempfile.mkdtemp = mkdtemp
sys.argv = ["forexd", "candles", "-", "--symbol", "EURUSD"]
from streams.cli import main
main()
"""


def test_a_terminating_signal_as_the_spool_directory_is_made_still_removes_it(tmp_path: Path) -> None:
    """A signal between ``mkdtemp`` and the directory's cleanup being registered left the
    spool behind (rc 143, the directory in TMPDIR): its creation now holds the signal back."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")} | {"TMPDIR": str(tmp)}
    res = subprocess.run(
        [sys.executable, "-c", _SIGNAL_AT_MKDTEMP],
        input=b"ts_ms,bid,ask\n" + b"".join(b"%d,1.1,1.1001\n" % (T0 + i) for i in range(100)),
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert _spools(tmp) == []
    assert b"Traceback" not in res.stderr


#: A signal sent to the process while another thread runs (rich's refresh thread, a BLAS pool)
#: inside ``terminating_masked``: the kernel gives it to the thread that does not block it.
_SIGNAL_UNDER_THE_MASK = """
import os, signal, threading
from streams.signals import terminating_exits, terminating_masked
threading.Thread(target=threading.Event().wait, daemon=True).start()
with terminating_exits(), terminating_masked():
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(100000):  # Python runs a caught signal's handler between these
        pass
    print("the masked block ran to its end", flush=True)
"""


def test_a_signal_taken_by_another_thread_still_waits_for_the_masked_block() -> None:
    res = subprocess.run([sys.executable, "-c", _SIGNAL_UNDER_THE_MASK], capture_output=True, text=True, timeout=120)
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert res.stdout == "the masked block ran to its end\n", res.stderr


def test_sighup_ignored_as_under_nohup_stays_ignored_while_spooling(tmp_path: Path) -> None:
    """The spool's handlers must not undo ``nohup``: a SIGHUP the caller ignores is ignored."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")} | {"TMPDIR": str(tmp)}
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    proc = subprocess.Popen(
        [*cmd, "candles", "-", "--symbol", "EURUSD"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # noqa: PLW1509 - what nohup does
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"ts_ms,bid,ask\n" + b"".join(b"%d,1.1,1.1001\n" % (T0 + i * 1000) for i in range(100)))
        proc.stdin.flush()
        deadline = time.monotonic() + 150  # a bound on the wait, not what the test measures
        while not _spools(tmp) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _spools(tmp), "the spool never appeared"
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=120)  # closes standard input: the command goes on
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.decode().startswith("symbol,timeframe,open_time,") and _spools(tmp) == []


def test_the_spool_restores_the_signal_handlers_it_replaced() -> None:
    from streams.signals import terminating_exits

    def mine(signum: int, frame: object) -> None:
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        with terminating_exits():
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


def test_a_full_file_system_while_spooling_is_one_line_73_and_no_spool_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool was unbounded: ``cat /dev/zero | forexd candles -`` filled /tmp, and a full
    disk ended in an ``OSError`` traceback."""
    import tempfile

    from streams.commands import candles

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(candles, "_free_bytes", lambda where: candles.SPOOL_RESERVE + 100)
    ticks = write_ticks(tmp_path / "eurusd_ticks.csv")
    res = runner.invoke(app, ["candles", "-", "--symbol", "EURUSD"], input=ticks.read_bytes())
    assert res.exit_code == 73, res.output
    assert_one_line(res.stderr, f"cannot copy standard input to {tmp_path}:", "MiB free", "TMPDIR")
    assert _spools(tmp_path) == []


def test_standard_input_past_the_spool_bound_is_one_line_65_and_no_spool_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from streams.commands import candles

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(candles, "SPOOL_MAX", 100)
    ticks = write_ticks(tmp_path / "eurusd_ticks.csv")
    res = runner.invoke(app, ["candles", "-", "--symbol", "EURUSD"], input=ticks.read_bytes())
    assert res.exit_code == 65, res.output
    assert_one_line(res.stderr, "standard input holds more than")
    assert _spools(tmp_path) == []


def test_a_write_failing_for_want_of_space_is_the_full_disk_refusal(tmp_path: Path) -> None:
    from streams.commands.candles import _spool

    class Full(io.BytesIO):
        def write(self, b: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="MiB free"):
        _spool(io.BytesIO(b"x" * 10), Full(), tmp_path / "spool", "standard input")
    with pytest.raises(DataFormatError):  # the bound, before a byte is written past it
        import streams.commands.candles as c

        old, c.SPOOL_MAX = c.SPOOL_MAX, 5
        try:
            _spool(io.BytesIO(b"x" * 10), io.BytesIO(), tmp_path / "spool", "standard input")
        finally:
            c.SPOOL_MAX = old


# -- 6. hostile arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["candles", "T", "--timeframes", "1" * 5000 + "m"], "is not a timeframe"),  # int(): ValueError
        (["indicators", "C", "--timeframe", "1" * 5000 + "m"], "is not a timeframe"),
        (["candles", "T", "--timeframes", "1m,\u00b2m"], "is not a timeframe"),  # '²'.isdigit(), int('²') fails
        (["indicators", "C", "--timeframe", "\u00b2m"], "is not a timeframe"),
        (["candles", "missing.csv", "--symbol", "EUR\x1b[31mUSD"], "six upper-case letters"),  # before the input
        (["candles", "T", "--allowed-lateness-ms", "-1"], "--allowed-lateness-ms must be at least 0, not -1"),
        (["candles", "T", "--allowed-lateness-ms", str(10**30)], "--allowed-lateness-ms must be at most 604800000"),
        (["candles", "T", "--allowed-lateness-ms", "604800001"], "--allowed-lateness-ms must be at most 604800000"),
        (["indicators", "C", "--symbol", "EUR\x1b[31mUSD"], "six upper-case letters"),
        (["indicators", "C", "--symbol", ""], "six upper-case letters"),
    ],
)
def test_hostile_option_values_are_one_usage_line(args: list[str], says: str, tmp_path: Path) -> None:
    """A 5,000-digit timeframe was an int() traceback; a lateness of 10**30 ms was taken (the
    worker allows a week); an indicators --symbol with an escape went into the output."""
    ticks = write_ticks(tmp_path / "eurusd_ticks.csv")
    candles = tmp_path / "eurusd_1m.csv"
    candles.write_text(candle_rows([GOOD, GOOD]))
    full = [str(ticks) if a == "T" else str(candles) if a == "C" else a for a in args]
    res = runner.invoke(app, [*full, "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 2, (res.output, res.exception)
    assert_one_line(res.stderr, says)
    assert not (tmp_path / "o.csv").exists()


def test_indicators_symbol_is_written_as_the_stream_spells_it(tmp_path: Path) -> None:
    """``--symbol eurusd`` on a file without a symbol column wrote ``eurusd`` rows."""
    src = tmp_path / "bars.csv"
    src.write_text("timestamp,open,high,low,close\n" + f"{T0},1.1,1.2,1.0,1.15\n")
    out = tmp_path / "o.csv"
    res = runner.invoke(app, ["indicators", str(src), "--symbol", "eurusd", "--spec", "sma_2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(out)["symbol"].tolist() == ["EURUSD"]


def _hostile_inputs(tmp: Path) -> dict[str, tuple[Path, int, str]]:
    """Name → (input, exit status, what the line says)."""
    empty = tmp / "eurusd_empty.csv"
    empty.write_bytes(b"")
    garbage = tmp / "eurusd_garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 40)
    truncated = tmp / "eurusd_t.csv.gz"
    truncated.write_bytes(gzip.compress(b"ts_ms,bid,ask\n" + b"1398902400000,1.1,1.1001\n" * 500)[:40])
    huge = tmp / "eurusd_huge.csv"
    huge.write_text("ts_ms,bid,ask\n" + f"{T0},1.1," + "9" * 200_000 + "\n")
    folder = tmp / "eurusd_dir"
    folder.mkdir()
    return {
        "empty": (empty, 65, "empty file"),
        "garbage": (garbage, 65, "unrecognised"),
        "truncated gz": (truncated, 65, "corrupt gzip stream"),
        "huge line": (huge, 65, "characters"),
        "directory": (folder, 66, "is a directory"),
    }


@pytest.mark.parametrize("command", ["candles", "indicators"])
@pytest.mark.parametrize("case", ["empty", "garbage", "truncated gz", "huge line", "directory"])
def test_hostile_input_files_are_one_line_with_their_status(command: str, case: str, tmp_path: Path) -> None:
    path, code, says = _hostile_inputs(tmp_path)[case]
    res = runner.invoke(app, [command, str(path), "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == code, (res.output, res.exception)
    assert_one_line(res.stderr, says)
    assert len(res.stderr) < 1200


# an unreadable input (mode 000): tests/unit/cli/test_unreadable_files.py, which runs it as a user even as root


# -- outputs that fail ----------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("option", ["-o", "--rejects"])
@pytest.mark.parametrize("command", ["candles", "indicators"])
def test_an_output_whose_writes_fail_is_one_line_naming_it_74(command: str, option: str, tmp_path: Path) -> None:
    """``-o /dev/full`` said ``error: [Errno 28] No space left on device``: no file, no fix."""
    src = write_ticks(tmp_path / "eurusd_ticks.csv") if command == "candles" else tmp_path / "eurusd_1m.csv"
    if command == "indicators":
        src.write_text(candle_rows([GOOD, GOOD]))
    args = ["-o", "/dev/full"] if option == "-o" else ["-o", str(tmp_path / "o.csv"), "--rejects", "/dev/full"]
    res = runner.invoke(app, [command, str(src), *args])
    assert res.exit_code == 74, res.output
    assert_one_line(res.stderr, "cannot write /dev/full: No space left on device", f"choose another {option}")


def test_a_half_written_output_is_removed_when_its_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import forex_diffusion.offline as offline

    def half(candles: object, out: io.TextIOBase, **kw: object) -> int:
        out.write("symbol,timeframe\n")
        out.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(offline, "write_candles_csv", half)
    out = tmp_path / "o.csv"
    res = runner.invoke(app, ["candles", str(write_ticks(tmp_path / "eurusd_ticks.csv")), "-o", str(out)])
    assert res.exit_code == 74, res.output
    assert_one_line(res.stderr, f"cannot write {out}")
    assert not out.exists()


@pytest.mark.parametrize("command", ["candles", "indicators"])
def test_standard_output_closed_is_refused_before_the_work_73(command: str, tmp_path: Path) -> None:
    """``forexd candles FILE >&-`` exited 0 having written the candles nowhere (pandas, given
    ``sys.stdout`` None, returned the CSV as a string)."""
    src = write_ticks(tmp_path / "eurusd_ticks.csv") if command == "candles" else tmp_path / "eurusd_1m.csv"
    if command == "indicators":
        src.write_text(candle_rows([GOOD, GOOD]))
    res = subprocess.run(
        ["sh", "-c", 'exec "$0" "$1" "$2" >&-', str(FOREXD) if FOREXD.exists() else "forexd", command, str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 73, res.stderr
    assert_one_line(res.stderr, "standard output is closed")


def test_an_output_that_fails_to_open_is_left_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a file the command truncated is removed after a failure: a failed open removed the
    user's existing file (a read-only file, as root passes the permission check)."""
    from streams.commands.candles import open_output

    out = tmp_path / "keep.csv"
    out.write_text("the user's data\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(OSError, match="cannot write"), open_output(out):
        pass
    monkeypatch.undo()
    assert out.read_text() == "the user's data\n"


def test_a_failed_write_through_a_link_keeps_the_link(tmp_path: Path) -> None:
    """``-o /dev/stdout`` is a link: a write failing through it unlinked the link itself."""
    from streams.commands.candles import open_output

    target = tmp_path / "target.csv"
    target.write_text("")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    with pytest.raises(OSError, match="cannot write"), open_output(link) as fh:
        fh.write("a,b\n")
        raise OSError(28, "No space left on device")
    assert link.is_symlink() and target.exists()
