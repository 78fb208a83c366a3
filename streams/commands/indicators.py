"""``forexd indicators FILE``: compute the incremental indicators over a candle file."""
# ruff: noqa: B008  -- typer declares options as argument defaults by design

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forex_diffusion.precision import round_price_columns
from forex_diffusion.timeframes import Timeframe

from ._common import (
    Output,
    check_given,
    check_input,
    check_list,
    check_outputs,
    check_price,
    input_path,
    progress_bar,
    reject_summary,
    write_rejects,
)
from .candles import CsvOutput, Rejects, check_symbol, open_output, resolve_outputs

if TYPE_CHECKING:
    from forex_diffusion.domain import PriceSide
    from forex_diffusion.ingest.readers import LoadedFile
    from forex_diffusion.instruments import InstrumentRegistry

_INPUT_COLUMNS = ["ts_ms", "symbol", "open", "high", "low", "close", "volume"]
# Written out here so that `forexd --help` need not import the indicators (numba); a unit
# test keeps them equal to forex_diffusion.indicators.DEFAULT_SPEC / INDICATOR_CLASSES.
DEFAULT_SPEC_HELP = "sma_20,ema_20,rsi_14,atr_14,bb_20,macd_12_26_9,donchian_20,keltner_20,stoch_14_3,adx_14,hurst_100"
INDICATOR_NAMES_HELP = "adx, atr, bb, donchian, ema, hurst, keltner, macd, max, min, rsi, rv, sma, stoch"


def indicators(
    file: Path = typer.Argument(
        ...,
        help="Candle file (CSV, optionally .gz): the ../shared/data layouts, "
        "timestamp,symbol,open,high,low,close[,volume], Dukascopy, HistData, MetaTrader.",
        readable=False,
        parser=input_path,
    ),
    output: CsvOutput = None,
    price: str = typer.Option("mid", "--price", help="Side of bid/ask candle files: mid|bid|ask."),
    spec: str | None = typer.Option(
        None,
        "--spec",
        help=f"Comma-separated indicators name_param_param (default: {DEFAULT_SPEC_HELP}); "
        f"names: {INDICATOR_NAMES_HELP}.",
    ),
    symbol: str | None = typer.Option(
        None,
        "--symbol",
        help="Symbol for files without one (else from the file name); selects it in files with several.",
    ),
    timeframe: str | None = typer.Option(
        None,
        "--timeframe",
        help="Timeframe to select in files holding several (what `forexd candles --timeframes 1m,5m` writes).",
    ),
    only_ready: bool = typer.Option(
        False,
        "--only-ready",
        help="Leave a value empty until its indicator is ready (seed forgotten), not only until it is defined.",
    ),
    rejects: Rejects = None,
) -> None:
    """Read candles from FILE and write them with one column per indicator output.

    Writes ts_ms (bar open, epoch ms UTC),symbol,open,high,low,close,volume and, by default,
    sma_20, ema_20, rsi_14, atr_14, bb_lower_20, bb_middle_20, bb_upper_20, macd_12_26,
    macd_signal_9, macd_hist_12_26_9, donchian_upper_20, donchian_lower_20, keltner_lower_20,
    keltner_middle_20, keltner_upper_20, stoch_k_14, stoch_d_3, adx_14, hurst_100; a value is
    empty while its indicator warms up. The numbers come from the same incremental classes
    the stream runs, row by row, and equal TA-Lib's where TA-Lib has the indicator. Several
    symbols each get their own indicators; several timeframes need --timeframe. A candle
    the stream refuses (a price not finite or <= 0, high/low not bounding open/close, a
    price outside the instrument's range, an unknown symbol; one not opening after its series'
    last: duplicate, late; a close past the clock or far ahead of its series: future_ts) is
    refused here too, counted in ``rejected=`` and listed with its reason by --rejects; no
    indicator is computed from it. Every candle refused: exit 65, --rejects still written.
    """
    from forex_diffusion.errors import ConfigError, DataFormatError
    from forex_diffusion.indicators import BankSpec, compute_indicators
    from forex_diffusion.offline import check_candle_rows, check_candle_times, gate_for_spacing

    price = check_price(price)
    if timeframe is not None:  # 1H, 60m: the 1h of the file's timeframe column
        timeframe = Timeframe.parse(timeframe).name
    reg = check_symbol(symbol)  # as `forexd candles --symbol`: a known symbol or six letters
    if symbol is not None:
        symbol = reg.normalise(symbol) or reg.normalise(symbol.upper()) or symbol
    check_given(spec=spec)  # an empty --spec was the default bank
    check_list(spec, "--spec")  # sma_20,,ema_20: an empty item was dropped
    try:  # the core bounds every parameter (PARAMETER_MAX) and names the token it refuses
        bank_spec = BankSpec.parse(spec)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--spec'") from None
    check_input(file, "candle file")
    output, rejects, rejects_out = resolve_outputs(output, rejects)
    check_outputs(  # as `forexd candles`: -o x.json wrote CSV
        [(file, "the candle file")],
        Output(output, "-o", "CSV", ".csv", stdout=True),
        Output(rejects, "--rejects", "CSV", ".csv", stdout=True),
    )
    with progress_bar("indicators", elapsed=True, description=True) as progress:
        task = progress.add_task("reading", total=None)
        loaded = _read(file, symbol=symbol, timeframe=timeframe, price=price, instruments=reg)
        progress.update(task, description=f"{len(loaded.frame)} candles")
        # the candle decoder's rules, then the candle agent's time rules (its gate, and a bar
        # that does not open after its series' last): no indicator is computed from a bar the
        # stream refuses
        frame, refused = check_candle_rows(loaded.frame, instruments=reg)
        # a bar's close is its open plus --timeframe; without it, its open (never guessed)
        duration = Timeframe.parse(timeframe).duration_ms if timeframe is not None else 0
        gate = gate_for_spacing(frame["ts_ms"].to_numpy())
        frame, late = check_candle_times(frame, duration_ms=duration, now_ms=int(time.time() * 1000), gate=gate)
        refused = sorted([*loaded.rejects, *refused, *late], key=lambda r: r.line)
        result = compute_indicators(frame[_INPUT_COLUMNS], bank_spec, only_ready=only_ready)
    if refused and result.empty:  # written first: the list says why each row was refused
        if rejects is not None or rejects_out:
            with open_output(rejects, "--rejects") as fh:
                write_rejects(refused, fh)
        raise DataFormatError(
            f"{file.name}: every candle ({len(refused)}) is one the stream refuses ({reject_summary(refused)}; "
            f"first at line {refused[0].line}): fix the file (--rejects lists each with its reason)"
        )
    result = round_price_columns(result, ["open", "high", "low", "close"], price=price)
    with open_output(output) as fh:
        result.to_csv(fh, index=False, lineterminator="\n")
    if rejects is not None or rejects_out:
        with open_output(rejects, "--rejects") as fh:
            write_rejects(refused, fh)
    why = f" ({reject_summary(refused)})" if refused else ""
    typer.echo(
        f"candles={len(result)} layout={loaded.layout} rejected={len(refused)}{why} indicators={bank_spec}", err=True
    )


