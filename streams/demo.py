"""``forexd demo``: the whole system on one machine, with nothing but the package.

Starts the embedded broker on a free local port, a worker (all roles) on a SQLite file,
replays the bundled real OANDA EUR/USD ticks at ``speed`` times real time (with a few
malformed and late ticks mixed in, to show the dead-letter path), serves ``/metrics``,
and prints a live table of the latest forecasts. Every child process is ended on exit,
Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forex_diffusion.bundled import MODELS, SAMPLE_TICKS
from forex_diffusion.errors import ServiceUnavailableError, ValidationError
from forex_diffusion.ingest.replaying import records_from_file
from forex_diffusion.wire import decode_forecast, encode

from .broker import EmbeddedBroker, dies_with_parent, free_port
from .kafka import ensure_topics, make_consumer, make_producer
from .settings import Settings
from .signals import TERMINATING, terminating_exits, terminating_masked

__all__ = ["DemoResult", "run_demo"]

logger = logging.getLogger(__name__)

SAMPLE = SAMPLE_TICKS
TOPICS = ("ticks", "candles", "indicators", "forecasts", "drift", "models", "deadletter", "retrain.requests")
READY_TIMEOUT_S = 600.0  # the longest wait for the worker's first /metrics answer
# a retrain small enough for a demo: the loop closes within a minute
DEMO_JOB = {
    "horizon": 24,
    "train_candles": 200,
    "holdout_candles": 60,
    "warmup_candles": 48,
    "eval_every": 4,
    "eval_samples": 16,
    "train": {
        "max_steps": 60,
        "max_minutes": 0.5,
        "width": 32,
        "cond_width": 32,
        "blocks": 1,
        "val_windows": 64,
        "val_samples": 8,
        "calib_windows": 128,
        "test_windows": 128,
        "eval_every": 20,
        "batch_size": 128,
    },
}


#: Forecasts a :class:`DemoResult` keeps (the latest): a demo left running for days kept
#: every forecast it received, a memory that grew without bound.
FORECASTS_KEPT = 1_000
_GONE = "the reader of the demo's output went away"


class DemoResult:
    """What a demo run did (for the caller and the tests).

    ``forecasts`` holds the latest ``keep`` forecasts received, oldest first; ``received``
    counts every one, ``dropped`` those no longer kept.
    """

    def __init__(self, keep: int = FORECASTS_KEPT) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.keep = keep
        self.forecasts: list[dict[str, Any]] = []
        self.received = 0  # forecasts decoded, kept or not
        self.refused = 0  # fx.forecasts records the wire's decoder refused (skipped, each logged)
        self.unshown = 0  # forecasts the caller's ``show`` failed on (each logged with its traceback)
        self.published = 0
        self.metrics_url = ""
        self.metrics_text = ""
        self.pids: list[int] = []
        self.data_dir: Path | None = None
        self.ready_s = 0.0  # seconds from the worker's launch to its first /metrics answer

    @property
    def dropped(self) -> int:
        """Forecasts received and no longer kept in ``forecasts``."""
        return self.received - len(self.forecasts)

    def add_forecast(self, rec: dict[str, Any]) -> None:
        """Keep ``rec`` as the latest forecast, forgetting the oldest past ``keep``."""
        self.received += 1
        self.forecasts.append(rec)
        if len(self.forecasts) > self.keep:
            del self.forecasts[0]  # ``keep`` references moved: a deque would not compare equal to a list


def _bad_and_late(first: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """A few refused messages: malformed JSON, NaN price, unknown symbol, a late tick."""
    ts = int(first["ts"])
    return [
        (b"EURUSD", b'{"v":1,"symbol":"EURUSD","ts":'),
        (b"EURUSD", b'{"v":1,"symbol":"EURUSD","ts":%d,"bid":NaN,"ask":1.2}' % ts),
        (b"XAUUSD", encode({"v": 1, "symbol": "XAUUSD", "ts": ts, "bid": 2000.1, "ask": 2000.3})),
        (b"EURUSD", encode({**first, "ts": ts})),  # replayed after later ticks: late
    ]


async def _replay(settings: Settings, speed: float, result: DemoResult, stop: asyncio.Event) -> None:
    _, _, records = records_from_file(SAMPLE, symbol="EURUSD")
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    topic = settings.topic("ticks")
    t0 = time.monotonic()
    first_ts: int | None = None
    first_value: dict[str, Any] | None = None
    try:
        for i, (key, ts, value) in enumerate(records):
            if stop.is_set():
                break
            if first_ts is None:
                first_ts, first_value = ts, json.loads(value)
            due = (ts - first_ts) / 1000.0 / speed
            lag = due - (time.monotonic() - t0)
            if lag > 0:
                await asyncio.sleep(lag)
            await producer.send(topic, value=value, key=key.encode())
            result.published += 1
            if i == 2_000 and first_value is not None:
                for k, v in _bad_and_late(first_value):
                    await producer.send(topic, value=v, key=k)
        await producer.flush()
    finally:
        await producer.stop()


def _num(x: Any, spec: str = ".5f", unit: str = "") -> str:
    """A number cell: ``-`` for what the record leaves out (null: not finite)."""
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    return format(x, spec) + unit if ok else "-"


def _fmt(rec: dict[str, Any]) -> list[str]:
    """The table row of a decoded ``fx.forecasts`` record (:func:`~forex_diffusion.wire.decode_forecast`):
    symbol, timeframe, as-of time, median [5 %, 95 %] at steps 1, 6 and the horizon, p_up at
    step 1, model version and latency. Total over every record the decoder passes: a level,
    step or quantile it does not carry (a short horizon, other levels, null) shows as ``-``."""
    q = rec.get("quantiles") or []
    levels = rec.get("levels") or []
    at = [levels.index(lv) if lv in levels else None for lv in (0.5, 0.05, 0.95)]

    def cell(step: int) -> str:
        row = q[step - 1] if 1 <= step <= len(q) else []
        m, lo, hi = (_num(row[i]) if i is not None and i < len(row) else "-" for i in at)
        return f"{m} [{lo}, {hi}]"

    as_of = rec.get("as_of_ms")
    try:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(as_of / 1000)) if isinstance(as_of, int) else "-"
    except (OverflowError, OSError, ValueError):
        when = "-"
    p_up, latency = rec.get("p_up") or [None], rec.get("latency_s")
    out = [str(rec.get("symbol", "-")), str(rec.get("timeframe", "-")), when]
    out += [cell(step) for step in (1, 6, len(q))]
    out.append(_num(p_up[0], ".2f"))
    out.append(str(rec.get("model_version", "-"))[:24])
    out.append(_num(latency * 1000 if isinstance(latency, (int, float)) else None, ".1f", " ms"))
    return out


class _OutputGone(Exception):
    """The reader of what the demo shows went away. Carries the error that told it (``show``'s
    ``BrokenPipeError``, rich's ``SystemExit(1)``, or the one :func:`_follow_output` makes) out
    of the event loop to :func:`run_demo`, which raises it again once everything is stopped: a
    ``SystemExit`` must not cross an asyncio task (the loop would stop there, cleanup undone)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def _broken_pipe(exc: BaseException) -> bool:
    """Whether ``exc`` says the output's reader went away: a ``BrokenPipeError``, or the
    ``SystemExit(1)`` rich's console raises in its place (``Console.on_broken_pipe``)."""
    if isinstance(exc, SystemExit):
        return isinstance(exc.__context__, BrokenPipeError)
    return isinstance(exc, BrokenPipeError)


def _take(value: bytes | None, result: DemoResult, show: Callable[[dict[str, Any]], None], where: str) -> None:
    """Decode one ``fx.forecasts`` value with the wire's decoder and show it. A refused one (a
    tombstone, not JSON, a missing or wrong field) is counted in ``result.refused`` and logged
    in one line; a forecast ``show`` fails on is counted in ``result.unshown`` and logged with
    its traceback. Neither stops the demo. A broken pipe from ``show`` (its reader went away:
    ``forexd demo --plain | head -1``) does: it is raised as :class:`_OutputGone`, unlogged."""
    try:
        rec = decode_forecast(value)  # type: ignore[arg-type]  # None: a tombstone, refused
    except ValidationError as exc:
        result.refused += 1
        logger.warning("demo.forecast_refused %s reason=%s: %s (skipped)", where, exc.reason.value, exc.detail[:200])
        return
    result.add_forecast(rec)
    try:
        show(rec)
    except (BrokenPipeError, SystemExit) as exc:  # before Exception: a pipe gone is no display bug
        if not _broken_pipe(exc):
            raise
        raise _OutputGone(exc) from exc
    except Exception as exc:  # noqa: BLE001 - a bug of the display: the watch goes on
        result.unshown += 1
        logger.error("demo.show_failed %s error=%s", where, type(exc).__name__, exc_info=exc)


async def _watch(
    settings: Settings, result: DemoResult, stop: asyncio.Event, show: Callable[[dict[str, Any]], None]
) -> None:
    consumer = make_consumer(settings, settings.topic("forecasts"))
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    _take(m.value, result, show, f"partition={m.partition} offset={m.offset}")
    except _OutputGone:
        stop.set()  # nobody sees the demo any more: it ends
        raise
    finally:
        await consumer.stop()


async def _follow_output(gone: Callable[[], bool], stop: asyncio.Event) -> None:
    """Until ``stop``, ask ``gone()`` twice a second; when it holds, set ``stop`` and raise
    :class:`_OutputGone`. Nothing written would tell it otherwise: the live table writes
    nothing to a pipe until the end, and no forecast comes while the worker starts."""
    while not stop.is_set():
        if gone():
            stop.set()
            raise _OutputGone(BrokenPipeError(errno.EPIPE, _GONE))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _scrape(url: str) -> str:
    loop = asyncio.get_running_loop()

    def get() -> str:
        import urllib.request

        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (our own loopback endpoint)
            return str(resp.read().decode())

    return await loop.run_in_executor(None, get)


def run_demo(
    *,
    duration: float | None = 120.0,
    speed: float = 600.0,
    data_dir: Path | None = None,
    metrics_port: int | None = None,
    show: Callable[[dict[str, Any]], None] | None = None,
    keep: bool = False,
    until: Callable[[DemoResult], bool] | None = None,
    poll_s: float = 2.0,
    gone: Callable[[], bool] | None = None,
) -> DemoResult:
    """Run the demo for ``duration`` seconds (None: until Ctrl-C); return what happened.

    With ``until``, the demo also ends as soon as ``until(result)`` holds, checked every
    ``poll_s`` seconds after a fresh scrape of ``/metrics`` into ``result.metrics_text``:
    callers that wait for progress (the tests) pass ``duration`` as a generous ceiling.

    The output's reader going away ends it too, at once: ``show`` raising a broken pipe
    (``BrokenPipeError``, or rich's ``SystemExit(1)``), or ``gone()`` holding (asked twice a
    second from the start: the command line passes whether its standard output's reader went
    away). Everything is stopped and removed as for any other end (broker, worker, replay;
    the temporary directory), then that error is raised (``gone()``'s: ``BrokenPipeError``).
    """
    if gone is not None and gone():  # nothing started yet
        raise BrokenPipeError(errno.EPIPE, _GONE)
    result = DemoResult()
    own_dir = data_dir is None
    data: Path | None = data_dir
    broker: EmbeddedBroker | None = None
    worker: subprocess.Popen[bytes] | None = None
    log: Any = None
    output_error: BaseException | None = None
    # a SIGTERM while the demo runs stops it as Ctrl-C does (its loop's handler), and then ends
    # it as one at any other time does, 128 + 15 after the cleanup (it was exit 0, "done")
    signalled: list[int] = []
    # SIGTERM or SIGHUP before the demo's own handlers are set (starting the broker and the
    # worker takes seconds), or while it stops, ends it through the cleanup below: it left its
    # forexd-demo-* directory behind
    with terminating_exits():
        try:
            with terminating_masked():  # the directory is made and named at once
                data = Path(tempfile.mkdtemp(prefix="forexd-demo-")) if data_dir is None else data_dir
            data.mkdir(parents=True, exist_ok=True)
            result.data_dir = data
            # the broker and the worker die with the demo, even with a ``kill -9`` of it
            broker = EmbeddedBroker(log_path=data / "broker.log", die_with_parent=True)
            broker.start()  # named first: a signal while it starts still stops it below
            result.pids.append(broker.proc.pid if broker.proc else -1)
            settings = _demo_settings(broker.url, data, metrics_port or free_port())
            t_start = time.monotonic()
            log = open(data / "worker.log", "ab")  # noqa: SIM115
            worker = w = _start_worker(settings, log)
            result.pids.append(w.pid)
            result.metrics_url = f"http://127.0.0.1:{settings.metrics_port}/metrics"

            async def main() -> None:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()

                def stopped_by(sig: signal.Signals) -> None:
                    if sig != signal.SIGINT:  # Ctrl-C is how a demo without --duration ends: done
                        signalled.append(sig)
                    stop.set()

                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError):
                        loop.add_signal_handler(sig, stopped_by, sig)
                tasks: dict[str, asyncio.Future[None]] = {}
                if gone is not None:
                    tasks["output"] = asyncio.ensure_future(_follow_output(gone, stop))
                lost: _OutputGone | None = None
                try:
                    await ensure_topics(settings, [settings.topic(t) for t in TOPICS])
                    await _wait_ready(w, result.metrics_url, stop)
                    if not stop.is_set():  # no replay after Ctrl-C or the output gone while the worker started
                        result.ready_s = time.monotonic() - t_start
                        tasks["replay"] = asyncio.ensure_future(_replay(settings, speed, result, stop))
                        tasks["watch"] = asyncio.ensure_future(_watch(settings, result, stop, show or (lambda r: None)))
                        await _run_until(result, stop, duration, until, poll_s)
                finally:
                    stop.set()
                    for t in tasks.values():
                        t.cancel()
                    for name, res in zip(
                        tasks, await asyncio.gather(*tasks.values(), return_exceptions=True), strict=True
                    ):
                        if isinstance(res, _OutputGone):
                            lost = lost or res
                        elif isinstance(res, Exception):
                            # not hidden: a task that ended early stopped its part of the demo
                            logger.error("demo.task_failed task=%s error=%s", name, type(res).__name__, exc_info=res)
                if lost is not None:
                    raise lost

            asyncio.run(main())
        except _OutputGone as exc:
            output_error = exc.error
        finally:
            # stopped and removed whole, then a signal that came ends it (asyncio set SIGTERM
            # back to its default when its loop closed: ours again)
            remove = data if own_dir and not keep else None
            try:
                with terminating_exits(), terminating_masked():
                    _stop_all(worker, log, broker, remove)
            except KeyboardInterrupt:  # the interrupt that hurried it, or one before it took Ctrl-C
                with terminating_exits(), terminating_masked():
                    _stop_all(worker, log, broker, remove)  # each step done once: nothing, or what was left
                raise
            if signalled:  # as a SIGTERM during the cleanup: after it, by that signal
                raise SystemExit(128 + signalled[0])
    if output_error is not None:
        raise output_error  # as ``show`` raised it: the command line tells a reader gone by it
    return result


