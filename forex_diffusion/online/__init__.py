"""Online learners with delayed labels and verified snapshots.

Modules: :mod:`.learners` (river learners, delayed labels, skill), :mod:`.snapshot` (signed
snapshots of their state). Names load on first use: the tick worker, which signs its state
but learns nothing, never imports river (and scipy.stats under it, seconds of each start).
"""

from __future__ import annotations

from forex_diffusion._lazy import lazy_exports

#: Each public name → the module (under this package) that defines it.
_EXPORTS = {
    "HorizonPrediction": "learners",
    "HorizonSkill": "learners",
    "LearnerConfig": "learners",
    "LearnerStep": "learners",
    "OnlineLearnerSet": "learners",
    "RealisedLabel": "learners",
    "default_classifier": "learners",
    "default_regressor": "learners",
    "SNAPSHOT_MAGIC": "snapshot",
    "dump_state": "snapshot",
    "load_state": "snapshot",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
