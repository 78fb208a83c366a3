"""``forexd replay FILE``: publish a tick or candle file to its topic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from forex_diffusion.replaying import records_from_file

from ..kafka import ensure_topics, make_producer
from ..settings import Settings


async def replay_file(
    settings: Settings, path: Path, *, speed: float | None, symbol: str | None = None,
    timeframe: str | None = None, kind: str | None = None, tick_ids: bool = False,
    limit: int | None = None, show_progress: bool = False,
) -> int:
    """Publish ``path`` to ``fx.ticks`` or ``fx.candles``; ``speed=None`` is as fast as possible."""
    kind, total, records = records_from_file(path, symbol=symbol, timeframe=timeframe, kind=kind, tick_ids=tick_ids)
    topic = settings.topic(kind)
    await ensure_topics(settings, [topic])
    producer = make_producer(settings)
    await producer.start()
    sent = 0
    first_event: int | None = None
    t0 = time.monotonic()
    progress = Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeRemainingColumn(), transient=True, disable=not show_progress)
    try:
        with progress:
            task = progress.add_task("replay", total=min(total, limit or total))
            futures = []
            for key, ts, value in records:
                if limit is not None and sent >= limit:
                    break
                if speed:
                    if first_event is None:
                        first_event = ts
                    due = (ts - first_event) / 1000.0 / speed
                    lag = due - (time.monotonic() - t0)
                    if lag > 0:
                        await asyncio.sleep(lag)
                futures.append(await producer.send(topic, value=value, key=key.encode()))
                sent += 1
                if len(futures) >= 5000:
                    await asyncio.gather(*futures)
                    futures.clear()
                    progress.update(task, completed=sent)
            await asyncio.gather(*futures)
            progress.update(task, completed=sent)
    finally:
        await producer.stop()
    return sent


def replay(
    file: Path = typer.Argument(..., help="Tick file (→ fx.ticks) or candle file (→ fx.candles)."),
    speed: str = typer.Option("max", "--speed", help="Multiple of real time (e.g. 60) or 'max'."),
    symbol: Optional[str] = typer.Option(None, "--symbol", help="Symbol for files without one."),
    timeframe: Optional[str] = typer.Option(None, "--timeframe", help="Timeframe of a candle file."),
    tick_ids: bool = typer.Option(False, "--tick-ids", help="Give each tick an id (<file>:<line>) for de-duplication."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Publish at most this many records."),
) -> None:
    """Publish FILE to its topic (key = symbol), paced by event time unless --speed max.

    Reads the broker and topic prefix from FOREXD_BROKER_URL / FOREXD_TOPIC_PREFIX.
    """
    spd = None if speed == "max" else float(speed)
    if spd is not None and spd <= 0:
        raise typer.BadParameter("--speed must be positive or 'max'")
    settings = Settings.from_env()
    n = asyncio.run(replay_file(settings, file, speed=spd, symbol=symbol, timeframe=timeframe,
                                tick_ids=tick_ids, limit=limit, show_progress=True))
    typer.echo(f"published {n} records", err=True)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
