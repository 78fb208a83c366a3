"""Batch forecast requests by model, and shed load when a batch says the worker is behind.

The candle agent takes candles in batches. Every request of a batch that one model serves
goes to that model in ONE sampling call (:func:`group_by_model`). A batch of at least
``degrade_batch`` candles means the worker is behind its input: those forecasts sample with
the smaller budget (``min_steps``, ``min_samples``) and are marked degraded
(:func:`sampling_budget`), so the worker catches up instead of falling further behind.

>>> sampling_budget(120, steps=50, samples=256, min_steps=10, min_samples=64, degrade_batch=100)
SamplingBudget(steps=10, samples=64, degraded=True)
>>> sampling_budget(20, steps=50, samples=256, min_steps=10, min_samples=64, degrade_batch=100)
SamplingBudget(steps=50, samples=256, degraded=False)
>>> [(m, xs) for m, xs in group_by_model([1, 2, 3, 4], lambda x: "odd" if x % 2 else "even")]
[('odd', [1, 3]), ('even', [2, 4])]

A configured step count is a ceiling: a model whose schedule has fewer steps samples all of
them (:func:`steps_for`), so one setting serves models trained with different schedules.

>>> from types import SimpleNamespace
>>> steps_for(SimpleNamespace(max_steps=200), 500), steps_for(SimpleNamespace(max_steps=200), 50)
(200, 50)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

__all__ = [
    "SAMPLES_MAX",
    "SAMPLES_MIN",
    "STEPS_MAX",
    "SamplingBudget",
    "group_by_model",
    "sampling_budget",
    "steps_for",
]

# The bounds of a sampling budget, for every caller (the worker's settings, ``forexd backtest``,
# the predictor itself). Samples: at least 2 (antithetic pairs; a quantile needs a spread), at
# most 10,000 (each forecast holds samples x horizon floats per series, and a fx.forecasts.paths
# record carries at most that many paths). Steps: DDIM steps, each one denoiser pass over every
# sample; a model also accepts at most its schedule's T (200 for the bundled models).
SAMPLES_MIN: Final = 2
SAMPLES_MAX: Final = 10_000
STEPS_MAX: Final = 1_000

T = TypeVar("T")
M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class SamplingBudget:
    """Sampler steps and samples of a batch's forecasts (None: the model's own), and whether
    they were shed to catch up."""

    steps: int | None
    samples: int | None
    degraded: bool


def sampling_budget(
    batch: int,
    *,
    steps: int | None,
    samples: int | None,
    min_steps: int | None = None,
    min_samples: int | None = None,
    degrade_batch: int = 0,
) -> SamplingBudget:
    """The budget of a batch of ``batch`` candles: the reduced one from ``degrade_batch``
    candles on (0: never), the full one below."""
    degraded = batch >= degrade_batch > 0
    return SamplingBudget(
        steps=min_steps if degraded and min_steps else steps,
        samples=min_samples if degraded and min_samples else samples,
        degraded=degraded,
    )


def group_by_model(items: Iterable[T], model_of: Callable[[T], M]) -> list[tuple[M, list[T]]]:
    """``items`` grouped by the model that serves each (the same object), in first-seen order."""
    groups: dict[int, tuple[M, list[T]]] = {}
    for item in items:
        model = model_of(item)
        groups.setdefault(id(model), (model, []))[1].append(item)
    return list(groups.values())


def steps_for(model: object, steps: int | None) -> int | None:
    """``steps`` for ``model``, at most its ``max_steps`` (a DDIM sampler takes at most its
    schedule's T): None (the model's own) and a model without a schedule (the random walk) as
    they are."""
    cap = getattr(model, "max_steps", None)
    return steps if steps is None or cap is None else min(steps, int(cap))
