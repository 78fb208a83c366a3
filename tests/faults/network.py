"""Helpers of the network-fault tests (F15 slow database, F16 client↔broker partition).

* :class:`ProxiedBroker`: a private in-memory Tansu broker whose metadata advertises a
  :class:`~tests.faults.proxy.FaultProxy` in front of it, so a worker given the proxy's
  address reaches the broker only through the proxy, for every connection (Kafka clients
  dial the advertised address after the bootstrap).
* :func:`dial_broker_directly`: makes this (test) process's Kafka clients dial the broker's
  own port where the metadata names the proxy, so the generator, the oracle and the checker
  are not partitioned: only the worker process is.
* :class:`CheckpointWatch`: polls the worker's checkpoint rows (offset and write time per
  partition) from a background thread, on a direct connection, to see checkpoints continue
  during a fault and to time the first one after it.
* :func:`group_churn`: the lines of a worker log that show it left or rejoined its
  consumer group after the first assignment.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from forex_diffusion.storage import make_engine
from forex_diffusion.storage.tables import snapshots
from streams.broker import EmbeddedBroker, free_port

from ..integration.kafka_io import publish
from .harness import Generator, by_symbol, wait_for
from .proxy import FaultProxy

__all__ = [
    "CheckpointWatch",
    "PartitionCycle",
    "ProxiedBroker",
    "dial_broker_directly",
    "group_churn",
    "partition_cycle",
    "uncovered",
    "via",
    "worker_starts",
]


class ProxiedBroker(EmbeddedBroker):
    """An in-memory Tansu broker on a private port that advertises ``proxy`` (started here):
    the worker, which learns the broker's address from metadata, reaches it only through the
    proxy; :attr:`bootstrap` is the broker's own address (the test's clients)."""

    def __init__(self, log_path: Path) -> None:
        port = free_port()
        self.proxy = FaultProxy("127.0.0.1", port)
        super().__init__(port, log_path=log_path, advertised_port=self.proxy.port)

    @property
    def url(self) -> str:
        """The Faust broker URL of the proxy (the worker's)."""
        return f"kafka://{self.proxy.address}"

    def start(self, timeout_s: float = 20.0) -> ProxiedBroker:
        self.proxy.start()
        try:
            super().start(timeout_s)
        except BaseException:
            self.proxy.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and the proxy."""
        super().stop()
        self.proxy.stop()


@contextmanager
def dial_broker_directly(broker: ProxiedBroker) -> Iterator[None]:
    """Within the block, this process's aiokafka clients dial the broker's port wherever they
    would dial the proxy's (the advertised address): the test's publisher and readers stay
    connected while the worker, another process, is partitioned."""
    import aiokafka.client as client

    real = client.create_conn

    async def create_conn(host: str, port: int, **kwargs: Any) -> Any:
        if port == broker.proxy.port:
            port = broker.port
        return await real(host, port, **kwargs)

    client.create_conn = create_conn
    try:
        yield
    finally:
        client.create_conn = real


def via(proxy: FaultProxy, url: str) -> str:
    """The database ``url`` with its host and port replaced by the proxy's."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def uncovered(acked: Sequence[tuple[float, int, int, bytes]], checkpoint: dict[int, int]) -> dict[int, int]:
    """Per partition, how many offsets up to the last one the broker acknowledged (``acked``
    as :class:`~tests.faults.harness.Generator` logs them) the checkpoint does not cover yet
    (0: it covers them all)."""
    ends: dict[int, int] = {}
    for _t, p, off, _v in acked:
        ends[p] = max(ends.get(p, -1), off)
    return {p: end - checkpoint.get(p, -1) for p, end in ends.items()}


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint write seen by :class:`CheckpointWatch`."""

    seen: float  # monotonic time the watch saw it
    partition: int
    offset: int
    updated_ms: int  # wall-clock ms the worker wrote it


class CheckpointWatch:
    """Poll the worker's checkpoint rows of ``topic`` every ``interval_s`` (a background thread).

    ``url`` must reach the database directly (not through a fault proxy).
    """

    def __init__(self, url: str, topic: str, *, interval_s: float = 0.1) -> None:
        self.engine = make_engine(url)
        self.topic = topic
        self.interval_s = interval_s
        self.events: list[Checkpoint] = []
        self._last: dict[int, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="checkpoint-watch")

    def start(self) -> CheckpointWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()

    def __enter__(self) -> CheckpointWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        q = sa.select(snapshots.c.partition, snapshots.c.offset, snapshots.c.updated_ms).where(
            snapshots.c.topic == self.topic
        )
        while not self._stop.is_set():
            try:
                with self.engine.connect() as c:
                    rows = c.execute(q).all()
            except Exception:  # noqa: BLE001 - the database may be briefly unavailable
                rows = []
            now = time.monotonic()
            for r in rows:
                cur = (int(r.offset), int(r.updated_ms))
                if self._last.get(int(r.partition)) != cur:
                    self._last[int(r.partition)] = cur
                    self.events.append(Checkpoint(now, int(r.partition), cur[0], cur[1]))
            self._stop.wait(self.interval_s)

    def offsets(self) -> dict[int, int]:
        """The latest checkpointed offset per partition."""
        return {p: off for p, (off, _u) in self._last.items()}

    def between(self, t0: float, t1: float) -> list[Checkpoint]:
        """Checkpoint writes seen in ``[t0, t1)`` (monotonic)."""
        return [e for e in list(self.events) if t0 <= e.seen < t1]

    def first_advance_after(self, t: float, past: dict[int, int]) -> Checkpoint | None:
        """The first checkpoint seen at or after ``t`` whose offset is beyond ``past``."""
        for e in list(self.events):
            if e.seen >= t and e.offset > past.get(e.partition, -1):
                return e
        return None


_JOINED = re.compile(r"Joined group '[^']+' \(generation (\d+)\)")
_REVOKE = re.compile(r"Revoking previously assigned partitions (.*) for group")
_REBALANCE_NO = re.compile(r"rebalance #(\d+)")  # Faust numbers its rebalances; #1 is the first assignment
CHURN = (
    "Restarting on rebalance",
    "because it is rebalancing",
    "RebalanceInProgress",
    "Heartbeat session expired",
    "marking coordinator dead",
    "UnknownMemberId",
    "IllegalGeneration",
)


def group_churn(log: str) -> list[str]:
    """Lines of a worker log that show group churn after the first assignment: a second
    ``Joined group``, a revocation of a non-empty assignment, a rebalance, a heartbeat
    session expiry or a lost membership."""
    out: list[str] = []
    joins = 0
    for ln in log.splitlines():
        if _JOINED.search(ln):
            joins += 1
            if joins > 1:
                out.append(ln)
            continue
        m = _REVOKE.search(ln)
        if m and m.group(1).strip() != "set()":
            out.append(ln)
            continue
        n = _REBALANCE_NO.search(ln)
        if (n and int(n.group(1)) > 1) or any(c.lower() in ln.lower() for c in CHURN):
            out.append(ln)
    return out


def worker_starts(log: str) -> int:
    """How many times the worker process logged its start (1: never restarted)."""
    return log.count("[^Worker]: Starting...")


@dataclass
class PartitionCycle:
    """What one F16 cycle measured (monotonic seconds)."""

    partition_s: float  # how long the proxy forwarded nothing
    acked_at_cut: int  # records published before the partition began
    acked: int  # records published in the cycle (all acknowledged)
    resume_s: float  # heal -> first checkpoint past the offsets checkpointed at the heal
    caught_up_s: float  # heal -> checkpoint covers every acknowledged send
    reconnects: int  # connections the worker opened through the proxy after the heal


def partition_cycle(
    broker: ProxiedBroker,
    watch: CheckpointWatch,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    partition_s: float,
    *,
    reset_on_heal: bool = False,
    timeout_s: float = 120.0,
) -> PartitionCycle:
    """Publish the first third of ``records`` directly to the broker; once the worker has
    checkpointed some of it, make the proxy forward nothing for ``partition_s`` while the
    rest is published (paced, from a background thread: the feed goes on, and the worker
    has records to fetch after the heal however fast it was before), then heal it (after
    aborting the held connections, with ``reset_on_heal``) and time the worker's recovery."""
    head, tail = records[: len(records) // 3], records[len(records) // 3 :]
    assert head and tail, "a burst of at least 3 records"
    start = time.monotonic()
    base = watch.offsets()
    acked_at_cut = publish(broker.bootstrap, topic, head, partition_of=by_symbol)
    wait_for(
        lambda: watch.first_advance_after(start, base),
        timeout_s,
        interval=0.05,
        what="a checkpoint of the burst's first third",
    )
    broker.proxy.blackhole()
    cut = time.monotonic()
    gen = Generator(broker.bootstrap, topic, batch=100, interval_s=0.05).start(tail)
    time.sleep(max(0.0, partition_s - (time.monotonic() - cut)))
    at_heal = watch.offsets()
    accepted = broker.proxy.stats().accepted
    if reset_on_heal:
        broker.proxy.reset()
    broker.proxy.heal()
    healed = time.monotonic()
    first = wait_for(
        lambda: watch.first_advance_after(healed, at_heal),
        timeout_s,
        interval=0.05,
        what="the first checkpoint after the heal",
    )
    acked = acked_at_cut + gen.join(timeout_s)
    wait_for(
        lambda: all(v <= 0 for v in uncovered(gen.acked, watch.offsets()).values()),
        timeout_s,
        interval=0.05,
        what="checkpoints covering the whole log",
        progress=watch.offsets,
    )
    caught_up = time.monotonic() - healed
    return PartitionCycle(
        partition_s, acked_at_cut, acked, first.seen - healed, caught_up, broker.proxy.stats().accepted - accepted
    )
