"""Input faults F9 (duplicate ticks), F10 (out of order within the allowed lateness) and F11
(later than the allowed lateness), RELIABILITY.md §1: stream builders, a non-idempotent
producer restarted mid-stream, the expected oracle and dead letters, the worker's metrics.

The oracles here are folded from the *clean* tick list (the ticks without injected copies
or late ticks, in event-time order) through the core, not from the topic: the point of
these faults is that the topic holds more, or another order, than the clean stream.

The validator remembers the last ``ValidationConfig.dedup_window`` (10,000) tick ids per
symbol (FIFO; snapshotted with the checkpoint). Every copy injected here lands within a
few hundred ids of its original, well inside that window.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from forex_diffusion.ingest.validation import ValidationConfig
from forex_diffusion.wire import encode

from ..integration.kafka_io import read_all
from ..waiting import Logging
from .harness import (
    Oracle,
    Record,
    Report,
    await_db,
    by_symbol,
    check,
    db_candles,
    db_count,
    fold,
    sqlite_url,
)

DEDUP_WINDOW = ValidationConfig().dedup_window  # tick ids remembered per symbol (the worker's default)


def tick_of(rec: Record) -> dict[str, Any]:
    return json.loads(rec[1])


def ts_of(rec: Record) -> int:
    return int(tick_of(rec)["ts"])


def id_of(value: bytes) -> str | None:
    try:
        return json.loads(value).get("tick_id")
    except ValueError:
        return None


def as_messages(records: Sequence[Record], partition_of: Callable[[bytes | None], int] = by_symbol) -> list[Any]:
    """``records`` as the broker would hold them when published in this order: consecutive
    offsets per partition (for folding a list through :func:`harness.fold`)."""
    nxt: dict[int, int] = {}
    out = []
    for key, value in records:
        p = partition_of(key)
        off = nxt.get(p, 0)
        nxt[p] = off + 1
        out.append(SimpleNamespace(partition=p, offset=off, key=key, value=value))
    return out


def clean_oracle(clean: Sequence[Record], lateness_ms: int) -> Oracle:
    """The oracle of the clean ticks sorted by event time (stable: ticks of equal time keep
    their order), folded through the core validator and aggregator."""
    ordered = sorted(clean, key=ts_of)
    return fold(as_messages(ordered), allowed_lateness_ms=lateness_ms)


# -- stream builders ----------------------------------------------------------------------


def shuffle_within(records: Sequence[Record], window_ms: int, rnd: random.Random) -> list[Record]:
    """F10: reorder ``records`` so that no tick arrives more than ``window_ms`` of event time
    behind the latest tick of its symbol before it. Each (symbol, time) gets a delay
    ``u`` in ``[0, window_ms)`` and the ticks are sorted by ``time + u`` (stable), so ticks of
    equal time keep their order, and a tick ``y`` before ``x`` has ``ts_y < ts_x + window``."""
    delay: dict[tuple[bytes | None, int], float] = {}
    keyed = []
    for i, rec in enumerate(records):
        t = ts_of(rec)
        u = delay.setdefault((rec[0], t), rnd.uniform(0, window_ms))
        keyed.append((t + u, i, rec))
    keyed.sort(key=lambda k: (k[0], k[1]))
    out = [rec for _k, _i, rec in keyed]
    behind = max_behind(out)
    assert behind < window_ms, f"shuffle displaced a tick {behind} ms behind its symbol's clock"
    return out


def max_behind(records: Sequence[Record]) -> int:
    """The most event time by which a tick arrives behind its symbol's latest earlier tick."""
    top: dict[bytes | None, int] = {}
    worst = 0
    for rec in records:
        t = ts_of(rec)
        m = top.get(rec[0])
        if m is not None:
            worst = max(worst, m - t)
        top[rec[0]] = t if m is None else max(m, t)
    return worst


def out_of_order(records: Sequence[Record]) -> int:
    """Ticks that arrive after a later tick of their symbol."""
    top: dict[bytes | None, int] = {}
    n = 0
    for rec in records:
        t = ts_of(rec)
        if t < top.get(rec[0], t):
            n += 1
        top[rec[0]] = max(top.get(rec[0], t), t)
    return n


def with_late(
    records: Sequence[Record], count: int, lateness_ms: int, rnd: random.Random, *, tag: str = "late", start: int = 100
) -> tuple[list[Record], set[str]]:
    """F11: ``records`` with ``count`` extra ticks, each older than its symbol's watermark
    (the latest earlier event time minus ``lateness_ms``) by 1 ms, by up to a minute, or by
    up to 30 minutes, in turn. A late tick has a fresh id and the quote of the tick it
    follows (on the price grid, inside the spike band). Returns the stream and the ids."""
    picks = set(rnd.sample(range(start, len(records)), count))
    top: dict[bytes | None, int] = {}
    out: list[Record] = []
    ids: set[str] = set()
    for i, rec in enumerate(records):
        out.append(rec)
        t = ts_of(rec)
        top[rec[0]] = max(top.get(rec[0], t), t)
        if i in picks:
            d = tick_of(rec)
            kind = len(ids) % 3
            behind = 1 if kind == 0 else rnd.randint(2, 60_000) if kind == 1 else rnd.randint(60_000, 1_800_000)
            tid = f"{tag}:{len(ids)}"
            late = dict(d, ts=top[rec[0]] - lateness_ms - behind, tick_id=tid)
            out.append((rec[0], encode(late)))
            ids.add(tid)
    return out, ids


