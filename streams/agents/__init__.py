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

        rt.tick_agent = TickAgent(rt)  # type: ignore[attr-defined]
        rt.tick_agent.register()  # type: ignore[attr-defined]
    if "candles" in roles:
        from .candles import CandleAgent

        rt.candle_agent = CandleAgent(rt)  # type: ignore[attr-defined]
        rt.candle_agent.register()  # type: ignore[attr-defined]
    if "retrain" in roles:
        from .retrain import RetrainAgent

        rt.retrain_agent = RetrainAgent(rt)  # type: ignore[attr-defined]
        rt.retrain_agent.register()  # type: ignore[attr-defined]


def _register_lag(rt: Runtime) -> None:
    """Consumer lag per partition: the high-water mark minus the next offset to process."""
    import logging

    log = logging.getLogger(__name__)

    @rt.app.timer(interval=5.0)
    async def consumer_lag() -> None:
        for name in ("tick_agent", "candle_agent"):
            agent = getattr(rt, name, None)
            if agent is None:
                continue
            prog = agent.progress
            try:
                for tp in rt.app.consumer.assignment():
                    if tp.topic != prog.topic:
                        continue
                    high = rt.app.consumer.highwater(tp)
                    if high is None:
                        continue
                    done = prog.offsets.get(tp.partition, -1) + 1
                    rt.metrics.set_lag(tp.topic, tp.partition, max(0, int(high) - done))
            except Exception as exc:  # lag is best-effort observability, never fatal
                log.debug("lag.unavailable error=%s", type(exc).__name__)
