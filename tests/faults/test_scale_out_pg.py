"""Issue 15: scale-out on PostgreSQL. Tick workers of one group share one PostgreSQL across 6
partitions and 12 symbols; workers are added, killed (SIGKILL) and removed (SIGTERM) while
ticks arrive. Every hand-over restores the state checkpointed with its offsets in the shared
database, so the stored candles equal the single-worker oracle (the ticks topic folded
through the core in one process): nothing lost, nothing doubled, nothing differing.

The short form (default suite) runs one add/kill/remove cycle with three workers; the
``soak`` form runs 20 cycles and prints the lost/extra/differing counts and the candle
records seen twice on ``fx.candles`` (at-least-once, allowed). Waits follow progress: the
database checkpoint covering every published offset (group_drivers.CheckpointWatch).
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.wire import encode

from ..integration.kafka_io import publish, read_all
from ..waiting import wait_for_workers
from .group_drivers import CheckpointWatch, Feed, shifted
from .harness import DUR, Record, ckey, db_candles, fold, hour_bursts, make_topics

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

SYMBOLS = (
    "EURUSD",
    "GBPUSD",
    "USDJPY",
    "AUDUSD",
    "USDCHF",
    "USDCAD",
    "NZDUSD",
    "EURGBP",
    "EURJPY",
    "GBPJPY",
    "EURCHF",
    "AUDJPY",
)
PARTITIONS = 6
PARTITION = {s.encode(): i % PARTITIONS for i, s in enumerate(SYMBOLS)}  # two symbols per partition
# each symbol's quotes: EUR/USD's scaled to the pair's level (a distinct, plausible series each)
LEVEL = {
    "EURUSD": 1.0,
    "GBPUSD": 1.21,
    "USDJPY": 73.0,
    "AUDUSD": 0.68,
    "USDCHF": 0.65,
    "USDCAD": 0.80,
    "NZDUSD": 0.62,
    "EURGBP": 0.61,
    "EURJPY": 101.0,
    "GBPJPY": 123.0,
    "EURCHF": 0.88,
    "AUDJPY": 69.0,
}
STEP_TIMEOUT_S = 180.0  # longest wait without checkpoint (or the live workers' log) progress


def partition_of(key: bytes | None) -> int:
    return PARTITION.get(key or b"", 0)


def twelve(burst: Sequence[Record]) -> list[Record]:
    """Each EUR/USD tick of ``burst`` as one tick of every symbol, at that symbol's level."""
    out: list[Record] = []
    for _k, value in burst:
        v = json.loads(value)
        for s in SYMBOLS:
            digits = 3 if s.endswith("JPY") else 5
            out.append(
                (
                    s.encode(),
                    encode(
                        {
                            **v,
                            "symbol": s,
                            "bid": round(v["bid"] * LEVEL[s], digits),
                            "ask": round(v["ask"] * LEVEL[s], digits),
                            "tick_id": f"{s}:{v['tick_id']}",
                        }
                    ),
                )
            )
    return out


class SymbolFeed(Feed):
    """group_drivers.Feed publishing with this test's partitioner (two symbols per partition)."""

    def publish(self, records: Sequence[Record]) -> int:
        after = dict(self.ends)
        for key, _v in records:
            after[partition_of(key)] = after.get(partition_of(key), 0) + 1
        with self._lock:
            self.pending_since.append((time.monotonic(), after))
        n = publish(self.bootstrap, self.topic, records, partition_of)
        with self._lock:
            self.ends = after
            self.published += n
        return n


def _restored(log: str) -> set[int]:
    return {int(p) for p in re.findall(r"progress\.restored \S+ partition=(\d+)", log)}


