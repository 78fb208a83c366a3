"""Dead letters, and the containment of one record's failure that every agent shares.

:class:`Containment` is the one place where a record's failure is handled: whatever goes
wrong while an agent handles one message (decoding, validation, processing, encoding what it
produced), the message goes to ``fx.deadletter`` once, with a reason from the fixed set
(:class:`~forex_diffusion.errors.RejectReason`), is counted, and the agent goes on with the
next one. The project's :class:`~forex_diffusion.errors.ValidationError` carries its reason;
any other exception is a bug: it is dead-lettered as ``internal`` with its type in the error
text, and logged at ERROR with its traceback. ``BaseException`` that is not an ``Exception``
(cancellation, exit) is never swallowed.

>>> sent = []
>>> c = Containment(source="ticks", sink=lambda k, v, h: sent.append(v))
>>> from types import SimpleNamespace
>>> msg = SimpleNamespace(topic="fx.ticks", partition=0, offset=7, key=b"EURUSD", value=b"{")
>>> with c.record(msg) as rec:
...     rec.stage = "decode"
...     raise KeyError("boom")
>>> rec.failed, c.internal_errors, b'"reason":"internal"' in sent[0]
(True, 1, True)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypedDict, TypeVar, Unpack

from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.wire import dead_letter_value

__all__ = [
    "DEAD_LETTER_KEY_MAX",
    "Containment",
    "DeadLetter",
    "Origin",
    "RecordScope",
    "dead_letter_headers",
    "dead_letter_key",
    "dead_letter_record",
    "refuse_held",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
DeadLetter = tuple[bytes | None, bytes, list[tuple[str, bytes]]]  # (key, value, headers)

DEAD_LETTER_KEY_MAX = 256
"""Most bytes of a dead letter's Kafka key: the refused message's own key, clipped. A key is a
symbol (a few bytes); a hostile key may be nearly a whole broker message (1 MB), and sent back
whole beside the dead letter's value and headers it would make a record over the producer's
and the broker's limit, refused at every checkpoint of the partition: the stream would stop.
The dead letter's value names the key too (its first 64 characters)."""


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The Kafka key of a refused message's dead letter: its key, at most :data:`DEAD_LETTER_KEY_MAX` bytes."""
    return None if key is None else bytes(key[:DEAD_LETTER_KEY_MAX])


class Origin(TypedDict):
    """A refused message's origin, passed by keyword: where it was read and what it held."""

    topic: str
    partition: int
    offset: int
    raw: bytes | None
    key: bytes | None


def dead_letter_record(*, error: ValidationError, **origin: Unpack[Origin]) -> bytes:
    """The ``fx.deadletter`` value for a refused message (oversize payloads are truncated)."""
    return dead_letter_value(**origin, reason=error.reason, error=error.detail)


def dead_letter_headers(
    *, topic: str, partition: int, offset: int, error: ValidationError, exception: str | None = None
) -> list[tuple[str, bytes]]:
    """Connect-style headers: ``x-error-reason``, ``x-orig-topic``, ``x-orig-partition``,
    ``x-orig-offset``, ``x-exception`` (the unexpected exception's type for ``internal``)."""
    return [
        ("x-error-reason", error.reason.value.encode()),
        ("x-orig-topic", topic.encode("utf-8", "replace")),
        ("x-orig-partition", str(partition).encode()),
        ("x-orig-offset", str(offset).encode()),
        ("x-exception", (exception or type(error).__name__).encode("ascii", "replace")[:128]),
    ]


