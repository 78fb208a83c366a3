"""Dead-letter records: the raw bytes (or text), where they came from, and why."""

from __future__ import annotations

import base64
from typing import Any

from forex_diffusion.codec import encode
from forex_diffusion.errors import ValidationError

__all__ = ["dead_letter_record", "dead_letter_headers"]

_MAX_RAW = 16 * 1024


def dead_letter_record(
    *, topic: str, partition: int, offset: int, raw: bytes | None, key: bytes | None,
    error: ValidationError,
) -> bytes:
    """The ``fx.deadletter`` value for a refused message (oversize payloads are truncated)."""
    body: dict[str, Any] = {
        "v": 1, "source_topic": topic, "partition": partition, "offset": offset,
        "reason": error.reason.value, "error": error.detail[:500],
    }
    raw = raw or b""
    body["size"] = len(raw)
    clipped = raw[:_MAX_RAW]
    body["truncated"] = len(raw) > _MAX_RAW
    try:
        body["raw"] = clipped.decode("utf-8")
        body["raw_encoding"] = "utf-8"
    except UnicodeDecodeError:
        body["raw"] = base64.b64encode(clipped).decode("ascii")
        body["raw_encoding"] = "base64"
    if key is not None:
        body["key"] = key.decode("utf-8", "replace")[:64]
    return encode(body)


def dead_letter_headers(*, topic: str, partition: int, offset: int, error: ValidationError) -> list[tuple[str, bytes]]:
    """Connect-style headers: ``x-error-reason``, ``x-orig-topic``, ``x-orig-partition``, ``x-orig-offset``."""
    return [
        ("x-error-reason", error.reason.value.encode()),
        ("x-orig-topic", topic.encode()),
        ("x-orig-partition", str(partition).encode()),
        ("x-orig-offset", str(offset).encode()),
        ("x-exception", type(error).__name__.encode()),
    ]
