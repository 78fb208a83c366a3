"""A candle file written newest-first (a common vendor export) is read oldest-first.

A series whose open times never rise from its first row to its last (and fall at least once)
is a layout, not a stream of late candles: ``readers.read_candles`` reverses it
(``readers.oldest_first``), so every candle-file command (indicators, train, backtest) reads
it as the file sorted oldest-first. A file merely shuffled, or ascending with a late row,
keeps the candle agent's ``late``/``duplicate`` refusals. Before, every row of a reversed
file but the first was refused as ``late``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forex_diffusion.ingest import readers
from streams.cli import app

from .test_train_backtest_times import BACKTEST_ARGS, _lean, _write, runner


def _invoke(args: list[str]) -> tuple[int, str]:
    res = runner.invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, res.stderr


def _indicators(src: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    code, err = _invoke(["indicators", str(src), "--symbol", "EURUSD", *extra, "-o", str(out)])
    return code, err, out.read_text() if out.exists() else ""


def test_indicators_of_the_reversed_file_equal_the_original(tmp_path: Path) -> None:
    header, rows = _lean(60_000, 400)
    code, err_a, a = _indicators(_write(tmp_path / "a.csv", header, rows), tmp_path / "a_out.csv")
    assert code == 0, err_a
    code, err_b, b = _indicators(_write(tmp_path / "b.csv", header, rows[::-1]), tmp_path / "b_out.csv")
    assert code == 0, err_b
    assert "rejected=0" in err_b, err_b
    assert a == b and len(a.splitlines()) == 401


def test_backtest_of_the_reversed_file_equals_the_original(tmp_path: Path) -> None:
    header, rows = _lean(60_000, 300)
    outs = []
    for name, lines in (("a", rows), ("b", rows[::-1])):
        out = tmp_path / f"{name}_out.csv"
        code, err = _invoke(["backtest", str(_write(tmp_path / f"{name}.csv", header, lines)), *BACKTEST_ARGS,
                             "-o", str(out)])  # fmt: skip
        assert code == 0, err
        assert "refused" not in err, err
        outs.append(out.read_text())
    assert outs[0] == outs[1] and len(outs[0].splitlines()) > 1


def test_a_late_row_in_an_ascending_file_is_still_refused(tmp_path: Path) -> None:
    header, rows = _lean(60_000, 200)
    lines = [*rows[:100], *rows[101:111], rows[100], *rows[111:]]  # row 100 after row 110: late
    code, err, out = _indicators(
        _write(tmp_path / "late.csv", header, lines), tmp_path / "o.csv", "--rejects", str(tmp_path / "r.csv")
    )
    assert code == 0, err
    assert "rejected=1" in err, err
    assert "late" in (tmp_path / "r.csv").read_text()


def test_a_newest_first_file_with_one_row_out_of_place_is_not_reversed(tmp_path: Path) -> None:
    """Mostly descending with one row that rises: not a layout; the agent's rules refuse
    what opens before the series' last, i.e. all but the first and the risen row."""
    header, rows = _lean(60_000, 50)
    desc = rows[::-1]
    desc[10], desc[11] = desc[11], desc[10]
    loaded = readers.read_candles(_write(tmp_path / "x.csv", header, desc), symbol="EURUSD")
    assert loaded.frame["line"].tolist() == list(range(2, 52))  # file order kept


def test_oldest_first_reverses_each_series_of_a_file_on_its_own() -> None:
    f = pd.DataFrame(
        {
            "line": [2, 3, 4, 5, 6, 7],
            "ts_ms": [30, 10, 20, 20, 10, 30],
            "symbol": ["EURUSD", "GBPUSD", "EURUSD", "GBPUSD", "EURUSD", "GBPUSD"],
        }
    )
    got = readers.oldest_first(f)
    # EURUSD (30, 20, 10) is newest-first: reversed in its own rows; GBPUSD ascends: kept
    assert got["line"].tolist() == [6, 3, 4, 5, 2, 7]
    assert got["ts_ms"].tolist() == [10, 10, 20, 20, 30, 30]
    # a shuffled series, one of a single row, and one whose times are all equal: kept
    for ts in ([20, 10, 30], [10], [5, 5]):
        g = pd.DataFrame({"line": range(2, 2 + len(ts)), "ts_ms": ts, "symbol": "EURUSD"})
        assert readers.oldest_first(g)["line"].tolist() == list(range(2, 2 + len(ts)))
    # a file with a timeframe column: each (symbol, timeframe) series on its own
    h = pd.DataFrame({"line": [2, 3, 4, 5], "ts_ms": [300, 240, 60, 0], "symbol": "EURUSD"})
    tfs = pd.Series(["1m", "5m", "1m", "5m"]).to_numpy()
    assert readers.oldest_first(h, tfs)["line"].tolist() == [4, 5, 2, 3]
