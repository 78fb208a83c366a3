"""Run the examples in the docstrings of the learner, drift and trigger modules."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "tests.online_features",
        "forex_diffusion.online.learners",
        "forex_diffusion.online.snapshot",
        "forex_diffusion.drift.adwin",
        "forex_diffusion.drift.page_hinkley",
        "forex_diffusion.drift.calibration",
        "forex_diffusion.drift.ks",
        "forex_diffusion.quality.trigger",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
