"""The retrain schedule (``FOREXD_RETRAIN_SCHEDULE``): requests the worker makes itself.

Every 30 s the entries that are due (:func:`~retraining.schedule.due_requests`) become
requests, named, checked and queued like those of ``fx.retrain.requests``; a refused one is
logged (there is no record to dead-letter) and the timer goes on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from forex_diffusion.errors import ValidationError
from forex_diffusion.quality.trigger import RetrainRequest
from retraining.schedule import due_requests

if TYPE_CHECKING:
    from .retrain import RetrainAgent

__all__ = ["register_schedule", "start"]

log = logging.getLogger(__name__)


def start(agent: RetrainAgent, request: RetrainRequest) -> None:
    """Queue a request this worker made itself; refusals are logged."""
    try:
        agent.submit(request)
    except ValidationError as exc:
        log.error("retrain.scheduled_refused request=%s reason=%s", request.request_id, exc.reason.value)
    except Exception:  # noqa: BLE001 - a bad schedule entry never stops the timer
        log.exception("retrain.scheduled_refused request=%s", request.request_id)


def register_schedule(agent: RetrainAgent) -> None:
    """Attach the timer of ``agent``'s schedule (nothing when it is empty)."""
    if not agent.schedule:
        return

    async def scheduled() -> None:
        reqs, agent.last_fired = due_requests(agent.schedule, agent.last_fired, now_ms=int(time.time() * 1000))
        for r in reqs:
            start(agent, r)

    agent.rt.app.timer(interval=30.0)(scheduled)