def with_copies(
    records: Sequence[Record], rate: float, rnd: random.Random, *, max_gap: int
) -> tuple[list[Record], int]:
    """F9: ``records`` with ``rate`` of them re-published (same bytes, same ``tick_id``) 1 to
    ``max_gap`` records after the original. Returns the stream and the number of copies."""
    assert max_gap < DEDUP_WINDOW, "a copy must stay inside the validator's duplicate window"
    picks = rnd.sample(range(len(records)), round(rate * len(records)))
    keyed = [(float(i), 0, rec) for i, rec in enumerate(records)]
    keyed += [(i + rnd.randint(1, max_gap) + 0.5, 1, records[i]) for i in picks]
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [rec for _k, _c, rec in keyed], len(picks)


# -- a producer restarted mid-stream without idempotence --------------------------------


@dataclass
class Published:
    records: int = 0  # records on the topic (acknowledged sends)
    in_flight: int = 0  # the batch in flight when the first producer stopped
    resent: int = 0  # sends of that batch the first producer had delivered: duplicates now
    failures: list[str] = field(default_factory=list)


def publish_with_restart(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    restart_at: int,
    in_flight: int,
    partition_of: Callable[[bytes | None], int] = by_symbol,
) -> Published:
    """Publish ``records`` in order with an aiokafka producer (``enable_idempotence=False``).
    At ``restart_at`` it hands ``in_flight`` records to the producer without waiting for
    their acks and is stopped (aiokafka's ``stop`` delivers what it holds); a new producer,
    which cannot know what was delivered, sends that batch again and then the rest."""
    from aiokafka import AIOKafkaProducer

    out = Published(in_flight=in_flight)

    def make() -> Any:
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5, max_request_size=4 * 1024 * 1024
        )

    async def send(producer: Any, recs: Sequence[Record]) -> list[Any]:
        return [await producer.send(topic, value=v, key=k, partition=partition_of(k)) for k, v in recs]

    async def settle(futs: list[Any]) -> int:
        ok = 0
        for f in futs:
            try:
                await f
                ok += 1
            except Exception as exc:  # noqa: BLE001 - logged; the count tells
                out.failures.append(type(exc).__name__)
        return ok

    async def go() -> None:
        first = make()
        await first.start()
        try:
            for i in range(0, restart_at, 2000):
                out.records += await settle(await send(first, records[i : min(i + 2000, restart_at)]))
            batch = records[restart_at : restart_at + in_flight]
            out.in_flight = len(batch)
            flying = await send(first, batch)
        finally:
            await first.stop()  # the "crash": the in-flight batch's fate is unknown to the next producer
        out.resent = sum(1 for f in flying if f.done() and not f.cancelled() and f.exception() is None)
        out.records += out.resent
        second = make()
        await second.start()
        try:
            rest = records[restart_at:]
            for i in range(0, len(rest), 2000):
                out.records += await settle(await send(second, rest[i : i + 2000]))
        finally:
            await second.stop()

    asyncio.run(go())
    return out


# -- expectations and checking ----------------------------------------------------------


def expected_refusals(ticks: Sequence[Any], late_ids: set[str]) -> dict[tuple[int, int], str]:
    """The refusals a correct worker makes on the ticks topic as the broker holds it: per
    partition in offset order, a tick id seen before is a ``duplicate``; the first copy of
    an injected late tick is ``late``."""
    seen: set[str | None] = set()
    out: dict[tuple[int, int], str] = {}
    for m in sorted(ticks, key=lambda m: (m.partition, m.offset)):
        tid = id_of(m.value)
        if tid in seen:
            out[(m.partition, m.offset)] = "duplicate"
        else:
            seen.add(tid)
            if tid in late_ids:
                out[(m.partition, m.offset)] = "late"
    return out


def converge(
    bootstrap: str,
    env: dict[str, str],
    oracle: Oracle,
    *,
    timeout_s: float = 90.0,
    workers: Sequence[Logging] = (),
) -> tuple[Report, float]:
    """Wait until the worker's DB equals ``oracle``'s candles (or neither it nor the logs of
    ``workers`` changed for ``timeout_s``: :func:`await_db`), then check I1, I2, I5 and the dead
    letters (I11) against it. The seconds it took to converge."""
    url, prefix = sqlite_url(env), env["FOREXD_TOPIC_PREFIX"]
    converged = await_db(url, oracle.candles, timeout_s=timeout_s, workers=workers)
    candles = read_all(
        bootstrap,
        f"{prefix}fx.candles",
        expect=len(oracle.candles),
        timeout_s=30,
        distinct=lambda m: (m.key, m.value[:120]),
    )
    dead = read_all(bootstrap, f"{prefix}fx.deadletter", expect=len(oracle.refused), timeout_s=30)
    return check(oracle, db=db_candles(url), db_rows=db_count(url), candle_msgs=candles, dead_msgs=dead), converged


def safe_db(url: str) -> list[Any] | None:
    try:
        return db_candles(url)
    except Exception:  # noqa: BLE001 - no DB file or table yet
        return None


def dead_letter_reasons(bootstrap: str, env: dict[str, str], expect: int) -> list[tuple[int, int, str]]:
    """``(partition, offset, reason)`` of every record on the dead-letter topic."""
    msgs = read_all(bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.deadletter", expect=expect, timeout_s=30)
    out = []
    for m in msgs:
        v = json.loads(m.value)
        out.append((v["partition"], v["offset"], v["reason"]))
    return out


_SAMPLE = re.compile(r"^(forexd_[a-z_]+)\{([^}]*)\}\s+([0-9.eE+-]+)$")


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of the worker's ``/metrics`` samples named ``name`` whose labels include ``labels``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:  # noqa: S310 - local
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total
