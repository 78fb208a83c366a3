"""Agents, registered on a :class:`~streams.app.Runtime` by role."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["register_agents"]


def register_agents(rt: Runtime, roles: tuple[str, ...]) -> None:
    """Attach the agents of ``roles`` (``ticks``, ``candles``, ``retrain``) to ``rt.app``."""
    if "ticks" in roles:
        from .ticks import TickAgent

        TickAgent(rt).register()
    if "candles" in roles:
        from .candles import CandleAgent

        rt.candle_agent = CandleAgent(rt)  # type: ignore[attr-defined]
        rt.candle_agent.register()  # type: ignore[attr-defined]
    if "retrain" in roles:
        from .retrain import RetrainAgent

        rt.retrain_agent = RetrainAgent(rt)  # type: ignore[attr-defined]
        rt.retrain_agent.register()  # type: ignore[attr-defined]
