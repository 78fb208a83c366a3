"""``forexd train``/``backtest`` refuse candles for their time as the candle agent does.

The stream's candle agent keeps the FIRST candle it receives for an open time and refuses a
later one as ``duplicate``; a candle opening before its series' last is ``late``; a close
past the clock is ``future_ts`` (``forex_diffusion.offline.check_candle_times``, which
``forexd indicators`` applies too). Before, train and backtest sorted the file by open time
and kept the LAST row of a repeated open time: on a file with a repeated or back-in-time
candle, backtest's forecasts were not the stream's on the same candles in file order.

The files are slices of the bundled LEAN/OANDA EURUSD hourly bars; the backtests use the
bundled EURUSD-1h-h24 model with few samples and steps.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from forex_diffusion.diffusion.inputs import InputSpec, build_extra_frame, frame_candles
from streams.cli import app

ROOT = Path(__file__).resolve().parents[3]
LEAN_H1 = ROOT / "tests" / "data" / "lean" / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
MODEL_1H = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
runner = CliRunner()

BACKTEST_ARGS = ["--symbol", "EURUSD", "--timeframe", "1h", "--model", str(MODEL_1H), "--every", "10",
                 "-n", "16", "--steps", "4", "--touch-bands", "none"]  # fmt: skip


def _lean(start: int, n: int) -> tuple[str, list[str]]:
    """The header and ``n`` data lines of the LEAN hourly file from data line ``start``."""
    with gzip.open(LEAN_H1, "rt") as fh:
        lines = fh.read().splitlines()
    return lines[0], lines[1 + start : 1 + start + n]


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _repriced(line: str, factor: float) -> str:
    """The same bar (same open time) with every bid and ask price times ``factor``."""
    cells = line.split(",")
    sizes = {5, 10}  # bid_size, ask_size
    return ",".join(c if i == 0 or i in sizes else f"{float(c) * factor:.5f}" for i, c in enumerate(cells))


def _backtest(src: Path, out: Path) -> tuple[int, str, str]:
    res = runner.invoke(app, ["backtest", str(src), *BACKTEST_ARGS, "-o", str(out)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, res.stderr, out.read_text() if out.exists() else ""


def _needs_model() -> None:
    if not MODEL_1H.is_dir():
        pytest.skip(f"bundled model {MODEL_1H} absent")


def _hostile(rows: list[str]) -> list[str]:
    """Row 150 moved after row 160 (late), and row 200 again with other prices (duplicate)."""
    return [*rows[:150], *rows[151:161], rows[150], *rows[161:201], _repriced(rows[200], 1.002), *rows[201:]]


def test_backtest_keeps_the_first_of_a_repeated_open_time_and_refuses_a_late_row(tmp_path: Path) -> None:
    """Before: the output was that of the file sorted with the LAST duplicate kept (the late
    row put back in its place, the second row of 200's open time forecast from)."""
    _needs_model()
    header, rows = _lean(60_000, 300)
    hostile = _write(tmp_path / "hostile.csv", header, _hostile(rows))
    clean = _write(tmp_path / "clean.csv", header, [r for i, r in enumerate(rows) if i != 150])
    as_old = _write(tmp_path / "old.csv", header, [*rows[:200], _repriced(rows[200], 1.002), *rows[201:]])
    code, err, bad = _backtest(hostile, tmp_path / "hostile_out.csv")
    assert code == 0, err
    # line 162: the moved row (data row 161, after the header); line 203: the second row of 200's open time
    assert "hostile.csv EURUSD: refused 2 of 301 candles (duplicate=1, late=1; first at line 162)" in err
    code, err, good = _backtest(clean, tmp_path / "clean_out.csv")
    assert code == 0, err
    assert "refused" not in err
    assert bad == good  # the stream's candles: the first of each open time, the late one gone
    code, err, old = _backtest(as_old, tmp_path / "old_out.csv")
    assert code == 0, err
    assert bad != old  # what the sort-and-keep-last rule computed


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    dups=st.lists(st.integers(0, 119), max_size=3),
    lates=st.lists(st.tuples(st.integers(1, 118), st.integers(1, 5)), max_size=3),
)
def test_property_backtest_of_a_file_with_duplicates_and_late_rows_is_that_of_the_file_without_them(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    dups: list[int],
    lates: list[tuple[int, int]],
) -> None:
    """A copy of a row (other prices) inserted later, a row moved a few rows later: the
    backtest equals that of the file with the refused rows deleted, which are the rows
    :func:`check_candle_times`' rule names (each row not opening after every earlier row)."""
    _needs_model()
    tmp = tmp_path_factory.mktemp("prop")
    header, rows = _lean(data.draw(st.integers(0, 60_000), label="start"), 120)
    lines: list[str] = list(rows)
    for i, k in lates:  # move row i forward by k places (it now follows later rows: late)
        j = min(i + k, len(lines) - 1)
        lines.insert(j, lines.pop(i))
    for d in dups:  # a second row of an open time, with other prices, somewhere after the first
        at = data.draw(st.integers(d + 1, len(lines)), label="dup_at")
        lines.insert(at, _repriced(lines[d], 1.001))
    # the oracle: in file order, a row is the stream's only if it opens after every earlier row
    kept: list[str] = []
    last = None
    for line in lines:
        ts = int(line.split(",", 1)[0])
        if last is None or ts > last:
            kept.append(line)
            last = ts
    refused = len(lines) - len(kept)
    code, err, bad = _backtest(_write(tmp / "h.csv", header, lines), tmp / "h_out.csv")
    assert code == 0, err
    assert (f"refused {refused} of {len(lines)} candles" in err) == (refused > 0), err
    code, err, good = _backtest(_write(tmp / "c.csv", header, kept), tmp / "c_out.csv")
    assert code == 0, err
    assert bad == good


