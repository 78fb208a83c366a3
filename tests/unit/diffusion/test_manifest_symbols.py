"""A global model's ``symbols`` must be canonical currency pairs, or the model does not load.

``_names`` took any strings as the symbols a global model serves: a manifest naming
``eur/usd``, ``EURUSD\\n`` or ``ＥＵＲＵＳＤ`` loaded (so registering it succeeded) and the model
was refused only when served, as no series matched. Now loading it is an ``ArtifactError``
(registration loads the model first), as every other bad manifest value is.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.diffusion.predictor import Predictor
from forex_diffusion.errors import ArtifactError

from .test_hostile_manifest import _bundled, _forecasts, _with_manifest


def _manifest(symbols: Any) -> dict[str, Any]:
    _, manifest = _bundled()
    edited: dict[str, Any] = copy.deepcopy(manifest)
    edited["symbols"] = symbols
    return edited


@pytest.mark.parametrize(
    "symbol",
    [
        "eurusd",  # not upper case
        "EurUsd",
        "EUR/USD",  # an alias, not the canonical form
        "EUR_USD",
        "EURUSD\n",
        " EURUSD",
        "EURUS",
        "EURUSDX",
        "",
        "EURUS1",
        "ÉURUSD",  # upper-case letters, not ASCII
        "ＥＵＲＵＳＤ",  # full-width letters
        "\x1b[31mX",
    ],
)
def test_a_manifest_naming_a_non_canonical_symbol_is_refused_on_load(symbol: str, tmp_path: Path) -> None:
    pt = _with_manifest(tmp_path, _manifest(["GBPUSD", symbol]))
    with pytest.raises(ArtifactError, match="symbols must be canonical currency pairs"):
        Predictor.load(pt)


def test_a_manifest_naming_canonical_symbols_loads_and_forecasts(tmp_path: Path) -> None:
    pred = Predictor.load(_with_manifest(tmp_path, _manifest(["EURUSD", "GBPUSD", "XAUUSD"])))
    assert pred.symbols == frozenset({"EURUSD", "GBPUSD", "XAUUSD"})
    _forecasts(pred)


@pytest.mark.parametrize("symbols", ["EURUSD", ["EURUSD", 7], None])
def test_symbols_that_are_no_list_of_names_are_still_refused(symbols: Any, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="symbols must be a list of names"):
        Predictor.load(_with_manifest(tmp_path, _manifest(symbols)))
