"""The conditional diffusion forecaster.

Modules: :mod:`.schedule` (noise schedule), :mod:`.denoiser` (network), :mod:`.model`
(loss and DDIM sampler), :mod:`.training` (:func:`train`), :mod:`.predictor`
(:class:`Predictor`, :class:`Forecast`), :mod:`.checkpoint` (weights-only checkpoints with
manifests), :mod:`.context` (:class:`SeriesContext`, the per-series window).
"""

from __future__ import annotations

from .checkpoint import CheckpointManager, load_checkpoint, model_key
from .context import (
    CALENDAR_DIM,
    ContextSpec,
    ForecastRequest,
    SeriesContext,
    build_features,
    calendar_features,
)
from .denoiser import Denoiser, DenoiserConfig
from .model import DiffusionModel, ModelConfig
from .predictor import Forecast, Predictor, series_seed
from .schedule import NoiseSchedule, ScheduleConfig
from .training import TrainConfig, TrainProgress, TrainResult, train

__all__ = [
    "CALENDAR_DIM",
    "CheckpointManager",
    "ContextSpec",
    "Denoiser",
    "DenoiserConfig",
    "DiffusionModel",
    "Forecast",
    "ForecastRequest",
    "ModelConfig",
    "NoiseSchedule",
    "Predictor",
    "ScheduleConfig",
    "SeriesContext",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "build_features",
    "calendar_features",
    "load_checkpoint",
    "model_key",
    "series_seed",
    "train",
]
