"""``forexd tail``'s lines say exactly what the record held, or say that they cannot.

Three failures, each pinned below:

- a value that is not UTF-8 was ``"raw"`` text with each bad byte as ``\\xNN`` (Python's
  ``backslashreplace``), and a value holding the four characters ``\\xff`` printed the same:
  ``raw`` could not give the bytes back. Now such a value adds ``"raw_base64"``, its bytes,
  and ``raw`` is exact whenever that field is absent;
- a number that no double holds was printed as another number: ``1e-99999`` (nonzero,
  underflows) as ``0.0``. Now it is ``"value": null`` with ``raw`` and ``"error"``, as
  ``1e400``, an integer past a double and ``NaN`` already were;
- a key that is not UTF-8 was shown with each bad byte as ``\\xNN`` and nothing else: the
  keys ``b"EUR\\xff"`` and ``b"EUR\\\\xff"`` were both ``"key": "EUR\\\\xff"``. Now such a
  key adds ``"key_base64"``, its bytes.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.commands.tail import record_line


def _refuse(name: str) -> Any:
    raise AssertionError(f"not strict JSON: {name}")


def strict_line(line: str) -> dict[str, Any]:
    """The line as a strict reader reads it, numbers kept as written (``Decimal``)."""
    assert "\n" not in line and line.isascii()
    obj = json.loads(line, parse_constant=_refuse, parse_float=Decimal)
    assert isinstance(obj, dict)
    return obj


def strict_decode(value: bytes) -> Any:
    """``value`` read by a strict reader that keeps each number exactly as written."""
    return json.loads(value.decode("utf-8"), parse_constant=_refuse, parse_float=Decimal)


def same(written: Any, shown: Any) -> bool:
    """Whether ``shown`` (from the line) is ``written`` (from the record) as a double reads it:
    a number is the nearest double to what was written, finite, and zero only if written zero."""
    if isinstance(written, dict):
        return (
            isinstance(shown, dict)
            and written.keys() == shown.keys()
            and all(same(written[k], shown[k]) for k in written)
        )
    if isinstance(written, list):
        return isinstance(shown, list) and len(written) == len(shown) and all(map(same, written, shown))
    if isinstance(written, Decimal):
        return (
            isinstance(shown, Decimal)
            and float(written) == float(shown)
            and abs(float(shown)) < float("inf")
            and (written == 0) == (shown == 0)
        )
    return type(written) is type(shown) and written == shown


def restored(obj: dict[str, Any]) -> bytes:
    """The value's bytes as the line gives them back: ``raw_base64``, else ``raw`` as UTF-8."""
    if "raw_base64" in obj:
        return base64.b64decode(obj["raw_base64"], validate=True)
    return str(obj["raw"]).encode("utf-8")


numbers = st.from_regex(r"-?(0|[1-9][0-9]{0,3})(\.[0-9]{1,4})?([eE][-+]?[0-9]{1,6})?", fullmatch=True)
texts = st.text(alphabet=st.sampled_from(["\\", "x", "f", "u", "d", "8", "0", '"', "é", "\x1b", "\u2028"]), max_size=12)
values = st.one_of(
    st.binary(max_size=48),
    numbers.map(str.encode),
    numbers.map(lambda n: f'{{"bid": {n}, "ask": [{n}, 1.5]}}'.encode()),
    texts.map(lambda t: json.dumps({"s": t}).encode()),
    texts.map(str.encode),  # backslashes and quotes, mostly not JSON
    st.tuples(texts, st.binary(min_size=1, max_size=4)).map(lambda p: p[0].encode() + b"\xff" + p[1]),
)


@settings(max_examples=500)
@given(value=values)
def test_a_line_shows_the_value_a_double_reads_or_gives_the_bytes_back(value: bytes) -> None:
    obj = strict_line(record_line(0, 1, b"EURUSD", value))
    if obj["value"] is None and "raw" in obj:  # not shown parsed: the bytes come back exactly
        assert obj["error"]
        assert restored(obj) == value
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            assert "raw_base64" in obj and obj["error"] == "not UTF-8"
        else:
            assert "raw_base64" not in obj  # raw is the text itself
    else:  # shown parsed: what a strict reader reads, each number the double of what was written
        assert set(obj) == {"partition", "offset", "key", "value"}
        assert same(strict_decode(value), obj["value"]), (value, obj["value"])