def _read(
    file: Path, *, symbol: str | None, timeframe: str | None, price: PriceSide, instruments: InstrumentRegistry
) -> LoadedFile:
    """The candles of ``file``, as :func:`~forex_diffusion.ingest.readers.read_candle_series`
    reads them (every symbol, or ``symbol``'s rows and the rows naming none; one timeframe),
    with the refusals ``train`` and ``backtest`` make, in their words
    (:func:`~streams.commands.backtest.check_symbol_rows`, :func:`~streams.commands.backtest.check_spacing`):
    a file holding no ``symbol`` row was refused in the reader's words, with other
    punctuation; bars spaced a week or a month apart, or daily dates read with day and month
    swapped (a bar a month), were taken as ``--timeframe 1d``. Each symbol's bars are checked
    apart (the reader measured every symbol's together)."""
    from forex_diffusion.ingest.readers import file_timeframes, read_candles, select_series

    from .backtest import check_spacing, check_symbol_rows

    loaded = read_candles(file, symbol=symbol, price=price, instruments=instruments)
    if symbol is not None:
        check_symbol_rows(loaded.frame, file, symbol, instruments)
    tfs = file_timeframes(file)
    chosen = select_series(
        loaded, file, symbol=symbol, timeframe=timeframe, one_symbol=False, timeframes=tfs, instruments=instruments
    )
    if timeframe is not None and tfs is None:
        frame = chosen.frame
        named = frame["symbol"].fillna("").astype(str).str.strip()
        for _, bars in frame[named.ne("").to_numpy(dtype=bool)].groupby(named[named.ne("")], sort=False):
            check_spacing(bars, file, timeframe)
    return chosen


def register(app: typer.Typer) -> None:
    app.command("indicators")(indicators)
