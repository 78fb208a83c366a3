"""``forexd train FILE``: train a diffusion forecaster on a candle file and save a checkpoint."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.timeframes import Timeframe

from ._common import (
    SEED_MAX,
    THREADS_MAX,
    check_given,
    check_input,
    check_list,
    check_model_dir,
    check_positive,
    check_price,
    file_symbols,
    input_path,
    progress_bar,
)
from .backtest import admitted_candles, read_series
from .candles import check_symbol

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from forex_diffusion.diffusion.training import TrainProgress
    from forex_diffusion.domain import PriceSide

logger = logging.getLogger(__name__)


def train_command(
    files: list[Path] = typer.Argument(
        ...,
        help="Candle file(s) (CSV, optionally .gz), any layout `forexd candles` writes or the readers know; several files train one global model, each file's rows of each symbol a series.",
        readable=False,
        parser=input_path,
    ),
    symbol: str = typer.Option(
        ...,
        "--symbol",
        help="Symbol, e.g. EURUSD (selects its rows in files with several); A,B,C or `all` (every symbol of the file) trains one global model over those series.",
    ),
    timeframe: str = typer.Option(
        ..., "--timeframe", help="Timeframe of the candles, e.g. 1h (selects it in files with several)."
    ),
    horizon: int = typer.Option(24, "--horizon", help="Steps ahead H."),
    until: str | None = typer.Option(None, "--until", help="Ignore candles closing after DATE (UTC)."),
    split: str | None = typer.Option(
        None,
        "--split",
        help="DATE1,DATE2: train before DATE1, validate DATE1–DATE2, test after DATE2 (default 60/20/20).",
    ),
    max_minutes: float = typer.Option(
        10.0,
        "--max-minutes",
        help="Wall-clock budget of training, calibration and test scoring (the file is read before, the checkpoint saved after): "
        "the calibration and test windows are cut to what fits, never below 64 each; a budget too small for those "
        "finishes with them and says it was exceeded (metrics.budget in the manifest).",
    ),
    max_steps: int = typer.Option(20_000, "--max-steps", help="Optimiser step cap."),
    model_dir: Path = typer.Option(
        ..., "--model-dir", help="Checkpoint root; writes DIR/SYMBOL-TF-hH/VERSION.{pt,json}.", readable=False
    ),
    price: str = typer.Option("mid", "--price", help="Side of bid/ask files: mid|bid|ask."),
    window: int = typer.Option(48, "--window", help="Past candles the model sees."),
    width: int = typer.Option(96, "--width", help="Hidden width of the denoiser."),
    blocks: int = typer.Option(3, "--blocks", help="Residual blocks of the denoiser."),
    calib_windows: int = typer.Option(
        4096, "--calib-windows", help="Validation windows used to calibrate (and test windows scored)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, batches and noise."),
    device: str = typer.Option("auto", "--device", help="auto|cpu|cuda."),
    compile_: bool = typer.Option(
        False,
        "--compile",
        help="Wrap the loss in torch.compile: about 1.2x training steps/s on CPU after 5-75 s of compilation, so only for long runs (docs/diffusion.md).",
    ),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads (>= 1)."),
    keep: int = typer.Option(
        3, "--keep", help="Checkpoints kept for this model key (besides every version the model registry names)."
    ),
    db: str | None = typer.Option(
        None,
        "--db",
        help="Registry database whose versions retention never deletes (default: FOREXD_DATABASE_URL, else the SQLite file under FOREXD_DATA_DIR if it exists).",
    ),
    series_embedding: int = typer.Option(
        0, "--series-embedding", help="Global model: width of a learnt series embedding (0: none)."
    ),
    inputs: str | None = typer.Option(
        None,
        "--inputs",
        help="Model inputs besides returns, ranges and calendar: indicators, mtf[:TF1,TF2], cross:SYM1,SYM2 (other pairs of FILE), comma-separated.",
    ),
) -> None:
    """Train on FILE, calibrate on the validation span, score the test span, save a checkpoint.

    Reads one candle file; writes a weights-only checkpoint and its JSON manifest (configs,
    data window, metrics, sha256) under --model-dir. Prints the test scores per step and,
    as the LAST line, the checkpoint path.

    Several symbols (``--symbol A,B,C`` or ``all``) or several files train ONE global
    model: windows per series (never across two), the same split dates for every series,
    pooled training; its key is the symbol set's (``SETxxxxxxxx-TF-hH``). Series are named
    by symbol, or ``SYMBOL@FILESTEM`` when several files are given.

    A candle the stream refuses is skipped and counted on standard error, as ``forexd
    indicators`` refuses it (a bad price or bar; a close past the clock or far ahead of the
    series: future_ts; an open time already taken: duplicate, the first row kept; one before
    the last: late). Every candle refused: exit 65.
    """
    from forex_diffusion.diffusion.context import CONTEXT_MAX, ContextSpec
    from forex_diffusion.diffusion.denoiser import BLOCKS_MAX, HORIZON_MAX, WIDTH_MAX
    from forex_diffusion.diffusion.training import TrainConfig
    from forex_diffusion.reports.backtest import parse_utc_date
    from forex_diffusion.wire import INT64_MAX

    price = check_price(price)
    for value, option in (
        (threads, "--threads"),
        (horizon, "--horizon"),
        (window, "--window"),
        (max_steps, "--max-steps"),
        (keep, "--keep"),
        (calib_windows, "--calib-windows"),
    ):
        # the core's bounds; the others land in the manifest, which strict JSON readers and
        # SQLite take as 64-bit integers
        bounds = {"--threads": THREADS_MAX, "--horizon": HORIZON_MAX, "--window": CONTEXT_MAX}
        check_positive(value, option, at_most=bounds.get(option, INT64_MAX))
    # the denoiser's bounds, said before the file is read (was after it: "width must be in 1..4096")
    check_positive(width, "--width", at_most=WIDTH_MAX)
    check_positive(blocks, "--blocks", at_most=BLOCKS_MAX)
    check_positive(seed, "--seed", at_least=0, at_most=SEED_MAX)
    if not (max_minutes > 0 and math.isfinite(max_minutes * 60.0)):  # inf: "Infinity" in the manifest
        raise typer.BadParameter(f"--max-minutes must be a positive, finite number of minutes, not {max_minutes}")
    if not 0 <= series_embedding <= 1024:  # beyond: an allocation failure (traceback), not a model
        raise typer.BadParameter(f"--series-embedding must be in [0, 1024], not {series_embedding}")
    reg = InstrumentRegistry()
    wanted = [s.strip() for s in symbol.split(",") if s.strip()]
    if not wanted:
        raise typer.BadParameter("--symbol is empty: name a symbol, A,B,C or all")
    check_list(symbol, "--symbol", takes="a symbol, A,B,C or all")  # EURUSD,,GBPUSD: an empty item was dropped
    every = [s.lower() for s in wanted] == ["all"]
    syms = [] if every else list(dict.fromkeys(reg.normalise(s) or s.upper() for s in wanted))
    for s in syms:
        check_symbol(s)  # '1' was refused as "holds no 1 candles … pass one of those" after the read
    is_global = every or len(syms) > 1 or len(files) > 1
    if series_embedding and not is_global:
        raise typer.BadParameter("--series-embedding needs a global model: several symbols or files")
    sym = syms[0] if syms else "ALL"
    timeframe = Timeframe.parse(timeframe).name  # 1H, 60m: the 1h of the file's column and the model key
    check_given(("inputs",), until=until, split=split, inputs=inputs)
    check_list(inputs, "--inputs")  # indicators,,mtf: an empty item was dropped
    dates = None
    if split:
        parts = [p for p in split.split(",") if p.strip()]
        if len(parts) != 2:
            raise typer.BadParameter("--split takes DATE1,DATE2")
        check_list(split, "--split", takes="DATE1,DATE2")  # D1,,D2 was taken as D1,D2
        dates = (parse_utc_date(parts[0]), parse_utc_date(parts[1]))
    config = TrainConfig(
        symbol=sym,
        timeframe=timeframe,
        horizon=horizon,
        context=ContextSpec(window=window),
        width=width,
        blocks=blocks,
        split=dates,
        calib_windows=calib_windows,
        test_windows=calib_windows,
        val_windows=min(512, calib_windows),
        until_ms=parse_utc_date(until) if until else None,
        max_minutes=max_minutes,
        max_steps=max_steps,
        seed=seed,
        device=device,
        compile=compile_,
        keep=keep,
        inputs=tuple(i for i in (inputs or "").split(",") if i.strip()),
    )
    for f in files:
        check_input(f, "candle file")
    # one file twice (by another spelling, a link or a hard link): two copies of its series
    if len({(st.st_dev, st.st_ino) for st in (f.stat() for f in files)}) < len(files):
        raise typer.BadParameter("a candle file is given twice: name each file once")
    check_model_dir(model_dir)
    protected = _registry_protection(db)
    least = config.context.ready_after + horizon + 1  # one window and its horizon
    series = _read_series(files, syms, timeframe=timeframe, price=price, least=least) if is_global else None
    if series is not None:
        import dataclasses

        from forex_diffusion.instruments import series_symbol, symbol_set_key

        sym = symbol_set_key(series_symbol(n) for n in series)
        config = dataclasses.replace(config, symbol=sym, series=tuple(series), series_embedding=series_embedding)

    import torch

    from forex_diffusion.diffusion.training import train
    from forex_diffusion.ingest.readers import check_price_scale

    torch.set_num_threads(threads)
    candles: Any
    if series is not None:
        candles = series
        typer.echo(f"global model {sym} over {len(series)} series: {', '.join(series)}")
    else:
        loaded = read_series(files[0], sym, timeframe=timeframe, price=price, least=least)
        check_price_scale(loaded.frame, sym, files[0])
        # what the stream refuses never trains
        candles = admitted_candles(loaded.frame, files[0], sym, timeframe=timeframe, rejects=loaded.rejects)
    with progress_bar("train", elapsed=True, description=True) as progress:
        task = progress.add_task("", total=config.max_minutes * 60.0)

        def report(p: TrainProgress) -> None:
            progress.update(
                task,
                completed=min(p.elapsed_s, p.budget_s),
                description=f"step {p.step} loss {p.loss:.4f} val CRPS {p.val_crps:.3e}",
            )

        extra = _input_features(config, candles, files[0], price) if config.inputs else None
        result = train(config, candles, model_dir, progress=report, protected=protected, extra=extra)
    m = result.metrics
    typer.echo(f"steps={m['steps']} stop={m['stop_reason']} seconds={m['train_seconds']:.1f} params={m['params']}")
    test = m.get("test")
    if test:
        typer.echo("step  skill_vs_rw  cover50  cover90")
        for i, (s, c5, c9) in enumerate(zip(test["skill"], test["cover50"], test["cover90"], strict=True), start=1):
            typer.echo(f"{i:4d}  {s:+.4f}      {c5:.3f}    {c9:.3f}")
    for name, sc in m.get("test_series", {}).items():
        skill = sc["skill"]
        typer.echo(
            f"series {name}: n={sc['n']} skill step1 {skill[0]:+.4f} mean {sum(skill) / len(skill):+.4f} "
            f"cover90 mean {sum(sc['cover90']) / len(sc['cover90']):.3f}"
        )
    typer.echo(str(result.checkpoint))


def _read_series(
    files: list[Path], syms: list[str], *, timeframe: str, price: PriceSide, least: int | None = None
) -> dict[str, Any]:
    """The series of a global model: ``{name: candle frame}`` for each file and symbol.

    ``syms`` empty means every symbol of each file. A name is the symbol, or
    ``SYMBOL@FILESTEM`` when several files are given (two vendors of one pair are two
    series). Each series' rows are selected by symbol and timeframe, never mixed; a row whose
    symbol is blank is no other symbol's, refused and counted in each (:func:`read_series`).
    """
    import re

    from forex_diffusion.errors import DataFormatError
    from forex_diffusion.ingest.readers import check_price_scale, read_candles

    out: dict[str, Any] = {}
    tags: list[str] = []
    for f in files:
        base = f.name.split(".", 1)[0]
        tag = re.sub(r"[^A-Za-z0-9_-]+", "_", base).strip("_").lower() or "file"
        while tag in tags:
            tag += "_"
        tags.append(tag)
        # a blank cell names no symbol: its rows are refused in each series, not a series of their own
        held = syms or sorted(
            {s for s in read_candles(f, price=price).frame["symbol"].tolist() if isinstance(s, str) and s}
        )
        if not held:
            raise DataFormatError(f"{f.name} names no symbols: pass --symbol")
        if not syms and (odd := [s for s in held if not _is_symbol(s)]):  # was "symbol '1' must be …" (exit 2)
            shown = ", ".join(repr(s[:24]) for s in odd[:5]) + (f" and {len(odd) - 5:,} more" if len(odd) > 5 else "")
            raise DataFormatError(
                f"{f.name}: its symbol column holds values that are no symbol ({shown}): write the pairs in it, "
                "or name the symbols to train with --symbol A,B"
            )
        if len(syms) > 1:
            # a file without a symbol column gives its rows any symbol asked for: A,B would
            # train two copies of one series under two names; its symbol must be the file's
            named = file_symbols(f, price)
            missing = [s for s in syms if s not in named]
            if missing:
                raise DataFormatError(
                    f"{f.name} holds no {missing[0]} candles (it holds "
                    f"{', '.join(sorted(map(str, named))) or 'one unnamed series'}): "
                    "pass the symbols it holds to --symbol, or one file per symbol"
                )
        for s in held:
            loaded = read_series(f, s, timeframe=timeframe, price=price, least=least)
            check_price_scale(loaded.frame, s, f)
            frame = admitted_candles(loaded.frame, f, s, timeframe=timeframe, rejects=loaded.rejects)
            out[s if len(files) == 1 else f"{s}@{tag}"] = frame
    if len(out) < 2:
        raise DataFormatError(
            f"a global model needs at least two series, got {', '.join(out) or 'none'}: "
            "pass several symbols (A,B or all) or several files"
        )
    return out


def _is_symbol(name: str) -> bool:
    """Whether ``name`` (a symbol cell, as the reader normalised it) is a symbol the instrument
    registry knows or could take (six ASCII letters)."""
    return bool(InstrumentRegistry().normalise(name)) or (len(name) == 6 and name.isascii() and name.isalpha())


def _registry_protection(db: str | None) -> Callable[[str, Sequence[str]], set[str]] | None:
    """What checkpoint retention must keep: every version the model registry names (any
    status but ``deleted``), so training into a serving directory never deletes a registered,
    champion or rollback version. The database is ``--db``, else ``FOREXD_DATABASE_URL``,
    else the SQLite file under ``FOREXD_DATA_DIR`` when it exists (as ``forexd models``
    resolves it); none of them: no registry, plain retention. A named database that does
    not answer stops the command before training (exit 69), as one that is no SQLite
    database or another program's (exit 65)."""
    import os

    from ..settings import Settings
    from ._common import database_url, open_engine

    env = {k: os.environ[k] for k in ("FOREXD_DATABASE_URL", "FOREXD_DATA_DIR") if os.environ.get(k)}
    settings = Settings.from_env(env)
    url = database_url(db) if db is not None else settings.database_url  # --db "": a usage error
    if not url:
        default = settings.data_dir / "forexd.db"
        if not default.is_file():
            return None
        url = settings.db_url
    engine = open_engine(url, create=False)

    def protected(key: str, candidates: Sequence[str]) -> set[str]:
        from sqlalchemy import inspect

        from forex_diffusion.storage.model_registry import get_version

        if not inspect(engine).has_table("model_versions"):
            return set()  # no registry tables: nothing registered
        rows = {v: get_version(engine, v) for v in candidates}
        return {v for v, row in rows.items() if row is not None and row.status != "deleted"}

    return protected


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``forexd`` app."""
    app.command("train")(train_command)


def _input_features(config: Any, candles: Any, file: Path, price: PriceSide) -> Any:
    """The extra features of ``config.inputs`` (one array, or one per series of a global model).

    Built by :func:`forex_diffusion.diffusion.inputs.build_extra_frame`, the builder the
    worker runs; the other pairs of a ``cross`` input are read from ``file``.
    """
    from forex_diffusion.diffusion.inputs import InputSpec, build_extra_frame
    from forex_diffusion.errors import DataFormatError
    from forex_diffusion.instruments import series_symbol

    spec = InputSpec(config.inputs, config.timeframe)
    others = {}
    held = file_symbols(file, price) if spec.cross_symbols else set()
    for s in spec.cross_symbols:
        if s not in held:  # a file without a symbol column would give its own rows as the other pair's
            raise DataFormatError(
                f"--inputs cross:{s}: {file.name} holds no {s} candles "
                f"(it holds {', '.join(sorted(held)) or 'one unnamed series'})"
            )
        try:
            other = read_series(file, s, timeframe=config.timeframe, price=price)
            others[s] = admitted_candles(other.frame, file, s, timeframe=config.timeframe, rejects=other.rejects)
        except DataFormatError as exc:
            raise DataFormatError(f"--inputs cross:{s}: {str(exc).split(': pass', 1)[0]}") from exc
    if isinstance(candles, dict):
        return {n: build_extra_frame(f, series_symbol(n), config.timeframe, spec, others) for n, f in candles.items()}
    return build_extra_frame(candles, config.symbol, config.timeframe, spec, others)
