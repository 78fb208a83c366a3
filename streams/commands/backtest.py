"""``forexd backtest FILE``: walk a model forward through a candle file, candle by candle."""

from __future__ import annotations

import contextlib
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from forex_diffusion.errors import DataFormatError
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.timeframes import Timeframe, canonical_name

from ._common import (
    THREADS_MAX,
    Output,
    check_given,
    check_input,
    check_list,
    check_outputs,
    check_positive,
    check_price,
    echo_error,
    file_symbols,
    input_path,
    model_files,
    output_path,
    progress_bar,
    reject_summary,
    writing,
)
from .candles import check_symbol

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from forex_diffusion.domain import PriceSide
    from forex_diffusion.forecast.touch import TouchStepSummary
    from forex_diffusion.ingest.readers import FileReject, LoadedFile
    from forex_diffusion.quality.evaluation import StepGroupSummary

_PRICE_COLUMNS_PREFIXES = ("q", "rw_q")


def check_model_fits(manifest: dict[str, Any], *, symbol: str, timeframe: str) -> None:
    """Refuse a model trained at another timeframe, or for a symbol of another price scale.

    A model for one pair may forecast another of the same scale (its inputs are returns in
    units of recent volatility), not one whose pip differs (EURUSD vs USDJPY); a model key
    with symbol ``*`` serves every symbol.
    """
    key = manifest.get("key") or "the model"
    m_tf = manifest.get("timeframe")
    if m_tf and canonical_name(str(m_tf)) != canonical_name(
        timeframe
    ):  # 1H: the 1h of a model trained before names were one
        raise DataFormatError(
            f"model {key} forecasts {m_tf} candles, not {timeframe}: pass a {timeframe} "
            f"model, or the {m_tf} candles with --timeframe {m_tf}"
        )
    m_sym = manifest.get("symbol")
    if manifest.get("symbols"):  # a global model serves only the symbols of its set
        held = [str(x) for x in manifest["symbols"]]
        if symbol not in held:
            raise DataFormatError(
                f"model {key} is a global model of {', '.join(held)}; it does not serve "
                f"{symbol}: pass one of those to --symbol, or a {symbol} model"
            )
        return
    if m_sym and m_sym not in ("*", symbol):
        reg = InstrumentRegistry()
        a, b = reg.with_symbol(m_sym), reg.with_symbol(symbol)
        ia, ib = a.get(a.normalise(m_sym) or m_sym), b.get(b.normalise(symbol) or symbol)
        if ia is not None and ib is not None and ia.pip != ib.pip:
            raise DataFormatError(
                f"model {key} was trained on {m_sym} (pip {ia.pip:g}), whose prices are "
                f"not on {symbol}'s scale (pip {ib.pip:g}): pass a {symbol} model"
            )


