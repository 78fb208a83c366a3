"""Retrain trigger policy: a pure function from drift events to a retrain request.

:func:`decide` takes the new :class:`~forex_diffusion.drift.DriftEvent` s of one series,
the previous :class:`TriggerState` (plain data), the :class:`TriggerPolicy` and the current
time; it returns a :class:`Decision` (a :class:`RetrainRequest` or None, and the reason
either way) and the new state. It never mutates its inputs, reads no clock and performs
no I/O, so the same inputs always give the same decision.

The rules, in order:

1. **Debounce.** Events are kept for ``window_ms``. A model key qualifies when, within
   the window, at least ``min_detectors`` distinct detectors (detector name + horizon)
   fired, or one of them fired ``persistence`` times (a persistent signal).
2. **Cooldown.** No request for a series (symbol, timeframe) within ``cooldown_ms`` of its
   last request.
3. **De-duplication.** At most one open request per model key (symbol, timeframe and, when
   ``per_horizon``, horizon); :func:`close_request` marks one done, and an open request
   older than ``request_ttl_ms`` is treated as abandoned.

Manual and scheduled requests (:func:`request`) skip the debounce and cooldown but are
de-duplicated too.

>>> from forex_diffusion.drift.base import DriftEvent
>>> pol = TriggerPolicy(min_detectors=2, window_ms=3_600_000, cooldown_ms=86_400_000)
>>> ev = lambda det, t: DriftEvent(detector=det, statistic=1.0, threshold=0.5,
...     symbol="EURUSD", timeframe="1h", horizon=1, ts_ms=t)
>>> d, st = decide([ev("adwin:error", 1_000)], TriggerState(), pol, now_ms=1_000)
>>> d.request is None, d.reason.split(":")[0]
(True, 'debounce')
>>> d, st = decide([ev("page_hinkley:error", 2_000)], st, pol, now_ms=2_000)
>>> d.request.reason, d.request.symbol, d.reason.split(":")[0]
('drift', 'EURUSD', 'drift')
>>> d, st = decide([ev("adwin:error", 3_000), ev("coverage90", 3_000)], st, pol, now_ms=3_000)
>>> d.request is None, d.reason.split(":")[0]
(True, 'cooldown')
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from forex_diffusion.domain import field_dict
from forex_diffusion.drift.base import DriftEvent
from forex_diffusion.errors import ConfigError
from forex_diffusion.state import count, time_ms

__all__ = [
    "Decision",
    "RetrainReason",
    "RetrainRequest",
    "TriggerPolicy",
    "TriggerState",
    "close_request",
    "decide",
    "model_key",
    "request",
    "request_id_for",
]

logger = logging.getLogger(__name__)

RetrainReason = Literal["drift", "manual", "schedule"]
_REASONS: tuple[str, ...] = ("drift", "manual", "schedule")


def model_key(symbol: str, timeframe: str, horizon: int | None) -> str:
    """Return the model key ``SYMBOL/timeframe[/horizon]`` requests are de-duplicated on."""
    return f"{symbol}/{timeframe}" if horizon is None else f"{symbol}/{timeframe}/{horizon}"


def request_id_for(symbol: str, timeframe: str, horizon: int | None, reason: str, requested_at_ms: int) -> str:
    """Return the deterministic request id of a (model key, reason, time): 24 hex digits."""
    text = f"{model_key(symbol, timeframe, horizon)}|{reason}|{requested_at_ms}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrainRequest:
    """A request to retrain the model of one key; the ``fx.retrain.requests`` value."""

    request_id: str
    symbol: str
    timeframe: str
    horizon: int | None
    reason: RetrainReason
    requested_at_ms: int
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in _REASONS:
            raise ConfigError(f"retrain reason must be one of {_REASONS}, not {self.reason!r}")

    @classmethod
    def create(
        cls,
        symbol: str,
        timeframe: str,
        horizon: int | None,
        reason: RetrainReason,
        requested_at_ms: int,
        *,
        detail: str = "",
    ) -> RetrainRequest:
        """Return a new request whose id is :func:`request_id_for` its key, reason and time."""
        return cls(
            request_id=request_id_for(symbol, timeframe, horizon, reason, requested_at_ms),
            symbol=symbol,
            timeframe=timeframe,
            horizon=horizon,
            reason=reason,
            requested_at_ms=requested_at_ms,
            detail=detail,
        )

    @property
    def key(self) -> str:
        """The model key."""
        return model_key(self.symbol, self.timeframe, self.horizon)

    def to_dict(self) -> dict[str, Any]:
        """Return the plain-data form (JSON-able)."""
        return field_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainRequest:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError``."""
        allowed = {"request_id", "symbol", "timeframe", "horizon", "reason", "requested_at_ms", "detail"}
        unknown = set(data) - allowed
        missing = allowed - {"detail"} - set(data)
        if unknown or missing:
            raise ConfigError(f"retrain request: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
        h = data["horizon"]
        return cls(
            request_id=str(data["request_id"]),
            symbol=str(data["symbol"]),
            timeframe=str(data["timeframe"]),
            horizon=None if h is None else int(h),
            reason=data["reason"],
            requested_at_ms=int(data["requested_at_ms"]),
            detail=str(data.get("detail", "")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerPolicy:
    """Debounce, cooldown and de-duplication settings of :func:`decide`.

    Parameters
    ----------
    min_detectors
        Distinct detectors (name + horizon) that must agree within ``window_ms``.
    persistence
        Firings of a single detector within ``window_ms`` that also qualify.
    window_ms
        How long an event counts towards the debounce.
    cooldown_ms
        Minimum time between two drift requests of one series.
    request_ttl_ms
        Age after which an open request no longer blocks a new one (a dead job).
    per_horizon
        Model keys include the horizon (one model per horizon) instead of one per series.
    model_horizon
        Without ``per_horizon``: the horizon of the one model the series serves, named in
        its requests' keys (``EURUSD/1h/24``); None keeps the key ``EURUSD/1h`` (the
        worker's default horizon). A worker serving several horizons sets it (issue 16).
    max_events
        Bound on the events kept in the state per series.
    """

    min_detectors: int = 2
    persistence: int = 3
    window_ms: int = 24 * 3_600_000
    cooldown_ms: int = 7 * 24 * 3_600_000
    request_ttl_ms: int = 3 * 24 * 3_600_000
    per_horizon: bool = False
    max_events: int = 256
    model_horizon: int | None = None

    def __post_init__(self) -> None:
        if self.min_detectors < 1 or self.persistence < 1:
            raise ConfigError("min_detectors and persistence must be >= 1")
        if self.window_ms <= 0 or self.cooldown_ms < 0 or self.request_ttl_ms <= 0:
            raise ConfigError("window_ms and request_ttl_ms must be > 0, cooldown_ms >= 0")
        if self.max_events < max(self.min_detectors, self.persistence):
            raise ConfigError("max_events must hold min_detectors and persistence events")


@dataclass(frozen=True, slots=True)
class _Seen:
    detector: str
    horizon: int | None
    ts_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerState:
    """Plain-data state of the trigger policy (JSON-able through :meth:`to_dict`).

    ``events`` are the recent events per series key ``SYMBOL/timeframe`` as
    ``(detector, horizon, ts_ms)``; ``last_request_ms`` the time of the last drift request
    per series; ``open_requests`` the open request per model key as ``(request_id,
    requested_at_ms)``.
    """

    events: Mapping[str, tuple[tuple[str, int | None, int], ...]] = field(default_factory=dict)
    last_request_ms: Mapping[str, int] = field(default_factory=dict)
    open_requests: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the plain-data form (JSON-able)."""
        return {
            "events": {k: [list(e) for e in v] for k, v in self.events.items()},
            "last_request_ms": dict(self.last_request_ms),
            "open_requests": {k: list(v) for k, v in self.open_requests.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TriggerState:
        """Inverse of :meth:`to_dict`. Times and horizons are read by type
        (:mod:`forex_diffusion.state`: an integer, not ``"1"``, ``True`` or ``2.5``; times in
        the wire's range): a ``TypeError`` or ``ValueError`` naming the field otherwise (the
        forecaster's restore reads it as its ``StateError``)."""
        unknown = set(data) - {"events", "last_request_ms", "open_requests"}
        if unknown:
            raise ConfigError(f"trigger state: unknown keys {sorted(unknown)}")
        return cls(
            events={
                k: tuple(
                    (
                        str(d),
                        None if h is None else count(h, field="trigger event horizon"),
                        time_ms(t, field="trigger event ts_ms"),
                    )
                    for d, h, t in v
                )
                for k, v in data.get("events", {}).items()
            },
            last_request_ms={
                k: time_ms(v, field="trigger last_request_ms") for k, v in data.get("last_request_ms", {}).items()
            },
            open_requests={
                k: (str(v[0]), time_ms(v[1], field="trigger open request time"))
                for k, v in data.get("open_requests", {}).items()
            },
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What :func:`decide` concluded: the request to send (or None) and why."""

    request: RetrainRequest | None
    reason: str


def _open_blocking(state: TriggerState, key: str, policy: TriggerPolicy, now_ms: int) -> str | None:
    entry = state.open_requests.get(key)
    if entry is None:
        return None
    rid, at = entry
    if now_ms - at >= policy.request_ttl_ms:
        return None
    return rid


def decide(
    events: Iterable[DriftEvent],
    state: TriggerState,
    policy: TriggerPolicy,
    now_ms: int,
) -> tuple[Decision, TriggerState]:
    """Decide whether the drift events of one series call for a retrain request.

    Parameters
    ----------
    events
        New drift events, all of one (symbol, timeframe); may be empty.
    state
        The state returned by the previous call (``TriggerState()`` at start).
    policy
        Debounce, cooldown and de-duplication settings.
    now_ms
        The decision time (event time of the candle being processed), epoch ms.

    Returns
    -------
    tuple[Decision, TriggerState]
        The decision with its reason, and the new state (inputs are not modified).

    Raises
    ------
    ConfigError
        Events of several series in one call.
    """
    new = list(events)
    series = {(e.symbol, e.timeframe) for e in new}
    if len(series) > 1:
        raise ConfigError(f"decide() takes events of one series, got {sorted(series)}")
    if not new:
        return Decision(None, "no events"), state
    symbol, timeframe = next(iter(series))
    skey = model_key(symbol, timeframe, None)

    horizon_of = (lambda h: h) if policy.per_horizon else (lambda h: policy.model_horizon)
    kept = [_Seen(d, h, t) for d, h, t in state.events.get(skey, ()) if now_ms - t < policy.window_ms]
    kept.extend(_Seen(e.detector, e.horizon, e.ts_ms) for e in new if now_ms - e.ts_ms < policy.window_ms)
    kept = kept[-policy.max_events :]

    def with_events(seen: Sequence[_Seen], **changes: Any) -> TriggerState:
        events_map = dict(state.events)
        events_map[skey] = tuple((s.detector, s.horizon, s.ts_ms) for s in seen)
        return replace(state, events=events_map, **changes)

    # 1. debounce, per model key; keys touched by the new events first
    groups: dict[int | None, list[_Seen]] = {}
    for s in kept:
        groups.setdefault(horizon_of(s.horizon), []).append(s)
    touched = list(dict.fromkeys(horizon_of(e.horizon) for e in new))
    qualified: list[tuple[int | None, str]] = []
    debounce_notes: list[str] = []
    for h in touched:
        seen = groups.get(h, [])
        counts = Counter((s.detector, s.horizon) for s in seen)
        distinct = len(counts)
        top = max(counts.values(), default=0)
        names = ", ".join(sorted(f"{d}@{hz}" if hz is not None else d for d, hz in counts))
        if distinct >= policy.min_detectors:
            qualified.append((h, f"{distinct} detectors agree ({names})"))
        elif top >= policy.persistence:
            qualified.append((h, f"persistent signal ({names} x{top})"))
        else:
            debounce_notes.append(
                f"{model_key(symbol, timeframe, h)} has {distinct} detector(s) x{top} "
                f"({names}); need {policy.min_detectors} or x{policy.persistence}"
            )
    if not qualified:
        return Decision(None, "debounce: " + "; ".join(debounce_notes)), with_events(kept)

    # 2. cooldown per series
    last = state.last_request_ms.get(skey)
    if last is not None and now_ms - last < policy.cooldown_ms:
        left = policy.cooldown_ms - (now_ms - last)
        return (
            Decision(None, f"cooldown: {skey} requested at {last}, {left} ms left"),
            with_events(kept),
        )

    # 3. one open request per model key
    blocked: list[str] = []
    for h, why in qualified:
        key = model_key(symbol, timeframe, h)
        rid = _open_blocking(state, key, policy, now_ms)
        if rid is not None:
            blocked.append(f"{key} has open request {rid}")
            continue
        req = RetrainRequest.create(symbol, timeframe, h, "drift", now_ms, detail=why)
        remaining = [s for s in kept if horizon_of(s.horizon) != h]
        opened = dict(state.open_requests)
        opened[key] = (req.request_id, now_ms)
        last_map = dict(state.last_request_ms)
        last_map[skey] = now_ms
        logger.info("retrain request id=%s key=%s reason=drift detail=%s", req.request_id, key, why)
        return (
            Decision(req, f"drift: {key} {why}"),
            with_events(remaining, open_requests=opened, last_request_ms=last_map),
        )
    return Decision(None, "duplicate: " + "; ".join(blocked)), with_events(kept)


def request(
    state: TriggerState,
    policy: TriggerPolicy,
    *,
    symbol: str,
    timeframe: str,
    now_ms: int,
    reason: RetrainReason = "manual",
    horizon: int | None = None,
    detail: str = "",
) -> tuple[Decision, TriggerState]:
    """Make a manual or scheduled request: no debounce or cooldown, still de-duplicated."""
    if reason not in ("manual", "schedule"):
        raise ConfigError(f"request() is for manual or schedule requests, not {reason!r}")
    h = horizon if policy.per_horizon else None
    key = model_key(symbol, timeframe, h)
    rid = _open_blocking(state, key, policy, now_ms)
    if rid is not None:
        return Decision(None, f"duplicate: {key} has open request {rid}"), state
    req = RetrainRequest.create(symbol, timeframe, h, reason, now_ms, detail=detail)
    opened = dict(state.open_requests)
    opened[key] = (req.request_id, now_ms)
    return Decision(req, f"{reason}: {key}"), replace(state, open_requests=opened)


def close_request(state: TriggerState, request_id: str) -> TriggerState:
    """Mark the open request ``request_id`` done (unknown ids leave the state as is)."""
    opened = {k: v for k, v in state.open_requests.items() if v[0] != request_id}
    if len(opened) == len(state.open_requests):
        return state
    return replace(state, open_requests=opened)
