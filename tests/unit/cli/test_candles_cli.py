"""``forexd candles``: the same numbers as the core, bad rows refused with reasons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forex_diffusion.domain import Candle, Tick
from forex_diffusion.ingest.aggregation import CandleAggregator
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.offline import aggregate_ticks_file, format_ms
from streams.cli import app

from ...realdata import DATA

runner = CliRunner()


# one test per file, one side each: the FXCM day is 1.1 million ticks, one pass each. The core's
# golden test (tests/unit/test_aggregation.py) checks the other two vendor/side pairs through the
# same aggregate_ticks_file the command runs, so each pair is checked once; here each vendor and
# each side goes through the command once.
@pytest.mark.parametrize(("vendor", "side"), [("oanda", "ask"), ("fxcm", "bid")])
def test_cli_bid_and_ask_candles_equal_vendor_minute_bars(vendor: str, side: str, tmp_path: Path) -> None:
    ticks = DATA / f"lean_{vendor}_eurusd_ticks_2014-05-01_15.csv.gz"
    if not ticks.exists():
        pytest.skip(f"{ticks} absent (extended data beside the checkout)")
    ref = pd.read_csv(DATA / f"lean_{vendor}_eurusd_m1_2014-05-01_15.csv.gz")
    out = tmp_path / f"{side}.csv"
    res = runner.invoke(app, ["candles", str(ticks), "--price", side, "-o", str(out)])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out)
    assert ",".join(got.columns[:8]) == "symbol,timeframe,open_time,open,high,low,close,tick_count"
    assert (got.open_time.str.endswith("Z")).all()
    ts = pd.to_datetime(got.open_time, utc=True).dt.as_unit("ms").astype("int64")
    assert ts.tolist() == ref.ts_ms.tolist()
    for k in ("open", "high", "low", "close"):
        assert got[k].tolist() == ref[f"{side}_{k}"].tolist(), (side, k)


def test_cli_matches_core_api_on_bundled_sample(sample_ticks: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    res = runner.invoke(app, ["candles", str(sample_ticks), "--timeframes", "1m,5m,1h", "-o", str(out)])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out)
    core = aggregate_ticks_file(sample_ticks, timeframes=["1m", "5m", "1h"])
    assert len(got) == len(core.candles)
    # prices at the instrument's precision: a mid of 5-decimal quotes has 6 decimals
    assert got.close.tolist() == [round(c.close, 6) for c in core.candles]
    assert max(len(t.split(".")[1]) for t in out.read_text().splitlines()[1].split(",")[3:7]) <= 6
    assert got.tick_count.sum() == 3 * 111_408


def test_cli_refuses_bad_rows_counts_them_and_keeps_going(tmp_path: Path) -> None:
    src = tmp_path / "eurusd_ticks.csv"
    src.write_text(
        "ts_ms,bid,ask\n"
        "1398902400292,1.38676,1.38686\n"
        "1398902401000,nan,1.38686\n"
        "1398902402000,-1.3,1.38686\n"
        "1398902403000,1.39676,1.38686\n"
        "1398902404000,x,1.38686\n"
        "1398902405000,1.38677,1.38687\n"
        "1398902465000,1.38680,1.38690\n"
    )
    rej = tmp_path / "rej.csv"
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["candles", str(src), "--rejects", str(rej), "-o", str(out), "--price", "bid"])
    assert res.exit_code == 0, res.output
    rows = pd.read_csv(rej)
    assert rows[["line", "reason"]].values.tolist() == [
        [3, "non_finite"],
        [4, "non_positive"],
        [5, "crossed"],
        [6, "malformed"],
    ]
    assert "crossed=1" in res.stderr and "non_finite=1" in res.stderr and "malformed=1" in res.stderr
    got = pd.read_csv(out)
    assert got[["open", "close", "tick_count"]].values.tolist() == [[1.38676, 1.38677, 2], [1.3868, 1.3868, 1]]


def test_cli_symbol_option_and_missing_file(tmp_path: Path) -> None:
    src = tmp_path / "ticks.csv"
    src.write_text("ts_ms,bid,ask\n1357077600295,86.655,86.728\n")
    res = runner.invoke(app, ["candles", str(src), "--symbol", "USDJPY"])
    assert res.exit_code == 0 and "USDJPY,1m,2013-01-01T22:00:00Z" in res.stdout
    res = runner.invoke(app, ["candles", str(tmp_path / "missing.csv")])
    assert res.exit_code == 66 and "does not exist" in res.stderr


def _pipeline_candles(path: Path) -> list[Candle]:
    """The tick agent's pipeline (streams/agents/ticks.py builds it so), fed row by row."""
    pipe = TickPipeline(timeframes=["1m"], instruments=InstrumentRegistry(), price="mid", allowed_lateness_ms=2000)
    frame = pd.read_csv(path)
    out: list[Candle] = []
    for ts, bid, ask in zip(frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist(), strict=True):
        out.extend(pipe.process(Tick(symbol="EURUSD", ts_ms=int(ts), bid=bid, ask=ask, volume=0.0)))
    out.extend(pipe.flush())
    return out


def _guardless_candles(path: Path) -> list[Candle]:
    """The aggregator alone, with no spike or time guard in front of it."""
    agg = CandleAggregator(["1m"], price="mid", allowed_lateness_ms=2000)
    frame = pd.read_csv(path)
    out: list[Candle] = []
    for ts, bid, ask in zip(frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist(), strict=True):
        out.extend(agg.add("EURUSD", int(ts), bid, ask))
    out.extend(agg.flush())
    return out


def test_cli_candles_of_a_file_with_a_price_jump_are_the_stream_pipelines(sample_ticks: Path, tmp_path: Path) -> None:
    ticks = pd.read_csv(sample_ticks).iloc[:3000].copy()
    jump = 2000  # one quote 3 % off, then back: the spike guard holds it and refuses it
    ticks.loc[jump, ["bid", "ask"]] = (ticks.loc[jump, ["bid", "ask"]] * 1.03).round(5)
    path = tmp_path / "EURUSD_jump.csv"
    ticks.to_csv(path, index=False)
    res = runner.invoke(app, ["candles", str(path), "--symbol", "EURUSD", "-o", str(tmp_path / "c.csv")])
    assert res.exit_code == 0, res.output
    assert "spike_unconfirmed=1" in res.output  # the refused quote is counted on standard error
    got = pd.read_csv(tmp_path / "c.csv")
    stream = _pipeline_candles(path)
    bare = _guardless_candles(path)

    def table(cs: list[Candle]) -> list[tuple[object, ...]]:
        return [
            (format_ms(c.open_ms), round(c.open, 6), round(c.high, 6), round(c.low, 6), round(c.close, 6), c.tick_count)
            for c in cs
        ]

    cli = list(got[["open_time", "open", "high", "low", "close", "tick_count"]].itertuples(index=False, name=None))
    assert cli == table(stream)
    assert cli != table(bare)  # without the guard the jump reaches a candle: the comparison can fail
    assert sum(c.tick_count for c in bare) == sum(c.tick_count for c in stream) + 1
    assert max(c.high for c in bare) > 1.02 * max(c.high for c in stream)  # the 3 % quote
