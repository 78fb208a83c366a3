"""``forexd tail TOPIC``: print a topic's records as JSON lines.

Every line is strict JSON (RFC 8259: what ``jq`` and other strict readers take), whatever
the record holds: :func:`record_line`.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import math
import re
import sys
import time
from typing import Any, Optional, TextIO

import typer

from ..settings import Settings
from ._common import broker_call, check_positive


class _NotStrict(ValueError):
    """A value that parses as Python's JSON but is no strict JSON (a constant, an overflow, a duplicate key)."""


def _no_constant(name: str) -> Any:
    raise _NotStrict(f"JSON constant {name}")


def _finite(text: str) -> float:
    """A JSON number with a fraction or an exponent, refused when no double holds it: past a
    double's range (``1e400``), or written nonzero and read as 0 (``1e-99999`` underflows:
    printed as ``0.0`` it was silently another number). A value rounded to the nearest
    double (``0.1``, ``1e-310``) is what every strict reader reads, and is shown."""
    x = float(text)
    if not math.isfinite(x):
        raise _NotStrict(f"number {text[:24]} overflows")
    if x == 0.0 and any(c in "123456789" for c in text.partition("e")[0].partition("E")[0]):
        raise _NotStrict(f"number {text[:24]} underflows")
    return x


def _whole(text: str) -> int:
    """A JSON integer, refused past a double's range as ``1e999`` is: a strict reader (jq)
    reads every number as a double and printed ``1`` followed by 400 zeros as 1.79e308."""
    x = int(text)  # ValueError past int()'s 4,300 digits: not JSON here
    try:
        float(x)
    except OverflowError:
        raise _NotStrict(f"number {text[:24]} overflows") from None
    return x


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _NotStrict("duplicate key")
    return obj


def _exact(data: bytes, name: str) -> dict[str, str]:
    """``{name: text}``, ``data`` decoded, when it is UTF-8 (then exactly its bytes).
    Otherwise ``{name: shown, name + "_base64": exact}``: ``shown`` has each byte that is not
    UTF-8 as ``\\xNN``, for reading only (data holding the four characters ``\\xff`` shows
    the same), and ``<name>_base64`` holds the bytes themselves (RFC 4648 base64)."""
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            name: data.decode("utf-8", "backslashreplace"),
            f"{name}_base64": base64.b64encode(data).decode("ascii"),
        }


def _reader_gone(out: TextIO) -> bool:
    """Whether ``out`` is a pipe whose reader went away."""
    from ..cli import reader_gone  # the command line's own check; loaded by the time this runs

    try:
        fd = out.fileno()
    except (OSError, ValueError):  # an in-memory stream
        return False
    return reader_gone(fd)


