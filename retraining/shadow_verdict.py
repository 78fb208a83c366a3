"""Deciding a shadow (issue 16): the realised live scores in the database → promote or reject.

A version in shadow (status and alias ``shadow``, set by the retrain job through
:meth:`~retraining.registry.ModelRegistry.start_shadow`) carries ``metrics.shadow.required``:
how many of its live forecasts must be realised. The candle agent writes one
``shadow_scores`` row per realised origin in its checkpoint transaction;
:func:`settle_shadow` reads the FIRST ``required`` rows (by origin), applies
:func:`~retraining.policy.decide_shadow` and promotes or rejects, each one transaction
that changes nothing when the version is no longer in shadow. The same rows always give
the same decision, whoever runs it and however late: a worker restarted mid-shadow resumes
from its checkpoint and the rows already stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from forex_diffusion.errors import RegistryError
from forex_diffusion.storage.model_registry import ModelVersion, read_shadow_scores

from .policy import PromotionDecision, ShadowScores, decide_shadow
from .registry import ModelRegistry

__all__ = ["ShadowState", "settle_shadow", "shadow_state"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowState:
    """Where a shadow stands.

    ``state`` is ``waiting`` (still in shadow), ``promoted`` or ``rejected`` (decided: by
    the shadow rule, or otherwise, e.g. superseded or promoted by hand); ``decided_now`` is
    True only for the call that took the decision. ``scores`` are over the first
    ``required`` realised origins at most.
    """

    version: ModelVersion
    required: int
    realised: int
    scores: ShadowScores
    state: str
    reason: str
    decided_now: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return {
            "version": self.version.version,
            "key": str(self.version.key),
            "status": self.version.status,
            "state": self.state,
            "required": self.required,
            "realised": self.realised,
            "scores": self.scores.to_dict(),
            "reason": self.reason,
        }


#: Most realised forecasts a shadow may require: far above any FOREXD_SHADOW_FORECASTS (at most
#: 100,000), and a LIMIT every database takes (SQLite raised OverflowError past 2**63 - 1).
REQUIRED_MAX = 2**31 - 1


def _required(v: ModelVersion) -> int:
    """The realised forecasts ``v``'s shadow requires; 0 for a version that never entered
    shadow, or whose row holds no count there (a row written by hand: ``1e300``, ``Infinity``)."""
    shadow = v.metrics.get("shadow") if isinstance(v.metrics, dict) else None
    if not isinstance(shadow, dict):
        return 0
    try:
        n = int(shadow["required"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return 0
    return max(1, n) if n <= REQUIRED_MAX else 0


def shadow_state(registry: ModelRegistry, version: str) -> ShadowState:
    """Read a version's shadow comparison (no change).

    Raises
    ------
    RegistryError
        Unknown version, or one that never entered shadow.
    """
    v = registry.get(version)
    required = _required(v)
    if required == 0:
        raise RegistryError(f"version {version} never entered shadow")
    rows = read_shadow_scores(registry.engine, version, limit=required)
    scores = ShadowScores.from_rows(rows)
    if v.status == "shadow":
        return ShadowState(
            version=v,
            required=required,
            realised=scores.n,
            scores=scores,
            state="waiting",
            reason=f"{scores.n} of {required} realised forecasts",
        )
    state = "promoted" if v.status == "promoted" or v.status == "rolled_back" else v.status
    return ShadowState(version=v, required=required, realised=scores.n, scores=scores, state=state, reason=v.reason)


def settle_shadow(registry: ModelRegistry, version: str) -> ShadowState:
    """Decide ``version``'s shadow if ``required`` forecasts are realised; return where it stands.

    Promotion verifies the artifact like any promotion; one refused becomes a rejection.
    A version no longer in shadow is left as it is.
    """
    st = shadow_state(registry, version)
    if st.state != "waiting":
        return st
    decision: PromotionDecision | None = decide_shadow(st.scores, required=st.required)
    if decision is None:
        return st
    reason = decision.reason
    if decision.promote:
        try:
            v = registry.promote(version, reason, expect_status="shadow")
        except RegistryError as exc:
            reason = f"promotion refused: {exc}"[:2000]
            v = registry.reject(version, reason, expect_status="shadow")
    else:
        v = registry.reject(version, reason, expect_status="shadow")
    decided_now = v.status in ("promoted", "rejected") and v.reason == reason
    log.info("shadow.decided version=%s key=%s status=%s reason=%s", version, v.key, v.status, v.reason)
    return ShadowState(
        version=v,
        required=st.required,
        realised=st.scores.n,
        scores=st.scores,
        state="promoted" if v.status == "promoted" else v.status,
        reason=v.reason,
        decided_now=decided_now,
    )