class Group:
    """The workers of one consumer group, their feed and the checkpoint watch."""

    def __init__(self, env: dict[str, str], spawn_worker: Callable[..., Any], bootstrap: str, bursts: Any) -> None:
        self.env, self.spawn_worker, self.bootstrap = env, spawn_worker, bootstrap
        self.topic = f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
        self.feed = SymbolFeed(bootstrap, self.topic)
        self.watch = CheckpointWatch(env["FOREXD_DATABASE_URL"], self.topic, self.feed)
        self.bursts = bursts
        self.live: list[Any] = []
        self.gone: list[Any] = []
        self.spawned = 0
        self.steps: Counter[str] = Counter()

    def add(self, n: int = 1) -> list[Any]:
        new = []
        for _ in range(n):
            data = Path(self.env["FOREXD_DATA_DIR"]).parent / f"var-w{self.spawned}"
            w = self.spawn_worker(dict(self.env, FOREXD_DATA_DIR=str(data)), role="ticks", name=f"w{self.spawned}")
            self.spawned += 1
            new.append(w)
        self.live += new
        self.steps["add"] += n
        return new

    def remove(self, w: Any, sig: int) -> None:
        w.kill(sig)
        assert w.wait(60) is not None, f"{w.log_path.name} did not exit after {signal.Signals(sig).name}"
        if sig == signal.SIGTERM:
            assert w.wait(0) == 0, f"{w.log_path.name} exited {w.wait(0)} on SIGTERM:\n{w.log()[-2000:]}"
        self.live.remove(w)
        self.gone.append(w)
        self.steps["kill" if sig == signal.SIGKILL else "remove"] += 1

    def burst_and_settle(self, phase: str) -> None:
        """Publish the next burst and wait until the database checkpoint covers every offset."""
        self.watch.phase = phase
        self.feed.publish(twelve(next(self.bursts)))
        try:
            wait_for_workers(
                lambda: self.watch.covers(self.feed.ends),
                *self.live,
                what=f"{phase}: the checkpoint covering every published tick",
                timeout=STEP_TIMEOUT_S,
                progress=self.watch.latest,
            )
        except AssertionError as exc:
            logs = "\n".join(f"--- {w.log_path.name}\n{w.log()[-2000:]}" for w in self.live + self.gone[-2:])
            raise AssertionError(f"{exc} ends={self.feed.ends} checkpoint={self.watch.latest()}\n{logs}") from None

    def wait_ready(self, workers: Sequence[Any]) -> None:
        for w in workers:
            wait_for_workers(
                lambda w=w: "Worker]: Ready" in w.log() or not w.alive(),
                w,
                what=f"{w.log_path.name} ready",
                interval=0.3,
            )
            assert w.alive(), w.log()[-3000:]


def describe_difference(want: dict[Any, Any], got: dict[Any, Any], most: int = 5) -> str:
    """How the stored candles differ from the oracle: counts, then the first few of each kind,
    so a failed soak says which bars went wrong (the schema is dropped with the test)."""
    lost = sorted(want.keys() - got.keys())
    extra = sorted(got.keys() - want.keys())
    differing = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
    lines = [f"lost={len(lost)} extra={len(extra)} differing={len(differing)} of {len(want)} expected"]
    lines += [f"  lost {k}: want {want[k]}" for k in lost[:most]]
    lines += [f"  extra {k}: got {got[k]}" for k in extra[:most]]
    lines += [f"  differing {k}:\n    want {want[k]}\n    got  {got[k]}" for k in differing[:most]]
    return "\n".join(lines)


def compare_with_oracle(group: Group) -> dict[str, int]:
    """The stored candles against the oracle folded from the whole ticks topic; the counts."""
    url, prefix = group.env["FOREXD_DATABASE_URL"], group.env["FOREXD_TOPIC_PREFIX"]
    ticks = read_all(group.bootstrap, group.topic, idle_s=1.0, timeout_s=60, expect=group.feed.published)
    assert len(ticks) == group.feed.published, (len(ticks), group.feed.published)
    oracle = fold(ticks, symbols=SYMBOLS, timeframes=("1m", "5m", "1h"))
    assert {c.symbol for c in oracle.candles} == set(SYMBOLS)  # every symbol made candles
    want = {ckey(c): c for c in oracle.candles}
    last: Any = None

    def stored() -> Any:
        nonlocal last
        last = {ckey(c): c for c in db_candles(url, SYMBOLS)}
        return last == want

    # the last bars close on the idle timer once their burst is checkpointed: progress = rows
    try:
        wait_for_workers(
            stored,
            *group.live,
            what="stored candles equal to the oracle",
            timeout=90,
            interval=0.5,
            progress=lambda: len(last or ()),
        )
    except AssertionError as exc:
        dead = read_all(group.bootstrap, f"{prefix}fx.deadletter", idle_s=1.0, timeout_s=15)
        reasons = Counter(m.group(1) for d in dead if (m := re.search(rb'"reason":"(\w+)"', bytes(d.value))))
        raise AssertionError(
            f"{describe_difference(want, last or {})}\ndead letters by reason: {dict(reasons)}\n{exc}"
        ) from None
    got: dict[Any, Any] = last
    topic = read_all(group.bootstrap, f"{prefix}fx.candles", expect=len(want), timeout_s=30)
    copies = Counter((m.key, m.value) for m in topic)
    return {
        "expected": len(want),
        "stored": len(got),
        "lost": len(want.keys() - got.keys()),
        "extra": len(got.keys() - want.keys()),
        "differing": sum(1 for k in want.keys() & got.keys() if want[k] != got[k]),
        "topic_duplicates": sum(n - 1 for n in copies.values() if n > 1),
    }