def admitted_candles(
    frame: pd.DataFrame,
    file: Path,
    symbol: str | None = None,
    *,
    timeframe: str | None = None,
    rejects: Sequence[FileReject] = (),
) -> pd.DataFrame:
    """The rows of ``frame`` (a read candle series of ``file``) that the stream admits.

    :func:`forex_diffusion.offline.check_candle_rows` applies the candle decoder's rules (a
    price not finite or <= 0, high/low not bounding open/close, a price outside the
    instrument's range), then :func:`forex_diffusion.offline.check_candle_times` the candle
    agent's time rules, in file order as ``forexd indicators`` applies them: an open or close
    time outside the wire's (``bad_ts``), a close past the clock or an open far ahead of the
    series (``future_ts``, the gate of :func:`~forex_diffusion.offline.gate_for_spacing`), an
    open time the series already took (``duplicate``: the FIRST row of an open time is kept,
    as the stream keeps the first it receives) or one before its last (``late``). A refused
    row is dropped, as the candle agent dead-letters such a candle and its forecaster never
    sees it: the next candle follows the previous one (a gap, as a weekend is), so train and
    backtest see what a replay of the file into the worker sees. ``timeframe`` gives the bars'
    close (open + its duration; without it, the open). ``rejects``: the series' rows the reader
    already refused (:func:`read_series`), counted with them. Refusals are counted by reason in
    one line on standard error.

    Raises
    ------
    DataFormatError
        Every row is refused.
    """
    import time

    from forex_diffusion.errors import ConfigError
    from forex_diffusion.offline import check_candle_rows, check_candle_times, gate_for_spacing

    reg = InstrumentRegistry()
    if symbol is not None:
        try:
            reg = reg.with_symbol(symbol)
        except ConfigError:
            pass  # a name the registry cannot take: the six-letter rule of check_candle_rows decides
    kept, refused = check_candle_rows(frame, instruments=reg)
    duration = Timeframe.parse(timeframe).duration_ms if timeframe is not None else 0
    gate = gate_for_spacing(kept["ts_ms"].to_numpy())
    kept, late = check_candle_times(kept, duration_ms=duration, now_ms=int(time.time() * 1000), gate=gate)
    if late or rejects:
        refused = sorted([*rejects, *refused, *late], key=lambda r: r.line)
    if not refused:
        return kept
    what = f"{file.name}{f' {symbol}' if symbol else ''}"
    if kept.empty:
        raise DataFormatError(
            f"{what}: every candle ({len(refused)}) is one the stream refuses ({reject_summary(refused)}; "
            f"first at line {refused[0].line}): fix the file"
        )
    typer.echo(
        f"{what}: refused {len(refused)} of {len(frame) + len(rejects)} candles ({reject_summary(refused)}; first at line "
        f"{refused[0].line}): skipped, as the stream dead-letters them",
        err=True,
    )
    return kept


def read_series(file: Path, symbol: str, *, timeframe: str, price: PriceSide, least: int | None = None) -> LoadedFile:
    """The candles of ``symbol`` and ``timeframe`` in ``file``, as
    :func:`~forex_diffusion.ingest.readers.read_candle_series` selects them, with the rows
    whose symbol cell is blank kept.

    A blank row is no other symbol's: kept (its symbol blank), :func:`admitted_candles`
    refuses it as ``unknown_symbol``, counted with its line, as ``forexd indicators`` and
    ``forexd candles`` refuse it (the reader's selection dropped it unsaid). Of a file holding
    one series, the rows the reader refused (a price that is no number) are ``rejects``, to be
    counted too. A file without a timeframe column must hold bars spaced ``timeframe`` apart
    (:func:`check_spacing`; ``least``: the candles the command needs, said when they are too
    few to tell).

    Raises
    ------
    DataFormatError
        As ``read_candle_series``; or no row names ``symbol`` (the message lists what the file
        holds, and says its rows without a symbol).
    """
    from forex_diffusion.ingest.readers import LoadedFile, file_timeframes, read_candles, select_series

    reg = InstrumentRegistry()
    want = reg.normalise(symbol) or reg.normalise(symbol.upper()) or symbol.upper()
    loaded = read_candles(file, symbol=want, price=price)
    names = loaded.frame["symbol"]
    blank = (names.isna() | names.eq("")).to_numpy(dtype=bool)  # the reader strips each cell
    check_symbol_rows(loaded.frame, file, want, reg)
    tfs = file_timeframes(file)
    # the selection keeps the rows whose symbol is blank (no other symbol's), to be refused
    chosen = select_series(loaded, file, symbol=want, timeframe=timeframe, timeframes=tfs)
    frame = chosen.frame
    if tfs is None:  # the symbol's own bars: a blank row (refused) between two is no bar of theirs
        check_spacing(frame[frame["symbol"] != ""], file, timeframe, least=least)
    # the rows the reader refused of this symbol (the selection keeps those): of this series
    # where the timeframe chosen dropped none of the symbol's rows (a refused row names none)
    ours = int((blank | names.eq(want).to_numpy(dtype=bool)).sum())
    return LoadedFile(frame, chosen.layout, chosen.rejects if len(frame) == ours else [])


