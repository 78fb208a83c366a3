"""``ModelKey``: what a key's text may be, and that hostile text is a ConfigError, never a crash.

Regressions pinned: a horizon of over 4300 digits made ``int()`` raise ValueError (a
traceback from ``forexd models shadow KEY``); ``\\d`` accepted non-ASCII digits; ``$`` with
``re.match`` accepted a part ending in a newline (``EURUSD/1h\\n/24`` gave timeframe ``'1h\\n'``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from forex_diffusion.errors import ConfigError
from forex_diffusion.storage.model_registry import ModelKey
from streams.cli import EXIT_USAGE, app

HOSTILE = [
    "EURUSD/1h/" + "9" * 5000,  # int() of more than 4300 digits raises ValueError
    "EURUSD/1h/" + "1" * 10,  # beyond the nine-digit bound (the horizon column is an Integer)
    "EURUSD-1h-h" + "9" * 5000,
    "EURUSD/1h\n/24",  # a part ending in a newline
    "EURUSD\n/1h/24",
    "EURUSD-1h\n-h24",
    "EURUSD/1h/\u0661\u0662",  # Arabic-Indic digits
    "EURUSD/1h/\uff12\uff14",  # full-width digits
    "EURUSD/1\u0661h/24",
    "../x",
    "../../etc/passwd",
    "EUR/USD/1h/24",
    "EURUSD/1h/0",
    "EURUSD/1hourlong/24",  # the timeframe column holds 8 characters
    "\u00e9urusd/1h/24",
    "",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_hostile_key_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelKey.parse(text)
    assert "\n" not in str(info.value).replace("\\n", "") and len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("EURUSD/1h/24", "EURUSD/1h/24"),
        ("eurusd-1h-h24", "EURUSD/1h/24"),
        ("ANY-1h-h24", "*/1h/24"),
        ("EURUSD/1h/h0024", "EURUSD/1h/24"),
        (" EURUSD/1h/24\n", "EURUSD/1h/24"),  # surrounding whitespace is stripped, as before
        ("EURUSD/1h/999999999", "EURUSD/1h/999999999"),
    ],
)
def test_a_good_key_parses(text: str, want: str) -> None:
    assert str(ModelKey.parse(text)) == want


@pytest.mark.parametrize(
    "kwargs",
    [
        {"symbol": "EURUSD\n", "timeframe": "1h", "horizon": 1},
        {"symbol": "EURUSD", "timeframe": "1h\n", "horizon": 1},
        {"symbol": "\u0131x", "timeframe": "1h", "horizon": 1},  # dotless i upper-cases to ASCII I
        {"symbol": "EURUSD", "timeframe": "1h", "horizon": True},
        {"symbol": "EURUSD", "timeframe": "1h", "horizon": 10**9},
    ],
)
def test_the_constructor_refuses_what_parse_refuses(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ModelKey(**kwargs)  # type: ignore[arg-type]


def _parse_or_refuse(text: str) -> None:
    try:
        key = ModelKey.parse(text)
    except ConfigError:
        return
    text_form = str(key)
    assert text_form.isascii() and not any(c.isspace() for c in text_form), text_form
    assert ModelKey.parse(text_form) == key
    assert ModelKey.parse(key.dir_name) == key


@given(st.text())
def test_parse_of_any_text_round_trips_or_is_a_config_error(text: str) -> None:
    _parse_or_refuse(text)


_noise = st.text(alphabet=st.sampled_from("EUh19*-/\n \u0661\uff12\u0131"), max_size=2)
_sym = st.tuples(st.sampled_from(["EURUSD", "ANY", "*", "eu", ""]), _noise).map("".join)
_tf = st.tuples(st.sampled_from(["1h", "15m", "1d", ""]), _noise).map("".join)
_h = st.tuples(st.sampled_from(["24", "h24", "0", ""]), _noise).map("".join)


@given(_sym, _tf, _h, st.sampled_from("/-"))
@example("EURUSD\n", "1h", "24", "/")
@example("EURUSD", "1h\n", "h24", "-")
def test_parse_of_near_keys_round_trips_or_is_a_config_error(sym: str, tf: str, h: str, sep: str) -> None:
    _parse_or_refuse(sep.join((sym, tf, h)))


@given(st.integers(min_value=0, max_value=6000), st.sampled_from(["EURUSD/1h/{}", "EURUSD-1h-h{}"]))
def test_a_horizon_of_any_length_parses_or_is_a_config_error(digits: int, form: str) -> None:
    _parse_or_refuse(form.format("7" * digits))


@pytest.mark.parametrize("key", ["EURUSD/1h/" + "9" * 5000, "EURUSD/1h\n/24", "../x", "EURUSD/1h/\u0661"])
def test_models_shadow_with_a_hostile_key_is_one_line_and_exit_2(tmp_path: Path, key: str) -> None:
    res = CliRunner().invoke(
        app, ["models", "shadow", key, "--db", f"sqlite:///{tmp_path / 'r.db'}", "--model-dir", str(tmp_path)]
    )
    assert res.exit_code == EXIT_USAGE, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad model key"), res.stderr
    assert "Traceback" not in res.output
