"""The candle agent: closed candles → per-symbol forecasters → indicators, drift, forecasts.

Per symbol a :class:`~forex_diffusion.forecasting.SymbolForecaster` holds the whole series
state. Candles come in small batches: each is decoded, admitted in event time
(:class:`~forex_diffusion.candle_gate.CandleGate`) and handed to its forecaster; the batch's
due forecasts follow (:mod:`.forecasts`). Records and rows are checkpointed with the offsets
they reflect by the :class:`~streams.consumer.CheckpointingConsumer`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from forex_diffusion.candle_gate import CandleGate
from forex_diffusion.diffusion.inputs import CrossBook
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ValidationError
from forex_diffusion.forecasting import CandleOutcome, ForecasterConfig, SymbolForecaster
from forex_diffusion.wire import decode_candle, decode_model_outcome
from retraining.serving import ModelBook

from ..consumer import CheckpointingConsumer, Effects
from ..deadletter import RecordScope
from .forecasts import Due, account, forecast_batch, side_outputs
from .shadow import ShadowLane
from .warm import warm_batch

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["CandleAgent"]

log = logging.getLogger(__name__)


class CandleAgent:
    """Consume ``fx.candles`` and ``fx.models``; publish forecasts, drift, retrain requests."""

    def __init__(self, rt: Runtime) -> None:
        s, m = rt.settings, rt.metrics
        self.rt = rt
        # issue 16: one model per forecast timeframe, each at its own horizon (FOREXD_MODELS)
        horizons = s.model_horizons
        self.config = ForecasterConfig(
            timeframes=s.timeframes,
            forecast_timeframes=s.forecast_timeframes,
            horizon=s.horizon,
            models=tuple(horizons.items()),
            keyed_horizons=len(set(horizons.values())) > 1,  # a retrain request names its horizon
        )
        self.timeframes = frozenset(s.timeframes)
        self.forecasters: dict[str, SymbolForecaster] = {}
        self.symbols: dict[int, set[str]] = defaultdict(set)
        self.models = ModelBook(
            rt.engine,
            horizon=s.horizon,
            horizons=horizons,
            device=s.device,
            model_dir=s.model_dir or (s.data_dir / "models"),
            on_rejected=(lambda v, e: m.artifact_rejected()) if m is not None else None,
            touch_bands=s.touch_bands,
        )
        self.consumer = CheckpointingConsumer(
            rt,
            name="candles",
            snapshot=self._snapshot,
            restore=self._restore,
            drop=self._drop,
            series=lambda p: self.symbols.get(p, ()),  # issue 15: a checkpoint writes the series it changed
            flush_at=500,
            on_persisted=self._persisted,
        )
        self.contain, self.effects = self.consumer.contain, self.consumer.effects
        self.gate = CandleGate()  # far-future candles never reach a series (issue 13)
        self.book = CrossBook()  # recent closes of every pair here, for models with a cross-pair input
        # issue 16: a challenger in shadow forecasts beside the champion, unpublished, scored live
        store = lambda p, row: self.effects.at(p).shadow.append(row)  # noqa: E731
        self.shadow = ShadowLane(self.models, metrics=lambda: self.rt.metrics, send=self.effects.publish, store=store)
        self.forecasts_emitted = 0

    def _snapshot(self, partition: int, series: Iterable[str]) -> dict[str, Any]:
        """Per series (issue 15): its forecaster (with its cross-pair closes) and its shadow pairs."""
        held = self.symbols.get(partition, ())
        return {
            s: {"symbols": {s: self.forecasters[s].snapshot()}, "shadow": self.shadow.snapshot([s])}
            for s in series
            if s in held and s in self.forecasters
        }

    def _restore(self, partition: int, parts: dict[str, Any]) -> None:
        for state in parts.values():  # one per series (or the whole state of an older checkpoint)
            self._restore_one(partition, state)

    def _restore_one(self, partition: int, state: dict[str, Any]) -> None:
        for sym, data in state.get("symbols", {}).items():
            self.forecasters[sym] = SymbolForecaster.restore(data, self.config, symbol=sym, book=self.book)
            self.symbols[partition].add(sym)
        self.shadow.restore(state.get("shadow"))

    def _drop(self, partition: int) -> None:
        self.gate.drop(self.symbols.get(partition, ()))
        self.shadow.drop(self.symbols.get(partition, ()))
        for sym in self.symbols.pop(partition, set()):
            self.forecasters.pop(sym, None)

    def register(self) -> None:
        app, topics, loop = self.rt.app, self.rt.topics, asyncio.get_running_loop

        @app.agent(topics["candles"], name="forexd.candles")
        async def candles(stream: Any) -> None:
            async for events in stream.take_events(64, within=0.05):
                await self.handle_batch([e.message for e in events])

        self.agent = candles

        @app.agent(topics["models"], name="forexd.models")
        async def models(stream: Any) -> None:
            async for value in stream:
                try:  # an outcome finishes its request: the trigger may open new ones
                    data = decode_model_outcome(value)
                except ValidationError as exc:
                    log.warning("models.refused reason=%s error=%s", exc.reason.value, exc.detail[:200])
                else:
                    if (f := self.forecasters.get(data["symbol"])) is not None:
                        f.close_request(data["timeframe"], data["request_id"])
                        for p in [p for p, syms in self.symbols.items() if data["symbol"] in syms]:
                            self.consumer.progress.touch(p, data["symbol"])  # issue 15: in the next checkpoint
                versions = await loop().run_in_executor(None, self.models.refresh)
                log.info("models.refreshed versions=%s", versions)
                if (m := self.rt.metrics) is not None:
                    for (sym, tf), v in versions.items():
                        m.model_in_service(f"{sym}/{tf}/{self.models.horizon_of(tf)}", v)

        async def refresh_models() -> None:  # promotions and rollbacks made from the CLI too
            await loop().run_in_executor(None, self.models.refresh)
            await self.shadow.settle()  # shadows running here: export, and decide any that are due

        app.timer(interval=15.0)(refresh_models)

        self.consumer.register(app, timer_s=self.rt.settings.snapshot_interval_s)

    async def handle_batch(self, msgs: list[Any]) -> None:
        """Process a batch of candle messages, then forecast its due series (one call per model)."""
        async with self.consumer.step():
            await warm_batch(self, msgs)
            outcomes: list[Due] = []
            for msg in msgs:
                if await self.consumer.admit(msg):
                    with self.contain.record(msg) as rec:  # Containment (issue 13): dead-lettered once
                        if (o := self._process(msg, rec)) is not None:
                            outcomes.append((msg.partition, o, msg))
                    self.consumer.mark(msg)
            await forecast_batch(self, outcomes)

    def decode(self, msg: Any) -> Candle:
        s = self.rt.settings
        limit, instruments = s.max_message_bytes, self.rt.instruments
        return decode_candle(
            msg.value, key=msg.key, instruments=instruments, timeframes=self.timeframes, max_bytes=limit
        )

    def _process(self, msg: Any, rec: RecordScope) -> CandleOutcome | None:
        """Decode → the event-time gate → the forecaster → encode; the candle is checked (shape,
        key, time) before it touches any state."""
        candle = self.decode(msg)
        rec.symbol = candle.symbol
        self.consumer.progress.touch(msg.partition, candle.symbol)  # issue 15: in the next checkpoint
        if not candle.final:
            return None
        rec.stage = "validate"
        f = self.forecasters.get(candle.symbol)
        last = f.last_open.get(candle.timeframe) if f is not None else None
        if (reason := self.gate.check(candle, watermark_ms=last, now_ms=int(time.time() * 1000))) is not None:
            what = f"{candle.symbol} {candle.timeframe} open_time={candle.open_ms}"
            raise ValidationError(reason, f"{what} ahead of the series (last open {last}) or the clock")
        rec.stage = "process"
        if f is None:
            f = self.forecasters[candle.symbol] = SymbolForecaster(candle.symbol, self.config, book=self.book)
        f.cold = set()  # warmed before its first candle here (warm_batch) or not at all: it goes on live
        self.symbols[msg.partition].add(candle.symbol)
        out = f.on_candle(candle)
        rec.stage = "encode"
        side = side_outputs(out)
        rec.stage = "account"
        account(self, msg.partition, out, side)
        return out

    def _persisted(self, done: Effects) -> None:
        self.shadow.persisted(r for e in done.parts.values() for r in e.shadow)
        m = self.rt.metrics
        if m is not None:  # each forecaster's quality monitor, checkpointed with it (issue 15)
            m.set_quality(row for f in self.forecasters.values() for row in f.quality.snapshot_metrics())