def record_line(partition: int, offset: int, key: bytes | None, value: bytes | None) -> str:
    """One record as one line of strict JSON: ``{"partition", "offset", "key", "value"}``.

    ``key`` is the key as text (null: none). ``value`` is the record's value parsed, when
    its bytes are strict JSON: UTF-8, no ``NaN``/``Infinity``, no number that no double
    holds (``1e999`` or an integer of more than 308 digits overflows, a nonzero ``1e-99999``
    underflows to 0), no duplicate key, no escape of a lone surrogate (``"\\ud800"``).
    Otherwise ``value`` is null and the line adds ``"raw"`` (the bytes as text) and
    ``"error"`` (why it is not shown parsed); a tombstone (no value) adds ``"tombstone": true``.

    ``raw`` is the value's text, exactly, when its bytes are UTF-8. When they are not, the
    line adds ``"raw_base64"``, the exact bytes (RFC 4648 base64), and ``raw`` shows each
    byte that is not UTF-8 as ``\\xNN``, for reading only: the four characters ``\\xff``
    in a record show the same. The key likewise: ``key`` is exact unless its bytes are not
    UTF-8; then the line adds ``"key_base64"`` (the key ``b"EUR\\xff"`` and the key
    ``b"EUR\\\\xff"`` show the same ``key``, only the first with ``key_base64``).
    Every line is ASCII (``ensure_ascii``): a control character (ESC, a C1 control such as
    U+009B) or U+2028/U+2029 in a record is a ``\\uXXXX`` escape, so a hostile record
    cannot drive the terminal, and ``json.loads`` gives the same value back.

    >>> record_line(0, 7, b"EURUSD", b'{"bid": 1.1}')
    '{"partition": 0, "offset": 7, "key": "EURUSD", "value": {"bid": 1.1}}'
    >>> print(record_line(0, 8, b"EURUSD", b'{"bid": NaN}'))
    {"partition": 0, "offset": 8, "key": "EURUSD", "value": null, "raw": "{\\"bid\\": NaN}", "error": "JSON constant NaN"}
    >>> print(record_line(0, 9, b"EUR\\xff", None))
    {"partition": 0, "offset": 9, "key": "EUR\\\\xff", "key_base64": "RVVS/w==", "value": null, "tombstone": true}
    """
    head: dict[str, Any] = {
        "partition": partition,
        "offset": offset,
        **({"key": None} if key is None else _exact(bytes(key), "key")),
    }
    if value is None:
        return json.dumps({**head, "value": None, "tombstone": True}, allow_nan=False, ensure_ascii=True)
    raw = bytes(value)
    try:
        parsed = json.loads(
            raw.decode("utf-8"),
            parse_constant=_no_constant,
            parse_float=_finite,
            parse_int=_whole,
            object_pairs_hook=_no_duplicates,
        )
        try:  # a string escape of a lone surrogate ("\\ud800") is no Unicode: strict readers refuse it
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _NotStrict("lone surrogate escape") from None
        return json.dumps({**head, "value": parsed}, allow_nan=False, ensure_ascii=True)
    except _NotStrict as exc:
        error = str(exc)
    except UnicodeDecodeError:
        error = "not UTF-8"
    except RecursionError:
        error = "nested too deep"
    except ValueError as exc:  # not JSON, or an integer of more digits than Python reads
        error = f"not JSON ({type(exc).__name__})"
    return json.dumps({**head, "value": None, **_exact(raw, "raw"), "error": error}, allow_nan=False, ensure_ascii=True)


def _full_topic(settings: Settings, name: str) -> str:
    """The topic ``tail NAME`` reads: ``<prefix>fx.<name>`` unless NAME already is one."""
    return name if name.startswith(settings.topic_prefix + "fx.") else settings.topic(name.removeprefix("fx."))


def check_topic(name: str, *, full: str | None = None) -> None:
    """Refuse, before the broker is asked, a topic no Kafka topic can be named (a usage error,
    exit 2): empty, ``.`` or ``..``, a character outside ``[A-Za-z0-9._-]`` (``../x``), or
    ``full`` (with its prefix) longer than :data:`~streams.settings.TOPIC_NAME_MAX`. Before,
    ``tail ""`` read ``fx.`` and ``tail ../x`` connected and waited on a name the broker refuses."""
    from ..settings import TOPIC_NAME_MAX

    shown = repr(name[:40]) + (f"... ({len(name)} characters)" if len(name) > 40 else "")
    if name.removeprefix("fx.") in ("", ".", ".."):
        raise typer.BadParameter(f"{shown} names no topic: give one, e.g. candles", param_hint="'TOPIC'")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise typer.BadParameter(
            f"{shown} holds characters no Kafka topic may: use ASCII letters, digits, '.', '_' and '-'",
            param_hint="'TOPIC'",
        )
    topic = full if full is not None else name
    if len(topic) > TOPIC_NAME_MAX:
        raise typer.BadParameter(
            f"{shown} makes a topic of {len(topic)} characters: Kafka takes at most {TOPIC_NAME_MAX}",
            param_hint="'TOPIC'",
        )


