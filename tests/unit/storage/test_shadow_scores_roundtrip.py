"""``shadow_scores`` rows read back as they were written, on SQLite and on PostgreSQL.

The registry reads every column raw (``_raw_columns``: on PostgreSQL each column's text) to
refuse what a hand-written row holds. The scores' text was taken for "no score": every score
read back from PostgreSQL was NaN, and every shadow there was rejected ``shadow_invalid``
whatever it forecast (the tests of the shadow ran on SQLite; a broker test on PostgreSQL
found it).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import SHADOW_COLUMNS, insert_shadow_scores, read_shadow_scores

SCORE = st.floats(min_value=0.0, max_value=1e300, allow_nan=False, allow_infinity=False)
COVER = st.floats(min_value=0.0, max_value=1.0)


def _row(i: int, crps: float, champion: float, rw: float, c1: float, c2: float) -> dict[str, object]:
    return {
        "version": "v-shadow",
        "as_of_ms": 1_700_000_000_000 + i * 60_000,
        "model_key": "EURUSD/1m/12",
        "champion_version": "v-champ",
        "steps": 12,
        "crps": crps,
        "champion_crps": champion,
        "rw_crps": rw,
        "cover90": c1,
        "champion_cover90": c2,
        "realised_ms": 1_700_000_000_000 + (i + 12) * 60_000,
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scores=st.lists(st.tuples(SCORE, SCORE, SCORE, COVER, COVER), min_size=1, max_size=5))
def test_scores_read_back_exactly(db_url: str, scores: list[tuple[float, float, float, float, float]]) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM shadow_scores")
        insert_shadow_scores(conn, [_row(i, *s) for i, s in enumerate(scores)])
    got = read_shadow_scores(engine, "v-shadow")
    assert [
        tuple(r[k] for k in ("crps", "champion_crps", "rw_crps", "cover90", "champion_cover90")) for r in got
    ] == scores
    assert [list(r) for r in got] == [list(SHADOW_COLUMNS)] * len(scores)
    engine.dispose()


@pytest.mark.parametrize("bad", [math.inf, -math.inf, -1.0])
def test_a_score_that_is_none_reads_as_nan(db_url: str, bad: float, caplog: pytest.LogCaptureFixture) -> None:
    """Infinity (its PostgreSQL text ``Infinity``) and a negative CRPS are no scores: NaN,
    logged, so the shadow rule rejects rather than promotes."""
    _reads_as_nan(db_url, bad, caplog)


def test_a_nan_score_reads_as_nan_on_postgresql(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL stores NaN (its text ``NaN``); SQLite stores it as NULL, which the column refuses."""
    _reads_as_nan(pg_url, math.nan, caplog)


def _reads_as_nan(url: str, bad: float, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        insert_shadow_scores(conn, [_row(0, bad, 0.01, 0.02, 0.9, 0.9)])
    (row,) = read_shadow_scores(engine, "v-shadow")
    assert math.isnan(row["crps"]) and row["champion_crps"] == 0.01 and row["cover90"] == 0.9
    assert "registry.shadow_score_unreadable" in caplog.text
    engine.dispose()
