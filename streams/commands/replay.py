"""``forexd replay FILE``: publish a tick or candle file to its topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from forex_diffusion.errors import DataFormatError

from ..settings import Settings
from ._common import (
    broker_call,
    check_given,
    check_input,
    check_output,
    check_positive,
    input_path,
    output_path,
    progress_bar,
    reject_summary,
    write_rejects,
)


def _candle_selection(path: Path, *, symbol: str | None, timeframe: str | None) -> tuple[str, list[bool] | None]:
    """The timeframe to publish a candle file as, and which of its rows to publish (None: all).

    A file with a timeframe column (what ``forexd candles`` writes) gives the timeframe when
    it holds one; several need ``timeframe`` to choose. A symbol column is filtered by
    ``symbol`` when given.
    """
    from forex_diffusion.ingest.readers import file_timeframes, read_candles, select_series
    from forex_diffusion.timeframes import Timeframe

    tfs = file_timeframes(path)
    held = sorted(set(tfs.tolist())) if tfs is not None else []
    if timeframe is None:
        if len(held) == 1:
            timeframe = str(held[0])
        elif len(held) > 1:
            raise DataFormatError(
                f"{path.name} holds several timeframes ({', '.join(held)}): pass --timeframe to choose one"
            )
        else:
            raise DataFormatError(f"{path.name} is a candle file with no timeframe column: pass --timeframe (e.g. 1m)")
    timeframe = Timeframe.parse(timeframe).name  # 1H, 60m: the 1h of the file's timeframe column
    if len(held) <= 1 and symbol is None:
        return timeframe, None
    loaded = read_candles(path, symbol=symbol)
    kept = select_series(loaded, path, symbol=symbol, timeframe=timeframe, one_symbol=False, timeframes=tfs)
    if kept is loaded:
        return timeframe, None
    return timeframe, loaded.frame["line"].isin(kept.frame["line"]).tolist()


async def replay_file(
    settings: Settings,
    path: Path,
    *,
    speed: float | None,
    symbol: str | None = None,
    timeframe: str | None = None,
    kind: str | None = None,
    tick_ids: bool = False,
    limit: int | None = None,
    show_progress: bool = False,
    rejects: list[Any] | None = None,
) -> int:
    """Publish ``path`` to ``fx.ticks`` or ``fx.candles``; ``speed=None`` is as fast as possible.

    Rows the reader refuses are not published; they are appended to ``rejects`` when given.

    Raises
    ------
    InputNotFoundError
        ``path`` is missing or unreadable.
    DataFormatError
        A candle file with several timeframes and no ``timeframe``, or none of the chosen one.
    ServiceUnavailableError
        The broker does not answer.
    """
    from forex_diffusion.ingest.readers import sniff_kind
    from forex_diffusion.ingest.replaying import ReplayRecord, records_from_file

    from ..kafka import ensure_topics, make_producer

    check_input(path)
    kind = kind or sniff_kind(path)
    if show_progress and kind == "ticks" and speed is not None and speed < 1.0:
        typer.echo(_slow_warning(speed, settings.idle_close_s), err=True)
    mask: list[bool] | None = None
    if kind == "candles":
        timeframe, mask = _candle_selection(path, symbol=symbol, timeframe=timeframe)
    kind, total, records = records_from_file(
        path, symbol=symbol, timeframe=timeframe, kind=kind, tick_ids=tick_ids, rejects=rejects
    )
    if mask is not None:
        # records come in the reader's row order, as the mask does
        chosen, total = mask, sum(mask)
        all_records = records

        def selected() -> Iterator[ReplayRecord]:
            for keep, rec in zip(chosen, all_records, strict=True):
                if keep:
                    yield rec

        records = selected()
    topic = settings.topic(kind)
    await broker_call(settings, lambda: ensure_topics(settings, [topic]))
    producer = make_producer(settings)
    await broker_call(settings, producer.start, cleanup=producer.stop)
    sent = 0
    first_event: int | None = None
    t0 = time.monotonic()
    progress = progress_bar("replay")
    if not show_progress:
        progress.disable = True
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


#: The slowest pacing: an hour of the file lasts about six weeks.
SPEED_MIN = 0.001


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        spd = float(value)
    except ValueError:
        raise typer.BadParameter(f"--speed must be a multiple of real time (e.g. 60) or 'max', not {value!r}") from None
    if not SPEED_MIN <= spd < float("inf"):  # 1e-320 made every pacing delay infinite: a replay that never ends
        raise typer.BadParameter(
            f"--speed must be at least {SPEED_MIN:g} (a thousand times slower than real time) or 'max', not {value!r}"
        )
    return spd


def _slow_warning(speed: float, idle_close_s: float) -> str:
    """What a replay slower than real time does to a tick worker's idle close, in one line."""
    gap = idle_close_s * speed
    return (
        f"warning: --speed {speed:g} is slower than real time: a tick worker whose idle close is "
        f"{idle_close_s:g} s (FOREXD_IDLE_CLOSE_S) takes a gap of {gap:.3g} s or more in the file for a quiet "
        "feed and may close its bar early, refusing the bar's later ticks as late; replay at "
        "--speed 1 or faster, or raise FOREXD_IDLE_CLOSE_S on the worker"
    )


