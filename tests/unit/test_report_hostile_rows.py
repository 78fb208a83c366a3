"""``forexd report`` on stored rows written by hand, by another program, cut short or hostile.

Every forecast row the forecast agent could not have written (payload not UTF-8, not JSON,
not an object; quantiles of another width, NaN, strings, 5000-digit integers; an ``as_of``
of 2**70 or unlike its key; ...) is left out and counted by reason, and the scores are those
of the other rows, exactly; a candle row the stream could not have written likewise. The
page escapes every stored string; the command's own line escapes control characters; a
period too large to hold is refused (exit 2) before it is read. Before: tracebacks
(JSONDecodeError, TypeError, OverflowError, KeyError, AttributeError) and exit 74 for text
that is not UTF-8.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from forex_diffusion.domain import Candle
from forex_diffusion.reports.html import ReportConfig, load_report, render_report, summarize
from forex_diffusion.storage import make_engine, upsert_candles, upsert_forecasts
from streams.cli import app

LEVELS = [0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95]
T0 = 1_399_999_980_000  # on the minute grid
H = 4
N = 60
runner = CliRunner()


def _candles() -> list[Candle]:
    rng = np.random.default_rng(7)
    closes = 1.1 + np.cumsum(rng.normal(0, 1e-4, N))
    return [
        Candle(
            symbol="EURUSD",
            timeframe="1m",
            open_ms=T0 + i * 60_000,
            close_ms=T0 + (i + 1) * 60_000,
            open=float(c),
            high=float(c) + 2e-4,
            low=float(c) - 2e-4,
            close=float(c),
            volume=1.0,
            tick_count=1,
        )
        for i, c in enumerate(closes)
    ]


def _record(c: Candle) -> dict[str, Any]:
    spread = np.array(LEVELS) - 0.5
    q = [[round(c.close + 4e-4 * k * x, 6) for x in spread] for k in range(1, H + 1)]
    rw = [[round(c.close + 5e-4 * k * x, 6) for x in spread] for k in range(1, H + 1)]
    return {
        "symbol": "EURUSD",
        "timeframe": "1m",
        "as_of_ms": c.close_ms,
        "horizon": H,
        "model_version": "v1",
        "last_close": c.close,
        "levels": LEVELS,
        "quantiles": q,
        "rw_quantiles": rw,
    }


CANDLES = _candles()
RECORDS = [_record(c) for c in CANDLES[:40]]
VICTIM = RECORDS[20]


@pytest.fixture(scope="module")
def clean_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clean") / "fx.db"
    eng = make_engine(f"sqlite:///{path}")
    upsert_candles(eng, CANDLES)
    upsert_forecasts(eng, [r for r in RECORDS if r is not VICTIM])
    eng.dispose()
    return path


@pytest.fixture(scope="module")
def clean_summary(clean_db: Path) -> Any:
    eng = make_engine(f"sqlite:///{clean_db}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert not data.skipped and summarize(data.steps).forecasts == len(RECORDS) - 1
    return summarize(data.steps)


def _with_row(clean_db: Path, tmp_path: Path, payload_sql: str, *, as_of: Any = VICTIM["as_of_ms"]) -> Path:
    path = tmp_path / "fx.db"
    path.write_bytes(clean_db.read_bytes())
    con = sqlite3.connect(path)
    head = "INSERT INTO forecasts (symbol, timeframe, as_of_ms, horizon, model_version, payload, created_ms) "
    sql = head + f"VALUES ('EURUSD', '1m', ?, {H}, 'v1', {payload_sql}, 0)"  # noqa: S608 - the test's values
    con.execute(sql, (as_of,))
    con.commit()
    con.close()
    return path


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _victim(**changes: Any) -> str:
    return _sql_text(json.dumps(dict(VICTIM, **changes)))


HOSTILE = [
    ("not_json", _sql_text("{not json"), "not_json"),
    ("truncated", _sql_text(json.dumps(VICTIM)[:-40]), "not_json"),
    ("not_utf8", "CAST(X'7B2261223AFF7D' AS TEXT)", "not_utf8"),
    ("blob", "X'7B7D'", "quantiles"),
    ("integer", "5", "not_object"),
    ("json_list", _sql_text("[1, 2, 3]"), "not_object"),
    ("json_string", _sql_text('"hello"'), "not_object"),
    ("json_null", "'null'", "not_object"),
    ("deep", _sql_text("[" * 100_000 + "]" * 100_000), "not_json"),
    (
        "digits_5000",
        _sql_text(json.dumps(dict(VICTIM, last_close=7)).replace('"last_close": 7', '"last_close": ' + "9" * 5000)),
        "not_json",
    ),
    (
        "digits_400",
        _sql_text(json.dumps(dict(VICTIM, last_close=7)).replace('"last_close": 7', '"last_close": ' + "9" * 400)),
        "last_close",
    ),
    ("quantiles_string", _victim(quantiles="abc"), "quantiles"),
    ("quantiles_strings", _victim(quantiles=[["1.1"] * 11] * H), "quantiles"),
    ("quantiles_bools", _victim(quantiles=[[True] * 11] * H), "quantiles"),
    ("quantiles_width_5", _victim(quantiles=[[1.1] * 5] * H), "quantiles"),
    ("quantiles_ragged", _victim(quantiles=[[1.1] * 11, [1.1] * 3]), "quantiles"),
    ("quantiles_empty", _victim(quantiles=[]), "quantiles"),
    ("quantiles_dict", _victim(quantiles={"a": 1}), "quantiles"),
    ("quantiles_nan", _sql_text(json.dumps(dict(VICTIM, quantiles=[[float("nan")] * 11] * H))), "quantiles"),
    ("quantiles_inf", _sql_text(json.dumps(dict(VICTIM, quantiles=[[float("inf")] * 11] * H))), "quantiles"),
    ("quantiles_huge_int", _victim(quantiles=[[10**400] * 11] * H), "quantiles"),
    ("steps_10001", _victim(quantiles=[[1.1] * 11] * 10_001), "quantiles"),
    ("quantiles_1e308", _victim(quantiles=[[1e308] * 11] * H), "quantiles"),
    ("quantiles_negative", _victim(quantiles=[[-1.1] * 11] * H), "quantiles"),
    ("rw_1e308", _victim(rw_quantiles=[[1e308] * 11] * H), "rw_quantiles"),
    ("levels_other", _victim(levels=[0.1] * 11), "levels"),
    ("levels_string", _victim(levels="abc"), "levels"),
    ("rw_short", _victim(rw_quantiles=[[1.1] * 11] * (H - 1)), "rw_quantiles"),
    ("rw_string", _victim(rw_quantiles="x"), "rw_quantiles"),
    ("rw_nan", _sql_text(json.dumps(dict(VICTIM, rw_quantiles=[[float("nan")] * 11] * H))), "rw_quantiles"),
    ("last_close_string", _victim(last_close="x"), "last_close"),
    ("last_close_list", _victim(last_close=[1]), "last_close"),
    ("last_close_zero", _victim(last_close=0), "last_close"),
    ("as_of_string", _victim(as_of_ms="x"), "as_of"),
    ("as_of_unlike_key", _victim(as_of_ms=VICTIM["as_of_ms"] + 60_000), "as_of"),
    ("as_of_2_70", _victim(as_of_ms=2**70), "as_of"),
    ("version_dict", _victim(model_version={"a": 1}), "model_version"),
    ("version_unlike_key", _victim(model_version="v2"), "model_version"),
]


@pytest.mark.parametrize(("name", "payload", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_forecast_row_is_left_out_counted_and_the_scores_are_the_others(
    clean_db: Path, clean_summary: Any, tmp_path: Path, name: str, payload: str, reason: str
) -> None:
    eng = make_engine(f"sqlite:///{_with_row(clean_db, tmp_path, payload)}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert dict(data.skipped) == {f"forecast:{reason}": 1}
    assert summarize(data.steps) == clean_summary  # not a silently different number
    page = render_report(data)
    assert "1 stored row left out as unreadable" in page and f"forecast:{reason} 1" in page


@pytest.mark.parametrize(
    "as_of",
    [-60_000, 253_402_300_800_000, 2**62, 1.5e21, "abc", b"\x00"],
    ids=["neg", "y10000", "2^62", "real", "text", "blob"],
)
def test_a_key_time_outside_the_calendar_is_left_out(clean_db: Path, tmp_path: Path, as_of: Any) -> None:
    path = _with_row(clean_db, tmp_path, _victim(as_of_ms=as_of) if isinstance(as_of, int) else _victim(), as_of=as_of)
    eng = make_engine(f"sqlite:///{path}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert dict(data.skipped) == {"forecast:as_of": 1}
    render_report(data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_FIELDS = ["quantiles", "rw_quantiles", "levels", "last_close", "as_of_ms", "model_version", "touch"]


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(_FIELDS), _json, min_size=1, max_size=3))
def test_any_field_values_are_scored_or_left_out_never_raised(
    clean_db: Path, clean_summary: Any, tmp_path: Path, changes: dict[str, Any]
) -> None:
    """Property: a payload with any JSON in its fields is either a forecast of the report or
    one row left out with its reason; every number of the page stays finite or '–'."""
    text = json.dumps(dict(VICTIM, **changes))  # NaN/Infinity written as json.dumps does
    path = tmp_path / "prop.db"
    path.unlink(missing_ok=True)
    path.write_bytes(_with_row(clean_db, tmp_path, _sql_text(text)).read_bytes())
    eng = make_engine(f"sqlite:///{path}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    s = summarize(data.steps)
    left = sum(data.skipped.values())
    assert "forecast:touch" not in data.skipped  # a touch field dropped is no row left out
    assert s.forecasts + left == len(RECORDS)
    if left:
        assert s == clean_summary
    assert np.isfinite(data.steps[["q05", "q50", "q95"]].to_numpy(dtype=np.float64)).all()
    render_report(data)


def test_hostile_candle_rows_are_left_out_and_counted(clean_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "fx.db"
    path.write_bytes(clean_db.read_bytes())
    con = sqlite3.connect(path)
    t = [c.open_ms for c in CANDLES]
    con.execute("UPDATE candles SET close = 'abc' WHERE open_ms = ?", (t[21],))
    con.execute("UPDATE candles SET high = 0.5 WHERE open_ms = ?", (t[22],))
    con.execute("UPDATE candles SET close = CAST(X'FF' AS TEXT) WHERE open_ms = ?", (t[23],))
    con.execute("UPDATE candles SET close = 9e999, high = 9e999 WHERE open_ms = ?", (t[24],))
    con.commit()
    con.close()
    eng = make_engine(f"sqlite:///{path}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert dict(data.skipped) == {"candle:schema": 2, "candle:inconsistent": 1, "candle:non_finite": 1}
    assert np.isfinite(data.candles["close"].to_numpy(dtype=np.float64)).all()
    assert t[21] not in set(data.candles["open_ms"])
    render_report(data)


def test_stored_strings_are_escaped_in_the_page_and_the_command_line(clean_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "fx.db"
    path.write_bytes(clean_db.read_bytes())
    sym = "<script>\x1b]0;x\x07"
    con = sqlite3.connect(path)
    con.execute("UPDATE forecasts SET model_version = '<script>alert(1)</script>'")
    con.execute("UPDATE forecasts SET payload = json_set(payload, '$.model_version', '<script>alert(1)</script>')")
    con.execute("UPDATE forecasts SET symbol = ?", (sym,))
    con.execute("UPDATE candles SET symbol = ?", (sym,))
    # a series whose symbol is not UTF-8 is left out of the choice of series, not a failed query
    con.execute(
        "INSERT INTO forecasts SELECT CAST(X'FFFE' AS TEXT), timeframe, as_of_ms, horizon, model_version, payload, "
        "created_ms FROM forecasts"
    )
    con.commit()
    con.close()
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--db", f"sqlite:///{path}", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    page = out.read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)" in page


def test_a_drift_table_with_hostile_rows_is_shown_escaped(clean_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "fx.db"
    path.write_bytes(clean_db.read_bytes())
    con = sqlite3.connect(path)
    rows = [
        (T0 + 600_000, "<b>adwin</b>", 1, 0.5, 0.1),
        (T0 + 660_000, sqlite3.Binary(b"\xff\xfe"), 0, "x", 0.1),
        (2**62, "ph", 1, 1e308, 0.1),
    ]
    for ts, det, h, st_, th in rows:
        con.execute(
            "INSERT INTO drift_events (symbol, timeframe, ts_ms, detector, horizon, statistic, threshold, created_ms) "
            "VALUES ('EURUSD', '1m', ?, CAST(? AS TEXT), ?, ?, ?, 0)",
            (ts, det, h, st_, th),
        )
    con.commit()
    con.close()
    eng = make_engine(f"sqlite:///{path}")
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert data.drift is not None and len(data.drift.rows) == 3
    page = render_report(data)
    assert "<b>adwin" not in page and "&lt;b&gt;adwin" in page


def test_every_row_hostile_is_an_empty_period_that_says_why(clean_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "fx.db"
    path.write_bytes(clean_db.read_bytes())
    con = sqlite3.connect(path)
    con.execute('UPDATE forecasts SET payload = \'{"quantiles": "x"\'')
    con.commit()
    con.close()
    res = runner.invoke(app, ["report", "--db", f"sqlite:///{path}", "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    assert "nothing to report" in res.stderr and f"forecast:not_json {len(RECORDS) - 1}" in res.stderr
    assert not (tmp_path / "r.html").exists()


def test_a_period_of_more_forecasts_than_one_report_holds_is_refused_before_reading(tmp_path: Path) -> None:
    """With a period start (--from): refused. Without one the newest forecasts are reported
    (tests/unit/test_report_default_period.py)."""
    path = tmp_path / "big.db"
    make_engine(f"sqlite:///{path}").dispose()
    con = sqlite3.connect(path)
    con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) "
        "INSERT INTO forecasts SELECT 'EURUSD', '1m', i * 60000, 4, 'v1', '{}', 0 FROM n"
    )
    con.commit()
    con.close()
    res = runner.invoke(
        app, ["report", "--db", f"sqlite:///{path}", "--from", "1970-01-01", "-o", str(tmp_path / "r.html")]
    )
    assert res.exit_code == 2, res.output
    assert "100,001 stored forecasts" in res.stderr and "--from/--to" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    # a narrower period is read (and every row of it is left out: '{}' is no forecast)
    res = runner.invoke(
        app,
        [
            "report",
            "--db",
            f"sqlite:///{path}",
            "--from",
            "1970-01-02",
            "--to",
            "1970-01-03",
            "-o",
            str(tmp_path / "r.html"),
        ],
    )
    assert res.exit_code == 1 and "forecast:quantiles 1440" in res.stderr


def test_postgresql_hostile_forecast_rows_are_left_out(pg_url: str, clean_summary: Any) -> None:
    eng = make_engine(pg_url)
    upsert_candles(eng, CANDLES)
    upsert_forecasts(eng, [r for r in RECORDS if r is not VICTIM])
    bad = ["[1, 2]", json.dumps(dict(VICTIM, quantiles="x")), json.dumps(dict(VICTIM, as_of_ms=2**70))]
    with eng.begin() as c:
        for i, payload in enumerate(bad):
            c.execute(
                sa.text(
                    "INSERT INTO forecasts (symbol, timeframe, as_of_ms, horizon, model_version, payload, created_ms) "
                    "VALUES ('EURUSD', '1m', :t, :h, 'v1', CAST(:p AS JSON), 0)"
                ),
                {"t": VICTIM["as_of_ms"], "h": 100 + i, "p": payload},
            )
    data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m"))
    eng.dispose()
    assert dict(data.skipped) == {"forecast:not_object": 1, "forecast:quantiles": 1, "forecast:as_of": 1}
    assert summarize(data.steps) == clean_summary


def test_a_period_of_more_steps_than_one_report_holds_is_refused(
    clean_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forecast may carry 10,000 steps: 100,000 such rows are 10**9 step rows. The ceiling
    (2,000,000) is lowered here so that 39 real rows of 4 steps pass it."""
    from forex_diffusion.errors import ConfigError
    from forex_diffusion.reports import html as report_html

    monkeypatch.setattr(report_html, "STEPS_MAX", 4 * (len(RECORDS) - 2))
    eng = make_engine(f"sqlite:///{clean_db}")
    with pytest.raises(ConfigError, match="forecast steps one report reads: narrow it with --from/--to"):
        load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m", from_ms=0))
    monkeypatch.setattr(report_html, "STEPS_MAX", 4 * (len(RECORDS) - 1))
    assert (
        summarize(load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m")).steps).forecasts == len(RECORDS) - 1
    )
    eng.dispose()


def test_a_forecast_at_the_last_instant_of_year_9999_is_drawn(clean_db: Path, tmp_path: Path) -> None:
    """The chart's time axis is padded past the newest time: near 9999-12-31 its ticks were
    past the calendar and ms_to_datetime raised OverflowError."""
    last = 253_402_300_799_999
    path = _with_row(clean_db, tmp_path, _victim(as_of_ms=last), as_of=last)
    eng = make_engine(f"sqlite:///{path}")
    for start in (None, last - 3_600_000):
        data = load_report(eng, ReportConfig(symbol="EURUSD", timeframe="1m", from_ms=start))
        assert not data.skipped
        assert "9999-12-31 23:59" in render_report(data)
    eng.dispose()
