"""``forexd tail TOPIC``: print a topic's records as JSON lines."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Optional, TextIO

import typer

from ..settings import Settings
from ._common import broker_call, check_positive


async def tail_topic(
    settings: Settings,
    name: str,
    *,
    from_beginning: bool,
    limit: int | None,
    timeout_s: float | None,
    out: TextIO | None = None,
) -> int:
    """Print ``name``'s records to ``out`` (standard output) as JSON lines; return how many."""
    from ..kafka import make_consumer

    out = out or sys.stdout
    topic = name if name.startswith(settings.topic_prefix + "fx.") else settings.topic(name.removeprefix("fx."))
    consumer = make_consumer(settings, topic, auto_offset_reset="earliest" if from_beginning else "latest")
    await broker_call(settings, consumer.start, cleanup=consumer.stop)
    n = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while limit is None or n < limit:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(remaining or 1.0, 1.0) * 1000))
            for _tp, msgs in batch.items():
                for m in msgs:
                    try:  # any bytes: a tombstone (None), non-JSON, a value nested too deep
                        value = json.loads(m.value) if m.value is not None else None
                    except (ValueError, TypeError, RecursionError):
                        value = m.value.decode("utf-8", "replace")
                    out.write(
                        json.dumps(
                            {
                                "partition": m.partition,
                                "offset": m.offset,
                                "key": m.key.decode("utf-8", "replace") if m.key else None,
                                "value": value,
                            }
                        )
                        + "\n"
                    )
                    n += 1
                    if limit is not None and n >= limit:
                        break
            out.flush()
    finally:
        await consumer.stop()
    return n


def tail(
    topic: str = typer.Argument(
        ...,
        help="Topic: ticks, candles, forecasts, forecasts.paths, drift, models, deadletter, retrain.requests (prefix added).",
    ),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the earliest offset."),
    limit: Optional[int] = typer.Option(None, "-n", "--max", help="Stop after this many records."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop after this many seconds."),
) -> None:
    """Print TOPIC's records as JSON lines (partition, offset, key, value).

    Reads the broker and topic prefix from FOREXD_BROKER_URL / FOREXD_TOPIC_PREFIX; an
    unreachable broker exits 69.
    """
    check_positive(limit, "-n")
    if timeout is not None and not (0 < timeout < float("inf")):
        raise typer.BadParameter(f"--timeout must be a positive number of seconds, not {timeout!r}")
    settings = Settings.from_env()
    asyncio.run(tail_topic(settings, topic, from_beginning=from_beginning, limit=limit, timeout_s=timeout))


def register(app: typer.Typer) -> None:
    app.command("tail")(tail)
