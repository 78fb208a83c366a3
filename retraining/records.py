"""The records of the retraining topics: a request's id and codec, a job's outcome and codec.

``fx.retrain.requests`` carries :class:`~forex_diffusion.quality.trigger.RetrainRequest`
(its ``request_id`` checked by :func:`check_request_id`, since paths are built from it);
``fx.models`` carries :class:`JobOutcome`, what one retrain job (or a shadow's decision)
announces. They live apart from :mod:`retraining.jobs`, which re-exports them, so that the
agents that only read or write these records (the candle agent announces a shadow's
decision, the models agent reads outcomes) do not load the training code, and torch with
it: about a second of every worker's start while no model is served.

>>> o = JobOutcome(request_id="r1", key="EURUSD-1h-h24", symbol="EURUSD", timeframe="1h", horizon=24,
...                version=None, status="failed", reason="error: ArtifactError")
>>> decode_outcome(encode_outcome(o)) == o, o.exit_code
(True, 1)
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from forex_diffusion import wire
from forex_diffusion.errors import ConfigError, RejectReason, ValidationError
from forex_diffusion.instruments import is_symbol_set_key
from forex_diffusion.quality.trigger import RetrainRequest

__all__ = [
    "OUTCOME_SCHEMA",
    "REQUEST_ID_PATTERN",
    "JobOutcome",
    "JobStatus",
    "check_outcome",
    "check_request_id",
    "decode_outcome",
    "decode_request",
    "encode_outcome",
    "encode_request",
]

#: What a ``request_id`` may be: what ``forexd retrain``, the drift trigger and the schedule
#: generate (24 hex digits, :func:`~forex_diffusion.quality.trigger.request_id_for`) and any other
#: short id made of letters, digits, ``_`` and ``-`` (no path separator, dot or glob character).
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_request_id(request_id: object) -> str:
    """Return ``request_id`` if it matches :data:`REQUEST_ID_PATTERN`.

    >>> check_request_id("3f2a9c")
    '3f2a9c'
    >>> check_request_id("../x")
    Traceback (most recent call last):
    ...
    forex_diffusion.errors.ValidationError: schema: request_id must match ^[A-Za-z0-9_-]{1,64}$ (got '../x')

    Raises
    ------
    ValidationError
        ``schema``: not a string of 1 to 64 letters, digits, ``_`` or ``-``.
    """
    if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.fullmatch(request_id):
        shown = repr(request_id)[:40] if isinstance(request_id, str) else type(request_id).__name__
        raise ValidationError(RejectReason.SCHEMA, f"request_id must match {REQUEST_ID_PATTERN.pattern} (got {shown})")
    return request_id


JobStatus = Literal["promoted", "shadow", "rejected", "failed"]
_STATUSES: tuple[str, ...] = ("promoted", "shadow", "rejected", "failed")
#: Schema version of the ``fx.models`` value (:meth:`JobOutcome.to_dict`).
OUTCOME_SCHEMA = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOutcome:
    """The result of one retrain job; its :meth:`to_dict` is the ``fx.models`` value.

    ``version`` is None when the job failed before registering; ``champion`` is the
    champion serving the key's series after the job (:func:`retraining.registry.serving_champion`: its own
    key's, else the global or ``*`` model that serves the symbol; None when there is none, or
    when that lookup failed: the job's decision is already stored, so the outcome is still
    announced, and the failure logged as ``retrain.champion_unresolved``); ``artifact`` the
    absolute path of the new version's checkpoint (what a forecaster loads after a promotion).
    """

    request_id: str
    key: str
    symbol: str
    timeframe: str
    horizon: int
    version: str | None
    status: JobStatus
    reason: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    champion: str | None = None
    artifact: str | None = None
    sha256: str | None = None
    finished_at_ms: int = 0
    #: A failed job's error text, for the process that ran it (``forexd retrain --local``): never
    #: published (not in :meth:`to_dict`; the text may hold paths, SQL or a child's output).
    error: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ConfigError(f"job status must be one of {_STATUSES}, not {self.status!r}")

    @property
    def exit_code(self) -> int:
        """Command-line exit status: 0 promoted or in shadow, 3 rejected, 1 failed."""
        return {"promoted": 0, "shadow": 0, "rejected": 3}.get(self.status, 1)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form (with the schema version ``v``)."""
        return {
            "v": OUTCOME_SCHEMA,
            "request_id": self.request_id,
            "key": self.key,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "horizon": self.horizon,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "metrics": wire.jsonable(dict(self.metrics)),
            "duration_s": self.duration_s,
            "champion": self.champion,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "finished_at_ms": self.finished_at_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobOutcome:
        """Inverse of :meth:`to_dict`; unknown keys or another schema version raise ``ConfigError``."""
        d = dict(data)
        v = d.pop("v", OUTCOME_SCHEMA)
        if v != OUTCOME_SCHEMA:
            raise ConfigError(f"unsupported job outcome schema {v}")
        names = {
            "request_id",
            "key",
            "symbol",
            "timeframe",
            "horizon",
            "version",
            "status",
            "reason",
            "metrics",
            "duration_s",
            "champion",
            "artifact",
            "sha256",
            "finished_at_ms",
        }
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown JobOutcome keys: {sorted(unknown)}")
        if not isinstance(d.get("metrics", {}), Mapping):  # to_dict (and so a printed outcome) needs one
            raise ConfigError(f"JobOutcome metrics must be a JSON object, not {type(d['metrics']).__name__}")
        try:
            d["horizon"] = int(d["horizon"])
            d["duration_s"] = float(d.get("duration_s", 0.0))
            d["finished_at_ms"] = int(d.get("finished_at_ms", 0))
            return cls(**d)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"bad JobOutcome: {exc}") from exc


