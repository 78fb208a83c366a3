"""Warm start of the candle agent's series (issue 16), before the first candle of a batch.

Each series of a batch without checkpointed state -- a symbol new to this worker, or a
forecast timeframe its restored state lacks -- is rebuilt from the stored candles
(:func:`~forex_diffusion.forecast.warm_start.warm_start`) before its first candle here, in an executor
(the event loop keeps serving the broker). A failure is logged and the series starts cold;
stored rows that are not candles (NaN or text prices, high below low, ...) are skipped and
their count by reason logged with ``warm.start``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import SymbolForecaster
from forex_diffusion.forecast.warm_start import warm_start

from .candle_step import decode

if TYPE_CHECKING:
    from .candles import CandleAgent

__all__ = ["warm_batch"]

log = logging.getLogger(__name__)


async def _firsts(agent: CandleAgent, msgs: list[Any]) -> dict[str, Candle]:
    """The first new final candle of each cold (or unknown) symbol of ``msgs``."""
    firsts: dict[str, Candle] = {}
    progress = agent.consumer.progress
    for msg in msgs:
        if not agent.consumer.current(msg.partition):
            continue  # not this worker's any more (a batch in hand across a revoke)
        try:
            sym = msg.key.decode() if isinstance(msg.key, bytes) else None
        except UnicodeDecodeError:
            continue
        f = agent.forecasters.get(sym) if sym is not None else None
        if sym is None or sym in firsts or (f is not None and not f.cold):
            continue
        if progress.restoring:
            await progress.restored(msg.partition)
            f = agent.forecasters.get(sym)
            if f is not None and not f.cold:
                continue
        last = progress.offsets.get(msg.partition)
        if last is not None and msg.offset <= last:
            continue  # already in the restored state (admit() decides; this only skips)
        try:  # refused candles are dead-lettered by the agent, not here
            candle = decode(agent, msg)
        except Exception:  # noqa: BLE001
            continue
        if candle.final:
            firsts[sym] = candle
    return firsts


async def warm_batch(agent: CandleAgent, msgs: list[Any]) -> None:
    """Warm every series of ``msgs`` that has no state yet, from the stored candles."""
    firsts = await _firsts(agent, msgs)
    if not firsts:
        return
    engine, n, inst = agent.rt.engine, agent.rt.settings.warm_candles, agent.rt.instruments

    # looked up here, on the loop: a series restored while an earlier one warms (in the
    # executor) must not be found there and have the stored candles replayed into it
    before = {sym: agent.forecasters.get(sym) for sym in firsts}

    def warm() -> dict[str, SymbolForecaster]:
        out = {}
        for sym, first in firsts.items():
            f = before[sym] or SymbolForecaster(sym, agent.config, book=agent.book)
            cold = ",".join(sorted(f.cold))
            skipped: Counter[str] = Counter()
            try:
                replayed = (
                    warm_start(f, engine, before=first, per_timeframe=n, skipped=skipped, instruments=inst)
                    if engine is not None
                    else 0
                )
                if skipped:
                    log.warning(
                        "warm.start symbol=%s series=%s candles=%d skipped=%d reasons=%s",
                        sym,
                        cold,
                        replayed,
                        skipped.total(),
                        ",".join(f"{k}:{v}" for k, v in sorted(skipped.items())),
                    )
                else:
                    log.info("warm.start symbol=%s series=%s candles=%d", sym, cold, replayed)
            except Exception as exc:  # noqa: BLE001 - the series only starts cold, as before
                log.warning("warm.failed symbol=%s error=%s", sym, type(exc).__name__)
            f.cold = set()
            out[sym] = f
        return out

    warmed = await asyncio.get_running_loop().run_in_executor(None, warm)
    for sym, f in warmed.items():
        if agent.forecasters.get(sym) is before[sym]:
            agent.forecasters[sym] = f
        else:  # its partition's checkpoint was restored meanwhile: that state wins, never the warm one
            log.info("warm.discarded symbol=%s: restored from its checkpoint meanwhile", sym)
