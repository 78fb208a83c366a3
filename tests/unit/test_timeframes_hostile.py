"""``Timeframe.parse`` over any string: a Timeframe or a ConfigError, never another exception.

Before, ``'²m'`` passed ``str.isdigit()`` and ``int()`` refused it (ValueError), and a
5,000-digit count hit ``int()``'s digit limit (ValueError): tracebacks in ``forexd train``,
``backtest`` and ``replay --timeframe``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forex_diffusion.errors import ConfigError
from forex_diffusion.timeframes import TIMEFRAME_NAMES, Timeframe

DAY_MS = 86_400_000


def _parse_or_refuse(name: str) -> Timeframe | None:
    try:
        tf = Timeframe.parse(name)
    except ConfigError as exc:
        text = str(exc)
        assert "\n" not in text and len(text) < 300, text  # one clear, short line
        return None
    assert tf.name in {Timeframe.parse(n).name for n in TIMEFRAME_NAMES} or DAY_MS % tf.duration_ms == 0
    assert 0 < tf.duration_ms <= DAY_MS
    return tf


@given(st.text())
def test_any_text_is_a_timeframe_or_a_config_error(name: str) -> None:
    _parse_or_refuse(name)


@given(st.from_regex(r"\A\s*[0-9\u00b2\u00b3\u0660-\u0669\uff10-\uff19]{0,12}[mhdMHD]\s*\Z"))
def test_any_count_and_unit_is_a_timeframe_or_a_config_error(name: str) -> None:
    tf = _parse_or_refuse(name)
    if tf is not None:
        assert name.strip()[:-1].isascii()  # only ASCII digits count


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("\u00b2m", "not in ASCII digits"),
        ("\u0663h", "not in ASCII digits"),
        ("\uff11m", "not in ASCII digits"),
        ("9" * 5000 + "m", "longer than a day"),
        ("1" + "0" * 4300 + "h", "longer than a day"),
        ("99999m", "longer than a day"),
    ],
)
def test_non_ascii_digits_and_huge_counts_are_one_line_config_errors(name: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as err:
        Timeframe.parse(name)
    assert len(str(err.value)) < 200


def test_leading_zeros_and_the_longest_timeframe_still_parse() -> None:
    assert Timeframe.parse("0" * 5000 + "1h").name == "1h"
    assert Timeframe.parse("1440m").name == "1d"
    with pytest.raises(ConfigError, match="divide a day evenly"):
        Timeframe.parse("2880m")
