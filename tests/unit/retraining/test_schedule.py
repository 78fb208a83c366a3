"""Scheduled requests: one per slot, deterministic ids, pure."""

from __future__ import annotations

import pytest

from forex_diffusion.errors import ConfigError
from retraining.schedule import ScheduleEntry, due_requests, parse_interval

H = 3_600_000


def test_each_slot_fires_once_with_a_deterministic_id() -> None:
    entries = [ScheduleEntry.parse("EURUSD/1h/24@6h+1h"), ScheduleEntry.parse("USDJPY-1h-h12@1d")]
    fired: dict[str, int] = {}
    got = []
    for now in range(0, 48 * H, H // 2):
        reqs, new = due_requests(entries, fired, now_ms=now)
        assert fired is not new
        fired = new
        got += [(r.symbol, r.requested_at_ms) for r in reqs]
    eur = [t for s, t in got if s == "EURUSD"]
    assert eur == [-5 * H] + [H + 6 * H * k for k in range(8)]  # the slot holding t=0 starts at -5h
    assert [t for s, t in got if s == "USDJPY"] == [0, 24 * H]
    again, _ = due_requests(entries, {}, now_ms=7 * H)
    again2, _ = due_requests(entries, {}, now_ms=8 * H)
    assert [r.request_id for r in again] == [r.request_id for r in again2]  # same slot, same ids
    assert all(r.reason == "schedule" and r.horizon in (24, 12) for r in again)


def test_bad_entries_are_refused() -> None:
    for text in ("EURUSD/1h/24", "EURUSD/1h/24@0h", "EURUSD/1h/24@10s", "*/1h/24@1d", "EURUSD@1d"):
        with pytest.raises(ConfigError):
            ScheduleEntry.parse(text)
    assert parse_interval("2w") == 14 * 24 * H


@pytest.mark.parametrize(
    "text",
    [
        "EURUSD/1h/24@" + "9" * 5000 + "h",  # review: int()'s digit limit, a ValueError traceback at start
        "EURUSD/1h/24@6h+" + "9" * 5000 + "m",
        "EURUSD/1h/24@1" + "0" * 400 + "h",  # was taken: its slot never came
        "EURUSD/1h/24@1d+" + "1" + "0" * 15 + "h",  # was taken: slots long before the epoch
        "EURUSD/1h/24@367d",
        "EURUSD/1h/24@\u0666h",  # an Arabic-Indic 6: the old pattern (\\d) took it
    ],
)
def test_an_interval_past_a_year_or_not_in_ascii_digits_is_one_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="bad interval"):
        ScheduleEntry.parse(text)


def test_an_interval_of_a_year_is_taken() -> None:
    assert ScheduleEntry.parse("EURUSD/1h/24@366d+52w").every_ms == 366 * 24 * H
    assert parse_interval("52w") == 52 * 7 * 24 * H
