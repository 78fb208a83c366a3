"""Fault-injection harness: generator, oracle, invariant checker and fault drivers.

RELIABILITY.md §1. The generator publishes deterministic ticks (real EUR/USD quotes of the
bundled sample, plus a USD/JPY series derived from them; the key hash puts both on partition 1
of 2, ``by_symbol`` gives each its own) with ``tick_id``s; the oracle folds the ticks topic
*as the broker holds it* (read from offset 0) through the core's validator and
:class:`CandleAggregator`; the checker compares the database and ``fx.candles`` with it and
computes I1, I2, I5 and the dead-letter account (I11). The drivers only use local means:
signals, ``pg_ctlcluster``, an SQLite lock.

Broker kills (F1/F2) need a broker whose log outlives its process: :class:`LocalS3` runs a
moto S3 server for the embedded broker's ``s3://`` storage, and :class:`Generator` keeps
publishing across the outage, logging which sends the broker acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ValidationError
from forex_diffusion.ingest.aggregation import CandleAggregator
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.ingest.validation import TickValidator, ValidationConfig
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.storage import count_candles, fetch_candles, make_engine
from forex_diffusion.storage.tables import drift_events, forecasts, snapshots
from forex_diffusion.wire import decode_candle, decode_tick, encode, encode_candle, encode_forecast
from streams.broker import EmbeddedBroker, free_port

from ..integration.kafka_io import create_topics, read_all
from ..waiting import Logging, wait_for_workers, wait_until, workers_progress

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = SAMPLE_TICKS
TIMEFRAMES = ("1m", "5m", "1h")
SYMBOLS = ("EURUSD", "USDJPY")
TOPICS = ("ticks", "candles", "indicators", "deadletter", "forecasts", "drift", "models", "retrain.requests")
DUR = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
MAX_BYTES = 64 * 1024

Record = tuple[bytes | None, bytes]
CandleKey = tuple[str, str, int]


def ckey(c: Candle) -> CandleKey:
    """The sink key of a candle: ``(symbol, timeframe, open_ms)``."""
    return (c.symbol, c.timeframe, c.open_ms)


def sort_key(c: Candle) -> tuple[str, int, int]:
    return (c.symbol, DUR[c.timeframe], c.open_ms)


# -- generator ----------------------------------------------------------------------------


def tick_records(n: int, *, start: int = 0, source: Path = SAMPLE, jpy: bool = True, trim: bool = True) -> list[Record]:
    """``n`` deterministic good ticks (EUR/USD from ``source`` and a derived USD/JPY), ending
    just before an hour boundary (``trim``) so the idle timer closes the last bars within
    seconds; rows of the last hour are dropped, so a span inside one hour gives nothing."""
    frame = read_ticks(source).frame.iloc[start : start + n]
    if trim:
        boundary = int(frame.ts_ms.iloc[-1]) // 3_600_000 * 3_600_000
        frame = frame[frame.ts_ms < boundary]
    out: list[Record] = []
    for i, (t, b, a) in enumerate(zip(frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist(), strict=True)):
        out.append(
            (b"EURUSD", encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a, "tick_id": f"e:{start + i}"}))
        )
        if jpy:
            out.append(
                (
                    b"USDJPY",
                    encode(
                        {
                            "v": 1,
                            "symbol": "USDJPY",
                            "ts": t,
                            "bid": round(b * 100 - 36, 3),
                            "ask": round(a * 100 - 36, 3),
                            "tick_id": f"j:{start + i}",
                        }
                    ),
                )
            )
    return out


def hour_bursts(count: int, *, source: Path = SAMPLE, jpy: bool = True, max_rows: int = 1_500) -> list[list[Record]]:
    """``count`` non-empty bursts of real ticks, one per clock hour of ``source``: the last
    ``max_rows`` (at most) EUR/USD rows of each hour, so each burst ends just before its hour
    boundary, consecutive bursts never share a bar, and the idle timer closes every bar of a
    burst within seconds. (``tick_records`` with a fixed row count comes out empty when the
    rows lie inside one hour.)"""
    frame = read_ticks(source).frame
    ts = frame.ts_ms.to_numpy()
    hours = ts // 3_600_000
    ends = [i for i in range(1, len(hours)) if hours[i] != hours[i - 1]]  # first row of the next hour
    out: list[list[Record]] = []
    for end in ends:
        if len(out) == count:
            break
        # only the hour's second half: at least 30 min of event time separate two bursts, more
        # than the wall-clock time between them, so the idle timer (which advances a quiet
        # series' clock by wall-clock time, right for a live feed) never makes a burst late
        half = hours[end - 1] * 3_600_000 + 1_800_000
        start = end
        while start > 0 and ts[start - 1] >= half and end - start < max_rows:
            start -= 1
        if start < end:
            out.append(tick_records(end - start, start=start, source=source, jpy=jpy, trim=False))
    assert len(out) == count, f"{source} has only {len(out)} hours"
    return out


PARTITION = {b"EURUSD": 0, b"USDJPY": 1}  # one symbol per partition (the key hash puts both on 1)


def by_symbol(key: bytes | None) -> int:
    """Explicit partition of a record: EUR/USD on 0, USD/JPY on 1, anything else on 0."""
    return PARTITION.get(key or b"", 0)


def bad_records(t0: int) -> list[tuple[Record, str]]:
    """A few refused records (malformed, schema, non-finite, unknown symbol) with their reasons."""
    return [
        ((b"EURUSD", b"\xff\xfe not json"), "malformed"),
        ((b"EURUSD", encode({"v": 1, "symbol": "EURUSD", "ts": t0, "bid": 1.38676})), "schema"),
        ((b"EURUSD", b'{"v":1,"symbol":"EURUSD","ts":%d,"bid":NaN,"ask":1.38686}' % t0), "non_finite"),
        ((b"XAUUSD", encode({"v": 1, "symbol": "XAUUSD", "ts": t0, "bid": 1.1, "ask": 1.2})), "unknown_symbol"),
    ]


def interleave(good: Sequence[Record], bad: Sequence[tuple[Record, str]]) -> list[Record]:
    """``good`` with the ``bad`` records spread evenly through it (after the first 100)."""
    out = list(good)
    if not bad:
        return out
    step = max(1, (len(out) - 100) // (len(bad) + 1))
    for j, (rec, _r) in enumerate(reversed(bad)):
        out.insert(100 + step * (len(bad) - j), rec)
    return out


# -- oracle -------------------------------------------------------------------------------


@dataclass
class Oracle:
    """Expected candles and refusals folded from the ticks topic as the broker holds it."""

    candles: list[Candle]
    refused: dict[tuple[int, int], str]  # (partition, offset) -> reason
    accepted: Counter[str] = field(default_factory=Counter)  # accepted ticks per symbol
    consumed: int = 0


def fold(
    msgs: Iterable[Any],
    *,
    symbols: Sequence[str] = SYMBOLS,
    timeframes: Sequence[str] = TIMEFRAMES,
    allowed_lateness_ms: int = 2_000,
) -> Oracle:
    """Fold ticks-topic messages (per partition, in offset order) through the core."""
    instruments = InstrumentRegistry.of(symbols)
    validator = TickValidator(ValidationConfig(), instruments)
    agg = CandleAggregator(timeframes, price="mid", allowed_lateness_ms=allowed_lateness_ms)
    out: list[Candle] = []
    refused: dict[tuple[int, int], str] = {}
    accepted: Counter[str] = Counter()
    ordered = sorted(msgs, key=lambda m: (m.partition, m.offset))
    now = int(time.time() * 1000)
    for m in ordered:
        try:
            t = decode_tick(m.value, key=m.key, instruments=instruments, max_bytes=MAX_BYTES)
            reason = validator.check(t.symbol, t.ts_ms, t.bid, t.ask, tick_id=t.tick_id, now_ms=now)
            if reason is not None:
                raise ValidationError(reason, "oracle")
            out.extend(agg.add(t.symbol, t.ts_ms, t.bid, t.ask, t.volume))
            accepted[t.symbol] += 1
        except ValidationError as exc:
            refused[(m.partition, m.offset)] = exc.reason.value
    out.extend(agg.flush())
    return Oracle(sorted(out, key=sort_key), refused, accepted, len(ordered))


# -- checker ------------------------------------------------------------------------------


def db_candles(url: str, symbols: Sequence[str] = SYMBOLS) -> list[Candle]:
    eng = make_engine(url)
    try:
        got = [c for s in symbols for tf in TIMEFRAMES for c in fetch_candles(eng, s, tf)]
    finally:
        eng.dispose()
    return sorted(got, key=sort_key)


def db_count(url: str) -> int:
    eng = make_engine(url)
    try:
        return count_candles(eng)
    finally:
        eng.dispose()


@dataclass
class Report:
    """What the checker found; ``violations`` empty means every invariant held."""

    expected: int
    db_rows: int
    topic_records: int
    topic_duplicates: int  # redelivered identical copies on fx.candles (allowed: at-least-once)
    lost: list[CandleKey]
    extra: list[CandleKey]
    differing: list[CandleKey]
    dead_letters: int
    dead_letter_copies: int
    violations: list[str]

    def summary(self) -> str:
        return (
            f"expected={self.expected} db_rows={self.db_rows} topic={self.topic_records} "
            f"topic_dups={self.topic_duplicates} lost={len(self.lost)} extra={len(self.extra)} "
            f"differing={len(self.differing)} dlq={self.dead_letters}(+{self.dead_letter_copies} copies) "
            f"violations={self.violations[:6]}"
        )


def check(
    oracle: Oracle, *, db: list[Candle], db_rows: int, candle_msgs: Sequence[Any], dead_msgs: Sequence[Any]
) -> Report:
    """Compare DB and topics with the oracle; compute I1 (lost), I2 (double count), I5
    (DB holds each candle once) and the dead-letter account (I11)."""
    exp = {ckey(c): c for c in oracle.candles}
    violations: list[str] = []
    got_db = {ckey(c): c for c in db}
    lost = sorted(set(exp) - set(got_db))
    extra = sorted(set(got_db) - set(exp))
    differing = sorted(k for k in set(exp) & set(got_db) if got_db[k] != exp[k])
    if lost:
        violations.append(f"I1 lost in DB: {len(lost)} e.g. {lost[:3]}")
    if extra:
        violations.append(f"extra in DB: {len(extra)} e.g. {extra[:3]}")
    if differing:
        k = differing[0]
        violations.append(f"DB differs: {len(differing)} e.g. {got_db[k]} != {exp[k]}")
    if db_rows != len(db) or len(db) != len(got_db):
        violations.append(f"I5 DB rows {db_rows} for {len(got_db)} distinct candles")
    for sym, n in oracle.accepted.items():  # I2: tick_count of the 1m bars sums to the accepted ticks
        counted = sum(c.tick_count for c in db if c.symbol == sym and c.timeframe == "1m")
        if counted != n:
            violations.append(f"I2 {sym}: 1m tick_count sum {counted} != accepted ticks {n}")
    topic: dict[CandleKey, list[Candle]] = {}
    for m in candle_msgs:
        c = decode_candle(m.value, key=m.key)
        topic.setdefault(ckey(c), []).append(c)
    t_lost = sorted(set(exp) - set(topic))
    if t_lost:
        violations.append(f"I1 lost on fx.candles: {len(t_lost)} e.g. {t_lost[:3]}")
    t_bad = [k for k, cs in topic.items() if k not in exp or any(c != exp[k] for c in cs)]
    if t_bad:
        violations.append(f"fx.candles records differing from the oracle: {len(t_bad)} e.g. {t_bad[:3]}")
    dups = sum(len(cs) - 1 for cs in topic.values())
    dl: dict[tuple[int, int], list[str]] = {}
    for m in dead_msgs:
        v = json.loads(m.value)
        dl.setdefault((v["partition"], v["offset"]), []).append(v["reason"])
    dl_reasons = {k: rs[0] for k, rs in dl.items()}
    if dl_reasons != oracle.refused:
        # the difference, not the first few of each side: a long list hid that the worker had
        # dead-lettered everything the oracle refused plus 13 ticks as `late` (an idle close)
        only_dl = sorted(set(dl_reasons.items()) - set(oracle.refused.items()))
        only_or = sorted(set(oracle.refused.items()) - set(dl_reasons.items()))
        violations.append(
            f"I11 dead letters != refused: {len(only_dl)} only dead-lettered "
            f"{dict(Counter(r for _k, r in only_dl))} e.g. {only_dl[:5]}; {len(only_or)} only refused by the oracle "
            f"{dict(Counter(r for _k, r in only_or))} e.g. {only_or[:5]}"
        )
    return Report(
        len(exp),
        db_rows,
        len(candle_msgs),
        dups,
        lost,
        extra,
        differing,
        len(dl),
        sum(len(v) - 1 for v in dl.values()),
        violations,
    )


def checkpoint_offsets(url: str, topic: str) -> dict[int, int]:
    """The offsets of ``topic`` the worker's database checkpoint reflects, per partition."""
    import sqlalchemy as sa

    eng = make_engine(url)
    try:
        with eng.connect() as c:
            rows = c.execute(
                sa.select(snapshots.c.partition, snapshots.c.offset).where(snapshots.c.topic == topic)
            ).all()
    finally:
        eng.dispose()
    return {int(r.partition): int(r.offset) for r in rows}