def replay(
    file: Path = typer.Argument(
        ..., help="Tick file (→ fx.ticks) or candle file (→ fx.candles).", readable=False, parser=input_path
    ),
    speed: str = typer.Option("max", "--speed", help="Multiple of real time (e.g. 60, at least 0.001) or 'max'."),
    symbol: Optional[str] = typer.Option(
        None, "--symbol", help="Symbol for files without one; selects it in candle files with several."
    ),
    timeframe: Optional[str] = typer.Option(
        None, "--timeframe", help="Timeframe of a candle file (selects it in files with several)."
    ),
    tick_ids: bool = typer.Option(False, "--tick-ids", help="Give each tick an id (<file>:<line>) for de-duplication."),
    limit: Optional[int] = typer.Option(None, "-n", "--limit", help="Publish at most this many records."),
    rejects: Optional[Path] = typer.Option(
        None,
        "--rejects",
        help="Write each row the reader refused (not published) with its reason to this CSV.",
        readable=False,
        parser=output_path,
    ),
) -> None:
    """Publish FILE to its topic (key = symbol), paced by event time unless --speed max.

    Reads the broker and topic prefix from FOREXD_BROKER_URL / FOREXD_TOPIC_PREFIX; an
    unreachable broker exits 69. A candle file holding several timeframes needs
    --timeframe to choose one.
    """
    from forex_diffusion.wire import INT64_MAX

    spd = _speed(speed)
    check_positive(limit, "-n/--limit", at_most=INT64_MAX)
    check_given(symbol=symbol)  # an empty --symbol was the file's (or its name's) symbol
    if timeframe is not None:  # before the broker or the file: '²m' or 5,000 digits is a usage error
        from forex_diffusion.timeframes import Timeframe

        timeframe = Timeframe.parse(timeframe).name  # 1H, 60m: the 1h of the file and of the records
    settings = Settings.from_env()
    settings.check_broker_url()  # before the file is read
    check_input(file)
    check_output(rejects, "--rejects", other=[(file, "the file to replay")])
    refused: list[Any] = []
    n = asyncio.run(
        replay_file(
            settings,
            file,
            speed=spd,
            symbol=symbol,
            timeframe=timeframe,
            tick_ids=tick_ids,
            limit=limit,
            show_progress=True,
            rejects=refused,
        )
    )
    if rejects is not None:
        write_rejects(refused, rejects)
    typer.echo(f"published {n} records; refused {len(refused)} rows: {reject_summary(refused)}", err=True)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
