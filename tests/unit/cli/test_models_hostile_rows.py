"""``forexd models ...`` over a registry whose rows someone hostile wrote.

A registry row may be written by hand or by another program, and SQLite keeps any value in
any column. Before, SQLAlchemy's JSON type decoded ``metrics`` on read: a row holding text
that is not JSON, a 5,000-digit integer, bytes that are not UTF-8 or JSON nested 100,000
deep made ``models list``, ``promote`` and ``shadow`` end in a traceback (``JSONDecodeError``,
``UnicodeDecodeError``, ``ValueError``, ``RecursionError``), as did text in an integer column
(``horizon = 'abc'``), a dangling champion alias (``rollback``: AssertionError) or a history
row without a time. Text that is not UTF-8 in any other column failed the whole query (exit 74),
one bad status, symbol or version id failed every listing (exit 2), and ``register`` of a
version whose row held bad metrics raised ``JSONDecodeError``. On PostgreSQL, a manifest whose
metrics held NaN failed ``register`` (exit 74) after its files were copied in.

Worse, some rows were acted on: a champion alias naming another key's version served that
model, a row whose ``model_key`` disagreed with its symbol was promoted as champion of the
other key, an ``artifact`` of ``../../x.pt`` or ``/abs/x.pt`` was loaded (and retention would
delete it) from outside the model directory, ``horizon = 24.5`` read as 24, and an ESC in a
version or reason reached the terminal.

Now (docs/retraining.md, "Rows written by hand"): metrics that cannot be read are no metrics;
an unreadable informational column is absent; any other unreadable column makes the row
unreadable: listings leave it out with one warning, a lookup of it is a one-line refusal
(exit 2), nothing is decided on it and its files are kept.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from forex_diffusion.bundled import MODELS
from forex_diffusion.errors import ArtifactError, RegistryError
from forex_diffusion.storage import make_engine
from forex_diffusion.storage import model_registry as store
from forex_diffusion.storage.model_registry import STATUSES, ModelKey
from retraining.policy import ShadowScores, decide_shadow
from retraining.registry import ModelRegistry
from retraining.shadow_verdict import settle_shadow
from streams.cli import app

KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=24)
K = str(KEY)
H1 = sorted((MODELS / "EURUSD-1h-h24").glob("*.pt"))[-1]  # a 1h model forecasting 24 steps
M1 = sorted((MODELS / "EURUSD-1m-h24").glob("*.pt"))[-1]  # a 1m model forecasting 24 steps
BIG = "1" + "0" * 5000  # past int()'s 4,300 digits
DEEP = "[" * 100_000 + "]" * 100_000  # past json's recursion limit


def stage(src: Path, dest: Path, version: str) -> Path:
    """Copy checkpoint ``src`` to ``dest/<version>.pt`` with its manifest renamed to ``version``."""
    dest.mkdir(parents=True, exist_ok=True)
    pt = dest / f"{version}.pt"
    shutil.copyfile(src, pt)
    manifest = json.loads(src.with_suffix(".json").read_text())
    manifest.update(version=version, file=pt.name)
    pt.with_suffix(".json").write_text(json.dumps(manifest))
    return pt


def clock() -> Any:
    """A fake epoch-ms clock, one second a call."""
    t = iter(range(1_700_000_000_000, 1_800_000_000_000, 1000))
    return lambda: next(t)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry of key EURUSD/1h/24: g1 (promoted, the previous champion), g2 (champion), g3
    (registered), and ``vbad`` (registered, its own files; the row the tests damage)."""
    root = tmp_path_factory.mktemp("template")
    engine = make_engine(f"sqlite:///{root / 'reg.db'}")
    reg = ModelRegistry(engine, root / "models", clock=clock())
    for v in ("g1", "g2", "g3", "vbad"):
        reg.import_artifact(stage(H1, root / "in", v))
    reg.promote("g1", "first")
    reg.promote("g2", "second")
    engine.dispose()
    shutil.rmtree(root / "in")
    return root