def acked_but_missing(acked: Sequence[tuple[float, int, int, bytes]], msgs: Sequence[Any]) -> list[tuple[int, int]]:
    """I1 at the broker: ``(partition, offset)`` of acknowledged sends whose record is not at
    that offset of the topic (lost or overwritten by the broker)."""
    held = {(m.partition, m.offset): m.value for m in msgs}
    return [(p, off) for _t, p, off, value in acked if held.get((p, off)) != value]


def describe_missing(
    acked: Sequence[tuple[float, int, int, bytes]], msgs: Sequence[Any], missing: Sequence[tuple[int, int]]
) -> str:
    """Where acknowledged records that are not at their acknowledged offset went: per
    partition the offset range, how many are elsewhere on the topic, and the log end."""
    if not missing:
        return "none"
    where: dict[bytes, list[tuple[int, int]]] = {}
    for m in msgs:
        where.setdefault(m.value, []).append((m.partition, m.offset))
    value_at = {(p, off): v for _t, p, off, v in acked}
    lines = []
    for part in sorted({p for p, _o in missing}):
        offs = [o for p, o in missing if p == part]
        moved = [where[value_at[(part, o)]] for o in offs if value_at[(part, o)] in where]
        ends = [m.offset for m in msgs if m.partition == part]
        lines.append(
            f"partition {part}: {len(offs)} acked records not at their offsets {min(offs)}..{max(offs)}; "
            f"{len(moved)} of them elsewhere (e.g. {moved[:3]}); topic offsets "
            f"{min(ends, default=None)}..{max(ends, default=None)} ({len(ends)} records)"
        )
    return "; ".join(lines)


