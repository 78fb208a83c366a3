"""One candle through the candle agent: decode → event-time gate → price-jump guard → its forecaster.

The candle is checked (:func:`~forex_diffusion.wire.decode_candle`, the ``CandleGate``) before
it touches any state; a huge jump waits for the next bar (B9, ``SymbolForecaster.on_final``).
Each outcome's candle row is queued at once, its records and drift rows once the batch's
forecasts are recorded (:func:`publish`): a later forecast scores its steps on them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import CandleOutcome, SymbolForecaster
from forex_diffusion.wire import (
    UnknownFields,
    decode_candle,
    encode_candle,
    encode_drift,
    encode_indicators,
    encode_retrain_request,
)

from ..deadletter import refuse_held

if TYPE_CHECKING:
    from ..consumer import Effects
    from ..deadletter import RecordScope
    from .candles import CandleAgent

__all__ = ["Due", "account", "decode", "finish_batch", "persisted", "process", "publish", "side_outputs"]

Due = tuple[int, CandleOutcome, Any]  # (partition, outcome, message)


def decode(agent: CandleAgent, msg: Any) -> Candle:
    """The candle of an ``fx.candles`` message (``ValidationError``: refused)."""
    limit, instruments = agent.rt.settings.max_message_bytes, agent.rt.instruments
    return decode_candle(msg.value, key=msg.key, instruments=instruments, timeframes=agent.timeframes, max_bytes=limit)


def process(agent: CandleAgent, msg: Any, rec: RecordScope) -> list[CandleOutcome]:
    """The outcomes one message's candle releases (none: not final, or held), their effects
    queued; ``rec`` names the stage a failure happens at. The unknown fields of a candle that
    decodes are counted here (B2; not by :func:`decode`, which the warm start calls too)."""
    with UnknownFields() as unknown:
        candle = decode(agent, msg)
    if unknown.count and (m := agent.rt.metrics) is not None:
        m.unknown_fields(msg.topic, unknown.count, unknown.names)
    rec.symbol = candle.symbol
    agent.consumer.progress.touch(msg.partition, candle.symbol)  # issue 15: in the next checkpoint
    if not candle.final:
        return []
    rec.stage = "validate"
    f = agent.forecasters.get(candle.symbol)
    last = f.last_open.get(candle.timeframe) if f is not None else None
    agent.guards.admit_time(candle, last_open=last, now_ms=int(time.time() * 1000))  # the gate: future_ts
    rec.stage = "process"
    if f is None:
        f = agent.forecasters[candle.symbol] = SymbolForecaster(candle.symbol, agent.config, book=agent.book)
    f.cold = set()  # warmed before its first candle here (warm_batch) or not at all: it goes on live
    agent.symbols[msg.partition].add(candle.symbol)
    outs = f.on_final(candle, agent.spikes, ref=[msg.partition, msg.offset])
    rec.stage = "account"
    dead_letter_held(agent)
    for out in outs:
        account(agent, msg.partition, out)
    return outs


def dead_letter_held(agent: CandleAgent) -> None:
    """Dead-letter each held candle the next bar did not confirm with its own origin (B9)."""
    topic = agent.consumer.progress.topic
    for q in agent.spikes.take_quarantined():
        raw, sym = encode_candle(q.candle), q.candle.symbol
        refuse_held(agent.contain, topic=topic, ref=q.ref, raw=raw, symbol=sym, reason=q.reason, detail=q.detail)


def finish_batch(agent: CandleAgent, outcomes: list[Due]) -> None:
    """After a batch's forecasts: settle its forecasters, then publish each candle's records
    (a candle of a partition no longer this batch's is left to its next owner, who replays it)."""
    for sym in {o.candle.symbol for _, o, _ in outcomes}:
        if (f := agent.forecasters.get(sym)) is not None:
            f.settle()
    for p, o, msg in outcomes:
        if agent.consumer.current(p):
            with agent.contain.record(msg) as rec:
                publish(agent, p, o, rec)


def publish(agent: CandleAgent, p: int, o: CandleOutcome, rec: RecordScope) -> None:
    """Queue one outcome's records and drift rows, once its batch's forecasts are recorded."""
    rec.stage, rec.symbol = "encode", o.candle.symbol
    side = side_outputs(o)
    rec.stage = "account"
    for kind, key, value in side:
        agent.effects.publish(kind, key, value)
    agent.effects.at(p).drift += o.drift  # stored with the checkpoint
    if (m := agent.rt.metrics) is not None:
        for ev in o.drift:
            m.drift_event(ev.detector.split(":")[0], ev.symbol, ev.timeframe)
        if o.retrain is not None:
            m.retrain_request(o.retrain.reason)


def side_outputs(o: CandleOutcome) -> list[tuple[str, bytes, bytes]]:
    """The indicator, drift and retrain-request records of one outcome, encoded."""
    key = o.candle.symbol.encode()
    side: list[tuple[str, bytes, bytes]] = []
    if o.indicators is not None:
        side.append(("indicators", key, encode_indicators(o.candle, o.indicators)))
    side += [("drift", key, encode_drift(ev)) for ev in o.drift]
    if o.retrain is not None:
        side.append(("retrain.requests", key, encode_retrain_request(o.retrain)))
    return side


def account(agent: CandleAgent, p: int, o: CandleOutcome) -> None:
    """Queue one outcome's candle row; count it (its records follow: :func:`publish`). A
    duplicate (not after its series' last candle) is only counted (B13: drop and count)."""
    e, m = agent.effects.at(p), agent.rt.metrics
    if o.duplicate:
        if m is not None:
            m.candles_duplicate(o.candle.symbol, o.candle.timeframe)
        return
    agent.shadow.on_candle(p, o.candle)
    e.candles.append(o.candle)
    if m is not None:
        m.candles_processed(o.candle.symbol, o.candle.timeframe)


def persisted(agent: CandleAgent, done: Effects) -> None:
    """A checkpoint is stored: its shadow rows are settled, and each forecaster's quality
    monitor (checkpointed with it, issue 15) is exported as metrics."""
    agent.shadow.persisted(r for e in done.parts.values() for r in e.shadow)
    if (m := agent.rt.metrics) is not None:
        m.set_quality(row for f in agent.forecasters.values() for row in f.quality.snapshot_metrics())
