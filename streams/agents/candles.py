"""The candle agent: closed candles → per-symbol forecasters → indicators, drift, forecasts.

Per symbol a :class:`~forex_diffusion.forecast.forecaster.SymbolForecaster` holds the whole series
state. Candles come in small batches: each is decoded, admitted in event time
(:class:`~forex_diffusion.ingest.candle_gate.CandleGate`) and handed to its forecaster; the batch's
due forecasts follow (:mod:`.forecasts`); a price jump waits for the next bar (``CandleSpikeGuard``).
Records and rows are checkpointed with the offsets they reflect by the ``CheckpointingConsumer``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from forex_diffusion.diffusion.inputs import CrossBook
from forex_diffusion.forecast.forecaster import SymbolForecaster
from forex_diffusion.ingest.candle_guards import CandleGuards

from ..consumer import SeriesAgent
from ..shadow_lane import ShadowLane
from .book import forecaster_config, model_book
from .candle_step import Due, finish_batch, persisted, process
from .forecasts import forecast_batch
from .models import register_models
from .warm import warm_batch

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["CandleAgent"]


log = logging.getLogger(__name__)


class CandleAgent(SeriesAgent):
    """Consume ``fx.candles`` and ``fx.models``; publish forecasts, drift, retrain requests."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__()
        self.rt = rt
        self.config, self.models = forecaster_config(rt.settings), model_book(rt)
        self.timeframes = frozenset(rt.settings.timeframes)
        self.forecasters: dict[str, SymbolForecaster] = {}
        self._checkpointed(rt, name="candles", flush_at=500, on_persisted=lambda done: persisted(self, done))
        # far-future candles never reach a series (issue 13); B9: a huge price jump waits for the next bar
        self.guards = CandleGuards()
        self.gate, self.spikes = self.guards.gate, self.guards.spikes
        self.book = CrossBook()  # recent closes of every pair here, for models with a cross-pair input
        # issue 16: a challenger in shadow forecasts beside the champion, unpublished, scored live
        store = lambda p, row: self.effects.at(p).shadow.append(row)  # noqa: E731
        self.shadow = ShadowLane(self.models, metrics=lambda: self.rt.metrics, send=self.effects.publish, store=store)
        self.forecasts_emitted = 0

    def _series_state(self, symbol: str) -> dict[str, Any] | None:
        """Per series (issue 15): its forecaster (with its cross-pair closes) and its shadow pairs."""
        f = self.forecasters.get(symbol)
        if f is None:
            return None
        return {
            "symbols": {symbol: f.snapshot()},
            "shadow": self.shadow.snapshot([symbol]),
            **self.guards.snapshot(symbol),
        }

    def _restore_series(self, partition: int, state: dict[str, Any]) -> None:
        for sym, data in state.get("symbols", {}).items():
            f = self.forecasters[sym] = SymbolForecaster.restore(data, self.config, symbol=sym, book=self.book)
            self.symbols[partition].add(sym)
            # the series' guards; a part that cannot be read is dropped with a warning, as a shadow's is
            for name, why in self.guards.restore(sym, state, last_open=f.last_open, now_ms=int(time.time() * 1000)):
                log.warning("%s.state_dropped symbol=%s error=%s", name, sym, why)
        self.shadow.restore(state.get("shadow"))

    def _drop(self, partition: int) -> None:
        self.guards.drop(self.symbols.get(partition, ()))
        self.shadow.drop(self.symbols.get(partition, ()))
        for sym in self.symbols.pop(partition, set()):
            self.forecasters.pop(sym, None)

    def register(self) -> None:
        app, topics = self.rt.app, self.rt.topics

        @app.agent(topics["candles"], name="forexd.candles")
        async def candles(stream: Any) -> None:
            async for events in stream.take_events(64, within=0.05):
                await self.handle_batch([e.message for e in events])

        self.agent = candles

        register_models(self)  # fx.models: outcomes finish requests, the model book follows
        self.consumer.register(app, timer_s=self.rt.settings.snapshot_interval_s)

    async def handle_batch(self, msgs: list[Any]) -> None:
        """Process a batch of candle messages, then forecast its due series (one call per model),
        then publish each candle's records: a forecast recorded after later candles of the
        batch scores its steps on them, as candle-by-candle processing does (their drift
        events and retrain decisions with them), so the scored state and the records do not
        depend on the batching."""
        async with self.consumer.step():
            await warm_batch(self, msgs)
            outcomes: list[Due] = []
            for msg in msgs:
                if await self.consumer.admit(msg):
                    with self.contain.record(msg) as rec:  # Containment (issue 13): dead-lettered once
                        outcomes += [(msg.partition, o, msg) for o in process(self, msg, rec)]
                    self.consumer.mark(msg)
            try:
                await forecast_batch(self, outcomes)
            finally:
                finish_batch(self, outcomes)
