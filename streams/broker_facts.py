"""Read what the consumer knows of each partition (:class:`~forex_diffusion.ingest.idle_close.BrokerFacts`).

The one place that reads Faust's and aiokafka's consumer for the idle close and the lag
metric: the high-water mark of the last fetch response, and when that response came
(aiokafka under Faust's consumer thread; another transport answers None).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from faust.types import TP

from forex_diffusion.ingest.idle_close import BrokerFacts

__all__ = ["broker_facts", "highwater", "last_fetch_ms"]


def last_fetch_ms(consumer: Any, tp: TP) -> float | None:
    """Wall-clock ms of the last fetch response for ``tp``, or None where not exposed."""
    try:
        ts = consumer._thread._consumer.last_poll_timestamp(tp)
    except Exception:  # noqa: BLE001 - another transport, or not assigned yet
        return None
    return None if ts is None else float(ts)


def highwater(consumer: Any, tp: TP) -> int | None:
    """The high-water mark of ``tp`` from the last fetch (None: no assignment or no fetch yet)."""
    try:
        hw = consumer.highwater(tp)
    except Exception:  # noqa: BLE001 - not known to be caught up
        return None
    return None if hw is None else int(hw)


def broker_facts(app: Any, topic: str, partitions: Iterable[int], offsets: Mapping[int, int]) -> dict[int, BrokerFacts]:
    """The facts of ``partitions`` of ``topic``; empty when the app has no consumer (no broker)."""
    consumer = getattr(app, "consumer", None)
    if consumer is None:
        return {}
    now_ms = time.time() * 1000.0
    out = {}
    for p in partitions:
        tp = TP(topic, p)
        polled = last_fetch_ms(consumer, tp)
        out[p] = BrokerFacts(
            highwater=highwater(consumer, tp),
            last_offset=offsets.get(p),
            fetch_age_s=None if polled is None else (now_ms - polled) / 1000.0,
        )
    return out
