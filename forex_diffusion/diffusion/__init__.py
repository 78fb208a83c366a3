"""The conditional diffusion forecaster.

Modules: :mod:`.schedule` (noise schedule), :mod:`.denoiser` (network), :mod:`.model`
(loss and DDIM sampler), :mod:`.training` (:func:`train`), :mod:`.predictor`
(:class:`Predictor`, :class:`Forecast`), :mod:`.checkpoint` (weights-only checkpoints with
manifests), :mod:`.context` (:class:`SeriesContext`, the per-series window).
"""

from __future__ import annotations

from forex_diffusion.diffusion.checkpoint import CheckpointManager, load_checkpoint, model_key
from forex_diffusion.diffusion.context import (
    CALENDAR_DIM,
    ContextSpec,
    ForecastRequest,
    SeriesContext,
    build_features,
    calendar_features,
)
from forex_diffusion.diffusion.denoiser import Denoiser, DenoiserConfig
from forex_diffusion.diffusion.model import DiffusionModel, ModelConfig
from forex_diffusion.diffusion.noise import NoiseSchedule, ScheduleConfig
from forex_diffusion.diffusion.predictor import Forecast, Predictor, series_seed
from forex_diffusion.diffusion.training import TrainConfig, TrainProgress, TrainResult, train

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
