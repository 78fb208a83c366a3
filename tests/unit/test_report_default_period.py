"""``forexd report`` without ``--from`` on a series of more than one report reads, and the
counts of rows left out against fields dropped.

Without a period start, a series of more stored forecasts, forecast steps or candles than the
ceilings (``FORECASTS_MAX``, ``STEPS_MAX``, ``CANDLES_MAX``) is reported for its newest
forecasts that fit, said on the command's line and on the page; the newest rows are read with
a ``LIMIT``, never the whole table. Before: exit 2 ("more than the 100,000 one report reads")
for any deployment older than about 70 days. The ceilings are lowered in-process here so that a
database of a thousand rows stands for one of a hundred thousand.

A forecast whose only fault is its ``touch`` field is scored (the field dropped): it is counted
apart from the rows left out, and the check of a stored payload runs once per row.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from forex_diffusion.errors import ConfigError
from forex_diffusion.reports import html as report_html
from forex_diffusion.reports.html import ReportConfig, load_report, render_report, summarize
from forex_diffusion.storage import make_engine
from streams.cli import app

LEVELS = [0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95]
T0 = 1_399_999_980_000  # on the minute grid
H = 2
runner = CliRunner()


def _database(path: Path, n_forecasts: int, n_candles: int | None = None) -> list[int]:
    """A SQLite database of ``n_candles`` 1m candles and a forecast on each of the first
    ``n_forecasts`` (written with executemany); returns the forecasts' as_of times."""
    n_candles = n_forecasts + H if n_candles is None else n_candles
    make_engine(f"sqlite:///{path}").dispose()
    closes = 1.1 + np.cumsum(np.random.default_rng(3).normal(0, 1e-4, n_candles))
    spread = np.array(LEVELS) - 0.5
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO candles (symbol, timeframe, open_ms, close_ms, open, high, low, close, volume, tick_count, "
        "revision, final) VALUES ('EURUSD', '1m', ?, ?, ?, ?, ?, ?, 1.0, 1, 0, 1)",
        [
            (T0 + i * 60_000, T0 + (i + 1) * 60_000, float(c), float(c) + 2e-4, float(c) - 2e-4, float(c))
            for i, c in enumerate(closes)
        ],
    )
    rows = []
    as_ofs = []
    for i in range(n_forecasts):
        c, as_of = float(closes[i]), T0 + (i + 1) * 60_000
        q = [[round(c + 4e-4 * k * x, 6) for x in spread] for k in range(1, H + 1)]
        payload = {"as_of_ms": as_of, "model_version": "v1", "last_close": c, "levels": LEVELS, "quantiles": q}
        rows.append(("EURUSD", "1m", as_of, H, "v1", json.dumps(dict(payload, rw_quantiles=q)), 0))
        as_ofs.append(as_of)
    con.executemany("INSERT INTO forecasts VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    return as_ofs


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    path = tmp_path_factory.mktemp("big") / "fx.db"
    return path, _database(path, 1_010)


def _invoke(path: Path, out: Path, *args: str) -> Any:
    return runner.invoke(app, ["report", "--db", f"sqlite:///{path}", "-o", str(out), *args])


def test_without_from_a_series_past_the_forecast_ceiling_is_reported_for_its_newest_forecasts(
    big: tuple[Path, list[int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,010 stored forecasts against a ceiling of 1,000 (the reviewer's 101,010 against 100,000)."""
    path, as_ofs = big
    monkeypatch.setattr(report_html, "FORECASTS_MAX", 1_000)
    out = tmp_path / "r.html"
    res = _invoke(path, out)
    assert res.exit_code == 0, res.output
    first = report_html._fmt_time(as_ofs[10])
    said = f"the last 1,000 forecasts, from {first}: give --from/--to for another period"
    assert said in res.stdout and "1000 forecasts" in res.stdout
    page = out.read_text()
    assert said in page and f"Period {first} → end" in page
    eng = make_engine(f"sqlite:///{path}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert data.cut_from_ms == as_ofs[10] and not data.skipped
    assert sorted(set(data.steps["as_of"])) == as_ofs[10:]
    # an explicit period over the ceiling is refused as before
    res = _invoke(path, out, "--from", "2014-01-01")
    assert res.exit_code == 2 and "1,010 stored forecasts" in res.stderr and "more than the 1,000" in res.stderr
    # a series that fits is reported whole, and says nothing of a cut
    monkeypatch.setattr(report_html, "FORECASTS_MAX", 1_010)
    res = _invoke(path, out)
    assert res.exit_code == 0 and "the last" not in res.stdout and "id='cut'" not in out.read_text()


def test_the_newest_rows_are_read_with_a_limit_never_the_whole_table(
    big: tuple[Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = big
    monkeypatch.setattr(report_html, "FORECASTS_MAX", 100)
    eng = make_engine(f"sqlite:///{path}")
    seen: list[str] = []
    sa.event.listen(eng, "before_cursor_execute", lambda *a: seen.append(a[2]))
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert summarize(data.steps).forecasts == 100
    reads = [s for s in seen if "payload" in s and "FROM forecasts" in s and "count(" not in s]
    assert reads and all("LIMIT" in s and "DESC" in s for s in reads), reads


def test_without_from_the_step_ceiling_keeps_the_newest_forecasts(
    big: tuple[Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, as_ofs = big
    monkeypatch.setattr(report_html, "STEPS_MAX", H * 25 + 1)
    eng = make_engine(f"sqlite:///{path}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    with pytest.raises(ConfigError, match="forecast steps one report reads"):
        load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m", from_ms=as_ofs[0]))
    eng.dispose()
    assert data.cut_from_ms == as_ofs[-25] and sorted(set(data.steps["as_of"])) == as_ofs[-25:]
    assert "the last 25 forecasts" in report_html.cut_message(data)


def test_without_from_the_candle_ceiling_keeps_the_newest_forecasts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fx.db"
    as_ofs = _database(path, 30)
    monkeypatch.setattr(report_html, "CANDLES_MAX", 12)
    eng = make_engine(f"sqlite:///{path}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    with pytest.raises(ConfigError, match="stored candles"):
        load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m", from_ms=as_ofs[0]))
    eng.dispose()
    # candles [start, last as_of + 1) at most 12: the forecasts from the 12th newest candle on (12 of them)
    assert data.cut_from_ms is not None
    kept = sorted(set(data.steps["as_of"]))
    assert kept == [a for a in as_ofs if a >= data.cut_from_ms] and len(kept) == 12
    assert "the last 12 forecasts" in render_report(data)


def test_a_cut_keeps_every_row_of_an_as_of_time_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fx.db"
    as_ofs = _database(path, 10)
    con = sqlite3.connect(path)  # a second model's forecasts at every time
    con.execute(
        "INSERT INTO forecasts SELECT symbol, timeframe, as_of_ms, horizon, 'v2', "
        "json_set(payload, '$.model_version', 'v2'), created_ms FROM forecasts"
    )
    con.commit()
    con.close()
    monkeypatch.setattr(report_html, "FORECASTS_MAX", 7)
    eng = make_engine(f"sqlite:///{path}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert data.cut_from_ms == as_ofs[-3]
    assert sorted(set(zip(data.steps["as_of"], data.steps["model_version"], strict=True))) == [
        (a, v) for a in as_ofs[-3:] for v in ("v1", "v2")
    ]


def test_a_dropped_touch_field_is_no_row_left_out_and_each_payload_is_checked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """43 rows: 40 clean, 1 not JSON, 1 NaN quantile, 1 whose touch is "x" (scored without it).
    Before: "41 forecasts, ..., 3 stored rows left out" (41 + 3 = 44) and check_payload ran
    three times per row (the fetch, realise, the touch section)."""
    path = tmp_path / "fx.db"
    as_ofs = _database(path, 41)
    con = sqlite3.connect(path)
    last = as_ofs[-1]
    (good,) = con.execute("SELECT payload FROM forecasts WHERE as_of_ms = ?", (last,)).fetchone()
    con.execute(
        "UPDATE forecasts SET payload = ? WHERE as_of_ms = ?", (json.dumps(dict(json.loads(good), touch="x")), last)
    )
    nan = json.dumps(dict(json.loads(good), quantiles=[[float("nan")] * 11] * H))
    con.execute("INSERT INTO forecasts VALUES ('EURUSD', '1m', ?, 7, 'v1', ?, 0)", (last, nan))
    con.execute("INSERT INTO forecasts VALUES ('EURUSD', '1m', ?, 8, 'v1', '{not json', 0)", (last,))
    con.commit()
    con.close()
    calls: list[Any] = []
    real = report_html.check_payload

    def counted(p: Any, **kw: Any) -> Any:
        calls.append(p)
        return real(p, **kw)

    monkeypatch.setattr(report_html, "check_payload", counted)
    out = tmp_path / "r.html"
    res = _invoke(path, out)
    assert res.exit_code == 0, res.output
    assert "41 forecasts" in res.stdout and "2 stored rows left out, 1 touch field dropped" in res.stdout
    assert len(calls) == 42  # each decoded row once (the 43rd is not JSON)
    page = out.read_text()
    assert "2 stored rows left out as unreadable (forecast:not_json 1, forecast:quantiles 1)" in page
    assert "1 touch field dropped (forecast:touch 1" in page
    eng = make_engine(f"sqlite:///{path}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert dict(data.skipped) == {"forecast:not_json": 1, "forecast:quantiles": 1}
    assert dict(data.dropped) == {"forecast:touch": 1}
    assert summarize(data.steps).forecasts + sum(data.skipped.values()) == 43


def test_one_row_left_out_is_said_in_the_singular(tmp_path: Path) -> None:
    path = tmp_path / "fx.db"
    as_ofs = _database(path, 5)
    con = sqlite3.connect(path)
    con.execute("INSERT INTO forecasts VALUES ('EURUSD', '1m', ?, 9, 'v1', '{not json', 0)", (as_ofs[0],))
    con.commit()
    con.close()
    res = _invoke(path, tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    assert ", 1 stored row left out ->" in res.stdout
    assert "1 stored row left out as unreadable" in (tmp_path / "r.html").read_text()


def test_postgresql_without_from_reports_the_newest_forecasts(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forex_diffusion.domain import Candle
    from forex_diffusion.storage import upsert_candles, upsert_forecasts

    _database(tmp_path / "fx.db", 20)
    src = make_engine(f"sqlite:///{tmp_path / 'fx.db'}")
    with src.connect() as c:
        candle_rows = [dict(r._mapping) for r in c.execute(sa.text("SELECT * FROM candles"))]
        forecast_rows = [json.loads(r[0]) for r in c.execute(sa.text("SELECT payload FROM forecasts"))]
    src.dispose()

    eng = make_engine(pg_url)
    upsert_candles(
        eng, [Candle(**{k: v for k, v in r.items() if k in Candle.__dataclass_fields__}) for r in candle_rows]
    )
    upsert_forecasts(
        eng, [dict(p, symbol="EURUSD", timeframe="1m", horizon=H, rw_quantiles=p["quantiles"]) for p in forecast_rows]
    )
    monkeypatch.setattr(report_html, "FORECASTS_MAX", 15)
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    with pytest.raises(ConfigError, match="more than the 15 one report reads"):
        load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m", from_ms=0))
    eng.dispose()
    as_ofs = sorted(p["as_of_ms"] for p in forecast_rows)
    assert data.cut_from_ms == as_ofs[-15] and sorted(set(data.steps["as_of"])) == as_ofs[-15:]
