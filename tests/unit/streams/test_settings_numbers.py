"""A numeric ``FOREXD_*`` setting is read as ASCII decimal or refused with one error naming the
variable (exit 78 for ``forexd worker``).

Before: the settings parsed with Python's ``int``/``float``, which take the digits of every
script ('١٢٣' was 123 partitions, a fullwidth '９０９２' port 9092), '_' between digits
('1_000') and Unicode spaces; ``float`` takes 'nan', 'inf' and '1e400' (the last two were
refused only by a finiteness check after parsing).
"""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import SettingsError
from streams.settings import NUMBER_CHARS_MAX, Settings, parse_number
from tests.unit.cli.test_cli_errors import assert_one_line, forexd

INT_SETTINGS = sorted(f.name for f in fields(Settings) if str(f.type).startswith("int"))
FLOAT_SETTINGS = sorted(f.name for f in fields(Settings) if str(f.type).startswith("float"))


def test_the_numeric_settings_are_found() -> None:
    assert {"partitions", "metrics_port", "forecast_steps", "paths"} <= set(INT_SETTINGS)
    assert {"idle_close_s", "broker_wait_s", "retrain_timeout_s"} <= set(FLOAT_SETTINGS)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FOREXD_PARTITIONS", "١٢٣"),  # Arabic-Indic digits: 123 partitions
        ("FOREXD_METRICS_PORT", "９０９２"),  # fullwidth digits: port 9092
        ("FOREXD_PARTITIONS", "1_000"),  # a Python literal's separator
        ("FOREXD_HORIZON", "²"),  # a superscript is a digit to str.isdigit, not to int()
        ("FOREXD_HORIZON", "1e3"),  # a float's exponent in an int
        ("FOREXD_HORIZON", "0x10"),
        ("FOREXD_HORIZON", "12abc"),
        ("FOREXD_HORIZON", "\u300012"),  # an ideographic space, stripped by str.strip and int()
        ("FOREXD_HORIZON", "   "),
        ("FOREXD_FORECAST_STEPS", "1" * 50),  # past every bound, refused unread
        ("FOREXD_IDLE_CLOSE_S", "nan"),  # passes every "< 0" check: a wait of nan never ends
        ("FOREXD_IDLE_CLOSE_S", "NaN"),
        ("FOREXD_BROKER_WAIT_S", "inf"),
        ("FOREXD_BROKER_WAIT_S", "-Infinity"),
        ("FOREXD_RETRAIN_TIMEOUT_S", "1e400"),  # inf
        ("FOREXD_DB_WAIT_S", "1_0.5"),
        ("FOREXD_DB_WAIT_S", "٣.٥"),
        ("FOREXD_DB_WAIT_S", "1.5s"),
    ],
)
def test_a_number_not_in_ascii_decimal_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}=") as exc:
        Settings.from_env({variable: value})
    assert "is not a valid" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("FOREXD_PARTITIONS", " 12 ", 12),  # surrounding ASCII whitespace is stripped
        ("FOREXD_PARTITIONS", "12\r", 12),  # a .env file written on Windows
        ("FOREXD_PARTITIONS", "\t+12\n", 12),
        ("FOREXD_PARTITIONS", "007", 7),
        ("FOREXD_METRICS_PORT", "-1", -1),
        ("FOREXD_IDLE_CLOSE_S", "2.5", 2.5),
        ("FOREXD_IDLE_CLOSE_S", ".5", 0.5),
        ("FOREXD_IDLE_CLOSE_S", "5.", 5.0),
        ("FOREXD_IDLE_CLOSE_S", "1e1", 10.0),
        ("FOREXD_IDLE_CLOSE_S", " 3 ", 3.0),
    ],
)
def test_ascii_decimal_numbers_are_read(variable: str, value: str, expected: float) -> None:
    assert getattr(Settings.from_env({variable: value}), variable.removeprefix("FOREXD_").lower()) == expected


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("FOREXD_PARTITIONS", "١٢٣", "FOREXD_PARTITIONS='١٢٣' is not a valid int"),
        ("FOREXD_METRICS_PORT", "９０９２", "FOREXD_METRICS_PORT="),
        ("FOREXD_IDLE_CLOSE_S", "nan", "FOREXD_IDLE_CLOSE_S='nan' is not a valid float"),
        # a value out of bounds names its variable too (it named only the field before)
        ("FOREXD_PARTITIONS", "0", "fix FOREXD_PARTITIONS"),
    ],
)
def test_the_worker_refuses_them_on_one_line_exit_78(variable: str, value: str, says: str) -> None:
    env = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:1", "FOREXD_BROKER_WAIT_S": "0", variable: value}
    res = forexd("worker", env=env)
    assert res.returncode == 78, res.stderr
    assert_one_line(res.stderr, says)


def test_a_nul_character_is_refused_naming_the_variable() -> None:
    """``FOREXD_DATA_DIR='\\x00'`` built settings whose ``db_url`` raised ``ValueError:
    embedded null byte`` (found by the property test below, run over every setting)."""
    with pytest.raises(SettingsError, match="^FOREXD_DATA_DIR holds a NUL character"):
        Settings.from_env({"FOREXD_DATA_DIR": "\x00"})


# -- the property --------------------------------------------------------------------------------

_ASCII_INT = re.compile(r"[+-]?[0-9]+")
_ASCII_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_SPACE = " \t\n\r\x0b\x0c"


def ascii_reading(text: str, kind: type) -> float | None:
    """The number an operator means by ``text`` (ASCII digits, ASCII spaces around), or None."""
    core = text.strip(_SPACE)
    if len(core) > NUMBER_CHARS_MAX or not (_ASCII_INT if kind is int else _ASCII_FLOAT).fullmatch(core):
        return None
    value = kind(core)
    return value if kind is int or abs(value) != float("inf") else None


numbers = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789+-.eE_ \t\r\n١٢٣９０²\u3000", max_size=12),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.tuples(st.sampled_from(["", " ", "\t", "\r\n", "\u3000", "\xa0"]), st.integers(0, 10**6).map(str)).map(
        lambda t: t[0] + t[1] + t[0]
    ),
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(INT_SETTINGS + FLOAT_SETTINGS), text=numbers)
def test_any_text_reads_as_its_ascii_decimal_or_is_refused_naming_the_variable(name: str, text: str) -> None:
    variable = f"FOREXD_{name.upper()}"
    kind = int if name in INT_SETTINGS else float
    try:
        value = getattr(Settings.from_env({variable: text}), name)
    except SettingsError as exc:  # any other exception fails the test
        message = str(exc)
        assert variable in message and "\n" not in message, message
        return
    if text == "":
        return  # unset: the default
    reading = ascii_reading(text, kind)
    assert reading is not None and value == reading and type(value) is kind, (text, value)


@settings(max_examples=200, deadline=None)
@given(text=numbers, kind=st.sampled_from([int, float]))
def test_parse_number_agrees_with_the_ascii_reading(text: str, kind: type) -> None:
    reading = ascii_reading(text, kind)
    try:
        value = parse_number("FOREXD_X", text, kind)
    except SettingsError as exc:
        assert reading is None, (text, reading)
        assert str(exc).startswith("FOREXD_X=")
        return
    assert value == reading