def check_symbol_rows(frame: pd.DataFrame, file: Path, want: str, reg: InstrumentRegistry) -> None:
    """Refuse ``--symbol want`` for a read candle ``frame`` of ``file`` none of whose rows names
    it (:func:`refuse_no_rows_of`). ``train``, ``backtest`` and ``indicators`` refuse it so, in
    one message: indicators said it in the reader's words, with other punctuation."""
    names = frame["symbol"]
    blank = (names.isna() | names.astype(str).str.strip().eq("")).to_numpy(dtype=bool)
    if not (names[~blank] == want).any():
        refuse_no_rows_of(file, want, names[~blank].unique().tolist(), int(blank.sum()), reg)


def refuse_no_rows_of(file: Path, want: str, held: list[Any], blanks: int, reg: InstrumentRegistry) -> NoReturn:
    """Refuse ``--symbol want`` for a file none of whose rows names it, saying what the rows
    name: symbols (pass one of those), nothing (blank cells), or values no ``--symbol`` takes
    (``1``: "pass one of those" was no advice)."""
    names = sorted({str(n) for n in held})
    symbols = [n for n in names if reg.normalise(n) or (len(n) == 6 and n.isascii() and n.isalpha())]
    rows = f"{blanks:,} rows without a symbol"
    fix = f"write the pair in it, or remove the column (--symbol {want} then names every row)"
    if symbols:
        shown = ", ".join(n[:24] for n in symbols[:10]) + (
            f" and {len(symbols) - 10} more" if len(symbols) > 10 else ""
        )
        also = f", and {rows}" if blanks else ""
        raise DataFormatError(
            f"{file.name} holds no {want} candles (it holds {shown}{also}): pass one of those to --symbol"
        )
    if names:
        shown = ", ".join(repr(n[:24]) for n in names[:5]) + (f" and {len(names) - 5:,} more" if len(names) > 5 else "")
        also = f", and {rows}" if blanks else ""
        raise DataFormatError(
            f"{file.name} holds no {want} candles: its symbol column holds no symbol (it holds {shown}{also}); {fix}"
        )
    raise DataFormatError(f"{file.name} holds no {want} candles: its symbol column is blank on every row; {fix}")


#: Fewest bars whose most common spacing the reader takes for the file's timeframe.
_SPACING_BARS = 10
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
#: Most common gap of daily bars: a day, 23 or 25 hours across a clock change. The daily files
#: of ../shared/data (Lean OANDA and FXCM, 4 pairs each) are 24 h apart on 78 to 83 % of their
#: gaps, 2 to 5 days over weekends and holidays; weekly bars are 7 days apart, monthly 28 to 31.
_DAILY_GAP_MS = (23 * _HOUR_MS, 25 * _HOUR_MS)
#: Most common gap of fewer than :data:`_SPACING_BARS` daily bars, which may be a weekend's
#: (Friday to Monday) or a holiday's (Easter: Thursday to Tuesday); a week is weekly bars'.
_FEW_DAILY_GAP_MS = 6 * _DAY_MS
#: A date of three numbers whose first two may be its day and its month, read either way
#: (01/05/2014, 5.1.14): never one written year first (2014-05-01).
_EITHER_WAY = re.compile(r"(?<![0-9])([0-9]{1,2})([/.-])([0-9]{1,2})\2([0-9]{4}|[0-9]{2})(?![0-9])")