# -- generator across broker outages ------------------------------------------------------


class Generator:
    """Publish records from a background thread in small paced batches, one batch in flight,
    logging each send's outcome (RELIABILITY §1): ``acked`` holds ``(time, partition,
    offset, value)`` of every send the broker acknowledged, ``failures`` the errors.

    A send that fails is sent again until acknowledged, so the feed has no hole; a failed
    send the broker did store (indeterminate) leaves a second copy on the topic, which the
    worker dead-letters as ``duplicate`` exactly as the oracle's fold refuses it.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        batch: int = 100,
        interval_s: float = 0.05,
        partition_of: Callable[[bytes | None], int] | None = by_symbol,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.batch = batch
        self.interval_s = interval_s
        self.partition_of = partition_of
        self.acked: list[tuple[float, int, int, bytes]] = []
        self.failures: list[tuple[float, str]] = []
        self.sent = 0  # records handed to the producer, resends included
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, records: Sequence[Record]) -> Generator:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the generator is still publishing")
        self._thread = threading.Thread(target=self._main, args=(list(records),), daemon=True, name="fault-generator")
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout_s: float = 120.0) -> int:
        """Wait until every record is acknowledged; the number acknowledged so far in all.
        ``timeout_s`` is the longest time without a send acknowledged, not a limit on the
        whole: a busy machine publishes more slowly; a generator whose sends only fail (the
        broker gone for good) is stalled, and fails."""
        thread = self._thread
        if thread is not None:
            try:
                wait_until(
                    lambda: not thread.is_alive(),
                    timeout_s,
                    interval=0.05,
                    what="the generator to finish (sends acknowledged)",
                    progress=lambda: len(self.acked),
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last failures {self.failures[-3:]}") from None
        if self._error is not None:
            raise AssertionError(f"the generator failed: {self._error!r}") from self._error
        return len(self.acked)

    def first_ack_after(self, t: float) -> tuple[int, int] | None:
        """``(partition, offset)`` of the first send acknowledged at or after monotonic ``t``."""
        for when, p, off, _v in list(self.acked):
            if when >= t:
                return p, off
        return None

    def _main(self, records: list[Record]) -> None:
        try:
            asyncio.run(self._run(records))
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            self._error = exc

    async def _run(self, records: list[Record]) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        while True:  # the broker may be down when the generator starts
            try:
                await producer.start()
                break
            except Exception as exc:  # noqa: BLE001
                self.failures.append((time.monotonic(), f"start: {type(exc).__name__}"))
                await asyncio.sleep(0.5)
        try:
            for i in range(0, len(records), self.batch):
                todo = records[i : i + self.batch]
                while todo:
                    todo = await self._send(producer, todo)
                    if todo:
                        await asyncio.sleep(0.5)
                await asyncio.sleep(self.interval_s)
        finally:
            await producer.stop()

    async def _send(self, producer: Any, todo: list[Record]) -> list[Record]:
        """Send ``todo``; log the acknowledged ones, return the ones to send again."""
        futs: list[Any] = []
        for key, value in todo:
            part = None if self.partition_of is None else self.partition_of(key)
            try:
                futs.append(await producer.send(self.topic, value=value, key=key, partition=part))
            except Exception as exc:  # noqa: BLE001 - e.g. no metadata while the broker is down
                futs.append(exc)
            self.sent += 1
        again: list[Record] = []
        for rec, fut in zip(todo, futs, strict=True):
            try:
                if isinstance(fut, BaseException):
                    raise fut
                md = await fut
            except Exception as exc:  # noqa: BLE001 - fail or timeout: indeterminate, send again
                self.failures.append((time.monotonic(), type(exc).__name__))
                again.append(rec)
            else:
                self.acked.append((time.monotonic(), md.partition, md.offset, rec[1]))
        return again


# -- broker bounce (F1/F2) ----------------------------------------------------------------

RESUME_BUDGET_S = 30.0  # RELIABILITY F1: the worker resumes within 30 s of the broker's return


def bounce(broker: EmbeddedBroker, sig: int, down_s: float) -> float:
    """Signal the broker, wait for it to exit, keep it down ``down_s``, start it again on the
    same port and storage; the monotonic time it accepts connections again."""
    broker.signal(sig)
    broker.wait(30)
    time.sleep(down_s)
    broker.start()
    return time.monotonic()


def resumed_after(gen: Generator, url: str, topic: str, back: float, timeout_s: float = 90.0) -> float:
    """Seconds from the broker's return (``back``) until the worker's DB checkpoint covers the
    first tick the broker acknowledged after its return: the worker consumes again."""
    p, off = wait_for(
        lambda: gen.first_ack_after(back),
        timeout_s,
        interval=0.05,
        what="a send acknowledged after the broker's return",
    )
    wait_for(
        lambda: _checkpoint_or_none(url, topic).get(p, -1) >= off,
        timeout_s,
        interval=0.1,
        what=f"a checkpoint covering offset {off} of partition {p}",
        progress=lambda: _checkpoint_or_none(url, topic),
    )
    return time.monotonic() - back


def _checkpoint_or_none(url: str, topic: str) -> dict[int, int]:
    try:
        return checkpoint_offsets(url, topic)
    except Exception:  # noqa: BLE001 - no DB file or table yet
        return {}


# aiokafka logs losing its broker connection at error level; these are the reconnect messages
RECONNECT = (
    "Unable connect to node",
    "Unable to update metadata",
    "NodeNotReadyError",
    "KafkaConnectionError",
    "Group Coordinator Request failed",
    "marking coordinator dead",
)


def unexpected_errors(log: str) -> list[str]:
    """Error- and critical-level lines of a worker log other than reconnect messages (F2)."""
    return [
        ln
        for ln in log.splitlines()
        if ("[ERROR]" in ln or "[CRITICAL]" in ln or "Traceback" in ln) and not any(r in ln for r in RECONNECT)
    ]


# -- durable storage for the embedded broker ----------------------------------------------


class LocalS3:
    """A moto S3 server on 127.0.0.1: the embedded broker's ``s3://BUCKET/`` storage, which
    keeps its log and the committed offsets across a broker ``kill -9``."""

    REGION = "us-east-1"

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> LocalS3:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {self.proc.returncode}: {self.log_path.read_text()[-500:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310 - local
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.port} within {timeout_s}s")

    def env(self) -> dict[str, str]:
        """The environment that points the broker's S3 client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": "forexd",
            "AWS_SECRET_ACCESS_KEY": "forexd",
            "AWS_DEFAULT_REGION": self.REGION,
            "AWS_REGION": self.REGION,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def create_bucket(self, name: str) -> str:
        """Create ``name``; the broker storage URL of it."""
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="forexd",
            aws_secret_access_key="forexd",
            region_name=self.REGION,
        )  # noqa: S106 - moto's fake keys
        s3.create_bucket(Bucket=name)
        return f"s3://{name}/"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# -- fault drivers ------------------------------------------------------------------------

