"""Drivers of the kill-storm (F6) and rebalance (F7) fault tests: a feed that publishes
bursts and knows each partition's log end, a watch that polls the workers' DB checkpoint
and measures how long a partition with pending records went without checkpoint progress,
and a supervisor loop that restarts a worker whenever it exits (Faust's ``killer.py``
schedule runs against it)."""

from __future__ import annotations

import json
import random
import signal
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from forex_diffusion.wire import encode

from ..integration.kafka_io import publish
from .harness import Record, by_symbol, checkpoint_offsets

# -- feed ---------------------------------------------------------------------------------


def shifted(burst: Sequence[Record], weeks: int) -> list[Record]:
    """``burst`` moved ``weeks`` weeks later in event time, with fresh tick ids: more whole
    clock hours of real quotes than the bundled sample holds (same weekday and hour, so the
    market-hours policy sees the same session)."""
    out: list[Record] = []
    for key, value in burst:
        v = json.loads(value)
        v["ts"] += weeks * 7 * 86_400_000
        v["tick_id"] = f"w{weeks}:{v['tick_id']}"
        out.append((key, encode(v)))
    return out


class Feed:
    """Publishes bursts to the ticks topic (explicit partition per symbol, ``by_symbol``) and
    records, per partition, the log end after each publish and when that publish began."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.ends: dict[int, int] = {}  # partition -> records published (= log end offset)
        self.published = 0
        self.pending_since: list[tuple[float, dict[int, int]]] = []  # (publish start, ends after it)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def publish(self, records: Sequence[Record]) -> int:
        after = dict(self.ends)
        for key, _v in records:
            p = by_symbol(key)
            after[p] = after.get(p, 0) + 1
        with self._lock:  # visible to the watch from the start of the publish (strict for gaps)
            self.pending_since.append((time.monotonic(), after))
        n = publish(self.bootstrap, self.topic, records, by_symbol)
        with self._lock:
            self.ends = after
            self.published += n
        return n

    def end_at(self, t: float) -> dict[int, int]:
        """Per partition, the log end of every publish begun at or before ``t``."""
        with self._lock:
            ends: dict[int, int] = {}
            for when, after in self.pending_since:
                if when > t:
                    break
                ends = after
            return dict(ends)

    def start_paced(self, bursts: Sequence[Sequence[Record]], period_s: float) -> Feed:
        """Publish ``bursts`` from a background thread, one every ``period_s``."""

        def run() -> None:
            try:
                for b in bursts:
                    t0 = time.monotonic()
                    self.publish(b)
                    if self._stop.wait(max(0.0, period_s - (time.monotonic() - t0))):
                        return
            except BaseException as exc:  # noqa: BLE001 - re-raised by join()
                self.error = exc

        self._thread = threading.Thread(target=run, daemon=True, name="fault-feed")
        self._thread.start()
        return self

    def join(self, timeout_s: float = 300.0) -> int:
        if self._thread is not None:
            self._thread.join(timeout_s)
            assert not self._thread.is_alive(), f"the feed did not finish within {timeout_s}s"
        if self.error is not None:
            raise AssertionError(f"the feed failed: {self.error!r}") from self.error
        return self.published


# -- checkpoint watch ---------------------------------------------------------------------


@dataclass
class Gap:
    seconds: float = 0.0
    start: float = 0.0
    phase: str = ""


class CheckpointWatch:
    """Polls the DB checkpoint of the ticks topic every ``interval_s`` from a thread.

    ``gaps[p]`` is the longest time partition ``p`` had records published beyond its
    checkpoint without the checkpoint advancing: measured from the later of its last
    advance and the start of the publish that left it behind (so a partition caught up
    and idle never counts). ``phase`` (set by the test) labels where the gap began.
    """

    def __init__(self, url: str, topic: str, feed: Feed, *, interval_s: float = 0.25) -> None:
        self.url, self.topic, self.feed, self.interval_s = url, topic, feed, interval_s
        self.phase = ""
        self.samples: list[tuple[float, dict[int, int]]] = []
        self.gaps: dict[int, Gap] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="checkpoint-watch")

    def start(self) -> CheckpointWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def latest(self) -> dict[int, int]:
        return dict(self.samples[-1][1]) if self.samples else {}

    def advanced_after(self, t: float) -> float | None:
        """Monotonic time of the first sample after ``t`` whose checkpoint is ahead of the
        last sample taken at or before ``t``; None if none yet."""
        before: dict[int, int] = {}
        for when, offs in list(self.samples):
            if when <= t:
                before = offs
            elif any(o > before.get(p, -1) for p, o in offs.items()):
                return when
        return None

    def covers(self, ends: dict[int, int]) -> bool:
        got = self.latest()
        return all(got.get(p, -1) >= end - 1 for p, end in ends.items())

    def _run(self) -> None:
        last: dict[int, int] = {}
        since: dict[int, tuple[float, str]] = {}  # partition -> (start of the current wait, phase then)
        while not self._stop.wait(self.interval_s):
            try:
                offs = checkpoint_offsets(self.url, self.topic)
            except Exception:  # noqa: BLE001 - no DB file or table yet, or a write lock
                self.errors += 1
                offs = dict(last)
            now = time.monotonic()
            self.samples.append((now, offs))
            for p, end in self.feed.end_at(now).items():
                ck = offs.get(p, -1)
                if ck >= end - 1:  # caught up: no wait
                    since.pop(p, None)
                    continue
                if p not in since:  # fell behind: since the publish that put it there
                    since[p] = (self._behind_since(p, ck, now), self.phase)
                elif ck > last.get(p, -1):  # progress: the wait starts again
                    since[p] = (now, self.phase)
                start, phase = since[p]
                if now - start > self.gaps.setdefault(p, Gap()).seconds:
                    self.gaps[p] = Gap(now - start, start, phase)
            last = offs

    def _behind_since(self, p: int, ck: int, now: float) -> float:
        """The start of the earliest publish that put partition ``p`` beyond ``ck``."""
        for when, after in list(self.feed.pending_since):
            if after.get(p, 0) - 1 > ck:
                return when
        return now


# -- supervisor ---------------------------------------------------------------------------


@dataclass
class Incarnation:
    worker: Any
    spawned: float
    exited: float | None = None
    signals: list[str] = field(default_factory=list)
    checkpointed: float | None = None  # seconds from spawn to its first checkpoint advance


class Supervisor:
    """Keeps one worker running: a thread restarts it as soon as it exits (like a process
    supervisor), logging each incarnation and the signals it received."""

    def __init__(self, spawn: Callable[..., Any], env: dict[str, str], name: str) -> None:
        self.spawn, self.env, self.name = spawn, env, name
        self.lives: list[Incarnation] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="supervisor")

    def start(self) -> Supervisor:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        w = self.spawn(self.env, role="ticks", name=f"{self.name}{len(self.lives)}")
        with self._lock:
            self.lives.append(Incarnation(w, time.monotonic()))

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            cur = self.lives[-1]
            if not cur.worker.alive():
                cur.exited = time.monotonic()
                self._spawn()

    def signal(self, sig: int) -> Incarnation:
        """Send ``sig`` to the current worker (its process group)."""
        with self._lock:
            cur = self.lives[-1]
            name = signal.Signals(sig).name
            log = cur.worker.log()
            state = (
                "exited"
                if not cur.worker.alive()
                else "ready"
                if "Worker]: Ready" in log
                else "starting"
                if log
                else "importing"
            )
            cur.signals.append(f"{name}@{state}")
            cur.worker.kill(sig)
        return cur

    def stop(self, exit_timeout_s: float = 60.0) -> Any:
        """Stop restarting; the worker running now. A worker signalled last is first let
        exit (a SIGTERM stop takes seconds) and replaced once more, as the loop would."""
        if self._stop.is_set():
            return self.lives[-1].worker
        self._stop.set()
        self._thread.join(10)
        cur = self.lives[-1]
        if cur.signals and cur.worker.wait(exit_timeout_s) is None:
            raise AssertionError(f"{cur.worker.log_path.name} did not exit after {cur.signals}")
        if not cur.worker.alive():
            cur.exited = time.monotonic()
            self._spawn()
        return self.lives[-1].worker


def storm(
    sup: Supervisor,
    rnd: random.Random,
    *,
    terms: int,
    kills: int,
    term_gap: tuple[float, float] = (1.0, 5.0),
    kill_gap: tuple[float, float] = (0.1, 1.0),
    after_ready: bool = False,
) -> list[str]:
    """Faust's ``killer.py`` schedule: ``terms`` SIGTERMs at ``term_gap`` intervals, then
    ``kills`` SIGKILLs at ``kill_gap`` intervals, each to whatever worker runs then.
    ``after_ready``: each interval starts when the current worker is ready (assigned), so
    every signal lands on a consuming worker rather than on one still starting."""
    sent: list[str] = []
    victim: Incarnation | None = None
    for sig, n, gap in ((signal.SIGTERM, terms, term_gap), (signal.SIGKILL, kills, kill_gap)):
        for _ in range(n):
            if after_ready:  # the next worker, not the one signalled last, is assigned
                deadline = time.monotonic() + 180
                while sup.lives[-1] is victim or "Worker]: Ready" not in sup.lives[-1].worker.log():
                    assert time.monotonic() < deadline, "the restarted worker never became ready"
                    time.sleep(0.1)
            time.sleep(rnd.uniform(*gap))
            victim = sup.signal(sig)
            sent.append(signal.Signals(sig).name)
    return sent


def attribute_checkpoints(sup: Supervisor, watch: CheckpointWatch, *, startup_floor_s: float = 0.5) -> None:
    """Fill ``checkpointed`` of each incarnation: spawn to the first checkpoint advance seen
    while it ran (a dying worker's last checkpoint, written before the next spawn, is not
    counted: nothing is attributed within ``startup_floor_s`` of a spawn)."""
    for life in sup.lives:
        t = watch.advanced_after(life.spawned + startup_floor_s)
        end = life.exited if life.exited is not None else float("inf")
        if t is not None and t <= end:
            life.checkpointed = t - life.spawned


def spread(xs: Sequence[float]) -> str:
    return f"median={statistics.median(xs):.1f} max={max(xs):.1f}" if xs else "n/a"
