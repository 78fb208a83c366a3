"""The real data bundled for a fresh clone, and how tests reach the files that are not bundled.

A fresh clone has no ``../shared``: the bundled Apache-2.0 files must be there whole (their
sha256 as listed in ``tests/data/lean/README.md``), the files whose licence forbids bundling
must not be anywhere in the tree, and :func:`tests.realdata.require` skips (naming the file
and its licence) only for the latter, failing for a missing bundled file.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from .. import realdata
from ..realdata import BUNDLED, BUNDLED_FILES, NOT_BUNDLED, ROOT, real_path, require


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(BUNDLED_FILES))
def test_each_bundled_file_is_there_whole(name: str) -> None:
    path = BUNDLED / name
    assert path.is_file(), f"{path} is missing from the checkout"
    assert _sha256(path) == BUNDLED_FILES[name]


def test_the_bundled_folder_holds_exactly_the_listed_files_and_their_readme() -> None:
    assert {p.name for p in BUNDLED.iterdir()} == {*BUNDLED_FILES, "README.md"}


def test_the_readme_lists_each_bundled_file_with_its_sha256_and_the_licence() -> None:
    text = (BUNDLED / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", text, flags=re.M))
    assert listed == BUNDLED_FILES
    assert "Apache License, Version 2.0" in text and "QuantConnect" in text
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")  # the text Apache-2.0 asks to ship
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence


def test_no_file_whose_licence_forbids_bundling_is_in_the_tree() -> None:
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache"}]
        found += [str(Path(top, f).relative_to(ROOT)) for f in files if f in NOT_BUNDLED]
    assert found == []


def test_a_bundled_file_is_read_from_the_checkout_and_the_others_from_shared() -> None:
    for name in BUNDLED_FILES:
        assert real_path(name) == BUNDLED / name
    for name in NOT_BUNDLED:
        assert real_path(name) == ROOT.parent / "shared" / "data" / name
    with pytest.raises(KeyError, match="neither bundled"):
        real_path("lean_oanda_eurusd_h1_2007_2071.csv.gz")  # a typo never skips


def test_require_skips_a_not_bundled_file_naming_it_and_its_licence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realdata, "SHARED", tmp_path / "no-shared")
    for name, why in NOT_BUNDLED.items():
        with pytest.raises(pytest.skip.Exception) as skipped:
            require(name)
        msg = str(skipped.value)
        assert name in msg and why in msg and "licence forbids" in msg, msg


def test_require_fails_for_a_missing_bundled_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realdata, "BUNDLED", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="bundled with the repository"):
        require("lean_oanda_eurusd_h1_2007_2017.csv.gz")


def test_require_returns_a_file_that_is_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "backtesting-0.6.6_EURUSD_h1.csv"
    monkeypatch.setattr(realdata, "SHARED", tmp_path)
    (tmp_path / name).write_text("x\n")
    assert require(name) == tmp_path / name
    assert require("lean_oanda_d1_4pairs.csv.gz") == BUNDLED / "lean_oanda_d1_4pairs.csv.gz"