PG_CLUSTER = ("15", "main")


def _pg_embedded() -> Any:
    """This process's embedded PostgreSQL (tests/pg_embedded.py), None when the tests use
    the one at $FOREXD_TEST_POSTGRES_URL."""
    from ..pg_embedded import active

    return active()


def pg_ctl(action: str, *args: str) -> None:
    """Stop or start the PostgreSQL the tests use: this process's embedded server
    (tests/pg_embedded.py) when it runs one, else ``pg_ctlcluster 15 main <action> [args]``
    (the system cluster at $FOREXD_TEST_POSTGRES_URL; root only)."""
    server = _pg_embedded()
    if server is None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", *PG_CLUSTER, action, *args],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return
    if action not in ("stop", "start", "restart"):
        raise ValueError(f"pg_ctl action {action!r} is not supported for the embedded server")
    mode = args[args.index("-m") + 1] if "-m" in args else "fast"
    if action in ("stop", "restart"):
        if not server.running():
            raise subprocess.CalledProcessError(2, ["pg_ctl", "stop"], "", "server is not running")
        server.stop(mode)
    if action in ("start", "restart"):
        if server.running():
            raise subprocess.CalledProcessError(1, ["pg_ctl", "start"], "", "server is running")
        if not server.start():
            raise AssertionError(f"the embedded PostgreSQL could not bind port {server.port} again")


