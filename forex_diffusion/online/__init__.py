"""Online learners with delayed labels, their default features and verified snapshots."""

from __future__ import annotations

from .features import BasicFeatures, basic_features, trailing_vol
from .learners import (
    HorizonPrediction,
    HorizonSkill,
    LearnerConfig,
    LearnerStep,
    OnlineLearnerSet,
    RealisedLabel,
    default_classifier,
    default_regressor,
)
from .snapshot import SNAPSHOT_MAGIC, dump_state, load_state

__all__ = [
    "SNAPSHOT_MAGIC",
    "BasicFeatures",
    "HorizonPrediction",
    "HorizonSkill",
    "LearnerConfig",
    "LearnerStep",
    "OnlineLearnerSet",
    "RealisedLabel",
    "basic_features",
    "default_classifier",
    "default_regressor",
    "dump_state",
    "load_state",
    "trailing_vol",
]
