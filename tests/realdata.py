"""Real FX data for the tests: the bundled Apache-2.0 files first, then ``../shared/data``.

A fresh clone has no ``../shared``: the QuantConnect/Lean files the tests read are bundled
under ``tests/data/lean/`` (see its README for provenance and licence). Files whose terms
forbid redistribution are read from ``../shared/data`` only, and a test that needs one
skips with :func:`require`, naming the file and why it is not bundled.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "tests" / "data" / "lean"
SHARED = ROOT.parent / "shared" / "data"

NOT_BUNDLED = {
    "histdata_eurusd_m1_2017-01_05.csv.gz": "HistData.com's terms forbid redistribution",
    "truefx_usdjpy_ticks_2013-01-01_sample.csv.gz": "TrueFX data from an LGPL-3.0 repository",
    "backtesting-0.6.6_EURUSD_h1.csv": "the backtesting package's file is AGPL-3.0",
}


def real_path(name: str) -> Path:
    """Where ``name`` is: bundled when it is, else under ``../shared/data`` (may not exist)."""
    bundled = BUNDLED / name
    return bundled if bundled.exists() else SHARED / name


def require(name: str) -> Path:
    """The path of ``name``, or skip the test saying which file is missing and why."""
    path = real_path(name)
    if not path.exists():
        why = NOT_BUNDLED.get(name, "it should be bundled under tests/data/lean")
        pytest.skip(f"{name} is not in this checkout ({why}); it is read from {SHARED}, absent here")
    return path


class _DataDir:
    """``DATA / name`` resolves like :func:`real_path` (for modules that build paths at import)."""

    def __truediv__(self, name: str) -> Path:
        return real_path(name)


DATA = _DataDir()