def pg_ready(timeout_s: float = 60.0) -> None:
    """Wait until ``pg_isready`` answers at the host and port of the PostgreSQL in use."""
    from ..pg_embedded import configured_url, host_port

    server = _pg_embedded()
    if server is not None:
        host, port = server.host, server.port
        isready = str(server.bin / "pg_isready")
    else:
        host, port = host_port(configured_url())
        isready = "pg_isready"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        probe = [isready, "-h", host, "-p", str(port), "-t", "5", "-q"]
        if subprocess.run(probe, check=False).returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"PostgreSQL at {host}:{port} did not come back within {timeout_s:.0f} s")


def pg_restart_safely() -> None:
    """Start PostgreSQL (if stopped) and wait for it; used in ``finally`` blocks."""
    try:
        pg_ctl("start")
    except subprocess.CalledProcessError:
        pass  # already running
    pg_ready()


class SqliteLockHolder:
    """Another process holding ``BEGIN EXCLUSIVE`` on an SQLite file for ``seconds``."""

    def __init__(self, path: Path, seconds: float) -> None:
        code = (
            "import sqlite3,sys,time\n"
            "c=sqlite3.connect(sys.argv[1],isolation_level=None,timeout=30)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked',flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n"
            "c.execute('COMMIT')\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
        )

    def wait_locked(self, timeout_s: float = 30.0) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "locked", line

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def session_s(env: Mapping[str, str]) -> float:
    """The consumer-group session timeout of the workers ``env`` starts (tests/conftest.py)."""
    return float(env["FOREXD_BROKER_SESSION_TIMEOUT_S"])


def past_session_s(env: Mapping[str, str]) -> float:
    """How long a fault that must outlast the workers' group session (a paused worker or
    broker) lasts: the session timeout of ``env`` and 2 s more."""
    return session_s(env) + 2.0


