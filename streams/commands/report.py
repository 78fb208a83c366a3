"""``forexd report``: an HTML report of stored forecasts against realised candles."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (
    _sqlite_file,
    check_given,
    check_output,
    check_output_format,
    check_positive,
    database_url,
    echo_error,
    one_line,
    open_engine,
    output_path,
    writing,
)

#: Most forecasts per rolling window: past it a window is the whole history of any store
#: (pandas' rolling window overflowed a C long at 10**19: OverflowError traceback).
WINDOW_MAX = 1_000_000
#: Most fan charts: each is a numbered mark on the 960-px price chart (past about 50 the marks
#: overlap) and a panel of its own (99999 drew every forecast: seconds and a huge page).
FANS_MAX = 50


def report_command(
    output: Path = typer.Option(..., "-o", "--output", help="HTML file to write.", readable=False, parser=output_path),
    db: str | None = typer.Option(
        None, "--db", help="Database URL (default: FOREXD_DATABASE_URL, else the SQLite file under FOREXD_DATA_DIR)."
    ),
    symbol: str | None = typer.Option(
        None, "--symbol", help="Symbol (default: the series with the most stored forecasts)."
    ),
    timeframe: str | None = typer.Option(None, "--timeframe", help="Timeframe (default: as --symbol's default)."),
    from_: str | None = typer.Option(None, "--from", help="First as_of, inclusive (UTC date or ISO-8601 time)."),
    to: str | None = typer.Option(None, "--to", help="End of the period, exclusive (UTC date or ISO-8601 time)."),
    window: int = typer.Option(
        100, "--window", help=f"Forecasts per rolling window of the CRPS and coverage charts (1..{WINDOW_MAX:,})."
    ),
    fans: int = typer.Option(6, "--fans", help=f"Number of sampled forecasts drawn as fan charts (1..{FANS_MAX})."),
) -> None:
    """Write a self-contained HTML report of forecast quality for one series and period.

    Shows closes with forecast fans, rolling CRPS vs the random walk, rolling 50/90 %
    coverage, registry model changes, drift events (if recorded) and summary numbers.
    Stored rows that are no forecast or no candle (written by hand, by another program, cut
    short) are left out and counted. Without --from, a series of more forecasts, forecast steps
    or candles than one report reads is reported for its newest forecasts that fit (the output
    says from when). Exits 1 when the period holds no forecast, 2 on bad
    options or a period from --from of more forecasts or candles than one report reads, 65 when the
    database is not a SQLite file or holds no forecasts table, 66 when the database file does
    not exist, 69 when the database does not answer.
    """
    from forex_diffusion.reports.backtest import parse_utc_date
    from forex_diffusion.reports.html import (
        ReportConfig,
        counts_message,
        cut_message,
        empty_message,
        list_series,
        load_report,
        render_report,
    )

    check_positive(window, "--window", at_most=WINDOW_MAX)  # before the database is opened
    check_positive(fans, "--fans", at_most=FANS_MAX)
    check_given(from_=from_, to=to, symbol=symbol)  # an empty --from was the whole history
    from_ms = parse_utc_date(from_) if from_ else None
    to_ms = parse_utc_date(to) if to else None
    if timeframe is not None:
        from forex_diffusion.timeframes import Timeframe

        # '1x' is a usage error, not "no stored forecasts at 1x"; 1H and 60m are the stored 1h
        timeframe = Timeframe.parse(timeframe).name
    if symbol is not None:
        from forex_diffusion.instruments import InstrumentRegistry

        reg = InstrumentRegistry()  # eurusd, EUR/USD: the stored EURUSD (another name as given)
        symbol = reg.normalise(symbol) or reg.normalise(symbol.upper()) or symbol
    url = database_url(db)
    check_output(output, other=[(_sqlite_file(url)[1], "the database file")])
    check_output_format(output, "-o", "HTML", ".html")
    engine = open_engine(url, create=False, needs=("forecasts",))
    try:
        if symbol is None or timeframe is None:
            series = [
                s
                for s in list_series(engine)
                if (symbol is None or s[0] == symbol) and (timeframe is None or s[1] == timeframe)
            ]
            if not series:
                echo_error(
                    "no stored forecasts"
                    + (f" of {symbol}" if symbol else "")
                    + (f" at {timeframe}" if timeframe else "")
                    + ": nothing to report"
                )
                raise typer.Exit(1)
            symbol, timeframe = series[0][0], series[0][1]
        config = ReportConfig(
            symbol=symbol, timeframe=timeframe, from_ms=from_ms, to_ms=to_ms, window=window, fans=fans
        )
        data = load_report(engine, config)
    finally:
        engine.dispose()
    if data.empty:
        echo_error(empty_message(data))
        raise typer.Exit(1)
    html = render_report(data)
    with writing(output):
        output.write_text(html, encoding="utf-8")
    n = data.steps.groupby(["as_of", "model_version"]).ngroups
    cut = f" ({cut_message(data)})" if data.cut_from_ms is not None else ""
    # the symbol may come from the database: its control characters are escaped, never sent to the terminal
    typer.echo(
        one_line(
            f"report of {symbol} {timeframe}: {n} forecasts, {len(data.candles)} candles{counts_message(data)}"
            f" -> {output}{cut}"
        )
    )


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
