"""Drive a :class:`~forex_diffusion.ingest.pipeline.TickPipeline` over a tick list (guard tests)."""

from __future__ import annotations

from typing import Any

from forex_diffusion.domain import Candle, Tick
from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.ingest.pipeline import Quarantined, TickPipeline
from forex_diffusion.instruments import InstrumentRegistry

TFS = ["1m", "5m"]
Run = tuple[list[Candle], list[Quarantined], list[tuple[int, RejectReason]]]


def pipeline(**kw: Any) -> TickPipeline:
    return TickPipeline(timeframes=TFS, instruments=InstrumentRegistry(), **kw)


def feed(p: TickPipeline, ticks: list[Tick], start: int = 0) -> Run:
    """Process ``ticks`` (refs are their positions + ``start``); no flush."""
    out: list[Candle] = []
    refused: list[tuple[int, RejectReason]] = []
    for i, t in enumerate(ticks, start):
        try:
            out.extend(p.process(t, ref={"partition": 0, "offset": i}))
        except ValidationError as exc:
            refused.append((i, exc.reason))
    return out, p.take_quarantined(), refused


def run(ticks: list[Tick], **kw: Any) -> Run:
    """:func:`feed` a fresh pipeline, then flush it."""
    p = pipeline(**kw)
    out, quarantined, refused = feed(p, ticks)
    out.extend(p.flush())
    return out, quarantined + p.take_quarantined(), refused