def pause(pid_group: int, seconds: float) -> None:
    """SIGSTOP a process group for ``seconds``, then SIGCONT it."""
    os.killpg(pid_group, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.killpg(pid_group, signal.SIGCONT)


wait_for = wait_until  # harness name of the shared progress-following wait


def wait_for_producer_reset(w: Any) -> None:
    """Wait until worker ``w`` (wedged by the ``wedge_producer`` failpoint) has built a new
    producer, through its start-up, its failing checkpoints and the reset: the limit is on a
    stall of its log, not on the whole. It must still be running."""
    wait_for_workers(lambda: "producer.reset failing_for=" in w.log() or not w.alive(), w, what="the producer reset")
    assert w.alive(), "the wedged worker exited:\n" + w.log()[-3000:]


# -- settling -----------------------------------------------------------------------------


def sqlite_url(env: dict[str, str]) -> str:
    return env.get("FOREXD_DATABASE_URL") or f"sqlite:///{Path(env['FOREXD_DATA_DIR']) / 'forexd.db'}"


def make_topics(bootstrap: str, env: dict[str, str]) -> None:
    create_topics(bootstrap, [f"{env['FOREXD_TOPIC_PREFIX']}fx.{t}" for t in TOPICS], int(env["FOREXD_PARTITIONS"]))


def await_db(url: str, want: Sequence[Candle], *, timeout_s: float, workers: Sequence[Logging] = ()) -> float:
    """Wait until the candles of the DB at ``url`` equal ``want``; the seconds it took.

    ``timeout_s`` follows progress: it is the longest time the DB and the logs of ``workers``
    (those doing the work: a worker just (re)started changes no row while it imports and joins
    its group) may go without a change while the DB still differs (a busy machine converges
    later, not never). It does not fail: the caller's check reports what differs."""
    logs = workers_progress(*workers)
    t0 = last_change = time.monotonic()
    seen: Any = None
    seen_logs = logs()
    while time.monotonic() - last_change < timeout_s:
        try:
            now = db_candles(url)
        except Exception:  # noqa: BLE001 - no DB yet, or unavailable while a fault heals
            now = None
        if now == want:
            break
        if now is not None and now != seen:
            seen, last_change = now, time.monotonic()
        if (lines := logs()) != seen_logs:
            seen_logs, last_change = lines, time.monotonic()
        time.sleep(0.5)
    return time.monotonic() - t0


def settle(
    bootstrap: str,
    env: dict[str, str],
    *,
    timeout_s: float = 90.0,
    published: int | None = None,
    workers: Sequence[Logging] = (),
) -> tuple[Report, float]:
    """Fold the ticks topic into the oracle, wait until the DB equals it (or stalls ``timeout_s``),
    then check every invariant. Returns the report and the seconds it took to converge.

    ``published`` (the number of records on the ticks topic, when the test knows it) makes
    the oracle wait for all of them instead of stopping at the first second of silence.
    ``workers`` (those doing the work) count as progress too (:func:`await_db`).
    """
    prefix = env["FOREXD_TOPIC_PREFIX"]
    url = sqlite_url(env)
    ticks = read_all(bootstrap, f"{prefix}fx.ticks", idle_s=1.0, timeout_s=60, expect=published)
    assert published is None or len(ticks) >= published, f"oracle read {len(ticks)} of {published} ticks"
    oracle = fold(ticks)
    converged = await_db(url, oracle.candles, timeout_s=timeout_s, workers=workers)
    candles = read_all(
        bootstrap,
        f"{prefix}fx.candles",
        expect=len(oracle.candles),
        timeout_s=30,
        distinct=lambda m: (m.key, m.value[:120]),
    )
    dead = read_all(bootstrap, f"{prefix}fx.deadletter", expect=len(oracle.refused), timeout_s=20)
    db = db_candles(url)
    return check(oracle, db=db, db_rows=db_count(url), candle_msgs=candles, dead_msgs=dead), converged


# -- the candle role (issue 15: the fault matrix for the candle agent) ----------------------
#
# The candle agent's oracle is the core run offline on the candles published, candle by
# candle (``candle_oracle``); the checker compares the database (forecast rows, drift events,
# candles, the checkpointed forecaster state) and ``fx.forecasts`` with it.

# fields of a forecast record sampled by a diffusion model: a batch of fewer than 8 series runs
# other float32 kernels, within 1e-7 relative (docs/diffusion.md "Determinism"); the random
# walk's records and every other field are compared exactly
SAMPLED = frozenset({"quantiles", "mean", "p_up", "touch", "extremes"})
SAMPLED_RTOL = 1e-7


def usdjpy_twin(c: Candle) -> Candle:
    """The USD/JPY candle derived from a EUR/USD one as :func:`tick_records` derives its ticks
    (price x 100 - 36, 3 decimals; spreads x 100)."""

    def px(p: float) -> float:
        return round(p * 100 - 36, 3)

    def sp(v: float | None) -> float | None:
        return None if v is None else round(v * 100, 6)

    return replace(
        c,
        symbol="USDJPY",
        open=px(c.open),
        high=px(c.high),
        low=px(c.low),
        close=px(c.close),
        spread_mean=sp(c.spread_mean),
        spread_min=sp(c.spread_min),
        spread_max=sp(c.spread_max),
    )


def candle_stream(n: int, *, source: Path = SAMPLE) -> list[Candle]:
    """The first ``n`` EUR/USD candles (1m, 5m, 1h) of ``source`` in the order the tick agent
    emits them (close time, the longer timeframe first), each followed by its USD/JPY twin."""
    from forex_diffusion.offline import aggregate_ticks_file

    cs = aggregate_ticks_file(source, timeframes=list(TIMEFRAMES)).candles
    cs = sorted(cs, key=lambda c: (c.close_ms, -DUR[c.timeframe]))[:n]
    return [x for c in cs for x in (c, usdjpy_twin(c))]


def candle_records(candles: Iterable[Candle]) -> list[Record]:
    """``fx.candles`` records keyed by symbol (publish them with :func:`by_symbol`)."""
    return [(c.symbol.encode(), encode_candle(c)) for c in candles]


DriftKey = tuple[str, str, int, str, int]  # the drift_events key: symbol, timeframe, ts_ms, detector, horizon


@dataclass
class CandleOracle:
    """The candle agent's result on a candle stream, computed by the core offline."""

    forecasts: dict[tuple[str, int], dict[str, Any]]  # (symbol, as_of_ms) -> the record (JSON form)
    drift: dict[DriftKey, tuple[float, float]]  # -> (statistic, threshold)
    forecasters: dict[str, Any]  # symbol -> its SymbolForecaster after the last candle
    config: Any  # the worker's ForecasterConfig


def candle_oracle(candles: Sequence[Candle], env: Mapping[str, str]) -> CandleOracle:
    """Run ``candles`` through the core as the candle agent of a worker with ``env`` does: its
    forecaster configuration, and its model book (the checkpoints under ``FOREXD_MODEL_DIR``,
    else the random walk). The forecasts are sampled first, in one batch per model (batches of
    8 and more sample identical bits), then the candles run again, each forecast recorded
    right after its candle."""
    from forex_diffusion.diffusion.inputs import CrossBook
    from forex_diffusion.forecast.forecaster import SymbolForecaster
    from retraining.serving import ModelBook
    from streams.agents.book import forecaster_config
    from streams.settings import Settings

    s = Settings.from_env(dict(env))
    cfg = forecaster_config(s)
    book = ModelBook(
        None, horizon=s.horizon, horizons=s.model_horizons, model_dir=s.model_dir, touch_bands=s.touch_bands
    )

    def run(fcs: dict[tuple[str, int], Any] | None) -> tuple[dict[str, SymbolForecaster], dict[Any, list[Any]]]:
        cross = CrossBook()
        fs: dict[str, SymbolForecaster] = {}
        asked: dict[Any, list[Any]] = {}
        for c in candles:
            f = fs.get(c.symbol) or fs.setdefault(c.symbol, SymbolForecaster(c.symbol, cfg, book=cross))
            f.cold = set()
            o = f.on_candle(c)
            for ev in o.drift:
                key = (ev.symbol, ev.timeframe, int(ev.ts_ms), ev.detector, 0 if ev.horizon is None else ev.horizon)
                drift[key] = (float(ev.statistic), float(ev.threshold))
            if not o.due:
                continue
            pred = book.predictor(c.symbol, c.timeframe)
            r = f.request(o, getattr(pred, "context_spec", None), getattr(pred, "inputs", None))
            if r is None:
                continue
            if fcs is None:
                asked.setdefault(pred, []).append(r)
            else:
                rec = f.record(fcs[(c.symbol, c.close_ms)], o)
                records[(c.symbol, int(rec["as_of_ms"]))] = json.loads(json.dumps(rec))
        return fs, asked

    drift: dict[DriftKey, tuple[float, float]] = {}
    records: dict[tuple[str, int], dict[str, Any]] = {}
    _, asked = run(None)
    fcs = {
        (r.symbol, r.as_of_ms): fc
        for pred, reqs in asked.items()
        for r, fc in zip(reqs, pred.forecast(reqs), strict=True)
    }
    drift.clear()
    forecasters, _ = run(fcs)
    return CandleOracle(records, drift, forecasters, cfg)


ForecastRow = tuple[str, str, int, int, str, dict[str, Any]]  # symbol, timeframe, as_of_ms, horizon, version, payload


def db_forecast_rows(url: str) -> list[ForecastRow]:
    """Every forecast row in key order, without ``created_ms`` (the wall clock of its first write)."""
    import sqlalchemy as sa

    eng = make_engine(url)
    try:
        with eng.connect() as c:
            rows = c.execute(sa.select(forecasts).order_by(*forecasts.primary_key.columns)).all()
    finally:
        eng.dispose()
    return [(r.symbol, r.timeframe, int(r.as_of_ms), int(r.horizon), r.model_version, dict(r.payload)) for r in rows]


def db_drift(url: str) -> dict[DriftKey, tuple[float, float]]:
    """The stored drift events, ``key -> (statistic, threshold)`` (``created_ms`` left out)."""
    import sqlalchemy as sa

    eng = make_engine(url)
    try:
        with eng.connect() as c:
            rows = c.execute(sa.select(drift_events)).all()
    finally:
        eng.dispose()
    return {
        (r.symbol, r.timeframe, int(r.ts_ms), r.detector, int(r.horizon)): (float(r.statistic), float(r.threshold))
        for r in rows
    }


def db_checkpoints(url: str, consumer: str, topic: str, partitions: int) -> dict[int, tuple[int, dict[str, Any]]]:
    """``partition -> (offset, state)`` of ``consumer``'s checkpoints of ``topic`` (the state of
    a checkpoint written as parts is ``{series: part}``)."""
    from forex_diffusion.storage.repository import load_snapshot

    eng = make_engine(url)
    try:
        out = {}
        for p in range(partitions):
            got = load_snapshot(eng, consumer=consumer, topic=topic, partition=p)
            if got is not None:
                out[p] = got
        return out
    finally:
        eng.dispose()


def forecast_topic_differences(msgs: Iterable[Any], oracle: CandleOracle) -> tuple[list[str], int]:
    """How ``fx.forecasts`` (read from offset 0) differs from the oracle, and how many copies it
    holds beyond one per forecast. The contract is at-least-once with idempotent keys: every
    forecast of the oracle is there, nothing else, and each copy equals the oracle's record."""
    seen: Counter[tuple[str, int]] = Counter()
    out: list[str] = []
    for m in msgs:
        rec = json.loads(m.value)
        key = (str(rec.get("symbol")), int(rec.get("as_of_ms", -1)))
        seen[key] += 1
        want = oracle.forecasts.get(key)
        if want is None:
            out.append(f"unexpected forecast {key}")
            continue
        if m.key != key[0].encode():
            out.append(f"{key}: message key {m.key!r}")
        out += [f"{key} {d}" for d in record_differences(rec, json.loads(encode_forecast(want)))[:3]]
    out += [f"missing forecast {k}" for k in sorted(set(oracle.forecasts) - set(seen))]
    return out, sum(seen.values()) - len(seen)


def plain(x: Any) -> Any:
    """``x`` as JSON-like data: dataclasses and mappings as dicts, arrays and tuples as lists."""
    if is_dataclass(x) and not isinstance(x, type):
        return {f.name: plain(getattr(x, f.name)) for f in fields(x)}
    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if hasattr(x, "tolist"):
        return plain(x.tolist())
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def differences(got: Any, want: Any, *, path: str = "", rtol: float = 0.0, atol: float = 0.0) -> list[str]:
    """Where ``got`` differs from ``want`` (JSON-like data), as ``path: got != want`` lines.

    Floats may differ by ``rtol`` relative or ``atol`` absolute (both 0: equal); NaN equals NaN;
    everything else must be equal, of the same type."""
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping) or set(got) != set(want):
            keys = set(got) ^ set(want) if isinstance(got, Mapping) else type(got).__name__
            return [f"{path}: keys differ: {keys}"]
        return [d for k in want for d in differences(got[k], want[k], path=f"{path}.{k}", rtol=rtol, atol=atol)]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: {str(got)[:80]} != {str(want)[:80]}"]
        return [
            d
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for d in differences(g, w, path=f"{path}[{i}]", rtol=rtol, atol=atol)
        ]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if got == want or (want != want and got != got) or abs(got - want) <= max(rtol * abs(want), atol):
            return []
        return [f"{path}: {got!r} != {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"{path}: {got!r} != {want!r}"]


def record_differences(got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """How a forecast record differs from the oracle's, every field but ``latency_s`` (the
    wall clock). A diffusion model's sampled fields may differ by float32 rounding: prices
    within :data:`SAMPLED_RTOL`, ``p_up`` and touch probabilities within one sample's share
    (docs/diffusion.md); the random walk's records, and every other field, are equal."""
    g = {k: v for k, v in got.items() if k != "latency_s"}
    w = {k: v for k, v in want.items() if k != "latency_s"}
    if w.get("model_version") == "rw-ewma" or not w.get("samples"):
        return differences(g, w)
    if set(g) != set(w):
        return [f"keys differ: {set(g) ^ set(w)}"]
    share = 1.0 / float(w["samples"])
    out = differences({k: g[k] for k in g if k not in SAMPLED}, {k: w[k] for k in w if k not in SAMPLED})
    for k in ("quantiles", "mean", "extremes"):
        out += differences(g.get(k), w.get(k), path=k, rtol=SAMPLED_RTOL)
    out += differences(g.get("p_up"), w.get("p_up"), path="p_up", rtol=SAMPLED_RTOL, atol=share)
    gt, wt = g.get("touch"), w.get("touch")
    if isinstance(wt, Mapping) and isinstance(gt, Mapping) and set(gt) == set(wt):
        out += differences(
            {k: gt[k] for k in gt if k not in ("levels", "p")},
            {k: wt[k] for k in wt if k not in ("levels", "p")},
            path="touch",
        )
        out += differences(gt.get("levels"), wt.get("levels"), path="touch.levels", rtol=SAMPLED_RTOL)
        out += differences(gt.get("p"), wt.get("p"), path="touch.p", rtol=SAMPLED_RTOL, atol=share)
    else:
        out += differences(gt, wt, path="touch")
    return out