TRAIN_ARGS = ["--symbol", "EURUSD", "--timeframe", "1h", "--horizon", "4", "--split", "2016-10-05,2016-10-10",
              "--max-steps", "2", "--window", "12", "--width", "16", "--blocks", "1", "--calib-windows", "16",
              "--device", "cpu", "--max-minutes", "5", "--threads", "1"]  # fmt: skip


def _train(src: Path, model_dir: Path) -> tuple[int, str, str]:
    res = runner.invoke(app, ["train", str(src), *TRAIN_ARGS, "--model-dir", str(model_dir)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, res.stderr, res.stdout


def test_train_refuses_a_duplicate_and_a_late_row_and_trains_on_the_streams_candles(tmp_path: Path) -> None:
    """Before: no refusal said, the second row of a repeated open time trained on."""
    header, rows = _lean(60_000, 900)  # 2016-08-23 .. 2016-10-13
    hostile = _write(tmp_path / "hostile.csv", header, _hostile(rows))
    clean = _write(tmp_path / "clean.csv", header, [r for i, r in enumerate(rows) if i != 150])
    code, err, out_bad = _train(hostile, tmp_path / "m1")
    assert code == 0, err
    assert "hostile.csv EURUSD: refused 2 of 901 candles (duplicate=1, late=1; first at line 162)" in err
    code, err, out_good = _train(clean, tmp_path / "m2")
    assert code == 0, err

    def scores(stdout: str) -> list[str]:  # the test scores per step (not the timing line, not the path)
        lines = stdout.strip().splitlines()
        return lines[lines.index("step  skill_vs_rw  cover50  cover90") :][:-1]

    assert scores(out_bad) == scores(out_good) and len(scores(out_good)) == 5


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_a_file_every_candle_of_which_closes_in_the_future_exits_65(tmp_path: Path, command: str) -> None:
    """Bars dated 2090: each is future_ts, as the candle gate refuses a bar not yet closed.
    Before: backtest found no forecast (exit 1), train trained on them (exit 0)."""
    header, rows = _lean(60_000, 60)
    shift = 2_335_000_000_000  # about 74 years
    future = [f"{int(r.split(',', 1)[0]) + shift},{r.split(',', 1)[1]}" for r in rows]
    src = _write(tmp_path / "future.csv", header, future)
    if command == "backtest":
        _needs_model()
        code, err, _ = _backtest(src, tmp_path / "o.csv")
    else:
        code, err, _ = _train(src, tmp_path / "m")
    assert code == 65, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "every candle (60) is one the stream refuses (future_ts=60; first at line 2)" in lines[0]
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "m").exists()


# --- the core helpers: a caller of the API gets the first row of a repeated open time ---


def _frame(ts: list[int], close: list[float]) -> pd.DataFrame:
    c = np.asarray(close)
    return pd.DataFrame({"ts_ms": ts, "open": c, "high": c * 1.001, "low": c * 0.999, "close": c})


def test_frame_candles_keeps_the_first_row_of_a_repeated_open_time() -> None:
    """Before: the last (close 1.2 at the second hour)."""
    h = 3_600_000
    t0 = 1_470_000_000_000 - 1_470_000_000_000 % h
    bars = frame_candles(_frame([t0, t0 + h, t0 + 2 * h, t0 + h], [1.1, 1.11, 1.12, 1.2]), "EURUSD", "1h")
    assert [(b.open_ms - t0) // h for b in bars] == [0, 1, 2]
    assert [b.close for b in bars] == [1.1, 1.11, 1.12]


def test_build_extra_frame_gives_nan_to_the_later_row_of_a_repeated_open_time() -> None:
    """Rows stay aligned with the frame's: the kept row is the first, the later copy NaN.
    Before: the first copy was NaN and the second got the first's place."""
    header, rows = _lean(60_000, 300)
    frame = pd.DataFrame(
        [[int(c[0]), *(float(c[k]) for k in (1, 2, 3, 4))] for c in (r.split(",") for r in rows)],
        columns=["ts_ms", "open", "high", "low", "close"],
    )
    copy = frame.iloc[[280]].assign(close=frame["close"].iloc[280] * 1.01, high=frame["high"].iloc[280] * 1.01)
    doubled = pd.concat([frame.iloc[:285], copy, frame.iloc[285:]], ignore_index=True)
    spec = InputSpec(("indicators",), "1h")
    ext = build_extra_frame(doubled, "EURUSD", "1h", spec)
    plain = build_extra_frame(frame, "EURUSD", "1h", spec)
    assert np.isfinite(plain[280]).all()  # the row checked is one the inputs are ready at
    assert np.isnan(ext[285]).all()
    np.testing.assert_array_equal(np.delete(ext, 285, axis=0), plain)


def test_training_windows_keep_the_first_row_of_a_repeated_open_time() -> None:
    """``train``'s windows of a frame with a later copy of an open time (other prices) are
    those of the frame without the copy. Before: the copy's prices replaced the first row's."""
    from forex_diffusion.diffusion import ContextSpec, TrainConfig
    from forex_diffusion.diffusion.training import _windows

    header, rows = _lean(60_000, 200)
    frame = pd.DataFrame(
        [[int(c[0]), *(float(c[k]) for k in (1, 2, 3, 4))] for c in (r.split(",") for r in rows)],
        columns=["ts_ms", "open", "high", "low", "close"],
    )
    copy = frame.iloc[[120]].assign(close=frame["close"].iloc[120] * 1.01, high=frame["high"].iloc[120] * 1.01)
    doubled = pd.concat([frame.iloc[:130], copy, frame.iloc[130:]], ignore_index=True)
    config = TrainConfig(symbol="EURUSD", timeframe="1h", horizon=4, context=ContextSpec(window=12))
    got, want = _windows(doubled, config, None), _windows(frame, config, None)
    assert len(got) == len(want) > 100
    for name in ("cond", "target", "cum", "sigma", "origin_ms", "first_ms", "end_ms"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