class Containment:
    """Contain one record's failure: dead-letter it once with its reason, count it, go on.

    Parameters
    ----------
    source
        The agent's source topic kind (``ticks``, ``candles``): the metric label.
    sink
        Called with ``(key, value, headers)`` of each dead letter; the agent queues it and
        publishes it with its next checkpoint.
    metrics
        Returns the metrics object (or None): counted as ``dead_letters_total{source, reason}``.
    on_refused
        Called with ``(error, symbol)`` after each dead letter (agent-specific counters).
    """

    def __init__(
        self,
        *,
        source: str,
        sink: Callable[[bytes | None, bytes, list[tuple[str, bytes]]], None],
        metrics: Callable[[], Any] = lambda: None,
        on_refused: Callable[[ValidationError, str | None], None] | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.metrics = metrics
        self.on_refused = on_refused
        self.internal_errors = 0
        self.refused = 0

    def record(self, msg: Any) -> RecordScope:
        """A context for handling ``msg``: an exception inside it dead-letters ``msg``."""
        return RecordScope(self, msg)

    def refuse(
        self,
        *,
        error: ValidationError,
        symbol: str | None = None,
        exception: str | None = None,
        **origin: Unpack[Origin],
    ) -> None:
        """Dead-letter one record (the message's own origin, or a held tick's) with ``error``'s reason."""
        topic, partition, offset = origin["topic"], origin["partition"], origin["offset"]
        value = dead_letter_record(error=error, **origin)
        headers = dead_letter_headers(topic=topic, partition=partition, offset=offset, error=error, exception=exception)
        self.sink(dead_letter_key(origin["key"]), value, headers)
        self.refused += 1
        m = self.metrics()
        if m is not None:
            m.dead_letter(self.source, error.reason.value)
        if self.on_refused is not None:
            self.on_refused(error, symbol)
        log.debug(
            "deadletter source=%s reason=%s partition=%d offset=%d", self.source, error.reason.value, partition, offset
        )

    def guarded(self, event: str, fn: Callable[[], T], **context: Any) -> T | None:
        """``fn()``, or None when it fails outside any one record's path (a candle the idle
        timer closed that cannot be encoded): nothing to dead-letter, so the bug is counted
        and logged at ERROR with its traceback as ``event`` with ``context``, and we go on."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - contained
            self.internal(event, exc, **context)
            return None

    def internal(self, event: str, exc: BaseException, **context: Any) -> None:
        """Count and log at ERROR (with the traceback) a bug that is no one record's fault."""
        self.internal_errors += 1
        ctx = " ".join(f"{k}={v}" for k, v in context.items())
        log.error("%s source=%s %s error=%s", event, self.source, ctx, type(exc).__name__, exc_info=exc)

    def _internal(self, exc: BaseException, msg: Any, stage: str) -> ValidationError:
        """Count and log a failure that is no validation refusal; the ``internal`` reason for it."""
        self.internal_errors += 1
        name = type(exc).__name__
        log.error(
            "record.internal_error source=%s stage=%s topic=%s partition=%s offset=%s error=%s: "
            "dead-lettered as internal, the stream goes on",
            self.source,
            stage,
            msg.topic,
            msg.partition,
            msg.offset,
            name,
            exc_info=exc,
        )
        try:
            text = str(exc).splitlines()[0][:200] if str(exc) else ""
        except Exception:  # noqa: BLE001 - an exception whose __str__ fails still has a type
            text = ""
        return ValidationError(RejectReason.INTERNAL, f"{name} at {stage}: {text}" if text else f"{name} at {stage}")

    def fail(self, msg: Any, exc: BaseException, *, stage: str, symbol: str | None = None) -> None:
        """Dead-letter ``msg`` for ``exc`` raised at ``stage``: its reason, or ``internal``."""
        partition, offset = msg.partition, msg.offset
        try:
            error = exc if isinstance(exc, ValidationError) else self._internal(exc, msg, stage)
            self.refuse(
                topic=msg.topic,
                partition=partition,
                offset=offset,
                raw=msg.value,
                key=msg.key,
                error=error,
                symbol=symbol,
                exception=None if error is exc else type(exc).__name__,
            )
        except Exception:  # noqa: BLE001 - the dead letter itself failed (sink, metric, callback): go on
            log.exception("record.deadletter_failed source=%s partition=%s offset=%s", self.source, partition, offset)


class RecordScope:
    """``with containment.record(msg) as rec:`` — set ``rec.stage`` as the work proceeds.

    On an exception the record is dead-lettered (see :meth:`Containment.fail`), the exception
    is swallowed and ``rec.failed`` is True; set ``rec.symbol`` once known for the counters.
    """

    __slots__ = ("containment", "failed", "msg", "stage", "symbol")

    def __init__(self, containment: Containment, msg: Any) -> None:
        self.containment = containment
        self.msg = msg
        self.stage = "decode"
        self.symbol: str | None = None
        self.failed = False

    def __enter__(self) -> RecordScope:
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        self.failed = True
        self.containment.fail(self.msg, exc, stage=self.stage, symbol=self.symbol)
        return True


def refuse_held(
    contain: Any, *, topic: str, ref: Any, raw: bytes, symbol: str, reason: RejectReason, detail: str
) -> None:
    """Dead-letter through ``contain`` (a :class:`Containment`: its ``refuse``) an item a guard
    held and then refused (a tick or candle of an unconfirmed jump) at the origin its ``ref``
    names: the agent's ``[partition, offset]``, or -1, -1 for a ref restored in another form.
    The tick and candle agents had each written this."""
    pair = type(ref) is list and len(ref) == 2 and all(type(v) is int for v in ref)
    partition, offset = ref if pair else (-1, -1)
    error = ValidationError(reason, detail)
    contain.refuse(
        topic=topic, partition=partition, offset=offset, raw=raw, key=symbol.encode(), symbol=symbol, error=error
    )
