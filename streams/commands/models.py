"""``forexd models list|promote|rollback|history|register|shadow``: inspect and move model versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..settings import Settings
from ._common import check_given, check_model_dir, database_url, echo_error, input_path, one_line, open_engine

if TYPE_CHECKING:
    from forex_diffusion.storage.model_registry import ModelKey
    from retraining.registry import ModelRegistry

models_app = typer.Typer(
    help="Model registry: list versions, promote, roll back, show alias history, register a checkpoint, "
    "show a live shadow.",
    no_args_is_help=True,
)

# The options the subcommands share, declared once (typer reads them from the annotation).
_Db = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL (default: FOREXD_DATABASE_URL, else the SQLite file under FOREXD_DATA_DIR)."
    ),
]
_ModelDir = Annotated[
    Path | None,
    typer.Option(
        "--model-dir", help="Artifact root (default: FOREXD_MODEL_DIR, else FOREXD_DATA_DIR/models).", readable=False
    ),
]
_Reason = Annotated[str, typer.Option("--reason", help="Recorded in the alias history.")]


def resolve_paths(db: str | None, model_dir: Path | None) -> tuple[str, Path]:
    """Database URL and model directory from the options, else the ``FOREXD_*`` settings."""
    url = database_url(db)  # an empty --db is a usage error, not the default database
    settings = Settings.from_env()
    return url, model_dir or settings.model_dir or settings.data_dir / "models"


def open_registry(
    db: str | None, model_dir: Path | None, *, create: bool = False, write: bool = False
) -> ModelRegistry:
    """A registry on the resolved database (reachable, else exit 69) and model directory.

    Only ``register`` (``create``) makes a new SQLite file: the other commands read or change
    versions a registry already holds, so a mistyped path is exit 66, not an empty new database.
    A command that changes the registry (``write``) refuses a read-only database file (73);
    a file that is no database, or another program's database, is refused by every one (65),
    as is a database whose registry tables are not the registry's (a column missing, or of a
    type that cannot hold what the registry writes), before anything is read or copied.
    """
    from forex_diffusion.storage.model_registry import check_registry_schema
    from retraining.registry import ModelRegistry

    url, mdir = resolve_paths(db, model_dir)
    engine = open_engine(url, must_exist=not create, write=write or create)
    check_registry_schema(engine)
    return ModelRegistry(engine, mdir)


def _when(ms: Any) -> str:
    """An epoch-ms time as the listings show it: ``-`` when absent, ``?`` when the row holds
    no time (a row written by hand: a string, ``true``, ``1e20``)."""
    if ms is None:
        return "-"
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return "?"
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "?"


def _fmt(x: Any) -> str:
    """A score as the listing shows it: a number, ``-`` when absent, ``?`` when the row holds
    something else (a row written by hand: a string could carry terminal escapes; an integer
    of 4,000 digits is no score either)."""
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:.4g}" if abs(x) < 10**300 else "?"  # past the floats: no score
    if isinstance(x, float):
        return f"{x:.4g}"
    return "-" if x is None else "?"


def _json_line(obj: Any) -> str:
    """``obj`` as one line of strict JSON: non-finite floats (undefined scores, NaN metrics) as
    null (:func:`~forex_diffusion.wire.jsonable`), other non-JSON values as their text."""
    from forex_diffusion.wire import jsonable

    return json.dumps(jsonable(obj), default=str, allow_nan=False)


def _key(text: str) -> ModelKey:
    """``text`` as a model key whose timeframe is one the stream knows (``EURUSD/1x/5`` listed
    nothing with exit 0, and ``register --key`` stored it), spelt as the stream spells it
    (``EURUSD/60m/24`` is ``EURUSD/1h/24``: stored as typed, no worker would serve it)."""
    from dataclasses import replace

    from forex_diffusion.storage.model_registry import ModelKey
    from forex_diffusion.timeframes import Timeframe

    key = ModelKey.parse(text)
    return replace(key, timeframe=Timeframe.parse(key.timeframe).name)


@models_app.command("list")
def list_command(
    key: str | None = typer.Option(None, "--key", help="Only this key: SYMBOL/timeframe/horizon."),
    live: bool = typer.Option(False, "--live", help="Hide deleted versions."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    db: _Db = None,
    model_dir: _ModelDir = None,
) -> None:
    """List registered versions (oldest first) with status, aliases and hold-out scores.

    Reads the registry tables; writes nothing. A row the registry cannot read (written by
    hand or by another program) is left out, with one warning on standard error; metrics it
    cannot read show as none.
    """
    check_given(key=key)  # an empty --key was every key (list), the manifest's (register)
    k = _key(key) if key else None  # a usage error before the database is touched
    reg = open_registry(db, model_dir)
    versions = reg.list(k, include_deleted=not live)
    key_of = {v.version: v.key for v in versions}
    aliases: dict[str, str] = {}
    for kk in sorted({v.key for v in versions}, key=str):
        for name, ver in sorted(reg_aliases(reg, kk).items()):
            if key_of.get(ver) == kk:  # an alias naming another key's version (a row written by hand) is no alias of it
                aliases[ver] = ",".join(filter(None, [aliases.get(ver), name]))
    if as_json:
        for v in versions:
            typer.echo(_json_line({**v.to_dict(), "aliases": aliases.get(v.version, "")}))
        return
    from forex_diffusion.errors import ArtifactError
    from retraining.registry import model_symbols

    typer.echo(
        f"{'version':34} {'key':16} {'status':11} {'alias':18} {'created':20} {'crps':>9} {'skill':>8} {'cover90':>7}"
    )
    for v in versions:
        h = v.metrics.get("holdout")
        h = h if isinstance(h, dict) else {}
        # a global model's key is its symbol set's hash: the set follows the row (a malformed
        # one, as the registry reads it, is shown as such rather than failing the listing)
        syms = v.metrics.get("symbols")
        if syms is not None:
            try:
                syms = model_symbols(syms, f"version {v.version}")
            except ArtifactError:
                syms = ["(malformed)"]
        typer.echo(
            f"{v.version:34} {str(v.key):16} {v.status:11} {aliases.get(v.version, '-'):18} "
            f"{_when(v.created_ms):20} {_fmt(h.get('crps')):>9} {_fmt(h.get('skill')):>8} "
            f"{_fmt(h.get('cover90')):>7}" + (f"  symbols={','.join(map(str, syms))}" if syms else "")
        )


def reg_aliases(reg: ModelRegistry, key: ModelKey) -> dict[str, str]:
    """``{alias: version}`` of a key."""
    from forex_diffusion.storage.model_registry import get_aliases

    return get_aliases(reg.engine, key)


@models_app.command("promote")
def promote_command(
    version: str = typer.Argument(..., help="Version id (see `forexd models list`)."),
    reason: _Reason = "manual",
    db: _Db = None,
    model_dir: _ModelDir = None,
) -> None:
    """Make VERSION the champion of its key after verifying its artifact (hash + weights-only load).

    Writes the alias and its history in one transaction; exit 2 if refused.
    """
    if not version.strip():  # before the database: '' was "unknown version" of nothing
        raise typer.BadParameter(
            "the version is empty (an unset shell variable?): give a version id from `forexd models list`",
            param_hint="'VERSION'",
        )
    v = open_registry(db, model_dir, write=True).promote(version, f"manual: {reason}")
    typer.echo(f"promoted {v.version} champion of {v.key}")


@models_app.command("rollback")
def rollback_command(
    key: str = typer.Argument(..., help="Model key SYMBOL/timeframe/horizon (or SYMBOL-tf-hH)."),
    reason: _Reason = "manual",
    db: _Db = None,
    model_dir: _ModelDir = None,
) -> None:
    """Restore the previous champion of KEY; the current one is marked rolled_back.

    Exit 2 when there is nothing to restore or its artifact does not load.
    """
    k = _key(key)  # a usage error before the database is touched
    v = open_registry(db, model_dir, write=True).rollback(k, reason)
    typer.echo(f"rolled back: {v.version} champion of {v.key}")


@models_app.command("history")
def history_command(
    key: str = typer.Argument(..., help="Model key SYMBOL/timeframe/horizon."),
    db: _Db = None,
    model_dir: _ModelDir = None,
) -> None:
    """Print the alias history of KEY (alias, version, from, to, reason), oldest first.

    Exit 2 for a key without any registered version (a mistyped key printed nothing, exit 0);
    a key whose versions were never promoted says so in one line on stderr, exit 0.
    """
    from forex_diffusion.errors import RegistryError

    k = _key(key)  # a usage error before the database is touched
    reg = open_registry(db, model_dir)
    rows = reg.history(k)
    if not rows:
        versions = reg.list(k)
        if not versions:
            raise RegistryError(f"unknown key {k}: no registered version (see `forexd models list`)")
        echo_error(f"{k}: no alias changes yet ({len(versions)} version(s) registered)")
    for r in rows:  # a reason is a row's free text: shown escaped, on one line
        typer.echo(f"{r.alias:10} {r.version:34} {_when(r.from_ms):20} {_when(r.to_ms):20} {one_line(r.reason)}")


@models_app.command("register")
def register_command(
    checkpoint: Path = typer.Argument(
        ...,
        help="A checkpoint .pt (with its .json manifest), e.g. from `forexd train`.",
        readable=False,
        parser=input_path,
    ),
    key: str | None = typer.Option(
        None, "--key", help="Key to register under (default: the manifest's); '*' symbol serves every symbol."
    ),
    db: _Db = None,
    model_dir: _ModelDir = None,
) -> None:
    """Verify CHECKPOINT, copy it into the model directory and register it (not promoted)."""
    check_given(key=key)  # an empty --key was every key (list), the manifest's (register)
    k = _key(key) if key else None  # a usage error before the database is touched
    _check_checkpoint(checkpoint)  # before a new registry file is made
    check_model_dir(resolve_paths(db, model_dir)[1])
    if k is not None:
        _check_key_fits(k, checkpoint)
    v = open_registry(db, model_dir, create=True).import_artifact(checkpoint, key=k)
    typer.echo(f"registered {v.version} for {v.key}")


def _check_checkpoint(checkpoint: Path) -> None:
    """A checkpoint file to register, refused like a missing or corrupt ``backtest --model``
    (exit 2): missing, a directory (a model key's: name its ``.pt``), a device or a pipe."""
    from forex_diffusion.errors import RegistryError

    if checkpoint.is_dir():
        newest = sorted(checkpoint.glob("*.pt"))
        hint = f", e.g. {newest[-1]}" if newest else ""
        raise RegistryError(f"checkpoint {checkpoint} is a directory: pass one of its .pt files{hint}")
    if not checkpoint.exists():
        raise RegistryError(f"checkpoint {checkpoint} does not exist: check the path")
    if not checkpoint.is_file():
        raise RegistryError(f"checkpoint {checkpoint} is not a regular file: pass a .pt file")


def _check_key_fits(key: ModelKey, checkpoint: Path) -> None:
    """Refuse a ``--key`` whose timeframe or horizon is not the checkpoint's: the worker
    would serve a 1h model's 24 steps as another timeframe's or horizon's forecasts.
    (Only the symbol may be re-keyed: ``*`` or another pair.)

    Timeframes are compared by their one name on both sides: a manifest may spell its
    timeframe another way (``1H``, ``60m``; it is read as written), and the key the registry
    gives such a checkpoint without ``--key`` is ``SYMBOL/1h/24``: that key fits it too."""
    from forex_diffusion.diffusion.predictor import Predictor
    from forex_diffusion.errors import RegistryError
    from forex_diffusion.timeframes import canonical_name

    pred = Predictor.load(checkpoint)  # refuses what import_artifact would refuse
    # the network's horizon (the manifest may omit it); a timeframe that names none stays as written
    tf, horizon = canonical_name(str(pred.manifest.get("timeframe"))), pred.horizon
    if canonical_name(key.timeframe) != tf or key.horizon != horizon:
        raise RegistryError(
            f"--key {key} does not fit {checkpoint.name}: it forecasts {horizon} steps of {tf} "
            f"candles; pass a key SYMBOL/{tf}/{horizon}"
        )


@models_app.command("shadow")
def shadow_command(
    key: str = typer.Argument(..., help="Model key SYMBOL/timeframe/horizon (or SYMBOL-tf-hH)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    db: _Db = None,
    model_dir: _ModelDir = None,
) -> None:
    """Show the live shadow of KEY: realised forecasts, shadow vs champion CRPS, skill, decision state.

    The version in shadow, else the key's latest version that was in shadow (decided). The
    champion shown is the model serving the key's series now: its own key's, else the global
    model that serves the symbol (named with its key). Reads the registry and the
    shadow_scores table; writes nothing. Exit 2 for a key without versions or without any
    shadow.
    """
    from forex_diffusion.errors import RegistryError
    from retraining.registry import serving_champion
    from retraining.shadow_verdict import shadow_state

    k = _key(key)  # a usage error before the database is touched
    reg = open_registry(db, model_dir)
    versions = reg.list(k)
    chosen = _shadow_of(reg, k, versions)
    champion = serving_champion(reg, k)  # a per-series shadow may face a global model
    if chosen is None and champion is not None and champion.key.is_symbol_set and champion.key != k:
        # issue 16: a retrain of the global model serving the symbol shadows on this symbol
        chosen = _shadow_of(reg, champion.key, reg.list(champion.key), symbol=k.symbol)
    if chosen is None and not versions:
        raise RegistryError(f"unknown key {k}: no registered version (see `forexd models list`)")
    if chosen is None:
        raise RegistryError(
            f"{k} has no version in shadow, and none has been (a challenger enters "
            "shadow when it beats a champion and FOREXD_SHADOW_FORECASTS > 0)"
        )
    st = shadow_state(reg, chosen.version)
    # a global model's shadow is scored on one series of its set (issue 16)
    runs_on: str | None = None
    if chosen.key.is_symbol_set:  # where it runs now; a decided one, where it ran
        runs_on = reg.shadow_runs_on(chosen) if st.state == "waiting" else ",".join(_ran_on(reg, chosen)) or None
    if as_json:
        typer.echo(
            _json_line(
                {
                    **st.to_dict(),
                    "champion": None if champion is None else champion.version,
                    "champion_key": None if champion is None else str(champion.key),
                    "since_ms": chosen.metrics["shadow"].get("since_ms"),
                    "series": runs_on,
                }
            )
        )
        return
    sc = st.scores

    def pct(x: float) -> str:
        return "-" if x != x else f"{100 * x:+.2f} %"

    of = "" if chosen.key == k else f" (of {chosen.key})"
    on = "" if runs_on is None and not chosen.key.is_symbol_set else f"  on {runs_on or 'no series now'}"
    typer.echo(f"key {k}  shadow {chosen.version}{of}{on}  state {st.state}")
    now = "-" if champion is None else champion.version + ("" if champion.key == k else f" ({champion.key})")
    typer.echo(
        f"since {_when(chosen.metrics['shadow'].get('since_ms'))}  realised forecasts {st.realised} "
        f"of {st.required}  champion now {now}"
    )
    typer.echo(f"{'':12} {'crps':>11} {'skill_vs_rw':>12} {'cover90':>8}")
    typer.echo(f"{'shadow':12} {_fmt(sc.crps):>11} {pct(sc.skill_rw):>12} {_fmt(sc.cover90):>8}")
    typer.echo(
        f"{'champion':12} {_fmt(sc.champion_crps):>11} {pct(sc.champion_skill_rw):>12} {_fmt(sc.champion_cover90):>8}"
    )
    typer.echo(f"{'random walk':12} {_fmt(sc.rw_crps):>11}")
    typer.echo(f"skill vs champion {pct(sc.skill)} (promoted when >= 0 after {st.required} realised forecasts)")
    typer.echo(f"reason: {one_line(st.reason)}")  # a row's free text: escaped, one line


def _shadow_of(reg: Any, key: Any, versions: list[Any], *, symbol: str | None = None) -> Any:
    """``key``'s version in shadow, else its latest version that was in shadow, or None; with
    ``symbol``, only a global key's shadow that runs on that symbol (a decided one: that ran)."""
    current = reg.shadow(key)
    if current is not None and (symbol is None or reg.shadow_runs_on(current) == symbol):
        return current
    skip = None if current is None else current.version  # running elsewhere: not "was" here
    been = [
        v
        for v in versions
        if isinstance(v.metrics.get("shadow"), dict)
        and v.version != skip
        and (symbol is None or symbol in _ran_on(reg, v))
    ]
    return max(been, key=lambda v: (v.updated_ms, v.version)) if been else None


def _ran_on(reg: Any, version: Any) -> list[str]:
    """The series a global model's decided shadow was scored on: those of its score rows (it
    moves when its series gets a model of its own), else the one recorded."""
    from forex_diffusion.storage.model_registry import read_shadow_scores
    from retraining.registry import shadow_series
    from retraining.shadow_verdict import REQUIRED_MAX

    rows = read_shadow_scores(reg.engine, version.version, limit=REQUIRED_MAX)
    ran = sorted({str(r["model_key"]).split("/")[0] for r in rows if r["model_key"]})
    recorded = shadow_series(version)
    return ran or ([recorded] if recorded else [])


def register(app: typer.Typer) -> None:
    """Add ``models`` to the ``forexd`` app."""
    app.add_typer(models_app, name="models")