class Reg:
    """A copy of the template registry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "reg.db"
        self.url = f"sqlite:///{self.db}"
        self.models = root / "models"

    def sql(self, statement: str, *params: Any) -> None:
        """Run ``statement`` on the file with sqlite3 (what a hostile writer does)."""
        with sqlite3.connect(self.db) as c:
            c.execute(statement, params)
        c.close()

    def set(self, clause: str, version: str = "vbad") -> None:
        """``UPDATE model_versions SET <clause>`` of one version (the clauses are this file's)."""
        self.sql(f"UPDATE model_versions SET {clause} WHERE version = ?", version)  # noqa: S608 - test values

    def cli(self, *args: str) -> Any:
        """``forexd models ARGS --db ... --model-dir ...``; never a traceback."""
        res = CliRunner().invoke(app, ["models", *args, "--db", self.url, "--model-dir", str(self.models)])
        assert res.exception is None or isinstance(res.exception, SystemExit), (args, res.output, res.exception)
        return res

    def registry(self) -> ModelRegistry:
        return ModelRegistry(make_engine(self.url), self.models, clock=clock())


@pytest.fixture
def reg(template: Path, tmp_path: Path) -> Reg:
    shutil.copytree(template, tmp_path / "reg")
    return Reg(tmp_path / "reg")


def rows(res: Any) -> dict[str, str]:
    """The listing's lines by version (of a result, or of its standard output)."""
    out = res if isinstance(res, str) else res.stdout
    return {ln.split()[0]: ln for ln in out.splitlines()[1:] if ln.strip()}


def warnings(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and event in r.getMessage()]


# -- metrics that cannot be read are no metrics (the known bug) ------------------------------

#: (SQL value of ``metrics``) that SQLAlchemy's JSON type failed to decode.
GARBAGE_METRICS = {
    "not-json": "'{not json'",
    "5000-digit-integer": f'\'{{"holdout": {{"crps": {BIG}}}}}\'',
    "non-utf8-blob": "X'7B2278223A22FF227D'",
    "non-utf8-text": "CAST(X'7B2278223A22FF227D' AS TEXT)",
    "nested-100000-deep": f"'{DEEP}'",
    "nested-500-deep": "'" + '{"a":' * 500 + "1" + "}" * 500 + "'",  # loads, but is no metrics either
}


@pytest.mark.parametrize("garbage", list(GARBAGE_METRICS), ids=list(GARBAGE_METRICS))
def test_every_models_command_reads_unreadable_metrics_as_none(
    reg: Reg, garbage: str, caplog: pytest.LogCaptureFixture
) -> None:
    reg.set(f"metrics = {GARBAGE_METRICS[garbage]}")
    with caplog.at_level(logging.WARNING):
        res = reg.cli("list")
    assert res.exit_code == 0, res.output
    listed = rows(res)
    assert set(listed) == {"g1", "g2", "g3", "vbad"}, res.stdout
    assert listed["vbad"].split()[-3:] == ["-", "-", "-"], listed["vbad"]  # no hold-out scores
    assert len(warnings(caplog, "registry.metrics_unreadable")) == 1, caplog.text

    res = reg.cli("list", "--json", "--live", "--key", K)
    assert res.exit_code == 0, res.output
    by_version = {d["version"]: d for d in map(json.loads, res.stdout.splitlines())}
    assert by_version["vbad"]["metrics"] == {} and by_version["g2"]["aliases"] == "champion"

    assert reg.cli("history", K).exit_code == 0
    res = reg.cli("shadow", K)
    assert res.exit_code == 2 and "has no version in shadow" in res.output, res.output
    res = reg.cli("promote", "vbad")  # metrics decide no manual promotion: the artifact is verified
    assert res.exit_code == 0 and "promoted vbad champion of EURUSD/1h/24" in res.stdout, res.output
    res = reg.cli("rollback", K)
    assert res.exit_code == 0 and "rolled back: g2 champion" in res.stdout, res.output


def test_a_shadow_row_whose_metrics_cannot_be_read_never_entered_shadow(reg: Reg) -> None:
    r = reg.registry()
    r.start_shadow("g3", "test", required=5)
    assert reg.cli("shadow", K).exit_code == 0
    reg.set(f"metrics = {GARBAGE_METRICS['non-utf8-blob']}", "g3")
    res = reg.cli("shadow", K)  # its required count is gone with its metrics: nothing to decide on
    assert res.exit_code == 2 and "never entered shadow" in res.output, res.output
    with pytest.raises(RegistryError, match="never entered shadow"):
        settle_shadow(r, "g3")
    assert r.get("g3").status == "shadow"  # not promoted, not rejected


# -- rows that cannot be read ----------------------------------------------------------------

#: ``SET`` clauses making the vbad row unreadable, with the problem the refusal names.
UNREADABLE = {
    "version-not-utf8": ("version = CAST(X'76FF' AS TEXT)", None),
    "version-escape": ("version = 'v' || char(27) || '[2Jx'", None),
    "version-over-64": ("version = '" + "v" * 500 + "'", None),
    "symbol-not-utf8": ("symbol = CAST(X'FF' AS TEXT)", "symbol is not UTF-8 text"),
    "symbol-bad": ("symbol = 'EUR$'", "bad model key symbol"),
    "timeframe-other-than-key": ("timeframe = '1m'", "is not its symbol/timeframe/horizon"),
    "symbol-other-than-key": ("symbol = 'GBPUSD'", "is not its symbol/timeframe/horizon"),
    "horizon-text": ("horizon = 'abc'", "horizon 'abc' is not an integer"),
    "horizon-2**70": ("horizon = 1180591620717411303424", "is not an integer"),  # a REAL in SQLite
    "horizon-24.5": ("horizon = 24.5", "is not an integer"),
    "horizon-zero": ("horizon = 0", "horizon"),
    "status-bogus": ("status = 'bogus'", "status 'bogus' is none of"),
    "status-not-utf8": ("status = CAST(X'FF' AS TEXT)", "status is not UTF-8 text"),
    "created-text": ("created_ms = 'abc'", "created_ms 'abc' is not an integer"),
    "created-2**70": ("created_ms = 1180591620717411303424", "created_ms"),
    "updated-blob": ("updated_ms = X'00'", "updated_ms"),
    "artifact-absolute": ("artifact = '/etc/passwd'", "is not a relative .pt path"),
    "artifact-parent": ("artifact = '../../vbad.pt'", "is not a relative .pt path"),
    "artifact-not-pt": ("artifact = 'EURUSD-1h-h24/vbad.json'", "is not a relative .pt path"),
    "sha256-not-utf8": ("sha256 = X'FF'", "sha256 is not UTF-8 text"),
    "config-hash-null-byte": ("config_hash = 'a' || char(0) || 'b'", "holds control characters"),
}


@pytest.mark.parametrize("case", list(UNREADABLE), ids=list(UNREADABLE))
def test_an_unreadable_row_is_left_out_refused_and_decides_nothing(
    reg: Reg, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    clause, problem = UNREADABLE[case]
    reg.set(clause)
    with caplog.at_level(logging.WARNING):
        res = reg.cli("list")
        assert res.exit_code == 0, res.output
        assert set(rows(res)) == {"g1", "g2", "g3"} and "\x1b" not in res.stdout, res.stdout
        assert reg.cli("list", "--json").exit_code == 0
    said = warnings(caplog, "registry.row_unreadable table=model_versions")
    assert len(said) == 1 and "\x1b" not in said[0], said  # once, though listed twice
    if problem is not None:
        assert problem in said[0], said
        res = reg.cli("promote", "vbad")
        assert res.exit_code == 2 and "its registry row is unreadable" in res.output and problem in res.output
    else:  # the id itself is unreadable: no such version
        assert reg.cli("promote", "vbad").exit_code == 2
    assert reg.cli("promote", "g3").exit_code == 0  # the other rows work
    res = reg.cli("rollback", K)
    assert res.exit_code == 0 and "rolled back: g2 champion" in res.stdout, res.output
    assert reg.cli("history", K).exit_code == 0
    assert reg.cli("shadow", K).exit_code == 2  # no shadow: its usual refusal
    r = reg.registry()
    assert r.champion(KEY) is not None and r.champion(KEY).version == "g2"  # type: ignore[union-attr]
    assert r.recover(KEY) == [] and (reg.models / "EURUSD-1h-h24" / "vbad.pt").is_file()  # its files stay


def test_a_version_id_of_2_to_the_70_is_a_readable_id(reg: Reg) -> None:
    reg.sql("UPDATE model_versions SET version = 1180591620717411303424 WHERE version = 'vbad'")
    listed = rows(reg.cli("list"))
    (odd,) = set(listed) - {"g1", "g2", "g3"}  # SQLite keeps it as the text of a REAL
    res = reg.cli("promote", odd)  # its artifact is verified like any other
    assert res.exit_code == 0 and f"promoted {odd}" in res.stdout, res.output


def test_informational_columns_that_cannot_be_read_are_absent(reg: Reg) -> None:
    reg.sql(
        "UPDATE model_versions SET data_first_ms = 'abc', data_last_ms = 1e300, request_id = X'FF', "
        "reason = CAST(X'FF' AS TEXT) WHERE version = 'vbad'"
    )
    res = reg.cli("list", "--json")
    assert res.exit_code == 0, res.output
    (row,) = [d for d in map(json.loads, res.stdout.splitlines()) if d["version"] == "vbad"]
    assert (row["data_first_ms"], row["data_last_ms"], row["request_id"], row["reason"]) == (None, None, None, "")


def test_free_text_is_shown_escaped(reg: Reg) -> None:
    reg.sql("UPDATE model_alias_history SET reason = char(27) || '[2J' || char(10) || 'forged line'")
    res = reg.cli("history", K)
    assert res.exit_code == 0 and "\x1b" not in res.stdout, res.stdout
    assert len(res.stdout.splitlines()) == 2 and "\\x1b[2J forged line" in res.stdout, res.stdout


# -- aliases and history ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE model_aliases SET version = 'nope' WHERE alias = 'champion'",  # a dangling alias
        "UPDATE model_aliases SET version = CAST(X'FF' AS TEXT) WHERE alias = 'champion'",
        "UPDATE model_aliases SET version = 'vbad' WHERE alias = 'champion'",  # an unreadable row, below
    ],
    ids=["dangling", "not-utf8", "unreadable-row"],
)
def test_a_champion_alias_naming_no_readable_row_is_no_champion_and_can_be_rolled_back(
    reg: Reg, statement: str
) -> None:
    reg.sql("UPDATE model_versions SET horizon = 'abc' WHERE version = 'vbad'")
    reg.sql(statement)
    r = reg.registry()
    assert r.champion(KEY) is None and r.resolve_champion("EURUSD", "1h", 24) is None  # the stream's fallback serves
    assert reg.cli("list").exit_code == 0
    res = reg.cli("rollback", K)  # the way out: was an AssertionError (dangling) or a traceback
    assert res.exit_code == 0 and "rolled back: g1 champion" in res.stdout, res.output
    assert reg.registry().champion(KEY).version == "g1"  # type: ignore[union-attr]


