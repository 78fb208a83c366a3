"""``forexd indicators FILE``: compute the incremental indicators over a candle file."""
# ruff: noqa: B008  -- typer declares options as argument defaults by design

from __future__ import annotations

import sys
from pathlib import Path

import typer

from forex_diffusion.errors import ForexDiffusionError
from forex_diffusion.indicators import DEFAULT_SPEC, INDICATOR_CLASSES, BankSpec, compute_indicators
from forex_diffusion.readers import read_candles

_INPUT_COLUMNS = ["ts_ms", "symbol", "open", "high", "low", "close", "volume"]


def indicators(
    file: Path = typer.Argument(..., help="Candle file (CSV, optionally .gz): the ../shared/data layouts, "
                                "timestamp,symbol,open,high,low,close[,volume], Dukascopy, HistData, MetaTrader."),
    output: Path | None = typer.Option(None, "-o", "--output", help="CSV to write (default: standard output)."),
    price: str = typer.Option("mid", "--price", help="Side of bid/ask candle files: mid|bid|ask."),
    spec: str | None = typer.Option(
        None, "--spec",
        help=f"Comma-separated indicators name_param_param (default: {','.join(DEFAULT_SPEC)}); "
             f"names: {', '.join(sorted(INDICATOR_CLASSES))}."),
    symbol: str | None = typer.Option(None, "--symbol", help="Symbol for files without one (else from the file name)."),
    only_ready: bool = typer.Option(False, "--only-ready",
                                    help="Leave a value empty until its indicator is ready (seed forgotten), "
                                         "not only until it is defined."),
) -> None:
    """Read candles from FILE and write them with one column per indicator output.

    Writes ts_ms (bar open, epoch ms UTC),symbol,open,high,low,close,volume and, by default,
    sma_20, ema_20, rsi_14, atr_14, bb_lower_20, bb_middle_20, bb_upper_20, macd_12_26,
    macd_signal_9, macd_hist_12_26_9, donchian_upper_20, donchian_lower_20, keltner_lower_20,
    keltner_middle_20, keltner_upper_20, stoch_k_14, stoch_d_3, adx_14, hurst_100; a value is
    empty while its indicator warms up. The numbers come from the same incremental classes
    the stream runs, row by row, and equal TA-Lib's where TA-Lib has the indicator.
    """
    if price not in ("mid", "bid", "ask"):
        raise typer.BadParameter("--price must be mid, bid or ask")
    try:
        bank_spec = BankSpec.parse(spec)
        loaded = read_candles(file, symbol=symbol, price=price)  # type: ignore[arg-type]
        frame = loaded.frame[_INPUT_COLUMNS]
        result = compute_indicators(frame, bank_spec, only_ready=only_ready)
    except ForexDiffusionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if output is None:
        result.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        result.to_csv(output, index=False, lineterminator="\n")
    typer.echo(f"candles={len(result)} layout={loaded.layout} rejected={len(loaded.rejects)} "
               f"indicators={bank_spec}", err=True)


def register(app: typer.Typer) -> None:
    app.command("indicators")(indicators)
