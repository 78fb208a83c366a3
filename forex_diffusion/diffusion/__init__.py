"""The conditional diffusion forecaster.

Modules: :mod:`.schedule` (noise schedule), :mod:`.denoiser` (network), :mod:`.model`
(loss and DDIM sampler), :mod:`.training` (:func:`train`), :mod:`.predictor`
(:class:`Predictor`, :class:`Forecast`), :mod:`.checkpoint` (weights-only checkpoints with
manifests), :mod:`.context` (:class:`SeriesContext`, the per-series window).
"""

from __future__ import annotations

from forex_diffusion._lazy import lazy_exports

#: Each public name → the module (under this package) that defines it. Loaded on first use:
#: a module that needs one part (the series context, a manifest) does not load torch,
#: pandas and scipy with the rest (``forexd models list``, a tick or random-walk worker).
_EXPORTS = {
    "CheckpointManager": "checkpoint",
    "load_checkpoint": "checkpoint",
    "model_key": "checkpoint",
    "CALENDAR_DIM": "context",
    "ContextSpec": "context",
    "ForecastRequest": "context",
    "SeriesContext": "context",
    "build_features": "context",
    "calendar_features": "context",
    "Denoiser": "denoiser",
    "DenoiserConfig": "denoiser",
    "DiffusionModel": "model",
    "ModelConfig": "model",
    "NoiseSchedule": "noise",
    "ScheduleConfig": "noise",
    "Forecast": "predictor",
    "Predictor": "predictor",
    "series_seed": "predictor",
    "TrainConfig": "training",
    "TrainProgress": "training",
    "TrainResult": "training",
    "train": "training",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