def _group(fault_env: dict[str, str], pg_url: str, spawn_worker: Any, kafka_bootstrap: str, bursts: int) -> Group:
    env = dict(
        fault_env,
        FOREXD_DATABASE_URL=pg_url,
        FOREXD_SYMBOLS=",".join(SYMBOLS),
        FOREXD_PARTITIONS=str(PARTITIONS),
        # The idle close treats a caught-up feed that is quiet this long as quiet for good: it
        # closes the series' bars, and the rest of a burst after a pause in publishing is late.
        # The oracle has no such pause. With the fault suite's 3 s, a 3.5 s stall of this test's
        # producer in the middle of a burst (a machine at load 8) changes the candles at 746 of
        # 1,190 points of the first ten bursts (ticks come 0.1-3 s apart; the core run with the
        # stall against without). 30 s is far above any such stall; the last bars of the run
        # close 30 s after it, within compare_with_oracle's 90 s without progress.
        FOREXD_IDLE_CLOSE_S="30",
    )
    make_topics(kafka_bootstrap, env)
    assert set(DUR) == {"1m", "5m", "1h"}
    base = hour_bursts(min(bursts, 71), jpy=False, max_rows=120)  # the sample holds 71 whole hours
    more = [shifted(b, 1) for b in base[: bursts - len(base)]]  # then the same hours a week later
    return Group(env, spawn_worker, kafka_bootstrap, iter(base + more))


def test_three_workers_on_postgres_added_killed_removed_equal_the_oracle(
    fault_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str, pg_url: str
) -> None:
    """Start one worker; add two (three share the 6 partitions); kill one with SIGKILL;
    remove one with SIGTERM. A burst of 12-symbol ticks arrives at each step."""
    g = _group(fault_env, pg_url, spawn_worker, kafka_bootstrap, bursts=4)
    g.watch.start()
    try:
        (a,) = g.add()
        g.wait_ready([a])
        g.burst_and_settle("one worker")
        b, c = g.add(2)
        g.wait_ready([b, c])
        g.burst_and_settle("three workers")
        took_over = _restored(b.log()) | _restored(c.log())
        assert took_over, "neither added worker took a partition:\n" + b.log()[-2000:] + c.log()[-2000:]
        g.remove(b, signal.SIGKILL)
        g.burst_and_settle("after a kill")
        g.remove(c, signal.SIGTERM)
        g.burst_and_settle("after a removal")
        figures = compare_with_oracle(g)
    finally:
        g.watch.stop()
    print(f"scale-out short: {figures} steps={dict(g.steps)} partitions taken by the added workers={took_over}")
    assert figures["lost"] == figures["extra"] == figures["differing"] == 0, figures
    assert a.alive(), a.log()[-3000:]


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_twenty_add_kill_remove_cycles_on_postgres(
    fault_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str, pg_url: str
) -> None:
    """20 cycles, each: add a worker, burst, kill one (SIGKILL), burst, add one, burst, remove
    one (SIGTERM), burst; between 1 and 3 workers always run."""
    cycles = 20
    g = _group(fault_env, pg_url, spawn_worker, kafka_bootstrap, bursts=1 + 4 * cycles)
    g.watch.start()
    try:
        g.wait_ready(g.add(2))
        g.burst_and_settle("start")
        for i in range(cycles):
            g.wait_ready(g.add())
            g.burst_and_settle(f"cycle {i} add")
            g.remove(g.live[0], signal.SIGKILL)  # the oldest: it holds the most partitions
            g.burst_and_settle(f"cycle {i} kill")
            g.wait_ready(g.add())
            g.burst_and_settle(f"cycle {i} add again")
            g.remove(g.live[0], signal.SIGTERM)
            g.burst_and_settle(f"cycle {i} remove")
        figures = compare_with_oracle(g)
    finally:
        g.watch.stop()
    gaps = {p: round(gap.seconds, 1) for p, gap in g.watch.gaps.items()}
    print(
        f"scale-out soak: {cycles} cycles {figures} steps={dict(g.steps)} longest checkpoint gap per partition={gaps}"
    )
    assert figures["lost"] == figures["extra"] == figures["differing"] == 0, figures
