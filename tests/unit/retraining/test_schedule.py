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
