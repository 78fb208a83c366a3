"""The core is in named rooms, and a module's name says which one it is (issue 15).

The root of ``forex_diffusion`` holds only the vocabulary every room shares; everything else
lives in a subpackage named for its concern. No two modules of the three packages share a
name (a reader told "see ``shadow.py``" must know which one), except ``base`` (each family's
own base classes) and the CLI's ``streams/commands/`` (a module per command, named as the
command).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP = ("forex_diffusion", "retraining", "streams")

#: The shared vocabulary at the core's root; a new module goes in a room, or is argued here.
ROOT_MODULES = {
    "__init__",
    "_lazy",
    "domain",
    "errors",
    "instruments",
    "market_hours",
    "offline",
    "precision",
    "state",
    "timeframes",
    "wire",
}
ROOMS = {
    "bundled",
    "diffusion",
    "drift",
    "forecast",
    "indicators",
    "ingest",
    "online",
    "quality",
    "reports",
    "storage",
}


def _modules() -> list[Path]:
    return [p for top in TOP for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]


def test_the_core_root_holds_only_the_shared_vocabulary() -> None:
    core = ROOT / "forex_diffusion"
    assert {p.stem for p in core.glob("*.py")} == ROOT_MODULES
    assert {p.name for p in core.iterdir() if (p / "__init__.py").is_file()} == ROOMS


def test_every_room_has_a_public_face() -> None:
    for room in ROOMS:
        text = (ROOT / "forex_diffusion" / room / "__init__.py").read_text()
        assert '"""' in text and "__all__" in text, room


def test_module_names_are_unambiguous() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for p in _modules():
        rel = p.relative_to(ROOT)
        if p.stem in ("__init__", "__main__", "base") or rel.parts[:2] == ("streams", "commands"):
            continue
        where[p.stem].append(str(rel))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