def _demo_settings(broker_url: str, data: Path, port: int) -> Settings:
    """The demo worker's settings: one pair, three timeframes, the bundled 1-minute model
    (copied into ``data`` so the demo's retrains never touch the package)."""
    models = data / "models"
    if MODELS.exists() and not models.exists():
        shutil.copytree(MODELS, models)
    return Settings(
        broker_url=broker_url,
        data_dir=data,
        symbols=("EURUSD",),
        timeframes=("1m", "5m", "1h"),
        forecast_timeframes=("1m",),
        horizon=24,
        model_dir=models,
        metrics_port=port,
        idle_close_s=3.0,
        retrain_job_config=json.dumps(DEMO_JOB),
    )


def _start_worker(settings: Settings, log: Any) -> subprocess.Popen[bytes]:
    """``forexd worker --role all`` in its own process group, configured as ``settings`` (and
    nothing else of the caller's ``FOREXD_*`` environment), its output into ``log``; SIGTERM
    (its final checkpoint) when this process dies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    env.update(
        {
            "FOREXD_BROKER_URL": settings.broker_url,
            "FOREXD_DATA_DIR": str(settings.data_dir),
            "FOREXD_SYMBOLS": ",".join(settings.symbols),
            "FOREXD_TIMEFRAMES": ",".join(settings.timeframes),
            "FOREXD_FORECAST_TIMEFRAMES": ",".join(settings.forecast_timeframes),
            "FOREXD_HORIZON": str(settings.horizon),
            "FOREXD_MODEL_DIR": str(settings.model_dir),
            "FOREXD_METRICS_PORT": str(settings.metrics_port),
            "FOREXD_IDLE_CLOSE_S": f"{settings.idle_close_s:g}",
            "FOREXD_RETRAIN_JOB_CONFIG": settings.retrain_job_config or "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--role", "all", "--loglevel", "info"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=settings.data_dir,
        preexec_fn=dies_with_parent(),  # noqa: PLW1509 - see dies_with_parent
    )


async def _wait_ready(worker: subprocess.Popen[bytes], metrics_url: str, stop: asyncio.Event) -> None:
    """Wait until the worker serves ``/metrics``: the replay and the duration start then (on a
    busy machine its start-up, torch and the models, can take longer than a short duration)."""
    loop = asyncio.get_running_loop()
    ready_by = loop.time() + READY_TIMEOUT_S
    while not stop.is_set():
        try:
            await _scrape(metrics_url)
            return
        except Exception as exc:  # noqa: BLE001 - not listening yet
            if worker.poll() is not None:
                raise ServiceUnavailableError(
                    "demo worker",
                    metrics_url,
                    f"it exited with code {worker.returncode} before it was ready; "
                    "run with --data-dir DIR to keep its log",
                ) from exc
            if loop.time() > ready_by:
                raise ServiceUnavailableError(
                    "demo worker",
                    metrics_url,
                    f"not ready within {READY_TIMEOUT_S:.0f} s; run with --data-dir DIR to keep its log",
                ) from exc
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def _run_until(
    result: DemoResult,
    stop: asyncio.Event,
    duration: float | None,
    until: Callable[[DemoResult], bool] | None,
    poll_s: float,
) -> None:
    """Until ``stop``, the end of ``duration``, or ``until(result)`` on a fresh scrape; then a
    last scrape into ``result.metrics_text``."""
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    while not stop.is_set():
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            break
        wait = left if until is None else (poll_s if left is None else min(poll_s, left))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        if until is not None and not stop.is_set():
            with contextlib.suppress(Exception):  # the worker may not serve /metrics yet
                result.metrics_text = await _scrape(result.metrics_url)
            if until(result):
                break
    with contextlib.suppress(Exception):
        result.metrics_text = await _scrape(result.metrics_url)


def _stop_all(
    worker: subprocess.Popen[bytes] | None, log: Any, broker: EmbeddedBroker | None, remove: Path | None
) -> None:
    """Stop the worker (its final checkpoint) and the broker, close the worker's log, remove
    ``remove``. Ctrl-C meanwhile (a user pressing it again), SIGTERM or SIGHUP hurries it: what
    it waits for is killed instead, the rest is still done, and the signal goes on after.

    Ctrl-C only cuts into the waits (the worker's and the broker's SIGTERM grace); elsewhere it
    is noted (one that raised between two steps, or before the handler was put back, left the
    directory, the broker or the handler itself). One before that handler is set, or after it
    is put back (the default one raises), has the steps done again: each is done once."""
    hurried: list[int] = []
    try:
        while True:
            try:
                _stop_steps(worker, log, broker, remove, hurried)
                break
            except KeyboardInterrupt:  # from the handler before or after ours: noted, all done again
                hurried.append(signal.SIGINT)
    finally:  # also when a step raised: the signal was taken from the caller's mask, not lost
        for sig in dict.fromkeys(hurried):  # a SIGTERM or SIGHUP that hurried it: now the caller's (masked: after)
            if sig != signal.SIGINT:
                signal.raise_signal(sig)
    if signal.SIGINT in hurried:
        raise KeyboardInterrupt


def _stop_steps(
    worker: subprocess.Popen[bytes] | None,
    log: Any,
    broker: EmbeddedBroker | None,
    remove: Path | None,
    hurried: list[int],
) -> None:
    """:func:`_stop_all`'s steps, with Ctrl-C, SIGTERM and SIGHUP noted in ``hurried`` (the
    main thread only)."""
    waiting = [False]  # in the worker's SIGTERM grace: Ctrl-C ends the wait (KeyboardInterrupt)

    def hurry(signum: int, frame: Any) -> None:
        hurried.append(signum)
        if waiting[0] and signum == signal.SIGINT:
            waiting[0] = False
            raise KeyboardInterrupt
        if waiting[0] and worker is not None:  # SIGTERM, SIGHUP: nothing raised; what it waits for dies
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, hurry) if main else None
    # SIGTERM and SIGHUP hurry it too (they waited out the 20 s + 10 s of grace), and are
    # passed on after: taken here from run_demo's terminating_masked (its handler, its mask),
    # which gets them back in the finally. Ctrl-C only notes meanwhile: nothing raises there.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ()) if main and hasattr(signal, "pthread_sigmask") else None
    others: dict[signal.Signals, Any] = {}
    try:
        if main:
            for sig in TERMINATING:
                old = signal.getsignal(sig)
                if old is not signal.SIG_IGN and old is not None:  # ignored (nohup): stays so
                    others[sig] = old
                    signal.signal(sig, hurry)
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, list(others))  # one pending: hurry takes it now
        if worker is not None:
            try:
                if not hurried:
                    waiting[0] = True
                    _stop_worker(worker)
                    waiting[0] = False
            except KeyboardInterrupt:
                waiting[0] = False
            if hurried:
                _kill_group(worker)
        if log is not None:
            log.close()
        if broker is not None:
            broker.stop(at_once=bool(hurried), cut=lambda: bool(hurried))
        if remove is not None:
            shutil.rmtree(remove, ignore_errors=True)
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, old in others.items():
            signal.signal(sig, old)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group (its final checkpoint), SIGKILL after 20 s."""
    if worker.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it ended since
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            _kill_group(worker)


def _kill_group(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's process group (what is left of it) and reap the worker."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
