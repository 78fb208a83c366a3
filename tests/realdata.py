"""Real FX data for the tests: the bundled Apache-2.0 files, and ``../shared/data`` for the rest.

A fresh clone has no ``../shared``: the QuantConnect/Lean files the tests read are bundled
under ``tests/data/lean/`` (see its README for provenance and licence), and every checkout
must hold them: a test whose bundled file is missing fails, it never skips. Files whose
terms forbid redistribution are read from ``../shared/data`` only, and a test that needs
one skips through :func:`require`, naming the file and the licence that keeps it out.

Every name a test asks for is one of the two lists below: a name in neither (a typo, or a
new file nobody has classified) raises at once instead of skipping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "tests" / "data" / "lean"
SHARED = ROOT.parent / "shared" / "data"

#: The files bundled under ``tests/data/lean`` and their sha256 (as in its README and in
#: ``../shared/data/README.md``).
BUNDLED_FILES = {
    "lean_oanda_eurusd_ticks_2014-05-01_15.csv.gz": "49474499deee6aea43402b78df0258f82fc0c2595b670ea79389c4a557234955",
    "lean_fxcm_eurusd_ticks_2014-05-01_15.csv.gz": "9d5c5b0ee1e1a23b8b53ed67761332c3ade34cece15285c14e77f164191feb5b",
    "lean_oanda_eurusd_m1_2014-05-01_15.csv.gz": "09414ce0f263b4eef73fff1ff9324655e33f3ac5d698bf3c62e4e13f8c87a10d",
    "lean_fxcm_eurusd_m1_2014-05-01_15.csv.gz": "595de107522c0bef99831df1df1ba12d20236088abce42571353661e7515a72e",
    "lean_oanda_eurusd_h1_2007_2017.csv.gz": "ba69a1e26479af7e34258ac897571ba11a80dfce66af3da384d21006c79946ae",
    "lean_oanda_d1_4pairs.csv.gz": "62b102a6e1cdf9fff0ac152e8857eb20863eb703f0201d0c5a596ed000f1b7f2",
}

#: The files the tests read from ``../shared/data`` only, and the licence that keeps each
#: out of the repository.
NOT_BUNDLED = {
    "histdata_eurusd_m1_2017-01_05.csv.gz": "HistData.com's free-data terms do not allow redistributing it",
    "truefx_usdjpy_ticks_2013-01-01_sample.csv.gz": (
        "TrueFX ticks copied from nautilus_trader, an LGPL-3.0 repository; the data set's licence "
        "notes keep it out of this one"
    ),
    "backtesting-0.6.6_EURUSD_h1.csv": "the backtesting 0.6.6 package's file is AGPL-3.0",
}


def real_path(name: str) -> Path:
    """Where ``name`` is read from: ``tests/data/lean`` when it is bundled, else ``../shared/data``.

    The path may not exist (a file of ``../shared/data`` in a fresh clone); a name that is in
    neither list raises :class:`KeyError`.
    """
    if name in BUNDLED_FILES:
        return BUNDLED / name
    if name in NOT_BUNDLED:
        return SHARED / name
    raise KeyError(
        f"{name!r} is neither bundled (tests.realdata.BUNDLED_FILES) nor listed with the licence "
        "that keeps it out of the repository (tests.realdata.NOT_BUNDLED)"
    )


def require(name: str) -> Path:
    """The path of ``name``; where it is absent, skip when its licence forbids bundling it and
    fail when it is one of the bundled files (the checkout is incomplete)."""
    path = real_path(name)
    if path.exists():
        return path
    if name in NOT_BUNDLED:
        pytest.skip(
            f"{name} is not bundled: its licence forbids copying it into the repository "
            f"({NOT_BUNDLED[name]}); the test reads it from {SHARED}, which is absent here"
        )
    pytest.fail(
        f"{path} is missing: it is bundled with the repository (Apache-2.0, see "
        "tests/data/lean/README.md), so every checkout must hold it"
    )


class _DataDir:
    """``DATA / name`` resolves like :func:`real_path` (for modules that build paths at import)."""

    def __truediv__(self, name: str) -> Path:
        return real_path(name)


DATA = _DataDir()
