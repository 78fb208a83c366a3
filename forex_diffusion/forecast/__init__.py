"""Forecast: the per-series forecast path, from closed candles to forecast records.

Modules: :mod:`.forecaster` (the per-symbol state machine), :mod:`.features` (multi-timeframe
feature vectors), :mod:`.batching` (requests batched by model, load shedding), :mod:`.touch`
(touch probabilities and running extremes of sampled paths), :mod:`.warm_start` (a series
rebuilt from stored candles), :mod:`.result` (:class:`Forecast`, what a sampling call returns). The model itself is :mod:`forex_diffusion.diffusion`.
"""

from __future__ import annotations

from forex_diffusion._lazy import lazy_exports

#: Each public name → the module (under this package) that defines it.
_EXPORTS = {
    "sampling_budget": "batching",
    "FeatureBuilder": "features",
    "FeatureConfig": "features",
    "ForecasterConfig": "forecaster",
    "SymbolForecaster": "forecaster",
    "touch_from_paths": "touch",
    "Forecast": "result",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