def encode_outcome(outcome: JobOutcome) -> bytes:
    """The ``fx.models`` value of an outcome (:func:`forex_diffusion.wire.encode_model_outcome`)."""
    return wire.encode_model_outcome(outcome.to_dict())


def decode_outcome(raw: bytes | str) -> JobOutcome:
    """Decode an ``fx.models`` value through the topic's schema into a :class:`JobOutcome`.

    Raises
    ------
    ValidationError
        Malformed JSON, another schema version, wrong, missing or out-of-bound fields, free
        text (``request_id``, ``key``, ``symbol``, ``timeframe``, ``reason``, ``artifact``)
        holding a control, separator, bidi or surrogate character: what ``forexd retrain
        --wait`` prints is text a terminal shows as it is.
    """
    obj = wire.decode_model_outcome(raw, max_bytes=1 << 20)
    try:
        return JobOutcome.from_dict(obj)
    except ConfigError as exc:
        raise ValidationError(RejectReason.SCHEMA, str(exc)) from None


def encode_request(request: RetrainRequest) -> bytes:
    """The ``fx.retrain.requests`` value of a request (:func:`forex_diffusion.wire.encode_retrain_request`)."""
    return wire.encode_retrain_request(request)


def decode_request(raw: bytes | str) -> RetrainRequest:
    """Decode an ``fx.retrain.requests`` value through the topic's schema (:mod:`forex_diffusion.wire`).

    Raises
    ------
    ValidationError
        Malformed JSON, another schema version, wrong, missing or out-of-bound fields, a
        ``request_id`` outside :data:`REQUEST_ID_PATTERN`, a ``detail`` over 500 characters
        or holding a control, separator, bidi or surrogate character.
    """
    request = wire.decode_retrain_request(raw)
    check_request_id(request.request_id)
    return request


def check_outcome(
    key: bytes | None, value: bytes, *, symbols: Collection[str], timeframes: Collection[str]
) -> dict[str, Any]:
    """The ``fx.models`` record ``(key, value)`` decoded, if it is an outcome a worker serving
    ``symbols`` at ``timeframes`` could be sent: its symbol one of them or a global model's
    (``*``, a symbol set), its timeframe one of them, a request id of the requests' form, and
    keyed by its symbol. Outcomes of requests of any origin (a drift trigger, ``forexd
    retrain``, the schedule, a shadow) pass.

    >>> o = JobOutcome(request_id="r1", key="EURUSD-1h-h24", symbol="EURUSD", timeframe="1h", horizon=24,
    ...                version=None, status="failed", reason="error: ArtifactError")
    >>> check_outcome(b"EURUSD", encode_outcome(o), symbols={"EURUSD"}, timeframes={"1h"})["request_id"]
    'r1'
    >>> check_outcome(b"USDJPY", encode_outcome(o), symbols={"EURUSD"}, timeframes={"1h"})
    Traceback (most recent call last):
    ...
    forex_diffusion.errors.ValidationError: key_mismatch: key 'USDJPY' is not the outcome's symbol 'EURUSD'

    Raises
    ------
    ValidationError
        The wire's reasons (:func:`~forex_diffusion.wire.decode_model_outcome`), then
        ``unknown_symbol``, ``unknown_key`` (timeframe), ``schema`` (request id) or
        ``key_mismatch``.
    """
    data = wire.decode_model_outcome(value)
    sym, tf = data["symbol"], data["timeframe"]
    if sym not in symbols and sym != "*" and not is_symbol_set_key(sym):
        raise ValidationError(RejectReason.UNKNOWN_SYMBOL, f"symbol {sym!r} is not served here")
    if tf not in timeframes:
        raise ValidationError(RejectReason.UNKNOWN_KEY, f"timeframe {tf!r} is not served here")
    check_request_id(data["request_id"])
    key = None if key is None else bytes(key)
    if key != sym.encode():
        shown = "no key" if key is None else f"key {key[:32].decode('utf-8', 'replace')!r}"
        raise ValidationError(RejectReason.KEY_MISMATCH, f"{shown} is not the outcome's symbol {sym!r}")
    return data