def test_an_alias_naming_another_keys_version_is_not_followed(reg: Reg) -> None:
    gbp = ModelKey(symbol="GBPUSD", timeframe="1h", horizon=24)
    reg.sql("UPDATE model_versions SET model_key = ?, symbol = 'GBPUSD' WHERE version = 'g3'", str(gbp))
    reg.sql("UPDATE model_aliases SET version = 'g3' WHERE alias = 'champion'")
    r = reg.registry()
    assert r.champion(KEY) is None  # was g3: a GBPUSD model serving EURUSD
    assert r.resolve_champion("EURUSD", "1h", 24) is None
    listed = rows(reg.cli("list"))
    assert "champion" not in listed["g3"], listed  # shown as no alias of it


@pytest.mark.parametrize(
    ("statement", "out"),
    [
        ("UPDATE model_aliases SET alias = char(27) || '[31m' WHERE alias = 'champion'", None),
        ("INSERT INTO model_aliases VALUES ('EURUSD/1h/24', 'bogus', 'g3', 1)", "g2"),
    ],
    ids=["escape", "unknown-name"],
)
def test_an_alias_of_no_known_name_is_ignored(reg: Reg, statement: str, out: str | None) -> None:
    reg.sql(statement)
    assert store.get_aliases(make_engine(reg.url), KEY).get("champion") == out
    res = reg.cli("list")
    assert res.exit_code == 0 and "\x1b" not in res.stdout and "bogus" not in res.stdout, res.stdout