def check_spacing(frame: pd.DataFrame, file: Path, timeframe: str, *, least: int | None = None) -> None:
    """Refuse bars (of a file without a timeframe column) spaced unlike ``timeframe``.

    Of :data:`_SPACING_BARS` bars or more, the most common gap between opens must be the
    timeframe's duration; for daily bars, a day (:data:`_DAILY_GAP_MS`): the reader took any
    gap from 23 hours up, so weekly or monthly bars, or a daily file whose dates were read with
    day and month swapped (01/05/2014 … 12/05/2014 read month first: a bar a month), passed as
    ``--timeframe 1d``. Of fewer (2 or more), bars closer than the timeframe are refused as of
    the finer timeframe they are (hourly bars passed as ``--timeframe 1d`` said "candles must
    have strictly increasing close times" (train) or "no forecast in the span" (backtest)), and
    daily bars further apart than a long weekend. The message names the file's spacing, its
    count of bars, ``least`` (the candles needed) and, for dates that read either way, the
    order they were read in.
    """
    import numpy as np

    from forex_diffusion.ingest.readers import bar_spacing_ms, span_text

    tf = Timeframe.parse(timeframe)
    few = len(frame) < _SPACING_BARS
    if not few:
        spacing = bar_spacing_ms(frame)
    else:
        gaps = np.diff(np.sort(frame["ts_ms"].to_numpy(dtype=np.int64)))
        gaps = gaps[gaps > 0]
        values, counts = np.unique(gaps, return_counts=True)
        spacing = int(values[np.argmax(counts)]) if len(gaps) else None
    if spacing is None:
        return
    count = f"{len(frame)} " if few else ""
    need = f", at least {least:,} of them" if few and least is not None else ""
    finer = spacing < tf.duration_ms and (not tf.is_daily or spacing < _DAILY_GAP_MS[0])
    if finer or (not few and not tf.is_daily and spacing != tf.duration_ms):
        raise DataFormatError(
            f"{file.name}: its {count}bars are {span_text(spacing)} apart, not {timeframe}: "
            f"pass --timeframe {span_text(spacing)} (or the file of {timeframe} candles{need})"
        )
    if tf.is_daily and spacing > (_FEW_DAILY_GAP_MS if few else _DAILY_GAP_MS[1]):
        order = _order_said(frame, file)
        raise DataFormatError(
            f"{file.name}: its {count}bars are {_days_text(spacing)} apart (the most common gap), not {timeframe} "
            f"(daily bars are a day apart, a few days over a weekend or holiday){order[0]}: "
            f"{order[1]}pass the file of {timeframe} candles{need}"
        )


def _days_text(ms: int) -> str:
    """``ms`` in days, as a gap of bars is said: ``7 days``, ``about 30.5 days``, ``1 day and 2 hours``."""
    if ms % _DAY_MS == 0:
        days = ms // _DAY_MS
        return f"{days} day{'s' if days != 1 else ''}"
    if ms < 2 * _DAY_MS and ms % _HOUR_MS == 0:
        return f"1 day and {(ms - _DAY_MS) // _HOUR_MS} hours"
    return f"about {ms / _DAY_MS:.1f} days"


def _order_said(frame: pd.DataFrame, file: Path) -> tuple[str, str]:
    """For bars whose dates may each be read either way (``01/05/2014``: no day past 12), the
    order the reader read them in and the fix: ``("; its dates, such as '01/05/2014', were
    read month first (5 January 2014); read day first, they may be daily", "write them as
    YYYY-MM-DD (2014-05-01), or ")``. Empty for dates that say their order, or are written
    year first (ISO 8601's, never read day first)."""
    import datetime as dt

    import pandas as pd

    stamps = pd.to_datetime(frame["ts_ms"].to_numpy(), unit="ms", utc=True)
    if len(stamps) == 0 or (stamps.day > 12).any():  # a day past 12: the reader knew its order
        return "", ""
    row = int(frame["ts_ms"].to_numpy().argmin())
    cell = _date_cell(file, int(frame["line"].to_numpy()[row]))
    m = _EITHER_WAY.search(cell or "")
    if m is None or m[1] == m[3]:
        return "", ""
    a, b = int(m[1]), int(m[3])
    first = stamps[row]
    if (first.month, first.day) == (a, b):
        read, other, swapped = "month", "day", dt.date(first.year, b, a)
    elif (first.month, first.day) == (b, a):
        read, other, swapped = "day", "month", dt.date(first.year, a, b)
    else:
        return "", ""
    return (
        f"; its dates, such as {m[0]!r}, were read {read} first ({first.day} {first:%B %Y}); "
        f"read {other} first, they may be daily",
        f"write them as YYYY-MM-DD ({swapped.isoformat()}), or ",
    )


