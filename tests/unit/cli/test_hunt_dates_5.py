"""The offline readers' timestamps, attacked again after the second ISO 8601 pass (adversarial
review; hypothesis and hand-made columns). Each row is read to its exact UTC instant (to the
ms it falls in) or refused with its reason, whatever the other rows hold:

* two ISO times, one with 9 digits of fraction (read in ns) and one of the year 999, were
  merged by a cast to ns that overflowed: a traceback (exit 1), from ``forexd candles`` to
  ``forexd train``;
* a first row that is no date ("x", a cut line) had pandas read every row alone, by dateutil:
  ``01/05/2014`` was January 5 and ``13/05/2014`` May 13 in one file, where without that row
  the first date's format (month first) refused the second. A column whose first date has no
  format pandas infers (``5/1/2014 12:00:01 AM``, no zero padding) was read that way too;
* a time of day alone with a zone (``10:15:00Z``, ``10:15 UTC``, ``10:15:00+05:30``,
  ``T10:15``) was dated by the wall clock;
* a first row naming a month ("2014-05", "May 2014") gave the column its format and was read
  as the month's first day (hypothesis found it).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

from forex_diffusion.ingest.readers import read_ticks
from streams.cli import app

runner = CliRunner()
T0 = dt.datetime(2014, 5, 1, tzinfo=dt.UTC)


def _ticks(path: Path, stamps: list[str]) -> Path:
    rows = ["timestamp,symbol,bid,ask"]
    rows += [
        f"{s},EURUSD,{1.38676 + (i % 50) * 1e-5:.5f},{1.38686 + (i % 50) * 1e-5:.5f}" for i, s in enumerate(stamps)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def _candles(tmp: Path, src: Path, *more: str) -> tuple[int, str, pd.DataFrame, pd.DataFrame]:
    out, rej = tmp / f"{src.stem}.out.csv", tmp / f"{src.stem}.rej.csv"
    res = runner.invoke(app, ["candles", str(src), "-o", str(out), "--rejects", str(rej), *more])
    got = pd.read_csv(out) if out.exists() and out.stat().st_size else pd.DataFrame()
    refused = pd.read_csv(rej) if rej.exists() else pd.DataFrame(columns=["line", "reason", "detail"])
    return res.exit_code, res.stderr, got, refused


def test_a_nanosecond_time_beside_the_year_999_is_no_traceback(tmp_path: Path) -> None:
    stamps = ["2014-05-01T00:00:00.123456789Z", "0999-05-01 00:00:01"] + [
        f"2014-05-01T00:00:{s:02d}Z" for s in range(1, 20)
    ]
    code, err, got, refused = _candles(tmp_path, _ticks(tmp_path / "t.csv", stamps), "--timeframes", "1m")
    assert code == 0 and "Traceback" not in err, err
    assert refused["line"].tolist() == [3] and refused["reason"].tolist() == ["bad_ts"]
    assert got["tick_count"].tolist() == [20]
    # and where the zones differ (the column read zone by zone, then merged)
    mixed = ["2014-05-01T01:00:00.123456789+01:00", "2014-05-01T02:00:01+02:00", "0999-05-01 00:00:01"]
    code, err, got, refused = _candles(tmp_path, _ticks(tmp_path / "m.csv", mixed), "--timeframes", "1m")
    assert code == 0 and "Traceback" not in err, err
    assert refused["line"].tolist() == [4] and got["tick_count"].tolist() == [2]


@pytest.mark.parametrize("odd", ["x", "n/a", "#", "2014-13-45 99:99"])
def test_a_first_row_that_is_no_date_changes_how_no_other_row_is_read(tmp_path: Path, odd: str) -> None:
    dates = [f"01/05/2014 00:{m:02d}:00" for m in range(10)] + ["13/05/2014 00:00:00"]
    _, _, want, want_refused = _candles(tmp_path, _ticks(tmp_path / "plain.csv", dates), "--timeframes", "1m")
    code, _, got, refused = _candles(tmp_path, _ticks(tmp_path / "odd.csv", [odd, *dates]), "--timeframes", "1m")
    assert code == 0
    keys = ["open_time", "tick_count"]  # (the prices follow the row numbers)
    assert got[keys].to_csv() == want[keys].to_csv()  # day first, as 13/05 says: ten ticks of May 1
    assert set(got["open_time"].str[:10]) == {"2014-05-01"}
    assert refused["line"].tolist() == [2, *(want_refused["line"] + 1)]  # the odd row, and 13/05 as before (far ahead)
    assert refused["reason"].tolist() == ["bad_ts", "future_ts"]


def test_a_column_read_date_by_date_keeps_one_order_of_day_and_month(tmp_path: Path) -> None:
    """No zero padding and a 12-hour clock: pandas infers no format and reads each date alone."""
    stamps = ["1/13/2014 12:00:03 AM", "13/1/2014 12:00:04 AM", "1/13/2014 12:01:00 AM", "1/13/2014 12:02:00 AM"]
    code, _, got, refused = _candles(tmp_path, _ticks(tmp_path / "t.csv", stamps), "--timeframes", "1m")
    assert code == 0
    assert got["open_time"].tolist() == ["2014-01-13T00:00:00Z", "2014-01-13T00:01:00Z", "2014-01-13T00:02:00Z"]
    assert refused["line"].tolist() == [3] and refused["reason"].tolist() == ["bad_ts"]
    assert "day first where line 2 has its month first" in refused["detail"][0]
    # day first from the first date that has it: one read month first is refused (not May 1)
    stamps = ["13/1/2014 12:00:02 AM", "13/1/2014 12:01:00 AM", "1/13/2014 12:02:00 AM", "13/1/2014 12:03:00 AM"]
    code, _, got, refused = _candles(tmp_path, _ticks(tmp_path / "d.csv", stamps), "--timeframes", "1m")
    assert code == 0
    assert got["open_time"].tolist() == ["2014-01-13T00:00:00Z", "2014-01-13T00:01:00Z", "2014-01-13T00:03:00Z"]
    assert refused["line"].tolist() == [4] and refused["reason"].tolist() == ["bad_ts"]


@pytest.mark.parametrize("undated", ["10:15:00Z", "10:15 UTC", "10:15:00+05:30", "T10:15", "00:00:01.250 +00:00"])
@pytest.mark.parametrize("first", [True, False], ids=["first row", "among dates"])
def test_a_zoned_time_of_day_alone_is_refused_not_dated_by_the_clock(tmp_path: Path, undated: str, first: bool) -> None:
    dates = [f"2014-05-01T00:00:{s:02d}Z" for s in range(1, 30)]
    stamps = [undated, *dates] if first else [*dates[:5], undated, *dates[5:]]
    code, _, got, refused = _candles(tmp_path, _ticks(tmp_path / "t.csv", stamps), "--timeframes", "1m")
    assert code == 0 and got["open_time"].tolist() == ["2014-05-01T00:00:00Z"] and got["tick_count"].sum() == 29
    assert refused["line"].tolist() == [2 if first else 7] and refused["reason"].tolist() == ["bad_ts"]


@pytest.mark.parametrize("part", ["2014-05", "May 2014", "05/2014", "2014-W18"])
def test_a_month_atop_the_file_is_refused_not_its_first_day(tmp_path: Path, part: str) -> None:
    """Found by the hypothesis test below: a first row ``2014-05`` gave the column its format
    (``%Y-%m``), and was itself read as 2014-05-01 00:00, a tick in the first real candle."""
    dates = [f"2014-05-01T00:00:{s:02d}Z" for s in range(1, 30)]
    code, _, got, refused = _candles(tmp_path, _ticks(tmp_path / "t.csv", [part, *dates]), "--timeframes", "1m")
    assert code == 0 and got["tick_count"].tolist() == [29]
    assert refused["line"].tolist() == [2] and refused["reason"].tolist() == ["bad_ts"]


# -- hypothesis: any ISO 8601 spelling of an instant, in any mix, with odd rows among them ------------

_INSTANTS = st.integers(31_536_000_000_000_000, 4_102_444_799_999_999_999)  # ns of 1971..2099


@st.composite
def _spelling(draw: st.DrawFn, ns: int) -> str:
    """One ISO 8601 spelling of the instant ``ns`` (its fraction cut to the digits written)."""
    offset_min = draw(st.sampled_from([0, 0, 330, -180, 60, -600, 345]))
    local = pd.Timestamp(ns, unit="ns", tz="UTC") + pd.Timedelta(minutes=offset_min)
    digits = draw(st.integers(0, 9))
    frac = f"{local.microsecond * 1000 + local.nanosecond:09d}"[:digits]
    text = local.strftime("%Y-%m-%d") + draw(st.sampled_from(["T", " "])) + local.strftime("%H:%M:%S")
    text += f".{frac}" if digits else ""
    h, m = divmod(abs(offset_min), 60)
    sign = "-" if offset_min < 0 else "+"
    zones = [f"{sign}{h:02d}:{m:02d}", f"{sign}{h:02d}{m:02d}"] + ([f"{sign}{h:02d}"] if not m else [])
    zones += ["Z"] if not offset_min else []
    return text + draw(st.sampled_from(zones))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), n=st.integers(1, 12), odd=st.sampled_from([None, "x", "now", "10:15Z", "2014-05", "13/13/2014"]))
def test_any_mix_of_iso_spellings_reads_each_row_to_its_instant(
    tmp_path: Path, data: st.DataObject, n: int, odd: str | None
) -> None:
    instants = data.draw(st.lists(_INSTANTS, min_size=n, max_size=n))
    stamps = [data.draw(_spelling(ns)) for ns in instants]
    rows = ([odd] if odd is not None else []) + stamps
    loaded = read_ticks(_ticks(tmp_path / "h.csv", rows))
    first = 2 + (odd is not None)
    assert [r.line for r in loaded.rejects] == ([2] if odd is not None else [])
    assert loaded.frame["line"].tolist() == list(range(first, first + n))
    want = []
    for ns, text in zip(instants, stamps, strict=True):
        frac = re.match(r"\.([0-9]*)", text[19:])  # the fraction written (after YYYY-MM-DDTHH:MM:SS)
        kept = int(frac.group(1).ljust(9, "0")) if frac else 0  # in ns
        want.append((ns // 1_000_000_000 * 1_000_000_000 + kept) // 1_000_000)
    assert loaded.frame["ts_ms"].tolist() == want
    assert np.all(np.diff(loaded.frame["line"].to_numpy()) == 1)


# -- check_given (an empty text option is a usage error): the options it did not cover -----------

_MODEL = Path(__file__).resolve().parents[3] / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
_OFFLINE = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:1", "FOREXD_BROKER_WAIT_S": "0", "FOREXD_DATABASE_URL": ""}


def _argv(tmp: Path, command: str) -> list[str]:
    src = tmp / "c.csv"
    src.write_text("timestamp,symbol,open,high,low,close\n2014-05-01T00:00:00Z,EURUSD,1.1,1.2,1.0,1.1\n")
    db = f"sqlite:///{tmp / 'none.db'}"
    return {
        "backtest": [
            "backtest",
            str(src),
            "--model",
            str(tmp),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "-o",
            str(tmp / "o.csv"),
        ],
        "train": ["train", str(src), "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", str(tmp / "m")],
        "report": ["report", "-o", str(tmp / "r.html"), "--db", db],
        "models list": ["models", "list", "--db", db],
        "models register": ["models", "register", str(next(_MODEL.glob("*.pt"))), "--db", db],
        "replay": ["replay", str(src)],
    }[command]


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("backtest", "--touch-bands", ","),  # scored no touches, exit 0: the list of nothing
        ("backtest", "--touch-bands", " , ,"),
        ("train", "--inputs", ","),  # trained with no inputs
        ("report", "--from", ""),  # reported the whole history
        ("report", "--to", " "),
        ("report", "--symbol", ""),  # "no stored forecasts: nothing to report"
        ("models list", "--key", ""),  # listed every key
        ("models register", "--key", ""),  # registered under the manifest's key
        ("replay", "--symbol", ""),  # published under the file's (or its name's) symbol
    ],
)
def test_an_empty_text_option_it_missed_is_a_usage_error(tmp_path: Path, command: str, option: str, value: str) -> None:
    res = runner.invoke(app, [*_argv(tmp_path, command), option, value], env=_OFFLINE)
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], res.stderr
    assert ("lists nothing" if value.strip() else "empty") in lines[0]


def test_a_split_of_commas_keeps_its_own_message(tmp_path: Path) -> None:
    """``--split`` names what it takes: check_given does not say "lists nothing" first."""
    res = runner.invoke(app, [*_argv(tmp_path, "train"), "--split", ","], env=_OFFLINE)
    assert res.exit_code == 2 and "--split takes DATE1,DATE2" in res.stderr, res.stderr