@pytest.mark.parametrize("value", [b"\\xff", b"\xff", b'{"s": "\\xff"}', b'{"s": "\xff"}', b"\\\\xff", b"\\\xff"])
def test_a_backslash_in_a_value_and_a_byte_that_is_not_utf8_are_told_apart(value: bytes) -> None:
    """Before: ``b"\\xff"`` (a byte) and ``b"\\\\xff"`` (four characters) were both
    ``"raw": "\\\\xff"`` and nothing else: the line could not say which the record held."""
    obj = strict_line(record_line(0, 1, b"EURUSD", value))
    assert obj["value"] is None and restored(obj) == value


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b'{"bid": 1e-99999}', "number 1e-99999 underflows"),
        (b'{"bid": -2e-324}', "number -2e-324 underflows"),
        (b"[0.5E-400]", "number 0.5E-400 underflows"),
        (b'{"bid": 1e400}', "number 1e400 overflows"),
        (b'{"bid": 1' + b"0" * 400 + b"}", "number 100000000000000000000000 overflows"),
        (b'{"bid": NaN}', "JSON constant NaN"),
    ],
)
def test_a_number_no_double_holds_is_null_with_its_text_and_why(value: bytes, error: str) -> None:
    """Before, ``1e-99999`` was shown as ``0.0``: a number nobody wrote."""
    obj = strict_line(record_line(0, 1, b"EURUSD", value))
    assert obj["value"] is None and obj["error"] == error and restored(obj) == value


@pytest.mark.parametrize(
    "value", [b'{"bid": 0e-99999}', b"[-0.0e-400]", b"1e-310", b"4.9e-324", b"1.7976931348623157e308"]
)
def test_a_zero_and_a_number_a_double_holds_are_shown(value: bytes) -> None:
    obj = strict_line(record_line(0, 1, b"EURUSD", value))
    assert "raw" not in obj and same(strict_decode(value), obj["value"])


def restored_key(obj: dict[str, Any]) -> bytes | None:
    """The key's bytes as the line gives them back: ``key_base64``, else ``key`` as UTF-8."""
    if "key_base64" in obj:
        return base64.b64decode(obj["key_base64"], validate=True)
    return None if obj["key"] is None else str(obj["key"]).encode("utf-8")


keys = st.one_of(
    st.none(),
    st.binary(max_size=24),
    texts.map(str.encode),  # backslashes, quotes, ESC, U+2028: UTF-8 keys that must come back as written
    st.tuples(texts, st.binary(min_size=1, max_size=4)).map(lambda p: p[0].encode() + b"\xff" + p[1]),
)


@settings(max_examples=500)
@given(key=keys, value=st.none() | st.sampled_from([b'{"bid": 1.1}', b"\xff", b"{"]))
def test_a_line_gives_any_key_back_exactly(key: bytes | None, value: bytes | None) -> None:
    obj = strict_line(record_line(0, 1, key, value))
    assert restored_key(obj) == key
    if "key_base64" in obj:  # only for a key that is not UTF-8: key is then for reading only
        assert key is not None and obj["key"] == key.decode("utf-8", "backslashreplace")
        with pytest.raises(UnicodeDecodeError):
            key.decode("utf-8")


def test_a_key_byte_that_is_not_utf8_and_a_backslash_in_a_key_are_told_apart() -> None:
    """Before: both lines were ``"key": "EUR\\\\xff"`` and nothing else."""
    byte, text = (strict_line(record_line(0, 1, k, None)) for k in (b"EUR\xff", b"EUR\\xff"))
    assert byte["key"] == text["key"] == "EUR\\xff"
    assert byte["key_base64"] == "RVVS/w==" and "key_base64" not in text