def _date_cell(file: Path, line: int) -> str | None:
    """The text of line ``line`` (1-based) of ``file`` (gunzipped), its first 200 characters;
    None when it cannot be read."""
    import gzip
    import itertools

    try:
        with file.open("rb") as raw:
            zipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw) if zipped else contextlib.nullcontext(raw) as fh:
                for text in itertools.islice(fh, line - 1, line):
                    return bytes(text[:200]).decode("utf-8", errors="replace")
    except (OSError, EOFError, ValueError):
        return None
    return None


def _span_message(frame: pd.DataFrame, file: Path) -> str:
    from forex_diffusion.offline import format_ms

    ts = frame["ts_ms"]
    return f"{file.name} runs from {format_ms(int(ts.min()))} to {format_ms(int(ts.max()))}"


def _asked(from_: str | None, to: str | None) -> str:
    """``--from A --to B`` as given (either may be absent; empty: neither)."""
    return " ".join(f"{o} {v}" for o, v in (("--from", from_), ("--to", to)) if v is not None)


def _check_span(
    frame: pd.DataFrame, file: Path, from_: str | None, to: str | None, from_ms: int | None, to_ms: int | None
) -> None:
    """Exit 1, before any forecast, for a --from/--to span wholly past or wholly before the
    data, naming the span and the data's: one before the data said "no forecast in the span
    (…): widen --from/--to", and no widening of the span alone reaches the file."""
    if not len(frame):
        return
    first, last = int(frame["ts_ms"].min()), int(frame["ts_ms"].max())
    asked = _asked(from_, to)
    if from_ms is not None and from_ms > last:
        echo_error(f"{asked} is past the data ({_span_message(frame, file)}): choose an earlier --from")
        raise typer.Exit(1)
    if to_ms is not None and to_ms < first:
        echo_error(
            f"{asked} is before the data ({_span_message(frame, file)}): choose a later --to, "
            "or the file of that period"
        )
        raise typer.Exit(1)


