"""Every package of the three declares its public face in ``__all__``, and every name there imports.

The packages are discovered by walking the three top-level packages, so a new subpackage is
held to the same contract without being listed here.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("forex_diffusion", "retraining", "streams")


def _packages() -> list[str]:
    names: list[str] = []
    for top in TOP:
        names.append(top)
        module = importlib.import_module(top)
        names.extend(info.name for info in pkgutil.walk_packages(module.__path__, f"{top}.") if info.ispkg)
    return names


PACKAGES = _packages()


def _public(module: ModuleType) -> list[str]:
    names = module.__dict__.get("__all__")
    assert isinstance(names, list), f"{module.__name__} declares no __all__ list"
    return names


def test_the_walk_finds_the_subpackages() -> None:
    assert {"forex_diffusion.diffusion", "forex_diffusion.indicators", "streams.agents"} <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_package_declares_all_of_unique_strings(name: str) -> None:
    public = _public(importlib.import_module(name))
    assert all(isinstance(n, str) and n.isidentifier() for n in public), public
    assert len(public) == len(set(public)), f"{name}.__all__ repeats a name"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_imports(name: str) -> None:
    module = importlib.import_module(name)
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)  # what a user's star import gets
    for public in _public(module):
        assert public in namespace, f"from {name} import * does not give {public}"
        assert getattr(module, public) is namespace[public]


@pytest.mark.parametrize("name", ["retraining", "streams"])
def test_lazy_names_are_the_defining_modules_objects(name: str) -> None:
    package = importlib.import_module(name)
    exports: dict[str, str] = package._EXPORTS
    assert set(exports) == set(package.__all__)
    for public, module in exports.items():
        assert getattr(package, public) is getattr(importlib.import_module(f"{name}.{module}"), public)
    assert set(package.__all__) <= set(dir(package))


@pytest.mark.parametrize("name", ["retraining", "streams"])
def test_unknown_name_is_an_attribute_error(name: str) -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        importlib.import_module(name).no_such_name  # noqa: B018


def test_core_root_reexports_the_whole_exception_tree() -> None:
    import forex_diffusion
    from forex_diffusion import errors

    assert set(errors.__all__) <= set(forex_diffusion.__all__)
    assert forex_diffusion.ForexDiffusionError is errors.ForexDiffusionError


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import forex_diffusion", ("torch", "pandas", "sqlalchemy", "faust", "aiokafka")),
        ("import retraining, retraining.policy", ("torch", "faust", "aiokafka", "streams")),
        ("import streams, streams.settings, streams.cli", ("faust", "aiokafka", "torch")),
    ],
)
def test_importing_a_package_root_stays_light(statement: str, forbidden: tuple[str, ...]) -> None:
    """The roots re-export lazily what needs torch or faust: importing them loads neither."""
    code = f"import sys; {statement}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(forbidden)!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"{statement} loaded {out.stdout.strip()}"
