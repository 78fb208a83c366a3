"""Run the examples in the docstrings of the retraining modules and the registry key."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "retraining.policy",
        "retraining.schedule",
        "retraining.jobs",
        "retraining.job_queue",
        "forex_diffusion.storage.model_registry",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