def check_known(settings: Settings, name: str) -> None:
    """Refuse a topic that is none of forexd's (:data:`~streams.settings.TOPIC_NAMES`), a usage
    error before the broker is asked: ``tail forcasts`` subscribed to ``fx.forcasts``, which a
    broker that creates topics on demand created, and waited on it for ever (with
    ``--timeout``: exit 0, nothing said)."""
    from ..settings import TOPIC_NAMES

    full = _full_topic(settings, name)
    short = full.removeprefix(settings.topic_prefix + "fx.")
    if short == full or short not in TOPIC_NAMES:
        shown = repr(name[:40]) + (f"... ({len(name)} characters)" if len(name) > 40 else "")
        raise typer.BadParameter(
            f"{shown} is no topic of forexd's: give one of {', '.join(TOPIC_NAMES)} (the prefix is added)",
            param_hint="'TOPIC'",
        )


async def tail_topic(
    settings: Settings,
    name: str,
    *,
    from_beginning: bool,
    limit: int | None,
    timeout_s: float | None,
    out: TextIO | None = None,
) -> int:
    """Print ``name``'s records to ``out`` (standard output) as JSON lines; return how many.

    Ends with ``BrokenPipeError`` when the reader of ``out`` goes away, also while the topic
    is quiet (as GNU ``tail -f``): ``forexd tail forecasts | head -1`` waited for a record
    that might never come before it noticed."""
    from ..kafka import make_consumer

    out = out or sys.stdout
    topic = _full_topic(settings, name)
    consumer = make_consumer(settings, topic, auto_offset_reset="earliest" if from_beginning else "latest")
    await broker_call(settings, consumer.start, cleanup=consumer.stop)
    n = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while limit is None or n < limit:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(remaining or 1.0, 1.0) * 1000))
            for m in [m for msgs in batch.values() for m in msgs][: None if limit is None else limit - n]:
                out.write(record_line(m.partition, m.offset, m.key, m.value) + "\n")
                n += 1
            out.flush()
            if not batch and _reader_gone(out):  # a quiet topic: nothing written would tell it
                raise BrokenPipeError(errno.EPIPE, "standard output's reader went away")
    finally:
        await consumer.stop()
    return n


def tail(
    topic: str = typer.Argument(
        ...,
        help="Topic: ticks, candles, forecasts, forecasts.paths, drift, models, deadletter, retrain.requests (prefix added).",
    ),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the earliest offset."),
    limit: Optional[int] = typer.Option(None, "-n", "--max", help="Stop after this many records."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop after this many seconds."),
) -> None:
    """Print TOPIC's records as JSON lines (partition, offset, key, value).

    Every line is strict JSON (jq reads it). A value that is not strict JSON (not UTF-8,
    not JSON, NaN, Infinity, a number no double holds such as 1e999 or a nonzero 1e-99999,
    a duplicate key, an escaped lone surrogate such as \\ud800) is printed with
    "value": null, "raw": its text and "error": why; a tombstone as "value": null,
    "tombstone": true. A value whose bytes are not UTF-8 adds "raw_base64", its exact
    bytes, and "raw" then shows those bytes as \\xNN, for reading only; a key so adds
    "key_base64" (and "key" shows them as \\xNN).

    Stops quietly with status 141 when the reader of standard output goes away (| head),
    also while the topic is quiet.

    Reads the broker and topic prefix from FOREXD_BROKER_URL / FOREXD_TOPIC_PREFIX; an
    unreachable broker exits 69.
    """
    check_positive(limit, "-n")
    if timeout is not None and not (0 < timeout < float("inf")):
        raise typer.BadParameter(f"--timeout must be a positive number of seconds, not {timeout!r}")
    check_topic(topic)
    settings = Settings.from_env()
    check_topic(topic, full=_full_topic(settings, topic))
    check_known(settings, topic)
    asyncio.run(tail_topic(settings, topic, from_beginning=from_beginning, limit=limit, timeout_s=timeout))


def register(app: typer.Typer) -> None:
    app.command("tail")(tail)
