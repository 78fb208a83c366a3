"""Agents, registered on a :class:`~streams.app.Runtime` by role."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["register_agents"]


def register_agents(rt: Runtime, roles: tuple[str, ...]) -> None:
    """Attach the agents of ``roles`` (``ticks``, ``candles``, ``retrain``) to ``rt.app``."""
    if rt.metrics is not None:
        _register_lag(rt)
    if "ticks" in roles:
        from .ticks import TickAgent

        rt.tick_agent = TickAgent(rt)
        rt.tick_agent.register()
    if "candles" in roles:
        from .candles import CandleAgent

        rt.candle_agent = CandleAgent(rt)
        rt.candle_agent.register()
    if "retrain" in roles:
        from .retrain import RetrainAgent

        rt.retrain_agent = RetrainAgent(rt)
        rt.retrain_agent.register()


def _register_lag(rt: Runtime) -> None:
    """Consumer lag per partition: the high-water mark minus the next offset to process."""
    import logging

    from ..broker_facts import broker_facts

    log = logging.getLogger(__name__)

    async def consumer_lag() -> None:
        for name in ("tick_agent", "candle_agent"):
            agent = getattr(rt, name, None)
            if agent is None:
                continue
            prog = agent.consumer.progress
            try:
                mine = [tp.partition for tp in rt.app.consumer.assignment() if tp.topic == prog.topic]
                for p, f in broker_facts(rt.app, prog.topic, mine, prog.offsets).items():
                    if f.highwater is not None:
                        done = 0 if f.last_offset is None else f.last_offset + 1
                        rt.metrics.set_lag(prog.topic, p, max(0, f.highwater - done))
            except Exception as exc:  # lag is best-effort observability, never fatal
                log.debug("lag.unavailable error=%s", type(exc).__name__)

    rt.app.timer(interval=5.0)(consumer_lag)
