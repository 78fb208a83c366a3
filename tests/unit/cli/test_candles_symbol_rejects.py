"""``forexd candles FILE --symbol X`` counts the refused rows of X (and of rows naming no
symbol), not every symbol's: the tick reader's refusals had no symbol, so GBPUSD's unreadable
rows were listed and counted under ``--symbol EURUSD`` (the candle commands already left them
out). The reader now names each refused row's symbol (``FileReject.symbol``)."""

from __future__ import annotations

import csv
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from forex_diffusion.offline import aggregate_ticks_file
from streams.cli import app

ROWS = [
    "2014-05-01 10:00:00,EURUSD,1.1000,1.1001",
    "2014-05-01 10:00:01,GBPUSD,x,1.6",  # 3: GBPUSD's, unreadable bid
    "2014-05-01 10:00:02,GBPUSD,1.6",  # 4: GBPUSD's, a field less
    "2014-05-01 10:00:03,EURUSD,1.1001,y",  # 5: EURUSD's
    "notadate,EURUSD,1.1,1.1001",  # 6: EURUSD's
    "2014-05-01 10:00:05,,1.1,1.1001",  # 7: no symbol: refused under --symbol, listed
    "2014-05-01 10:00:06,EURUSD,1.1002,1.1003",
    "2014-05-01 10:00:07,gbp/usd,z,1.6",  # 9: GBPUSD's, spelt otherwise
    "2014-05-01 10:00:08,GBPUSD,1.6000,1.6002",
    "2014-05-01 10:00:09,GBPUSD,1.6001,1.6003,extra",  # 11: a field too many: pandas never reads it
]
SYMBOL_OF = ["EURUSD", "GBPUSD", "GBPUSD", "EURUSD", "EURUSD", "", "EURUSD", "GBPUSD", "GBPUSD", "GBPUSD"]
UNREADABLE = {1, 2, 3, 4, 7, 9}  # the rows the reader refuses (the blank symbol's is refused later)


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("timestamp,symbol,bid,ask\n" + "\n".join(rows) + "\n")
    return path


def test_candles_symbol_lists_and_counts_only_the_chosen_symbol_s_refused_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "mix.csv", ROWS)
    res = CliRunner().invoke(
        app,
        [
            "candles",
            str(path),
            "--symbol",
            "EURUSD",
            "-o",
            str(tmp_path / "c.csv"),
            "--rejects",
            str(tmp_path / "r.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    with (tmp_path / "r.csv").open() as f:
        listed = [(int(r["line"]), r["reason"]) for r in csv.DictReader(f)]
    assert listed == [(5, "malformed"), (6, "bad_ts"), (7, "unknown_symbol")]
    assert "rejected: bad_ts=1, malformed=1, unknown_symbol=1" in res.stderr
    gbp = CliRunner().invoke(app, ["candles", str(path), "--symbol", "GBP/USD", "-o", str(tmp_path / "g.csv")])
    assert "rejected: malformed=4, unknown_symbol=1" in gbp.stderr, gbp.stderr  # lines 3, 4, 9, 11 and 7


@settings(max_examples=40, deadline=None)
@given(picks=st.lists(st.integers(0, len(ROWS) - 1), max_size=30))
def test_each_symbol_counts_exactly_its_own_unreadable_rows(picks: list[int]) -> None:
    import tempfile

    rows = [0, 8, *picks]  # a readable row of each symbol first
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d) / "t.csv", [ROWS[k] for k in rows])
        for s in ("EURUSD", "GBPUSD"):
            run = aggregate_ticks_file(path, symbol=s)
            got = sorted(r.line for r in run.rejects if r.reason.value in ("malformed", "bad_ts"))  # the reader's
            want = [n + 2 for n, k in enumerate(rows) if k in UNREADABLE and SYMBOL_OF[k] == s]
            assert got == want, s
