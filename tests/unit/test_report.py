"""The HTML forecast report: well-formed page with SVG charts, scores equal to an
independent computation from the stored payloads and candles, escaped strings, and a
clear refusal (exit 1) for an empty period."""

from __future__ import annotations

import dataclasses
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import BigInteger, Column, Engine, Float, Integer, MetaData, String, Table
from typer.testing import CliRunner

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Candle
from forex_diffusion.forecasting import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.report import ReportConfig, load_report, render_report, rolling_scores
from forex_diffusion.storage import make_engine, sqlite_url, upsert_candles, upsert_forecasts
from forex_diffusion.storage.registry import (
    ModelKey,
    ModelVersion,
    insert_version,
    promote_version,
    rollback_champion,
)
from streams.cli import app

HORIZON = 12
N_CANDLES = 1500
HOSTILE = '<script>alert("x")</script>&'
LEVELS = (0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95)
runner = CliRunner()


def offline_forecasts(candles: list[Candle]) -> list[dict[str, Any]]:
    """fx.forecasts records of the served random walk, as the forecast agent makes them."""
    cfg = ForecasterConfig(timeframes=("1m",), forecast_timeframes=("1m",), horizon=HORIZON)
    f = SymbolForecaster(candles[0].symbol, cfg)
    pred = RandomWalkPredictor(HORIZON)
    out = []
    for c in candles:
        o = f.on_candle(c)
        if o.due:
            req = f.request(o, None)
            assert req is not None
            out.append(json.loads(json.dumps(f.record(pred.forecast([req])[0], o))))
    return out


@pytest.fixture(scope="module")
def candles() -> list[Candle]:
    return aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m"]).candles[:N_CANDLES]


@pytest.fixture(scope="module")
def records(candles: list[Candle]) -> list[dict[str, Any]]:
    return offline_forecasts(candles)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, candles: list[Candle], records: list[dict[str, Any]]) -> Engine:
    engine = make_engine(sqlite_url(tmp_path_factory.mktemp("report") / "fx.db"))
    upsert_candles(engine, candles)
    upsert_forecasts(engine, records)
    # the same series under a hostile symbol
    upsert_candles(engine, [dataclasses.replace(c, symbol=HOSTILE) for c in candles[:300]])
    upsert_forecasts(engine, [dict(r, symbol=HOSTILE) for r in records[:200]])
    # registry history inside the period: promote a, promote b, roll back to a
    key = ModelKey(symbol="EURUSD", timeframe="1m", horizon=HORIZON)
    t0 = candles[200].close_ms
    for i, v in enumerate(("v-a", "v-b")):
        insert_version(engine, ModelVersion(version=v, key=key, artifact=f"{v}.pt", sha256="0" * 64,
                                            config_hash="c"), now_ms=t0 + i)
    promote_version(engine, "v-a", reason="first champion", now_ms=t0 + 100)
    promote_version(engine, "v-b", reason=f"better crps {HOSTILE}", now_ms=candles[600].close_ms)
    rollback_champion(engine, key, reason="coverage collapsed", now_ms=candles[900].close_ms)
    return engine


def _realised(records: list[dict[str, Any]], candles: list[Candle]) -> tuple[np.ndarray, ...]:
    """Independent scoring: loops over forecasts, steps and levels (no report/evaluation code)."""
    opens = [c.open_ms for c in candles]
    crps, rw_crps, in50, in90 = [], [], [], []
    for r in records:
        after = [c for c, o in zip(candles, opens, strict=True) if o >= r["as_of_ms"]]
        for k in range(len(r["quantiles"])):
            if k >= len(after):
                break
            y = after[k].close
            for store, qs in ((crps, r["quantiles"][k]), (rw_crps, r["rw_quantiles"][k])):
                loss = [max(t * (y - q), (t - 1) * (y - q)) for t, q in zip(LEVELS, qs, strict=True)]
                store.append(2 * sum(loss) / len(loss))
            q = r["quantiles"][k]
            lo50, hi50 = (q[2] + q[3]) / 2, (q[7] + q[8]) / 2
            in50.append(lo50 <= y <= hi50)
            in90.append(q[0] <= y <= q[10])
    return np.array(crps), np.array(rw_crps), np.array(in50, float), np.array(in90, float)


