"""A typo on the command line is a one-line usage error, never a quiet success (hostile review, 2026-12-06).

* ``forexd tail forcasts`` subscribed to ``fx.forcasts``: a broker that creates topics on
  demand created it, and tail waited on it for ever (with ``--timeout``: exit 0, nothing said).
* ``forexd models promote ""`` said "error: unknown version" of nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forex_diffusion.bundled import MODELS
from forex_diffusion.storage import make_engine
from retraining.registry import ModelRegistry
from streams.cli import app
from streams.settings import TOPIC_NAMES

runner = CliRunner()
DOWN = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:1"}  # refuses at once: a name that passes exits 69
H1 = sorted((MODELS / "EURUSD-1h-h24").glob("*.pt"))[-1]


def _one_line(stderr: str, *needles: str) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for n in needles:
        assert n in lines[0], (n, stderr)


@pytest.mark.parametrize("topic", ["forcasts", "nosuch", "fx.tick", "fx.fx.ticks", "ticks.", "Ticks", "deadletters"])
def test_tail_of_a_topic_that_is_none_of_forexd_s_is_a_usage_error_before_the_broker(topic: str) -> None:
    res = runner.invoke(app, ["tail", topic, "--timeout", "1"], env=DOWN)
    assert res.exit_code == 2, res.output
    _one_line(res.stderr, "Invalid value for 'TOPIC'", "is no topic of forexd's", "forecasts.paths")


@pytest.mark.parametrize("name", [*TOPIC_NAMES, *(f"fx.{n}" for n in TOPIC_NAMES)])
def test_tail_of_each_of_forexd_s_topics_goes_to_the_broker(name: str) -> None:
    res = runner.invoke(app, ["tail", name, "--timeout", "1"], env=DOWN)
    assert res.exit_code == 69, res.output
    _one_line(res.stderr, "broker unreachable at kafka://127.0.0.1:1")


def test_tail_with_a_prefix_takes_the_full_name_and_the_short_one() -> None:
    env = {**DOWN, "FOREXD_TOPIC_PREFIX": "prod."}
    for name in ("candles", "fx.candles", "prod.fx.candles"):
        assert runner.invoke(app, ["tail", name, "--timeout", "1"], env=env).exit_code == 69, name
    res = runner.invoke(app, ["tail", "staging.fx.candles", "--timeout", "1"], env=env)
    assert res.exit_code == 2  # another prefix's topic: read as fx.staging.fx.candles before, none of forexd's


@pytest.fixture
def registry(tmp_path: Path) -> str:
    """A registry with one version of EURUSD/1h/24, registered, never promoted."""
    engine = make_engine(f"sqlite:///{tmp_path / 'reg.db'}")
    src = tmp_path / "in" / H1.name
    src.parent.mkdir()
    shutil.copyfile(H1, src)
    shutil.copyfile(H1.with_suffix(".json"), src.with_suffix(".json"))
    ModelRegistry(engine, tmp_path / "models").import_artifact(src)
    engine.dispose()
    return f"sqlite:///{tmp_path / 'reg.db'}"


@pytest.mark.parametrize("version", ["", "   "])
def test_models_promote_of_an_empty_version_is_a_usage_error_naming_it(registry: str, version: str) -> None:
    res = runner.invoke(app, ["models", "promote", version, "--db", registry])
    assert res.exit_code == 2, res.output
    _one_line(res.stderr, "Invalid value for 'VERSION'", "the version is empty", "forexd models list")


def test_models_promote_of_an_unknown_version_names_it_and_where_to_look(registry: str, tmp_path: Path) -> None:
    res = runner.invoke(app, ["models", "promote", "nope\n", "--db", registry, "--model-dir", str(tmp_path / "models")])
    assert res.exit_code == 2, res.output
    _one_line(res.stderr, "unknown version 'nope\\n'", "forexd models list")


@pytest.mark.parametrize(
    "args",
    [
        ["report", "--db", "sqlite:////nonexistent/x.db", "-o", "{tmp}/newdir/"],
        ["replay", "{tmp}/t.csv", "--rejects", "{tmp}/newdir/"],
        ["replay", "{tmp}/t.csv", "--rejects", "{tmp}/t.csv/"],
    ],
    ids=["report -o dir/", "replay --rejects dir/", "replay --rejects file/"],
)
def test_an_output_named_as_a_directory_that_is_not_there_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    """``-o newdir/`` wrote a FILE named newdir (Path drops the slash), and ``x.csv/`` wrote
    over x.csv: report and replay now parse these options as the other commands do."""
    (tmp_path / "t.csv").write_text("ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n")
    res = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args], env=DOWN)
    assert res.exit_code == 2, res.output
    _one_line(res.stderr, "ends as a directory's name does")
    assert not (tmp_path / "newdir").exists()
    assert (tmp_path / "t.csv").read_text().startswith("ts_ms,bid,ask")
