"""fx.forecasts.paths: every record the encoder can write is readable by the default decoder.

Regression pinned: the schema let ``paths`` hold 16 MiB of base64 (``PATHS_TEXT_MAX``, which
the encoder checks) while ``decode_paths`` refused any record over 4 MiB by default, so a
record of 2,400 paths x 1,000 steps (int32) was written and then refused as ``oversize``
by every reader that kept the default.
"""

from __future__ import annotations

import numpy as np
import pytest

from forex_diffusion import wire
from forex_diffusion.errors import RejectReason, ValidationError

H = wire.FORECAST_STEPS_MAX
LONGEST_FLOAT = 2.2250738585072014e-308  # 23 characters in JSON, in [0, 1]: the longest rw_weight


def worst_header(n: int, h: int) -> dict[str, object]:
    """The longest header the schema lets through: every field at its longest text."""
    return {
        "symbol": "EURUSD",
        "timeframe": "1234mn",
        "as_of": 253_402_300_799_999,
        "horizon": h,
        "model_version": '"' * 128,  # each escaped as two characters
        "last_close": 123456789.12345679,
        "sigma": 1.7976931348623157e308,
        "rw_weight": [LONGEST_FLOAT] * h,
        "samples": wire.INT32_MAX,
        "n_paths": n,
    }


def max_paths(h: int, item_bytes: int) -> int:
    """Most paths of ``h`` steps whose base64 text fits the schema's ``PATHS_TEXT_MAX``."""
    return (wire.PATHS_TEXT_MAX // 4 * 3) // (h * item_bytes)


def test_the_decoder_default_is_derived_from_the_schema_bound() -> None:
    paths = next(f for f in wire.SCHEMAS["forecasts.paths"].fields if f.name == "paths")
    assert paths.max_length == wire.PATHS_TEXT_MAX
    assert wire.PATHS_RECORD_MAX_BYTES == wire.PATHS_TEXT_MAX + wire.PATHS_HEADER_MAX_BYTES


def test_the_longest_header_is_under_the_header_bound() -> None:
    raw = wire.encode_paths(worst_header(1, H), np.full((1, H), 1.0))
    text = wire.decode_record("forecasts.paths", raw, max_bytes=len(raw))["paths"]
    assert len(raw) - len(text) <= wire.PATHS_HEADER_MAX_BYTES


def test_the_largest_record_the_encoder_writes_decodes_with_the_default_max_bytes() -> None:
    n = max_paths(H, 4)
    rng = np.random.default_rng(7)
    prices = 1.0 * np.exp(rng.uniform(-1.0, 1.0, (n, H)))  # beyond int16 at scale 1e5: int32
    raw = wire.encode_paths(worst_header(n, H), prices)
    assert len(raw) > 4 * 1024 * 1024  # the old default refused it
    header, got = wire.decode_paths(raw)
    assert header["dtype"] == "<i4" and got.shape == (n, H)


def test_one_path_more_is_refused_by_the_encoder_not_the_decoder() -> None:
    n = max_paths(H, 4) + 1
    with pytest.raises(ValidationError) as ei:
        wire.encode_paths(worst_header(n, H), np.full((n, H), 3.0))
    assert ei.value.reason is RejectReason.INTERNAL


@pytest.mark.parametrize(("h", "dtype", "item"), [(1, "<i2", 2), (24, "<i2", 2), (720, "<i4", 4), (H, "<i2", 2)])
def test_at_any_shape_the_largest_encodable_record_fits_the_decoder_default(h: int, dtype: str, item: int) -> None:
    n = min(wire.PATHS_MAX, max_paths(h, item))
    raw = wire.encode_paths(worst_header(n, h), np.full((n, h), 123456789.0), dtype=dtype)
    assert len(raw) <= wire.PATHS_RECORD_MAX_BYTES
    assert wire.decode_paths(raw)[1].shape == (n, h)
