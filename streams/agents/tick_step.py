"""One tick through the tick agent, and the idle timer: the candles they close, as effects.

A tick is decoded, validated and aggregated by the agent's
:class:`~forex_diffusion.ingest.pipeline.TickPipeline`; the candles it closes are encoded at once (a
value that cannot be encoded must never wedge the checkpoint, issue 13) and queued with its
partition's next checkpoint. Held ticks the pipeline gives up on are dead-lettered with their
own origin. The idle timer closes the bars of quiet series: the consumer's broker facts
(:mod:`streams.broker_facts`) feed the pure decision (:mod:`forex_diffusion.ingest.idle_close`);
a restored series joins it at once (:func:`restore_series`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ValidationError
from forex_diffusion.wire import UnknownFields, decode_tick, encode_candle, encode_tick

from ..broker_facts import broker_facts
from ..deadletter import refuse_held

if TYPE_CHECKING:
    from ..consumer import Effects
    from ..deadletter import RecordScope
    from .ticks import TickAgent

__all__ = ["close_idle", "count_emitted", "count_late", "dead_letter_quarantined", "process", "queue", "restore_series"]


def process(agent: TickAgent, msg: Any, rec: RecordScope) -> None:
    """Decode → the pipeline → the candles it closed queued; ``rec`` names the failing stage.
    The unknown fields of a tick that decodes are counted (B2), the tick processed."""
    limit, p = agent.rt.settings.max_message_bytes, msg.partition
    with UnknownFields() as unknown:
        tick = decode_tick(msg.value, key=msg.key, instruments=agent.rt.instruments, max_bytes=limit)
    if unknown.count and (m := agent.rt.metrics) is not None:
        m.unknown_fields(msg.topic, unknown.count, unknown.names)
    rec.symbol, rec.stage = tick.symbol, "process"
    agent.consumer.progress.touch(p, tick.symbol)  # its series goes in the next checkpoint
    closed = agent.pipeline.process(tick, now_ms=int(time.time() * 1000), ref=[p, msg.offset])
    rec.stage = "encode"
    wire = [encode_candle(c) for c in closed]
    rec.stage = "account"
    agent.symbols[p].add(tick.symbol)
    ev = agent.pipeline.event_time(tick.symbol)  # not a held far-future tick's time
    agent.idle.seen(tick.symbol, p, time.monotonic(), tick.ts_ms if ev is None else ev)
    queue(agent, p, zip(closed, wire, strict=True))
    if (m := agent.rt.metrics) is not None:
        m.ticks_processed(tick.symbol)
        m.feed_seen(tick.symbol, tick.ts_ms / 1000.0)
        if tick.bid >= tick.ask:  # accepted crossed (within tolerance) or locked quote
            m.quote_flagged(tick.symbol, "crossed" if tick.bid > tick.ask else "locked")


def restore_series(agent: TickAgent, partition: int, state: dict[str, Any]) -> None:
    """Restore one series' checkpointed state (or an older checkpoint's whole state) into the pipeline."""
    restored = agent.pipeline.restore(state)  # issue 15: {symbol: earliest held tick time or None}
    now = time.monotonic()
    # a series restored with only held ticks (its first ticks, awaiting confirmation) has no
    # aggregator series yet: it joins the idle timer too, which expires the hold
    for sym, held_since in restored.items():
        agent.symbols[partition].add(sym)
        # a restored series may get no new tick at all (its feed ended before the crash):
        # its forming bars must still close on the idle timer, counted from the restore
        last_ms = agent.pipeline.aggregator.last_event_ms(sym)
        if last_ms is None:
            last_ms = agent.pipeline.event_time(sym)
        if last_ms is None:
            last_ms = held_since
        if last_ms is not None and sym not in agent.idle.clocks:
            agent.idle.seen(sym, partition, now, last_ms)


def queue(agent: TickAgent, p: int, closed: Iterable[tuple[Candle, bytes | None]]) -> None:
    """Queue closed candles with their ``fx.candles`` values (None: left out)."""
    for c, value in closed:
        if value is not None:
            e = agent.effects.at(p)
            e.candles.append(c)
            e.records.append(("candles", c.symbol.encode(), value))


def dead_letter_quarantined(agent: TickAgent) -> None:
    """Dead-letter held ticks that were not confirmed (B9 price jumps, far-future event times),
    each with its own origin (-1: unknown, a ref restored in a form other than the agent's pair)."""
    topic = agent.consumer.progress.topic
    for q in agent.pipeline.take_quarantined():
        raw = encode_tick(q.tick)
        refuse_held(agent.contain, topic=topic, ref=q.ref, raw=raw, symbol=q.symbol, reason=q.reason, detail=q.detail)


async def close_idle(agent: TickAgent) -> None:
    """Close the forming bars of quiet series, as far as the broker vouches the feed is quiet."""
    prog, healthy, idle_s = agent.consumer.progress, agent.consumer.healthy.is_set(), agent.rt.settings.idle_close_s
    facts = broker_facts(agent.rt.app, prog.topic, agent.idle.partitions(), prog.offsets)
    changed, closed = agent.idle.close(agent.pipeline, facts, now_s=time.monotonic(), idle_s=idle_s, healthy=healthy)
    dead_letter_quarantined(agent)  # a quiet feed confirms no jump: released holds, or refused
    for p, syms in changed.items():  # issue 15: the series it changed go in the next checkpoint
        for sym in syms:
            prog.touch(p, sym)
    for p, bars in closed.items():  # a candle that cannot be encoded (a bug) is logged, left out
        queue(agent, p, ((c, _encoded(agent, c)) for c in bars))


def _encoded(agent: TickAgent, c: Candle) -> bytes | None:
    info = {"symbol": c.symbol, "timeframe": c.timeframe, "open_ms": c.open_ms}
    return agent.contain.guarded("candle.encode_failed", lambda: encode_candle(c), **info)


def count_late(agent: TickAgent, exc: ValidationError, symbol: str | None) -> None:
    """A refused tick: counted as late when it came too late (an unknown symbol is not a label)."""
    if agent.rt.metrics is not None and exc.reason.value == "late":
        agent.rt.metrics.late_tick(symbol if symbol in agent.rt.instruments else None)


def count_emitted(agent: TickAgent, done: Effects) -> None:
    """The candles of a persisted checkpoint, counted as emitted."""
    if agent.rt.metrics is not None:
        for c in (c for e in done.parts.values() for c in e.candles):
            agent.rt.metrics.candles_emitted(c.symbol, c.timeframe)
