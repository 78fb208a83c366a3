"""Retraining: train → evaluate challenger vs champion → register → promote (no Kafka, no Faust).

The package root re-exports the stable names of its modules. They load on first use
(PEP 562), so ``import retraining`` or ``import retraining.policy`` does not pay for torch,
which the jobs need (training) and the registry and the model book load with the first
model they load. The topics' records (:mod:`.records`) need none of it.

>>> import retraining
>>> challenger = retraining.HoldoutScores(crps=0.98, rw_crps=1.0, cover90=0.9, cover50=0.5, n=100)
>>> champion = retraining.HoldoutScores(crps=1.0, rw_crps=1.0, cover90=0.9, cover50=0.5, n=100)
>>> retraining.decide_promotion(challenger, champion, retraining.PromotionPolicy(min_improvement=0.01)).promote
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forex_diffusion._lazy import lazy_exports

if TYPE_CHECKING:
    from .job_queue import RetrainQueue
    from .jobs import JobConfig, run_retrain
    from .policy import (
        HoldoutScores,
        PromotionDecision,
        PromotionPolicy,
        ShadowScores,
        decide_promotion,
        decide_shadow,
    )
    from .records import JobOutcome
    from .registry import ModelRegistry, RetentionResult
    from .schedule import ScheduleEntry, due_requests, parse_interval
    from .serving import ModelBook
    from .shadow_verdict import ShadowState, settle_shadow, shadow_state

__all__ = [
    "HoldoutScores",
    "JobConfig",
    "JobOutcome",
    "ModelBook",
    "ModelRegistry",
    "PromotionDecision",
    "PromotionPolicy",
    "RetentionResult",
    "RetrainQueue",
    "ScheduleEntry",
    "ShadowScores",
    "ShadowState",
    "decide_promotion",
    "decide_shadow",
    "due_requests",
    "parse_interval",
    "run_retrain",
    "settle_shadow",
    "shadow_state",
]

#: Each public name → the module (under this package) that defines it.
_EXPORTS = {
    "RetrainQueue": "job_queue",
    "JobConfig": "jobs",
    "JobOutcome": "records",
    "run_retrain": "jobs",
    "HoldoutScores": "policy",
    "PromotionDecision": "policy",
    "PromotionPolicy": "policy",
    "ShadowScores": "policy",
    "decide_promotion": "policy",
    "decide_shadow": "policy",
    "ModelRegistry": "registry",
    "RetentionResult": "registry",
    "ScheduleEntry": "schedule",
    "due_requests": "schedule",
    "parse_interval": "schedule",
    "ModelBook": "serving",
    "ShadowState": "shadow_verdict",
    "settle_shadow": "shadow_verdict",
    "shadow_state": "shadow_verdict",
}

# ``__all__`` is spelled out above, beside the imports the type checker reads; the names
# are the same as ``_EXPORTS``'s keys
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)[1:]
