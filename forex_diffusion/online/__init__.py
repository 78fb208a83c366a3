"""Online learners with delayed labels and verified snapshots."""

from __future__ import annotations

from forex_diffusion.online.learners import (
    HorizonPrediction,
    HorizonSkill,
    LearnerConfig,
    LearnerStep,
    OnlineLearnerSet,
    RealisedLabel,
    default_classifier,
    default_regressor,
)
from forex_diffusion.online.snapshot import SNAPSHOT_MAGIC, dump_state, load_state

__all__ = [
    "SNAPSHOT_MAGIC",
    "HorizonPrediction",
    "HorizonSkill",
    "LearnerConfig",
    "LearnerStep",
    "OnlineLearnerSet",
    "RealisedLabel",
    "default_classifier",
    "default_regressor",
    "dump_state",
    "load_state",
]