def backtest_command(
    file: Path = typer.Argument(..., help="Candle file (CSV, optionally .gz).", readable=False, parser=input_path),
    symbol: str = typer.Option(..., "--symbol", help="Symbol, e.g. EURUSD (selects its rows in files with several)."),
    timeframe: str = typer.Option(
        ..., "--timeframe", help="Timeframe of the candles (selects it in files with several)."
    ),
    model: Path = typer.Option(
        ...,
        "--model",
        help="Checkpoint (.pt or .json) or a model-key directory (newest).",
        readable=False,
        parser=input_path,
    ),
    from_: str | None = typer.Option(
        None, "--from", help="First as_of (UTC date); earlier candles only warm the context."
    ),
    to: str | None = typer.Option(None, "--to", help="Last as_of (UTC date)."),
    every: int = typer.Option(1, "--every", help="Forecast every K-th candle."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="CSV to write, one row per (as_of, step).", readable=False, parser=output_path
    ),
    steps: int | None = typer.Option(None, "--steps", help="DDIM steps (default: the model's)."),
    samples: int | None = typer.Option(None, "-n", "--samples", help="Sample paths (default: the model's)."),
    price: str = typer.Option("mid", "--price", help="Side of bid/ask files: mid|bid|ask."),
    per_step: bool = typer.Option(False, "--per-step", help="Summarise every step instead of step groups."),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="PNG fan chart of one forecast (--plot-as-of, default the last fully realised) against the realised path.",
        readable=False,
        parser=output_path,
    ),
    plot_as_of: str | None = typer.Option(None, "--plot-as-of", help="as_of (UTC time) of the plotted forecast."),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads (>= 1)."),
    device: str = typer.Option("cpu", "--device", help="auto|cpu|cuda."),
    touch_bands: str | None = typer.Option(
        None,
        "--touch-bands",
        help="Touch bands scored, e.g. 0.5vol,1vol,20pip (default 0.5vol,1vol; none: no touch scores).",
    ),
    touch_output: Path | None = typer.Option(
        None,
        "--touch-output",
        help="CSV of touch rows: as_of,band,step,level,p,rw_p,hit.",
        readable=False,
        parser=output_path,
    ),
) -> None:
    """Forecast at each due candle of FILE with --model and score against the EWMA random walk.

    Writes symbol,timeframe,as_of,step,q05..q95,mean,p_up,realized,rw_q05..rw_q95
    (as_of in epoch ms UTC; realized empty where unknown; prices at the instrument's
    precision), then prints CRPS, skill vs the random walk and 50/90 % coverage per step
    group, then the touch probabilities' Brier score and skill vs the random walk per step
    (close-based touches of --touch-bands) and their reliability table. Refuses a model of
    another timeframe or price scale, and exits 1 when the span holds no forecast. A candle
    the stream refuses is skipped and counted on standard error, as ``forexd indicators``
    refuses it (a bad price or bar; a close past the clock or far ahead of the series:
    future_ts; an open time already taken: duplicate, the first row kept; one before the
    last: late), so the forecasts are the stream's on the file's rows in file order. Every
    candle refused: exit 65.
    """
    from forex_diffusion.forecast.batching import SAMPLES_MAX, SAMPLES_MIN, STEPS_MAX
    from forex_diffusion.reports.backtest import BacktestConfig, parse_utc_date
    from forex_diffusion.wire import INT64_MAX

    price = check_price(price)
    check_positive(threads, "--threads", at_most=THREADS_MAX)
    check_positive(every, "--every", at_most=INT64_MAX)
    check_positive(steps, "--steps", at_most=STEPS_MAX)
    check_positive(samples, "-n/--samples", at_least=SAMPLES_MIN, at_most=SAMPLES_MAX)  # else allocated at once
    if device not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter(f"--device must be auto, cpu or cuda, not {device!r}")
    check_given(("touch_bands",), from_=from_, to=to, plot_as_of=plot_as_of, touch_bands=touch_bands)
    check_list(touch_bands, "--touch-bands")  # 1vol,,20pip: an empty item was dropped
    sym = InstrumentRegistry().normalise(symbol) or symbol.upper()
    check_symbol(sym)  # '1' was refused after the model loaded, naming no option (exit 2)
    timeframe = Timeframe.parse(timeframe).name  # 1H, 60m: the 1h of the model and the file's column
    config = BacktestConfig(
        symbol=sym,
        timeframe=timeframe,
        from_ms=parse_utc_date(from_) if from_ else None,
        to_ms=parse_utc_date(to) if to else None,
        every=every,
        steps=steps,
        samples=samples,
    )
    plot_ms = parse_utc_date(plot_as_of) if plot_as_of else None
    check_input(file, "candle file")
    inputs = [(file, "the candle file"), *model_files(model)]
    check_outputs(
        inputs,
        Output(output, "-o", "CSV", ".csv"),
        Output(plot, "--plot", "PNG", ".png", only=True),
        Output(touch_output, "--touch-output", "CSV", ".csv"),
    )
    from forex_diffusion.forecast.touch import parse_touch_bands

    _check_band_sizes(touch_bands)
    bands = parse_touch_bands(touch_bands)
    # an output option whose output cannot come was ignored: exit 0, no file
    if touch_output is not None and not bands:
        raise typer.BadParameter(
            "--touch-output writes the rows of --touch-bands, and --touch-bands none scores no touch: "
            "leave one of them out"
        )
    if plot_as_of is not None and plot is None:
        raise typer.BadParameter("--plot-as-of chooses the forecast --plot draws: give --plot too, or leave it out")

    import torch

    from forex_diffusion.diffusion.predictor import Predictor
    from forex_diffusion.ingest.readers import check_price_scale
    from forex_diffusion.quality.evaluation import summarize_forecasts
    from forex_diffusion.reports.backtest import backtest, fan_chart_png, write_backtest_csv

    torch.set_num_threads(threads)
    predictor = Predictor.load(model, device=device, touch_bands=bands)
    check_model_fits(predictor.manifest, symbol=sym, timeframe=timeframe)
    if steps is not None and steps > predictor.max_steps:  # before the candles are read
        raise typer.BadParameter(
            f"must be at most the model's {predictor.max_steps} diffusion steps, not {steps}", param_hint="'--steps'"
        )
    need = predictor.context_spec.ready_after + 1  # candles before the first forecast
    series = read_series(file, sym, timeframe=timeframe, price=price, least=need)
    check_price_scale(series.frame, sym, file)
    # a candle the stream refuses never reaches the model
    frame = admitted_candles(series.frame, file, sym, timeframe=timeframe, rejects=series.rejects)
    _check_span(frame, file, from_, to, config.from_ms, config.to_ms)
    # a model whose inputs name other pairs (cross:...) reads them from the same file
    held = file_symbols(file, price) if predictor.inputs.cross_symbols else set()
    for s in predictor.inputs.cross_symbols:
        if s not in held:  # a file without a symbol column would give its own rows as the other pair's
            raise DataFormatError(
                f"model input cross:{s}: {file.name} holds no {s} candles "
                f"(it holds {', '.join(sorted(held)) or 'one unnamed series'})"
            )
    others: dict[str, pd.DataFrame] = {}
    for s in predictor.inputs.cross_symbols:
        other = read_series(file, s, timeframe=timeframe, price=price)
        others[s] = admitted_candles(other.frame, file, s, timeframe=timeframe, rejects=other.rejects)
    core_log = logging.getLogger("forex_diffusion.reports.backtest")
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        core_log.setLevel(logging.ERROR)  # its "no forecast" warning is said below, once
    with progress_bar("backtest") as progress:
        task = progress.add_task("", total=len(frame))
        touch_parts: list[pd.DataFrame] = []
        rows = backtest(
            frame,
            predictor,
            config,
            touch=touch_parts,
            others=others,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if rows.empty and len(frame) < need:  # no --from/--to can help: "widen --from/--to" misled
        echo_error(
            f"no forecast: {file.name} holds {len(frame)} {timeframe} candles the stream admits, and the model "
            f"needs at least {need} ({need - 1} of context before the first forecast): pass a longer file"
        )
        raise typer.Exit(1)
    if rows.empty:
        asked = _asked(from_, to)
        echo_error(
            f"no forecast in the span{f' {asked}' if asked else ''} ({_span_message(frame, file)}; the model needs "
            f"{predictor.context_spec.ready_after} candles of context before --from): widen --from/--to"
        )
        raise typer.Exit(1)
    if plot is not None and plot_ms is not None and not (rows["as_of"] == plot_ms).any():
        from forex_diffusion.offline import format_ms

        first, last = format_ms(int(rows["as_of"].min())), format_ms(int(rows["as_of"].max()))
        raise typer.BadParameter(  # before any file is written: the run failed
            f"{plot_as_of} is the as_of of no forecast (they run from {first} to {last}, every {every} candle(s))",
            param_hint="'--plot-as-of'",
        )
    with writing(output):
        write_backtest_csv(_rounded(rows, price), output)
    plotted = None
    if plot is not None:
        with writing(plot, "--plot"):
            plotted = fan_chart_png(rows, plot, as_of=plot_ms)
    horizon = predictor.horizon
    groups = [(s, s) for s in range(1, horizon + 1)] if per_step else None
    summary = summarize_forecasts(rows, groups)
    typer.echo(
        f"model {predictor.key} {predictor.version}: {rows['as_of'].nunique()} forecasts, {len(rows)} rows -> {output}"
    )
    typer.echo(format_summary(summary))
    if plot is not None:
        typer.echo(f"fan chart of as_of={plotted} -> {plot}")
    if bands:
        import pandas as pd

        from forex_diffusion.forecast.touch import summarize_touch, touch_reliability
        from forex_diffusion.precision import round_price_columns

        trows = pd.concat(touch_parts, ignore_index=True)
        if touch_output is not None:
            out = round_price_columns(trows, ["level"], symbol=sym, price=price)
            with writing(touch_output, "--touch-output"):
                out.to_csv(touch_output, index=False, na_rep="", lineterminator="\n")
        typer.echo(f"touch ({', '.join(b.name for b in bands)}; close-based) Brier per step, bands pooled:")
        typer.echo(format_touch_summary(summarize_touch(trows)))
        typer.echo("touch reliability (all steps and bands):")
        typer.echo(format_touch_reliability(touch_reliability(trows), touch_reliability(trows, column="rw_p")))


#: A touch band's size, as the core's parser reads it (``[+|-]<size><unit>``).
_BAND_SIZE = re.compile(r"\s*[+-]?([0-9]*\.?[0-9]*(?:[eE][+-]?[0-9]+)?)(?:pip|pips|sigma|vol)\s*")


def _check_band_sizes(spec: str | None) -> None:
    """Refuse a touch band whose size no double holds (``1e400pip`` reads as infinity), as not
    finite: the core's parser said ``size must be > 0`` of it."""
    from forex_diffusion.errors import ConfigError

    for text in (spec or "").split(","):
        m = _BAND_SIZE.fullmatch(text)
        if m is None:
            continue
        try:
            size = float(m.group(1))
        except ValueError:
            continue  # not a number: the core's parser says so
        if math.isinf(size):
            raise ConfigError(
                f"touch band {text.strip()[:32]!r}: size is not finite (past the largest double): "
                "give a finite size, e.g. 1vol or 20pip"
            )


def _rounded(rows: pd.DataFrame, price: str) -> pd.DataFrame:
    from forex_diffusion.precision import round_price_columns

    cols = [c for c in rows.columns if c.startswith(_PRICE_COLUMNS_PREFIXES) or c in ("mean", "realized")]
    return round_price_columns(rows, cols, price=price)


def format_summary(summary: list[StepGroupSummary]) -> str:
    """Return the summary as a fixed-width text table."""
    lines = ["steps     n        crps        rw_crps     skill    cover50  cover90  rw_cover90"]
    for s in summary:
        label = f"{s.steps[0]}" if s.steps[0] == s.steps[1] else f"{s.steps[0]}-{s.steps[1]}"
        lines.append(
            f"{label:<8}{s.n:>6}  {_f(s.crps, '.4e'):>10}  {_f(s.rw_crps, '.4e'):>10}  "
            f"{_f(s.skill, '+.4f'):>7}  {_f(s.cover50, '.3f'):>7}  {_f(s.cover90, '.3f'):>7}  "
            f"{_f(s.rw_cover90, '.3f'):>9}"
        )
    return "\n".join(lines)


def format_touch_summary(summary: list[TouchStepSummary]) -> str:
    """Return the touch Brier scores as a fixed-width text table."""
    lines = ["step  band        n      rate   brier      rw_brier   skill"]
    for s in summary:
        lines.append(
            f"{s.step:<6}{s.band:<10}{s.n:>7}  {_f(s.rate, '.3f'):>6}  {_f(s.brier, '.5f'):>9}  "
            f"{_f(s.rw_brier, '.5f'):>9}  {_f(s.skill, '+.4f'):>7}"
        )
    return "\n".join(lines)


def format_touch_reliability(model: pd.DataFrame, rw: pd.DataFrame) -> str:
    """Return the reliability tables of the model and the random walk side by side (by bin)."""
    lines = ["bin         n        predicted  observed   rw_n     rw_pred  rw_obs"]
    m = model.set_index("bin_lo")
    r = rw.set_index("bin_lo")
    for lo in sorted(set(m.index) | set(r.index)):
        a = m.loc[lo] if lo in m.index else None
        b = r.loc[lo] if lo in r.index else None
        cells = [f"{lo:.1f}-{lo + 0.1:.1f}".ljust(10)]
        cells.append(
            f"{int(a['n']):>7}  {a['predicted']:>9.4f}  {a['observed']:>8.4f}"
            if a is not None
            else f"{'':>7}  {'':>9}  {'':>8}"
        )
        cells.append(f"{int(b['n']):>7}  {b['predicted']:>7.4f}  {b['observed']:>6.4f}" if b is not None else "")
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _f(x: float, spec: str) -> str:
    return "nan" if math.isnan(x) else format(x, spec)


def register(app: typer.Typer) -> None:
    """Add ``backtest`` to the ``forexd`` app."""
    app.command("backtest")(backtest_command)
