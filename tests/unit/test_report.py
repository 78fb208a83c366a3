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
from sqlalchemy import Engine
from typer.testing import CliRunner

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Candle
from forex_diffusion.drift import DriftEvent
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.reports.html import (
    ReportConfig,
    load_report,
    reliability,
    render_report,
    rolling_scores,
)
from forex_diffusion.storage import (
    make_engine,
    save_progress,
    sqlite_url,
    upsert_candles,
    upsert_drift_events,
    upsert_forecasts,
)
from forex_diffusion.storage.model_registry import (
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
        insert_version(
            engine,
            ModelVersion(version=v, key=key, artifact=f"{v}.pt", sha256="0" * 64, config_hash="c"),
            now_ms=t0 + i,
        )
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
    # price overview + 4 fan panels + rolling CRPS + rolling coverage + reliability and PIT
    # per horizon group (steps 1, 2-4, 5-12 of a 12-step horizon)
    assert p.tags["svg"] == 1 + 4 + 2 + 2 * 3
    assert p.tags["polygon"] >= 2 * 4 * 2  # two bands per fan, overview and panel
    assert p.tags["polyline"] >= 10
    text = " ".join(p.text)
    for heading in (
        "Summary",
        "Price and forecasts",
        "Scores over time",
        "Reliability by horizon",
        "Model changes",
        "Drift events",
    ):
        assert heading in text
    assert "No drift events for this series in the period." in text


def test_summary_numbers_equal_an_independent_computation(
    db: Engine, records: list[dict[str, Any]], candles: list[Candle]
) -> None:
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m"))
    crps, rw, in50, in90 = _realised(records, candles)
    from forex_diffusion.reports.html import summarize

    summary = summarize(data.steps)
    s = summary.scores
    assert summary.forecasts == len(records)
    assert s.n == len(crps)
    assert s.crps == pytest.approx(crps.mean(), rel=1e-12)
    assert s.rw_crps == pytest.approx(rw.mean(), rel=1e-12)
    assert s.skill == pytest.approx(1 - crps.mean() / rw.mean(), abs=1e-12)
    assert s.cover50 == pytest.approx(in50.mean(), abs=1e-12)
    assert s.cover90 == pytest.approx(in90.mean(), abs=1e-12)
    page = render_report(data)
    assert f"<b>{len(records)}</b><span>forecasts</span>" in page
    assert f"<b>{crps.mean():.4g}</b><span>CRPS model</span>" in page
    assert f"<b>{100 * in90.mean():.1f} %</b><span>90 % coverage</span>" in page


def test_rolling_scores_pool_the_last_window_of_forecasts(
    db: Engine, records: list[dict[str, Any]], candles: list[Candle]
) -> None:
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


def test_period_bounds_select_forecasts_and_realise_steps_after_the_end(
    db: Engine, records: list[dict[str, Any]], candles: list[Candle]
) -> None:
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


def test_drift_section_lists_the_drift_events_the_candle_agent_stored(
    tmp_path: Path, candles: list[Candle], records: list[dict[str, Any]]
) -> None:
    """Regression: the drift section was always empty because nothing wrote drift_events."""
    engine = make_engine(sqlite_url(tmp_path / "drift.db"))
    upsert_candles(engine, candles[:200])
    upsert_forecasts(engine, records[:100])
    t = candles[150].close_ms

    def ev(detector: str, symbol: str = "EURUSD", horizon: int | None = HORIZON, ts: int = t) -> DriftEvent:
        return DriftEvent(
            detector=detector, statistic=0.5, threshold=0.1, symbol=symbol, timeframe="1m", horizon=horizon, ts_ms=ts
        )

    # as the candle agent writes them: with its checkpoint
    save_progress(
        engine,
        consumer="forexd:candles",
        topic="fx.candles",
        partition=0,
        offset=7,
        state={},
        drift_items=[ev("adwin<crps>"), ev("page_hinkley:features", horizon=None), ev("other", "GBPUSD")],
    )
    upsert_drift_events(engine, [ev("late", ts=candles[199].close_ms + 10 * 60_000)])  # after the period
    data = load_report(engine, ReportConfig(symbol="EURUSD", timeframe="1m", to_ms=candles[199].close_ms))
    assert data.drift is not None and data.drift.time_column == "ts_ms"
    detectors = [r[data.drift.columns.index("detector")] for r in data.drift.rows]
    assert sorted(detectors) == ["adwin<crps>", "page_hinkley:features"]
    page = render_report(data)
    p = _parse(page)
    section = "".join(p.text).split("Drift events", 1)[1]
    assert "adwin<crps>" in section and "page_hinkley:features" in section  # escaped in the page
    assert "adwin&lt;crps&gt;" in page and "GBPUSD" not in page and "late" not in section
    assert "No drift events" not in section
    assert "2014-05-05" in section  # the event time, as a UTC date


def test_a_database_without_the_drift_table_says_so(
    tmp_path: Path, candles: list[Candle], records: list[dict[str, Any]]
) -> None:
    engine = make_engine(sqlite_url(tmp_path / "old.db"))
    upsert_candles(engine, candles[:200])
    upsert_forecasts(engine, records[:100])
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE drift_events")  # a database from before the table
    data = load_report(engine, ReportConfig(symbol="EURUSD", timeframe="1m"))
    assert data.drift is None
    assert "The database has no drift_events table" in "".join(_parse(render_report(data)).text)


def test_reliability_per_horizon_group_equals_an_independent_count(
    db: Engine, records: list[dict[str, Any]], candles: list[Candle]
) -> None:
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m"))
    rel = {r.group: r for r in reliability(data.steps)}
    assert list(rel) == ["1", "2-4", "5-12"]  # no step beyond the 12-step horizon
    # independent: loop over forecasts and steps
    groups = {"1": range(1, 2), "2-4": range(2, 5), "5-12": range(5, 13)}
    opens = [c.open_ms for c in candles]
    for name, steps in groups.items():
        below = np.zeros(len(LEVELS))
        rw_below = np.zeros(len(LEVELS))
        pit = np.zeros(len(LEVELS) + 1)
        n = 0
        for r in records:
            first = next((i for i, o in enumerate(opens) if o >= r["as_of_ms"]), len(opens))
            for k in steps:
                if first + k - 1 >= len(candles):
                    continue
                y = candles[first + k - 1].close
                q, rq = sorted(r["quantiles"][k - 1]), sorted(r["rw_quantiles"][k - 1])
                below += [y <= v for v in q]
                rw_below += [y <= v for v in rq]
                pit[sum(y > v for v in q)] += 1
                n += 1
        got = rel[name]
        assert got.n == n > 0
        assert got.levels == LEVELS
        np.testing.assert_allclose(got.below, below / n, atol=1e-12)
        np.testing.assert_allclose(got.rw_below, rw_below / n, atol=1e-12)
        np.testing.assert_allclose(got.pit, pit / n, atol=1e-12)
        assert sum(got.pit) == pytest.approx(1.0)
        assert sum(d * w for d, w in zip(got.pit_density, got.widths, strict=True)) == pytest.approx(1.0)


def test_reliability_charts_are_drawn_per_group_with_axis_titles_and_legend(db: Engine) -> None:
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m", fans=0))
    page = render_report(data)
    section = page.split("<h2>Reliability by horizon</h2>", 1)[1].split("<h2>", 1)[0]
    p = _parse(section)
    assert p.tags["svg"] == 2 * 3
    text = " ".join(p.text)
    for group in ("1", "2-4", "5-12"):
        assert f"Steps {group}: share of closes at or below each forecast quantile" in text
        assert f"Steps {group}: PIT histogram" in text
    for label in (
        "nominal quantile level",
        "closes at or below the quantile",
        "PIT (forecast CDF at the realised close)",
        "model",
        "random walk",
        "ideal",
        "uniform",
    ):
        assert label in text, label
    assert p.tags["rect"] >= 3 * (len(LEVELS) + 1)  # the PIT bars
    empty = render_report(dataclasses.replace(data, steps=data.steps.assign(realized=np.nan)))
    assert "nothing to calibrate" in empty


def test_cli_writes_the_report(db: Engine, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(db.url),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1m",
            "--from",
            "2014-05-05",
            "--to",
            "2014-05-06",
            "-o",
            str(out),
        ],
    )
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
    res = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(db.url),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1m",
            "--from",
            "2020-01-01",
            "--to",
            "2020-02-01",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 1
    assert "No forecasts of EURUSD 1m" in res.output and "nothing to report" in res.output
    assert not out.exists()


def test_empty_report_page_explains_itself(db: Engine) -> None:
    data = load_report(db, ReportConfig(symbol="EURUSD", timeframe="1m", from_ms=0, to_ms=1))
    assert data.empty
    page = render_report(data)
    _parse(page)
    assert 'id="empty"' in page or "id='empty'" in page
