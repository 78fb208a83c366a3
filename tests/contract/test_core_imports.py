"""The core never imports the Kafka shell: walk every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "forex_diffusion"
FORBIDDEN = {"faust", "aiokafka", "streams", "retraining", "mode", "kafka"}
LAYER_RULES = {"retraining": {"streams", "faust", "aiokafka"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _modules(pkg: Path) -> list[Path]:
    return sorted(p for p in pkg.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(CORE), ids=lambda p: str(p.relative_to(CORE.parent)))
def test_core_module_imports_no_kafka_or_upper_layer(path: Path) -> None:
    bad = _imports(path) & FORBIDDEN
    assert not bad, f"{path} imports {sorted(bad)}: the core must not depend on the Kafka shell"


@pytest.mark.parametrize("path", _modules(CORE.parent / "retraining"), ids=lambda p: str(p.relative_to(CORE.parent)))
def test_retraining_module_imports_no_streams(path: Path) -> None:
    bad = _imports(path) & LAYER_RULES["retraining"]
    assert not bad, f"{path} imports {sorted(bad)}: retraining must not import streams/faust"


def test_import_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("import faust\nfrom aiokafka import AIOKafkaConsumer\n")
    assert _imports(bad) & FORBIDDEN == {"faust", "aiokafka"}


def test_importing_the_core_loads_no_kafka_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, forex_diffusion, forex_diffusion.ingest.aggregation, forex_diffusion.wire, "
        "forex_diffusion.storage, forex_diffusion.offline, forex_diffusion.ingest.pipeline;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('faust','aiokafka','streams','retraining')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=CORE.parent)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("imports", "heavy"),
    [
        # the tick worker: it learns nothing and samples nothing (river and scipy.stats came in
        # through the wire codec's DriftEvent: 1.9 s of CPU per start instead of 0.7 s)
        ("faust, streams.app, streams.agents.ticks", ("river", "scipy", "torch", "pandas")),
        # forexd models: lists and moves aliases (torch, pandas and scipy came in through the
        # registry's Predictor: 2.4 s per command instead of 0.3 s)
        ("retraining.registry, streams.commands.models", ("torch", "pandas", "scipy", "river")),
    ],
    ids=["tick-worker", "forexd-models"],
)
def test_what_does_not_need_a_heavy_library_does_not_load_it(imports: str, heavy: tuple[str, ...]) -> None:
    import subprocess
    import sys

    code = (
        f"import sys, {imports};"
        f"bad=sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r});"
        "print(bad[:10]); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=CORE.parent)
    assert res.returncode == 0, res.stdout + res.stderr


#: What a worker loads to build its app, as ``forexd worker`` does (``streams.launch.run_worker``
#: up to ``faust.Worker``): the settings, the metrics and the role's agents.
_BUILD_APP = """
import sys
from streams.app import create_app
from streams.launch import ROLES
from streams.metrics import Metrics
from streams.settings import Settings
s = Settings.from_env()
m = Metrics(s.symbols, timeframes=s.timeframes, partitions=s.partitions, topics=["fx.ticks"])
create_app(s, roles=ROLES[sys.argv[1]], metrics=m)
bad = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))
print(bad[:10]); sys.exit(1 if bad else 0)
"""


@pytest.mark.parametrize(
    ("role", "heavy"),
    [
        # scipy.stats and pandas came in through the metrics' quality rows (evaluation.py):
        # 1.6 s of CPU per start instead of 0.8 s
        ("ticks", ("river", "scipy", "torch", "pandas")),
        # torch came in through the shadow lane and the models agent (retraining.jobs) and the
        # Forecast record (diffusion.predictor): 2.8 s per start instead of 1.8 s. It is loaded
        # with the first model the book loads (in an executor thread), not before.
        ("candles", ("torch",)),
        ("stream", ("torch",)),
    ],
)
def test_a_worker_without_a_model_loads_no_heavy_library_it_does_not_use(
    role: str, heavy: tuple[str, ...], tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    env |= {"FOREXD_DATA_DIR": str(tmp_path), "FOREXD_METRICS_PORT": "-1"}
    res = subprocess.run(
        [sys.executable, "-c", _BUILD_APP, role, ",".join(heavy)],
        capture_output=True,
        text=True,
        cwd=CORE.parent,
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