@pytest.mark.parametrize(
    ("statement", "shown", "rollback"),
    [
        ("UPDATE model_alias_history SET from_ms = 'abc'", 0, 0),  # times decide no rollback: the order does
        ("UPDATE model_alias_history SET to_ms = 'abc' WHERE to_ms IS NOT NULL", 1, 0),
        ("UPDATE model_alias_history SET from_ms = 1180591620717411303424", 0, 0),
        ("UPDATE model_alias_history SET alias = 'bogus'", 0, 2),
        ("UPDATE model_alias_history SET version = CAST(X'FF' AS TEXT)", 0, 2),
    ],
    ids=["from-text", "to-text", "from-2**70", "alias-bogus", "version-not-utf8"],
)
def test_unreadable_history_rows_are_left_out_and_restore_nothing(
    reg: Reg, statement: str, shown: int, rollback: int
) -> None:
    reg.sql(statement)
    res = reg.cli("history", K)  # was ValueError (text time) or exit 74 (not UTF-8)
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == shown, res.output
    res = reg.cli("rollback", K)
    assert res.exit_code == rollback, res.output
    if rollback:
        assert "no previous champion" in res.output, res.output


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE model_versions SET horizon = 'abc' WHERE version = 'g1'",
        "UPDATE model_versions SET model_key = 'GBPUSD/1h/24', symbol = 'GBPUSD' WHERE version = 'g1'",
    ],
    ids=["unreadable", "other-key"],
)
def test_rollback_never_restores_an_unreadable_or_foreign_previous_champion(reg: Reg, statement: str) -> None:
    reg.sql(statement)
    res = reg.cli("rollback", K)
    assert res.exit_code == 2 and "no previous champion" in res.output, res.output
    assert reg.registry().champion(KEY).version == "g2"  # type: ignore[union-attr]


# -- artifacts --------------------------------------------------------------------------------


