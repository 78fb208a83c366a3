"""The candle agent: closed candles → features, learners, drift, diffusion forecasts.

Per symbol a :class:`~forex_diffusion.forecasting.SymbolForecaster` holds the whole
per-series state (indicator banks, feature builders, context, learners, drift monitor,
trigger state). Candles are taken in small batches; the forecast requests of a batch go to
the serving models in ONE sampling call per model, run in an executor so the event loop
never blocks. Forecasts, drift events and retrain requests are published; state, offsets
and forecast rows are checkpointed together, like the tick agent's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from forex_diffusion.candle_gate import CandleGate
from forex_diffusion.diffusion.inputs import CrossBook
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ForexDiffusionError, ValidationError
from forex_diffusion.forecasting import CandleOutcome, ForecasterConfig, SymbolForecaster
from forex_diffusion.warm_start import warm_start
from forex_diffusion.wire import (
    decode_candle,
    decode_model_outcome,
    encode_drift,
    encode_forecast,
    encode_indicators,
    encode_retrain_request,
)
from retraining.failpoints import failpoint
from retraining.serving import ModelBook

from ..deadletter import Containment
from ..producer import send_all
from ..progress import PartitionProgress
from .shadow import ShadowLane

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["CandleAgent"]

log = logging.getLogger(__name__)


class CandleAgent:
    """Consume ``fx.candles`` and ``fx.models``; publish forecasts, drift, retrain requests."""

    consumer_name = "candles"

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        # issue 16: one model per forecast timeframe, each at its own horizon (FOREXD_MODELS);
        # with several horizons a retrain request names its series' horizon
        horizons = s.model_horizons
        self.config = ForecasterConfig(
            timeframes=s.timeframes,
            forecast_timeframes=s.forecast_timeframes,
            horizon=s.horizon,
            models=tuple(horizons.items()),
            keyed_horizons=len(set(horizons.values())) > 1,
        )
        self.timeframes = frozenset(s.timeframes)
        self.forecasters: dict[str, SymbolForecaster] = {}
        self.symbols: dict[int, set[str]] = defaultdict(set)
        m = rt.metrics
        self.models = ModelBook(
            rt.engine,
            horizon=s.horizon,
            horizons=horizons,
            device=s.device,
            model_dir=s.model_dir or (s.data_dir / "models"),
            on_rejected=(lambda v, e: m.artifact_rejected()) if m is not None else None,
            touch_bands=s.touch_bands,
        )
        self.progress = PartitionProgress(
            app=rt.app,
            consumer=f"{s.app_id}:{self.consumer_name}",
            topic=s.topic("candles"),
            engine=rt.engine,
            fatal_after_s=s.db_fatal_after_s,
            snapshot=self._snapshot,
            restore=self._restore,
            drop=self._drop,
        )
        self.pending_rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.pending_candles: dict[int, list[Any]] = defaultdict(list)
        self.pending_drift: dict[int, list[Any]] = defaultdict(list)  # DriftEvents, stored with the checkpoint
        self.out: list[tuple[str, bytes, bytes]] = []  # (topic name, key, value)
        self.dead: list[tuple[Any, bytes, list[tuple[str, bytes]]]] = []
        self.contain = Containment(
            source="candles", sink=lambda k, v, h: self.dead.append((k, v, h)), metrics=lambda: self.rt.metrics
        )
        self.gate = CandleGate()  # far-future candles never reach a series (issue 13)
        # issue 16: a challenger in shadow forecasts beside the champion, unpublished, scored live
        self.shadow = ShadowLane(
            self.models,
            metrics=lambda: self.rt.metrics,
            send=lambda kind, key, value: self.out.append((kind, key, value)),
        )
        self.book = CrossBook()  # recent closes of every pair here, for models with a cross-pair input
        self.lock = asyncio.Lock()
        self._flush_task: asyncio.Future[None] | None = None
        # set between batches: a checkpoint captures state only there, never while a batch
        # is half done (its state advanced but its forecasts not yet queued)
        self._idle = asyncio.Event()
        self._idle.set()
        # cleared while checkpoints fail: consumption pauses (Kafka is the buffer)
        self.healthy = asyncio.Event()
        self.healthy.set()
        self.failures = 0
        self.forecasts_emitted = 0

    # -- partition state --------------------------------------------------------------------

    def _snapshot(self, partition: int) -> dict[str, Any]:
        return {
            "symbols": {
                s: self.forecasters[s].snapshot()
                for s in sorted(self.symbols.get(partition, ()))
                if s in self.forecasters
            },
            "shadow": self.shadow.snapshot(self.symbols.get(partition, ())),
        }

    def _restore(self, partition: int, state: dict[str, Any]) -> None:
        for sym, data in state.get("symbols", {}).items():
            self.forecasters[sym] = SymbolForecaster.restore(data, self.config, symbol=sym, book=self.book)
            self.symbols[partition].add(sym)
        self.shadow.restore(state.get("shadow"))

    def _drop(self, partition: int) -> None:
        self.gate.drop(self.symbols.get(partition, ()))
        self.shadow.drop(partition, self.symbols.get(partition, ()))
        for sym in self.symbols.pop(partition, set()):
            self.forecasters.pop(sym, None)
        self.pending_rows.pop(partition, None)
        self.pending_candles.pop(partition, None)
        self.pending_drift.pop(partition, None)

    # -- wiring -----------------------------------------------------------------------------

    def register(self) -> None:
        app, topics = self.rt.app, self.rt.topics

        @app.agent(topics["candles"], name="forexd.candles")
        async def candles(stream: Any) -> None:
            async for events in stream.take_events(64, within=0.05):
                await self.handle_batch([e.message for e in events])

        @app.agent(topics["models"], name="forexd.models")
        async def models(stream: Any) -> None:
            async for value in stream:
                self._close_request(value)
                versions = await asyncio.get_running_loop().run_in_executor(None, self.models.refresh)
                log.info("models.refreshed versions=%s", versions)
                m = self.rt.metrics
                if m is not None:
                    for (sym, tf), v in versions.items():
                        m.model_in_service(f"{sym}/{tf}/{self.models.horizon_of(tf)}", v)

        @app.timer(interval=15.0)
        async def refresh_models() -> None:
            # promotions and rollbacks made from the CLI (no fx.models record) are picked up too
            await asyncio.get_running_loop().run_in_executor(None, self.models.refresh)
            await self.shadow.settle()  # shadows running here: export, and decide any that are due

        @app.timer(interval=self.rt.settings.snapshot_interval_s)
        async def checkpoint() -> None:
            if self.progress.dirty or self.out or self.dead:
                self.schedule_flush()

        @app.on_partitions_assigned.connect
        async def _assigned(sender: Any, assigned: Any, **_: Any) -> None:
            await self.progress.on_assigned(app, assigned)

        @app.on_partitions_revoked.connect
        async def _revoked(sender: Any, revoked: Any, **_: Any) -> None:
            await self.progress.on_revoked(revoked, checkpoint=self.flush)

        @app.on_before_shutdown.connect
        async def _stopping(sender: Any, **_: Any) -> None:
            await self.progress.on_shutdown(self.flush)

    def _close_request(self, value: bytes) -> None:
        """An outcome on fx.models finishes its request: the trigger may open new ones."""
        try:
            data = decode_model_outcome(value)
        except ValidationError as exc:
            log.warning("models.refused reason=%s error=%s", exc.reason.value, exc.detail[:200])
            return
        f = self.forecasters.get(data["symbol"])
        if f is not None:
            f.close_request(data["timeframe"], data["request_id"])

    # -- processing -------------------------------------------------------------------------

    def _process(self, msg: Any) -> tuple[int, CandleOutcome, Any] | None:
        """Decode → admit → forecaster → encode the side outputs, for one message.

        Containment (issue 13): whatever fails -- decode, the event-time gate, processing,
        encoding what it produced -- dead-letters the message once, and the batch goes on.
        The candle is checked (shape, key, time) before it touches any state.
        """
        p = msg.partition
        with self.contain.record(msg) as rec:
            candle = decode_candle(
                msg.value,
                key=msg.key,
                instruments=self.rt.instruments,
                timeframes=self.timeframes,
                max_bytes=self.rt.settings.max_message_bytes,
            )
            rec.symbol = candle.symbol
            if not candle.final:
                return None
            rec.stage = "validate"
            f = self.forecasters.get(candle.symbol)
            watermark = f.last_open.get(candle.timeframe) if f is not None else None
            reason = self.gate.check(candle, watermark_ms=watermark, now_ms=int(time.time() * 1000))
            if reason is not None:
                raise ValidationError(
                    reason,
                    f"{candle.symbol} {candle.timeframe} open_time={candle.open_ms} "
                    f"ahead of the series (last open {watermark}) or the clock",
                )
            rec.stage = "process"
            if f is None:
                f = self.forecasters[candle.symbol] = SymbolForecaster(candle.symbol, self.config, book=self.book)
            f.cold = set()  # warmed before its first candle here (_warm) or not at all: it goes on live
            self.symbols[p].add(candle.symbol)
            out = f.on_candle(candle)
            rec.stage = "encode"
            side = self._encode_side_outputs(out)
            rec.stage = "account"
            self.out.extend(side)
            self._account_side_outputs(p, out)
            if not out.duplicate:
                self.shadow.on_candle(p, candle)
                self.pending_candles[p].append(candle)
                if self.rt.metrics is not None:
                    self.rt.metrics.candles_processed(candle.symbol, candle.timeframe)
            return p, out, msg
        return None

    async def handle_batch(self, msgs: list[Any]) -> None:
        """Process a batch of candle messages and forecast every due series in one call per model."""
        while not self.healthy.is_set():
            self.schedule_flush()
            try:
                await asyncio.wait_for(self.healthy.wait(), timeout=1.0)
            except TimeoutError:
                continue
        self._idle.clear()
        try:
            await self._handle_batch(msgs)
        finally:
            self._idle.set()

    async def _warm(self, msgs: list[Any]) -> None:
        """Warm start (issue 16): each series of the batch without checkpointed state -- a
        symbol new to this worker, or a forecast timeframe its restored state lacks -- is
        rebuilt from the stored candles before its first candle here, in an executor (the
        event loop keeps serving the broker). A failure is logged and the series starts cold."""
        firsts: dict[str, Candle] = {}
        for msg in msgs:
            try:
                sym = msg.key.decode() if isinstance(msg.key, bytes) else None
            except UnicodeDecodeError:
                continue
            f = self.forecasters.get(sym) if sym is not None else None
            if sym is None or sym in firsts or (f is not None and not f.cold):
                continue
            if self.progress.restoring:
                await self.progress.restored(msg.partition)
                f = self.forecasters.get(sym)
                if f is not None and not f.cold:
                    continue
            last = self.progress.offsets.get(msg.partition)
            if last is not None and msg.offset <= last:
                continue  # already in the restored state (admit() decides; this only skips)
            try:  # refused candles are dead-lettered by _process, not here
                candle = decode_candle(
                    msg.value,
                    key=msg.key,
                    instruments=self.rt.instruments,
                    timeframes=self.timeframes,
                    max_bytes=self.rt.settings.max_message_bytes,
                )
            except Exception:  # noqa: BLE001
                continue
            if candle.final:
                firsts[sym] = candle
        if not firsts:
            return
        engine, n = self.rt.engine, self.rt.settings.warm_candles

        def warm() -> dict[str, SymbolForecaster]:
            out = {}
            for sym, first in firsts.items():
                f = self.forecasters.get(sym) or SymbolForecaster(sym, self.config, book=self.book)
                cold = ",".join(sorted(f.cold))
                try:
                    replayed = warm_start(f, engine, before=first, per_timeframe=n) if engine is not None else 0
                    log.info("warm.start symbol=%s series=%s candles=%d", sym, cold, replayed)
                except Exception as exc:  # noqa: BLE001 - the series only starts cold, as before
                    log.warning("warm.failed symbol=%s error=%s", sym, type(exc).__name__)
                f.cold = set()
                out[sym] = f
            return out

        self.forecasters.update(await asyncio.get_running_loop().run_in_executor(None, warm))

    async def _handle_batch(self, msgs: list[Any]) -> None:
        outcomes: list[tuple[int, CandleOutcome, Any]] = []
        await self._warm(msgs)
        for msg in msgs:
            if self.progress.restoring:
                await self.progress.restored(msg.partition)  # D15: wait for the partition's restore
            if not self.progress.admit(msg.partition, msg.offset):
                continue  # already reflected in the restored state
            r = self._process(msg)
            if r is not None:
                outcomes.append(r)
            self.progress.mark(msg.partition, msg.offset)
        due: dict[int, list[tuple[int, CandleOutcome, Any]]] = defaultdict(list)
        for p, o, msg in outcomes:
            if o.due:
                pred = self.models.predictor(o.candle.symbol, o.candle.timeframe)
                due[id(pred)].append((p, o, msg))
        s = self.rt.settings
        degraded = len(outcomes) >= s.forecast_degrade_batch > 0
        for group in due.values():
            pred = self.models.predictor(group[0][1].candle.symbol, group[0][1].candle.timeframe)
            steps = s.forecast_min_steps if degraded and s.forecast_min_steps else s.forecast_steps
            samples = s.forecast_min_samples if degraded and s.forecast_min_samples else s.forecast_samples
            spec = getattr(pred, "context_spec", None)
            triples = []
            for p, o, msg in group:
                with self.contain.record(msg) as scope:
                    scope.stage, scope.symbol = "forecast", o.candle.symbol
                    r = self.forecasters[o.candle.symbol].request(o, spec, getattr(pred, "inputs", None))
                    if r is not None:
                        triples.append((p, o, msg, r))
            reqs = [r for *_, r in triples]
            if not reqs:
                continue
            loop = asyncio.get_running_loop()
            try:
                fcs = await loop.run_in_executor(
                    None,
                    lambda pred=pred, reqs=reqs, steps=steps, samples=samples: (  # type: ignore[misc]
                        pred.forecast(reqs, steps=steps, samples=samples)
                    ),
                )
            except ForexDiffusionError as exc:
                log.error("forecast.failed model=%s error=%s", getattr(pred, "version", "?"), exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a bug of the model path: no one record's fault
                self.contain.internal_errors += 1
                log.error(
                    "forecast.internal_error model=%s error=%s: no forecasts for this batch",
                    getattr(pred, "version", "?"),
                    type(exc).__name__,
                    exc_info=exc,
                )
                continue
            emitted = []
            for (p, o, msg, _r), fc in zip(triples, fcs, strict=True):
                with self.contain.record(msg) as scope:
                    scope.stage, scope.symbol = "forecast", o.candle.symbol
                    rec = self.forecasters[o.candle.symbol].record(fc, o, degraded=degraded)
                    emitted.append((p, o, fc))
                    value = encode_forecast(rec)
                    key = o.candle.symbol.encode()
                    self.out.append(("forecasts", key, value))
                    self.pending_rows[p].append(rec)
                    self.forecasts_emitted += 1
                    if self.rt.metrics is not None:
                        self.rt.metrics.forecast_emitted(
                            o.candle.symbol, o.candle.timeframe, fc.latency_s, fc.steps, fc.samples, degraded
                        )
                        self.rt.metrics.model_in_service(
                            f"{o.candle.symbol}/{o.candle.timeframe}/{self.models.horizon_of(o.candle.timeframe)}",
                            fc.model_version,
                        )
            await self.shadow.forecast(  # issue 16: the same requests, for a shadow of these series
                emitted,
                lambda o, sp: self.forecasters[o.candle.symbol].request(
                    o, getattr(sp, "context_spec", None), getattr(sp, "inputs", None)
                ),
                steps=steps,
                samples=samples,
                degraded=degraded,
            )
        if len(self.out) >= 500:
            self.schedule_flush()

    @staticmethod
    def _encode_side_outputs(o: CandleOutcome) -> list[tuple[str, bytes, bytes]]:
        """The indicator, drift and retrain-request records of one outcome, encoded."""
        key = o.candle.symbol.encode()
        side: list[tuple[str, bytes, bytes]] = []
        if o.indicators is not None:
            side.append(("indicators", key, encode_indicators(o.candle, o.indicators)))
        side += [("drift", key, encode_drift(ev)) for ev in o.drift]
        if o.retrain is not None:
            side.append(("retrain.requests", key, encode_retrain_request(o.retrain)))
        return side

    def _account_side_outputs(self, p: int, o: CandleOutcome) -> None:
        m = self.rt.metrics
        for ev in o.drift:
            self.pending_drift[p].append(ev)
            if m is not None:
                m.drift_event(ev.detector.split(":")[0], ev.symbol, ev.timeframe)
        if o.retrain is not None and m is not None:
            m.retrain_request(o.retrain.reason)
        if m is not None and o.evaluations:
            self.rt_quality(o)

    def rt_quality(self, o: CandleOutcome) -> None:
        q = getattr(self.rt, "quality", None)
        if q is None:
            return
        from forex_diffusion.evaluation import QUANTILE_LEVELS

        for ev in o.evaluations:
            q.update(
                ev.symbol,
                ev.timeframe,
                ev.step,
                QUANTILE_LEVELS,
                ev.quantiles.tolist(),
                ev.rw_quantiles.tolist(),
                ev.realized,
            )

    def schedule_flush(self) -> None:
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Publish queued records, wait for acks, then checkpoint state + offsets + forecast rows."""
        async with self.lock:
            await self._idle.wait()
            # no await between here and capture(): state, offsets and queued records agree
            out, self.out = self.out, []
            dead, self.dead = self.dead, []
            rows, self.pending_rows = self.pending_rows, defaultdict(list)
            cands, self.pending_candles = self.pending_candles, defaultdict(list)
            drift, self.pending_drift = self.pending_drift, defaultdict(list)
            shadow = self.shadow.take()
            captured = self.progress.capture(set(rows) | set(cands) | set(drift) | set(shadow))
            if not captured and not out and not dead:
                self.healthy.set()
                return
            try:
                await self._publish_and_persist(out, dead, rows, cands, captured, drift, shadow=shadow)
            except Exception as exc:  # noqa: BLE001 - any failure: keep everything, retry, back off
                self.out[:0] = out
                self.dead[:0] = dead
                for p, r in rows.items():
                    self.pending_rows[p][:0] = r
                for p, c in cands.items():
                    self.pending_candles[p][:0] = c
                for p, d in drift.items():
                    self.pending_drift[p][:0] = d
                self.shadow.give_back(shadow)
                self.progress.dirty |= set(captured)
                self.failures += 1
                self.healthy.clear()
                log.warning("checkpoint.failed attempt=%d error=%s", self.failures, type(exc).__name__)
                self.progress.checkpoint_failed(exc)  # F14: a lasting permanent storage error exits
                await asyncio.sleep(min(30.0, 0.25 * 2 ** min(self.failures, 7)))
                return
            self.shadow.persisted(shadow)
            if self.failures:
                log.warning("checkpoint.recovered after=%d failures", self.failures)
            self.failures = 0
            self.healthy.set()

    async def _publish_and_persist(
        self,
        out: list[Any],
        dead: list[Any],
        rows: dict[int, list[Any]],
        cands: dict[int, list[Any]],
        captured: dict[int, Any],
        drift: dict[int, list[Any]] | None = None,
        *,
        shadow: dict[int, list[Any]] | None = None,
    ) -> None:
        dl = self.rt.topics["deadletter"]
        records = [(self.rt.topics[kind], key, value, None) for kind, key, value in out]
        records += [(dl, key, value, headers) for key, value, headers in dead]
        await send_all(self.rt, records)
        drift, shadow = drift or {}, shadow or {}
        await self.progress.persist(
            captured,
            {
                p: (cands.get(p, ()), rows.get(p, ()), drift.get(p, ()), shadow.get(p, ()))
                for p in set(rows) | set(cands) | set(drift) | set(shadow)
            },
        )
        failpoint("after_db_upsert_before_commit")
        m = self.rt.metrics
        q = getattr(self.rt, "quality", None)
        if m is not None and q is not None:
            m.set_quality(q.snapshot_metrics())