class _Checker(HTMLParser):
    """Collects tags and text; fails on unbalanced non-void elements."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "rect", "line", "polyline", "polygon", "circle", "path"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: dict[str, int] = {}
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID and (not self.stack or self.stack[-1] != tag):
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Checker:
    p = _Checker()
    p.feed(page)
    p.close()
    assert not p.errors, p.errors[:5]
    assert not p.stack, p.stack
    return p


def test_report_page_is_well_formed_with_price_fan_and_score_charts(db: Engine) -> None:
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m", window=50, fans=4))
    page = render_report(data)
    p = _parse(page)
    # price overview + 4 fan panels + rolling CRPS + rolling coverage
    assert p.tags["svg"] == 1 + 4 + 2
    assert p.tags["polygon"] >= 2 * 4 * 2  # two bands per fan, overview and panel
    assert p.tags["polyline"] >= 10
    text = " ".join(p.text)
    for heading in ("Summary", "Price and forecasts", "Scores over time", "Model changes", "Drift events"):
        assert heading in text
    assert "The database has no drift_events table" in "".join(p.text)


def test_summary_numbers_equal_an_independent_computation(db: Engine, records: list[dict[str, Any]],
                                                          candles: list[Candle]) -> None:
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m"))
    crps, rw, in50, in90 = _realised(records, candles)
    from forex_diffusion.report import summarize

    s = summarize(data.steps)
    assert s.forecasts == len(records)
    assert s.steps == len(crps)
    assert s.crps == pytest.approx(crps.mean(), rel=1e-12)
    assert s.rw_crps == pytest.approx(rw.mean(), rel=1e-12)
    assert s.skill == pytest.approx(1 - crps.mean() / rw.mean(), abs=1e-12)
    assert s.cover50 == pytest.approx(in50.mean(), abs=1e-12)
    assert s.cover90 == pytest.approx(in90.mean(), abs=1e-12)
    page = render_report(data)
    assert f"<b>{len(records)}</b><span>forecasts</span>" in page
    assert f"<b>{crps.mean():.4g}</b><span>CRPS model</span>" in page
    assert f"<b>{100 * in90.mean():.1f} %</b><span>90 % coverage</span>" in page


def test_rolling_scores_pool_the_last_window_of_forecasts(db: Engine, records: list[dict[str, Any]],
                                                          candles: list[Candle]) -> None:
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m"))
    roll = rolling_scores(data.steps, 30)
    realised = [r for r in records if r["as_of_ms"] <= candles[-1].open_ms]
    crps, rw, in50, in90 = _realised(realised[-30:], candles)
    last = roll.iloc[-1]
    assert int(last["as_of"]) == realised[-1]["as_of_ms"]
    assert last["n"] == len(crps)
    assert last["crps"] == pytest.approx(crps.mean(), rel=1e-12)
    assert last["rw_crps"] == pytest.approx(rw.mean(), rel=1e-12)
    assert last["cover50"] == pytest.approx(in50.mean())
    assert last["cover90"] == pytest.approx(in90.mean())


def test_period_bounds_select_forecasts_and_realise_steps_after_the_end(db: Engine, records: list[dict[str, Any]],
                                                                       candles: list[Candle]) -> None:
    lo, hi = records[100]["as_of_ms"], records[400]["as_of_ms"]
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m", from_ms=lo, to_ms=hi))
    inside = [r for r in records if lo <= r["as_of_ms"] < hi]
    crps, *_ = _realised(inside, candles)
    assert data.steps.groupby("as_of").ngroups == len(inside)
    # every step of the last forecast is realised by candles after the period
    assert np.isfinite(data.steps["realized"]).sum() == len(crps) == HORIZON * len(inside)


def test_model_changes_list_promotions_and_rollback(db: Engine) -> None:
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m"))
    champ = [(c.event, c.version) for c in data.changes if c.alias == "champion"]
    assert champ == [("promotion", "v-a"), ("promotion", "v-b"), ("rollback", "v-a")]
    page = render_report(data)
    assert "coverage collapsed" in page
    assert HOSTILE not in page
    assert "better crps &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page


def test_hostile_symbol_is_escaped_everywhere(db: Engine) -> None:
    data = load_report(db, ReportConfig(symbol=HOSTILE, timeframe="1m", fans=2))
    assert not data.empty
    page = render_report(data)
    _parse(page)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    empty = render_report(load_report(db, ReportConfig(symbol=HOSTILE + "x", timeframe="1m")))
    assert "<script" not in empty
    _parse(empty)


def test_drift_events_table_is_shown_when_present(tmp_path: Path, candles: list[Candle],
                                                  records: list[dict[str, Any]]) -> None:
    engine = make_engine(sqlite_url(tmp_path / "drift.db"))
    upsert_candles(engine, candles[:200])
    upsert_forecasts(engine, records[:100])
    md = MetaData()
    t = Table("drift_events", md, Column("id", Integer, primary_key=True), Column("detector", String(32)),
              Column("statistic", Float), Column("threshold", Float), Column("symbol", String(16)),
              Column("timeframe", String(8)), Column("horizon", Integer), Column("ts_ms", BigInteger))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(t.insert(), [
            {"detector": "adwin<crps>", "statistic": 0.5, "threshold": 0.1, "symbol": "EURUSD", "timeframe": "1m",
             "horizon": HORIZON, "ts_ms": candles[150].close_ms},
            {"detector": "other", "statistic": 0.5, "threshold": 0.1, "symbol": "GBPUSD", "timeframe": "1m",
             "horizon": HORIZON, "ts_ms": candles[150].close_ms},
        ])
    data = load_report(engine, ReportConfig(symbol="EURUSD", timeframe="1m"))
    assert data.drift is not None and len(data.drift.rows) == 1
    page = render_report(data)
    _parse(page)
    assert "adwin&lt;crps&gt;" in page and "GBPUSD" not in page


def test_cli_writes_the_report(db: Engine, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--db", str(db.url), "--symbol", "EURUSD", "--timeframe", "1m",
                              "--from", "2014-05-05", "--to", "2014-05-06", "-o", str(out)])
    assert res.exit_code == 0, res.output
    p = _parse(out.read_text())
    assert p.tags["svg"] >= 3


def test_cli_defaults_to_the_series_with_most_forecasts(db: Engine, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--db", str(db.url), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "EURUSD 1m" in res.output


def test_cli_empty_period_exits_1_with_a_clear_message(db: Engine, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--db", str(db.url), "--symbol", "EURUSD", "--timeframe", "1m",
                              "--from", "2020-01-01", "--to", "2020-02-01", "-o", str(out)])
    assert res.exit_code == 1
    assert "No forecasts of EURUSD 1m" in res.output and "nothing to report" in res.output
    assert not out.exists()


def test_empty_report_page_explains_itself(db: Engine) -> None:
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m", from_ms=0, to_ms=1))
    assert data.empty
    page = render_report(data)
    _parse(page)
    assert 'id="empty"' in page or "id='empty'" in page