def test_an_artifact_linking_out_of_the_model_directory_is_neither_loaded_nor_deleted(reg: Reg, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    stage(H1, outside, "vbad")
    target = reg.models / "EURUSD-1h-h24"
    for f in ("vbad.pt", "vbad.json"):
        (target / f).unlink()
    (target / "out").symlink_to(outside)
    reg.sql("UPDATE model_versions SET artifact = 'EURUSD-1h-h24/out/vbad.pt' WHERE version = 'vbad'")
    res = reg.cli("promote", "vbad")
    assert res.exit_code == 2 and "does not load" in res.output, res.output
    r = reg.registry()
    r.apply_retention(KEY, keep_last=0, audit_window_ms=0)
    assert r.get("vbad").status == "deleted" and (outside / "vbad.pt").is_file()  # not reached through the link


def test_a_row_keyed_to_another_horizon_than_its_artifact_is_never_promoted_nor_served(reg: Reg) -> None:
    reg.set("horizon = 12, model_key = 'EURUSD/1h/12'")  # a readable row of key EURUSD/1h/12; a 24-step file
    res = reg.cli("promote", "vbad")
    assert res.exit_code == 2 and "does not load" in res.output, res.output
    r = reg.registry()
    with pytest.raises(ArtifactError, match="it forecasts 24 steps"):
        r.load(r.get("vbad"))


# -- shadow scores ----------------------------------------------------------------------------

SCORE = dict(steps=24, crps=0.001, champion_crps=0.002, rw_crps=0.003, cover90=0.9, champion_cover90=0.9)


def shadow_with(reg: Reg, values: list[dict[str, Any]]) -> ModelRegistry:
    """g3 in shadow (``required`` = len(values)) with one realised row per item of ``values``."""
    r = reg.registry()
    r.start_shadow("g3", "test", required=len(values))
    for i, v in enumerate(values):
        row = {**SCORE, **v}
        reg.sql(
            "INSERT INTO shadow_scores VALUES ('g3', ?, 'EURUSD/1h/24', 'g2', ?, ?, ?, ?, ?, ?, ?)",
            1_700_000_000_000 + i,
            *(row[c] for c in ("steps", "crps", "champion_crps", "rw_crps", "cover90", "champion_cover90")),
            1_700_000_000_000 + i,
        )
    return r


@pytest.mark.parametrize(
    "bad",
    [
        {"crps": "abc"},
        {"crps": -5.0},  # a negative CRPS would beat any champion
        {"champion_crps": "1e999"},
        {"crps": b"\xff"},
        {"cover90": "x", "crps": None},  # NULL (the column's NOT NULL is the schema's, not the writer's)
    ],
    ids=["text", "negative", "text-inf", "blob", "null"],
)
def test_garbage_shadow_scores_never_promote(reg: Reg, bad: dict[str, Any]) -> None:
    if bad.get("crps", 0) is None:  # a table whose column allows NULL
        reg.sql("PRAGMA writable_schema = 0")
        with sqlite3.connect(reg.db) as c:
            c.executescript(
                "ALTER TABLE shadow_scores RENAME TO s_old; CREATE TABLE shadow_scores AS SELECT * FROM s_old WHERE 0;"
                "DROP TABLE s_old;"
            )
        c.close()
    r = shadow_with(reg, [{}, bad, {}])
    res = reg.cli("shadow", K)  # was ValueError: could not convert string to float
    assert res.exit_code == 0 and "realised forecasts 3 of 3" in res.stdout, res.output
    decided = settle_shadow(r, "g3")
    assert decided.state == "rejected" and "shadow_invalid" in decided.reason, decided
    assert r.champion(KEY).version == "g2"  # type: ignore[union-attr]


def test_finite_shadow_scores_are_decided_as_always(reg: Reg) -> None:
    r = shadow_with(reg, [{}, {}, {}])
    assert settle_shadow(r, "g3").state == "promoted" and r.champion(KEY).version == "g3"  # type: ignore[union-attr]


# -- register ---------------------------------------------------------------------------------


def test_register_of_a_version_whose_row_holds_garbage_is_refused_in_one_line(reg: Reg, tmp_path: Path) -> None:
    reg.set(f"metrics = {GARBAGE_METRICS['not-json']}, horizon = 'x'")
    res = reg.cli("register", str(stage(H1, tmp_path / "in", "vbad")))  # was JSONDecodeError
    assert res.exit_code == 2 and "vbad" in res.output, res.output


def test_register_of_a_version_whose_row_holds_bad_metrics_says_it_is_registered(reg: Reg, tmp_path: Path) -> None:
    reg.set(f"metrics = {GARBAGE_METRICS['not-json']}")
    res = reg.cli("register", str(stage(H1, tmp_path / "in", "vbad")))  # was JSONDecodeError
    assert res.exit_code == 2 and "already registered" in res.output, res.output


SCHEMA = (
    "version {version} PRIMARY KEY, model_key VARCHAR(64) NOT NULL, symbol VARCHAR(16) NOT NULL, "
    "timeframe VARCHAR(8) NOT NULL, horizon INTEGER NOT NULL, artifact TEXT NOT NULL, sha256 VARCHAR(64) NOT NULL, "
    "config_hash VARCHAR(64) NOT NULL, data_first_ms BIGINT, data_last_ms BIGINT, metrics {metrics} NOT NULL, "
    "status VARCHAR(16) NOT NULL, reason TEXT NOT NULL, request_id VARCHAR(64), created_ms BIGINT NOT NULL, "
    "updated_ms BIGINT NOT NULL"
)


@pytest.mark.parametrize(
    ("table", "command"),
    [
        ("CREATE TABLE model_versions (version TEXT PRIMARY KEY, model_key TEXT)", "register"),
        (f"CREATE TABLE model_versions ({SCHEMA.format(version='INTEGER', metrics='JSON')})", "register"),
        (f"CREATE TABLE model_versions ({SCHEMA.format(version='VARCHAR(64)', metrics='INTEGER')})", "register"),
        ("CREATE TABLE model_alias_history (id INTEGER PRIMARY KEY, alias TEXT)", "list"),
        ("CREATE TABLE shadow_scores (version TEXT, as_of_ms TEXT)", "list"),
    ],
    ids=["versions-missing-columns", "version-integer-key", "metrics-integer", "history-missing", "scores-missing"],
)
def test_a_registry_table_of_another_schema_is_refused_before_anything_is_copied(
    tmp_path: Path, table: str, command: str
) -> None:
    db = tmp_path / "reg.db"
    with sqlite3.connect(db) as c:
        c.execute(table)
    c.close()
    args = [str(stage(H1, tmp_path / "in", "g9"))] if command == "register" else []
    res = CliRunner().invoke(
        app, ["models", command, *args, "--db", f"sqlite:///{db}", "--model-dir", str(tmp_path / "models")]
    )
    assert res.exit_code == 65 and "is not the model registry's" in res.output, (res.output, res.exception)
    assert not list((tmp_path / "models").rglob("*.pt"))  # was: copied in, then exit 74


def test_register_stores_nan_metrics_as_null(tmp_path: Path) -> None:
    pt = stage(H1, tmp_path / "in", "g9")
    m = json.loads(pt.with_suffix(".json").read_text())
    m["metrics"] = {"steps": float("nan"), "test": {"crps": [1e308, 1e308], "n": float("inf")}}
    pt.with_suffix(".json").write_text(json.dumps(m))
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    res = CliRunner().invoke(app, ["models", "register", str(pt), "--db", db, "--model-dir", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    v = store.get_version(make_engine(db), "g9")
    assert v is not None and v.metrics == {"steps": None, "test_crps": None, "test_n": None}


def test_register_refuses_metrics_nested_too_deep_and_keeps_no_copy(tmp_path: Path) -> None:
    pt = stage(H1, tmp_path / "in", "g9")
    m = json.loads(pt.with_suffix(".json").read_text())
    m["metrics"] = {"steps": json.loads("[" * 900 + "]" * 900)}  # a manifest json reads
    pt.with_suffix(".json").write_text(json.dumps(m))
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    res = CliRunner().invoke(app, ["models", "register", str(pt), "--db", db, "--model-dir", str(tmp_path / "m")])
    assert res.exit_code == 2 and "nested over 32 levels" in res.output, (res.output, res.exception)
    assert not [p for p in (tmp_path / "m").rglob("*") if p.is_file()]  # the copy went with the refusal


def test_register_keys_a_manifest_timeframe_as_the_stream_spells_it(tmp_path: Path) -> None:
    pt = stage(H1, tmp_path / "in", "g9")
    m = json.loads(pt.with_suffix(".json").read_text())
    m["timeframe"] = "60m"
    pt.with_suffix(".json").write_text(json.dumps(m))
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    res = CliRunner().invoke(app, ["models", "register", str(pt), "--db", db, "--model-dir", str(tmp_path / "m")])
    assert res.exit_code == 0 and "registered g9 for EURUSD/1h/24" in res.stdout, res.output  # was EURUSD/60m/24


# -- one stderr line, from the real command -----------------------------------------------------


def test_the_command_says_an_unreadable_row_in_one_stderr_line(reg: Reg) -> None:
    reg.set(f"metrics = {GARBAGE_METRICS['non-utf8-text']}")
    reg.sql("UPDATE model_versions SET status = CAST(X'FF' AS TEXT) WHERE version = 'g3'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    forexd = Path(sys.executable).with_name("forexd")
    out = subprocess.run(
        [
            str(forexd) if forexd.exists() else "forexd",
            "models",
            "list",
            "--db",
            reg.url,
            "--model-dir",
            str(reg.models),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert set(rows(out.stdout)) == {"g1", "g2", "vbad"}, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in out.stderr, out.stderr
    assert "metrics_unreadable version='vbad'" in out.stderr and "status is not UTF-8 text" in out.stderr


# -- generated rows -----------------------------------------------------------------------------

#: Values a hostile writer may put in any column: (SQL expression, parameter).
_ANY = st.one_of(
    st.none().map(lambda _: ("NULL", None)),
    st.integers(-(2**63), 2**63 - 1).map(lambda x: ("?", x)),
    st.floats(allow_nan=False).map(lambda x: ("?", x)),
    st.text(max_size=80).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)).map(lambda x: ("?", x)),
    st.binary(max_size=40).map(lambda x: ("?", x)),
    st.binary(max_size=40).map(lambda x: ("CAST(? AS TEXT)", x)),  # text that need not be UTF-8
    st.sampled_from([BIG, DEEP[:3000] + DEEP[-3000:], "{}", '{"holdout": {"crps": NaN}}', "[1]", "24"]).map(
        lambda x: ("?", x)
    ),
)
_COLUMNS = [c.name for c in store.model_versions.columns]
_GOOD = {
    "version": "h",
    "model_key": K,
    "symbol": "EURUSD",
    "timeframe": "1h",
    "horizon": 24,
    "artifact": "EURUSD-1h-h24/vbad.pt",
    "sha256": "s",
    "config_hash": "c",
    "data_first_ms": None,
    "data_last_ms": None,
    "metrics": "{}",
    "status": "registered",
    "reason": "",
    "request_id": None,
    "created_ms": 1,
    "updated_ms": 1,
}


@st.composite
def hostile_rows(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """A model_versions row: each column its good value or anything, the version id unique-ish."""
    out = []
    for name in _COLUMNS:
        if name != "version" and draw(st.booleans()):
            out.append(draw(_ANY))
        else:
            out.append(("?", _GOOD[name]))
    return out


def _insert(db: Path, row: list[tuple[str, Any]], version: str) -> bool:
    row = [("?", version) if n == "version" else v for n, v in zip(_COLUMNS, row, strict=True)]
    try:
        with sqlite3.connect(db) as c:
            c.execute(
                f"INSERT INTO model_versions VALUES ({', '.join(e for e, _ in row)})",  # noqa: S608 - "?", "NULL", CAST
                [p for e, p in row if e != "NULL"],
            )
        c.close()
    except sqlite3.IntegrityError:  # a NULL in a NOT NULL column
        return False
    return True


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(row=hostile_rows())
def test_generated_rows_never_break_a_read_and_a_read_row_is_sound(reg: Reg, row: list[tuple[str, Any]]) -> None:
    engine = make_engine(reg.url)
    reg.sql("DELETE FROM model_versions WHERE version = 'h'")
    if not _insert(reg.db, row, "h"):
        return
    listed = {v.version: v for v in store.list_versions(engine)}
    assert {"g1", "g2", "g3", "vbad"} <= set(listed)
    try:
        got = store.get_version(engine, "h")
    except RegistryError as exc:
        assert "its registry row is unreadable" in str(exc)
        assert "h" not in listed
        return
    assert got is not None and listed["h"] == got
    assert got.status in STATUSES and str(got.key) == K and got.version.isprintable()
    assert isinstance(got.metrics, dict) and not got.artifact.startswith("/") and ".." not in got.artifact
    assert all(isinstance(x, int) for x in (got.created_ms, got.updated_ms))
    json.dumps(got.to_dict(), default=str)  # what `list --json` prints


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(row=hostile_rows())
def test_generated_rows_never_break_models_list(reg: Reg, row: list[tuple[str, Any]]) -> None:
    reg.sql("DELETE FROM model_versions WHERE version = 'h'")
    if not _insert(reg.db, row, "h"):
        return
    for args in (("list",), ("list", "--json", "--key", K)):
        res = reg.cli(*args)
        assert res.exit_code == 0, res.output
        assert "\x1b" not in res.stdout
    assert {"g1", "g2", "g3", "vbad"} <= {json.loads(ln)["version"] for ln in res.stdout.splitlines()}


_SCORE_VALUE = st.one_of(
    st.floats(0, 1),
    st.floats(allow_nan=False),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=10),
    st.binary(max_size=5),
    st.sampled_from(["1e999", "-1", "nan", ""]),
)


@settings(max_examples=150)
@given(values=st.lists(st.fixed_dictionaries({"crps": _SCORE_VALUE, "champion_crps": _SCORE_VALUE}), min_size=1))
def test_a_shadow_is_promoted_only_on_finite_nonnegative_scores(values: list[dict[str, Any]]) -> None:
    """The shadow rule over generated rows, as the registry reads them (no database: the reader's
    decoding of each raw value, then the rule)."""

    class Raw:
        def __init__(self, m: dict[str, Any]) -> None:
            self._mapping = m

    rows_ = [
        store._shadow_row(
            Raw(
                {
                    **dict.fromkeys(store.SHADOW_COLUMNS),
                    "rw_crps": 0.1,
                    "cover90": 0.5,
                    "champion_cover90": 0.5,
                    **v,
                }
            )
        )[0]
        for v in values
    ]
    decision = decide_shadow(ShadowScores.from_rows(rows_), required=len(rows_))
    assert decision is not None

    def score(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(float(x)) and float(x) >= 0

    if decision.promote:
        assert all(score(v["crps"]) and score(v["champion_crps"]) for v in values), values


# -- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture
def pg_reg(pg_url: str, tmp_path: Path) -> Iterator[Reg]:
    """The template's four versions, registered on PostgreSQL (a fresh schema, dropped after)."""
    r = Reg(tmp_path)
    r.url = pg_url
    engine = make_engine(pg_url)
    registry = ModelRegistry(engine, r.models, clock=clock())
    for v in ("g1", "g2", "g3", "vbad"):
        registry.import_artifact(stage(H1, tmp_path / "in", v))
    registry.promote("g1", "first")
    registry.promote("g2", "second")
    r.engine = engine  # type: ignore[attr-defined]
    yield r
    engine.dispose()


def _pg_metrics(text: str) -> str:
    """The statement storing ``text`` (JSON PostgreSQL takes) as vbad's metrics."""
    return f"UPDATE model_versions SET metrics = CAST('{text}' AS json) WHERE version = 'vbad'"  # noqa: S608


def pg_sql(r: Reg, *statements: str) -> None:
    with r.engine.begin() as c:  # type: ignore[attr-defined]
        for s in statements:
            c.execute(sa.text(s))


@pytest.mark.parametrize(
    "statements",
    [
        [_pg_metrics(BIG)],
        [_pg_metrics(f'{{"a": {BIG}}}')],
        [_pg_metrics("[" * 1500 + "]" * 1500)],  # past json's recursion limit, within PostgreSQL's
        [
            "ALTER TABLE model_versions ALTER COLUMN metrics TYPE text",
            "UPDATE model_versions SET metrics = '{not json' WHERE version = 'vbad'",
        ],
    ],
    ids=["bare-5000-digits", "5000-digits", "nested-1500-deep", "text-column-not-json"],
)
def test_postgresql_metrics_that_cannot_be_read_are_none(pg_reg: Reg, statements: list[str]) -> None:
    pg_sql(pg_reg, *statements)
    res = pg_reg.cli("list")  # was ValueError / RecursionError from the driver's JSON decoding
    assert res.exit_code == 0 and set(rows(res)) == {"g1", "g2", "g3", "vbad"}, res.output
    res = pg_reg.cli("list", "--json")
    assert res.exit_code == 0
    assert {d["version"]: d["metrics"] for d in map(json.loads, res.stdout.splitlines())}["vbad"] == {}
    assert pg_reg.cli("promote", "vbad").exit_code == 0
    assert pg_reg.cli("shadow", K).exit_code == 2
    assert pg_reg.cli("rollback", K).exit_code == 0


def test_postgresql_text_in_an_integer_column_makes_the_row_unreadable(pg_reg: Reg) -> None:
    pg_sql(
        pg_reg,
        "ALTER TABLE model_versions ALTER COLUMN horizon TYPE text",
        "UPDATE model_versions SET horizon = 'abc' WHERE version = 'vbad'",
        "UPDATE model_alias_history SET reason = E'\\x1b[2J'",
    )
    res = pg_reg.cli("list")  # was ValueError: invalid literal for int()
    assert res.exit_code == 0 and set(rows(res)) == {"g1", "g2", "g3"}, res.output
    res = pg_reg.cli("promote", "vbad")
    assert res.exit_code == 2 and "horizon 'abc' is not an integer" in res.output, res.output
    res = pg_reg.cli("history", K)
    assert res.exit_code == 0 and "\x1b" not in res.stdout and "\\x1b[2J" in res.stdout, res.stdout


def test_postgresql_register_stores_nan_metrics_as_null(pg_url: str, tmp_path: Path) -> None:
    pt = stage(H1, tmp_path / "in", "g9")
    m = json.loads(pt.with_suffix(".json").read_text())
    m["metrics"] = {"steps": float("nan"), "test": {"crps": [1e308, 1e308]}}
    pt.with_suffix(".json").write_text(json.dumps(m))
    res = CliRunner().invoke(app, ["models", "register", str(pt), "--db", pg_url, "--model-dir", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output  # was exit 74: invalid input syntax for type json
    engine = make_engine(pg_url)
    v = store.get_version(engine, "g9")
    engine.dispose()
    assert v is not None and v.metrics == {"steps": None, "test_crps": None, "test_n": None}


def test_scores_whose_sum_is_past_the_largest_double_are_decided_not_raised() -> None:
    """Found by the property above (hypothesis, once in a suite run): two stored scores of
    ~9e307 overflowed ``math.fsum`` and the shadow's decision raised ``OverflowError``."""
    rows_ = [
        {**dict.fromkeys(("rw_crps", "cover90", "champion_cover90"), 0.5), "crps": c, "champion_crps": 0.0}
        for c in (0.0, 0.0, 8.988465674311579e307, 8.98846567431158e307)
    ]
    scores = ShadowScores.from_rows(rows_)
    assert math.isfinite(scores.crps) and scores.crps == pytest.approx(2 * 8.988465674311579e307 / 4)
    decision = decide_shadow(scores, required=4)
    assert decision is not None and not decision.promote  # worse than a champion of 0


def test_scores_of_the_largest_double_and_of_both_infinities_are_decided_not_raised() -> None:
    """A fresh-eye review of the fix above: three scores of the largest double still overflowed
    (the count-th of each rounded up), and inf with -inf raised ``ValueError`` in ``fsum``."""
    big = 1.7976931348623157e308
    rows_ = [{**dict.fromkeys(("rw_crps", "cover90", "champion_cover90"), 0.5), "crps": big, "champion_crps": 0.0}] * 3
    scores = ShadowScores.from_rows(rows_)
    assert scores.crps == big
    decision = decide_shadow(scores, required=3)
    assert decision is not None and not decision.promote
    both = [{**rows_[0], "crps": math.inf}, {**rows_[0], "crps": -math.inf}]
    assert math.isnan(ShadowScores.from_rows(both).crps)
