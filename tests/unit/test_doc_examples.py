"""Run every ``>>>`` example of the three packages and of the Markdown docs.

The modules are discovered by walking the packages (``pkgutil.walk_packages``), so a new
module's examples run without being listed here; a module is collected when its source holds
a ``>>>`` line, and its test then insists the examples were found and all pass.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("forex_diffusion", "retraining", "streams")
FLAGS = doctest.ELLIPSIS


def _module_names() -> list[str]:
    """Every module and package of the three packages, in walk order."""
    names: list[str] = []
    for pkg in PACKAGES:
        module = importlib.import_module(pkg)
        names.append(pkg)
        names.extend(info.name for info in pkgutil.walk_packages(module.__path__, f"{pkg}."))
    return names


def _has_examples(name: str) -> bool:
    """Whether the module's source (read, not imported) holds a ``>>>`` line."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return False
    return ">>>" in Path(spec.origin).read_text(encoding="utf-8")


ALL_MODULES = _module_names()
WITH_EXAMPLES = [name for name in ALL_MODULES if _has_examples(name)]
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_package_contributes_modules_with_examples() -> None:
    """The walk reaches all three packages (a broken walk would collect nothing and pass)."""
    for pkg in PACKAGES:
        assert any(name.startswith(f"{pkg}.") for name in WITH_EXAMPLES), pkg


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_module_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{name} has '>>>' in its source but no example was collected"
    assert result.failed == 0


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.name)
def test_markdown_examples_run(path: Path) -> None:
    result = doctest.testfile(str(path), module_relative=False, optionflags=FLAGS, encoding="utf-8")
    assert result.failed == 0


_IMPORT_ALL = """
import importlib, json, multiprocessing, os, pkgutil, sys, threading
names = []
for pkg in {packages!r}:
    module = importlib.import_module(pkg)
    names.append(pkg)
    names.extend(i.name for i in pkgutil.walk_packages(module.__path__, pkg + "."))
for name in names:
    importlib.import_module(name)
children = [p.pid for p in multiprocessing.active_children()]
sockets = 0
if os.path.isdir("/proc/self/task"):
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{{task}}/children") as fh:
            children.extend(int(pid) for pid in fh.read().split())
    for fd in os.listdir("/proc/self/fd"):
        try:
            sockets += os.readlink(f"/proc/self/fd/{{fd}}").startswith("socket:")
        except OSError:
            pass
print(json.dumps({{"modules": len(names), "threads": [t.name for t in threading.enumerate()],
                  "children": children, "sockets": sockets}}))
"""


def test_importing_every_module_starts_nothing() -> None:
    """Importing a module (as the doctest run does) starts no thread, process, or connection."""
    code = _IMPORT_ALL.format(packages=PACKAGES)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["modules"] == len(ALL_MODULES)
    assert seen["threads"] == ["MainThread"]
    assert seen["children"] == []
    assert seen["sockets"] == 0
