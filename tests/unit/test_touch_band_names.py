"""A touch band's name says its size exactly: names never collide and read back as the band.

``%g`` kept six significant digits: ``0.1234567vol,0.1234568vol`` gave four bands with two
names, and a record's ``touch.bands`` (and the backtest's by-band summary) pooled different
bands under one name (hostile review).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from forex_diffusion.forecast.touch import TouchBand, parse_touch_bands


def test_bands_seven_digits_apart_have_four_names() -> None:
    bands = parse_touch_bands("0.1234567vol,0.1234568vol")
    assert len(bands) == 4
    assert len({b.name for b in bands}) == 4


def test_a_large_size_is_named_as_given() -> None:
    assert parse_touch_bands("+123456789pip")[0].name == "+123456789pip"


@given(
    size=st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
    side=st.sampled_from([1, -1]),
    unit=st.sampled_from(["pip", "sigma", "vol"]),
)
def test_a_band_name_reads_back_as_the_same_band(size: float, side: int, unit: str) -> None:
    band = TouchBand(side=side, size=size, unit=unit)  # type: ignore[arg-type]
    assert parse_touch_bands(band.name) == (band,)
