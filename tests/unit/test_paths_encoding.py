"""fx.forecasts.paths (issue 16): sample paths in a compact encoding.

Decoded prices are within the stated quantisation bound of the encoded ones, whatever the
prices (every positive finite price encodes); the encoding is several times smaller than the
same prices as JSON floats; and a hostile value is refused with a ``ValidationError`` and its
reason, never another exception.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from forex_diffusion import wire
from forex_diffusion.errors import RejectReason, ValidationError

BOUND = 0.5 / wire.PATHS_SCALE + 1e-12  # |ln(decoded / encoded)|, as the schema states
HEADER: dict[str, Any] = {
    "symbol": "EURUSD",
    "timeframe": "1m",
    "as_of": 1_399_248_000_000,
    "horizon": 3,
    "model_version": "20261128T201504588185Z-7ab98944",
    "last_close": 1.3872,
    "sigma": 1.2e-4,
    "rw_weight": [0.0, 0.25, 0.5],
    "samples": 4,
}
PRICES = np.array([[1.3873, 1.3875, 1.3871], [1.3870, 1.3866, 1.3869], [1.38725, 1.3880, 1.3891], [1.3872] * 3])


def _header(n: int, h: int, last: float) -> dict[str, Any]:
    return {**HEADER, "horizon": h, "last_close": last, "rw_weight": [0.5] * h, "samples": n}


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.floats(1e-3, 1e6),
    st.integers(1, 12),
    st.integers(1, 30),
    st.floats(1e-5, 2.0),  # spread of the log returns: int16 while within +-0.327, else int32
    st.integers(0, 2**32 - 1),
)
def test_decoded_prices_are_within_the_stated_bound_of_the_sampled_ones(
    last: float, n: int, h: int, spread: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    prices = last * np.exp(np.cumsum(rng.normal(0.0, spread / math.sqrt(h), (n, h)), axis=1))
    raw = wire.encode_paths(_header(n, h, last), prices)
    header, got = wire.decode_paths(raw)
    assert got.shape == (n, h)
    assert np.max(np.abs(np.log(got / prices))) <= BOUND
    assert {k: header[k] for k in HEADER} == {k: json.loads(json.dumps(v)) for k, v in _header(n, h, last).items()}
    assert header["n_paths"] == n and header["scale"] == wire.PATHS_SCALE
    fits16 = np.max(np.abs(np.rint(np.log(prices / last) * wire.PATHS_SCALE))) <= 2**15 - 1
    assert header["dtype"] == ("<i2" if fits16 else "<i4")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.floats(1e-300, wire.PRICE_MAX),
    hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 5)), elements=st.floats(1e-300, wire.PRICE_MAX)),
)
def test_every_positive_finite_price_encodes_and_decodes_within_the_bound(last: float, prices: np.ndarray) -> None:
    n, h = prices.shape
    header, got = wire.decode_paths(wire.encode_paths(_header(n, h, last), prices))
    assert np.max(np.abs(np.log(got) - np.log(prices))) <= BOUND + 1e-15 * 800  # logs near |745|: their ulps
    assert header["dtype"] in ("<i2", "<i4")


@pytest.mark.parametrize(
    "prices",
    [PRICES * np.nan, PRICES * 0.0, -PRICES, PRICES * math.inf, PRICES[:, :2], PRICES[0], PRICES * 1e10, [[1.0], []]],
    ids=["nan", "zero", "negative", "inf", "wrong_horizon", "one_dim", "over_price_max", "ragged"],
)
def test_paths_the_core_cannot_produce_are_an_internal_error(prices: Any) -> None:
    with pytest.raises(ValidationError) as ei:
        wire.encode_paths(HEADER, prices)
    assert ei.value.reason is RejectReason.INTERNAL


def test_the_encoding_is_several_times_smaller_than_json_floats() -> None:
    """100 paths of 24 steps, a 1m EUR/USD-like walk: the size this module's docs state."""
    rng = np.random.default_rng(7)
    prices = 1.0987 * np.exp(np.cumsum(rng.normal(0.0, 3e-4, (100, 24)), axis=1))
    h = {**HEADER, "horizon": 24, "last_close": 1.0987, "rw_weight": [0.25] * 24, "samples": 100}
    compact = wire.encode_paths(h, prices)
    plain = json.dumps({**h, "paths": prices.tolist()}, separators=(",", ":")).encode()
    assert json.loads(compact)["dtype"] == "<i2"
    assert len(compact) * 5 < len(plain), (len(compact), len(plain))


def _value(**changes: Any) -> bytes:
    obj = json.loads(wire.encode_paths(HEADER, PRICES))
    obj.update(changes)
    return json.dumps(obj).encode()


def _b64(values: list[int], dtype: str = "<i2") -> str:
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_value(paths="!!!!" * 6), RejectReason.SCHEMA),  # outside the base64 alphabet
        (_value(paths="AA=A" * 8), RejectReason.SCHEMA),  # padding inside
        (_value(paths="A" * 30 + "=="), RejectReason.SCHEMA),  # the right length, 22 bytes for 4 x 3 int16
        (_value(paths="AAAA" * 5), RejectReason.SCHEMA),  # too short for 4 x 3 int16
        (_value(paths="AAAA" * 7), RejectReason.SCHEMA),  # too long
        (_value(n_paths=10_000, samples=10_000), RejectReason.SCHEMA),  # a huge count: refused by length
        (_value(n_paths=10_001, samples=10_001), RejectReason.OUT_OF_RANGE),
        (_value(horizon=10_000, rw_weight=[0.5] * 10_000), RejectReason.SCHEMA),  # by length again
        (_value(n_paths=4, samples=3), RejectReason.INCONSISTENT),
        (_value(rw_weight=[0.5]), RejectReason.INCONSISTENT),
        (_value(dtype="<f8"), RejectReason.SCHEMA),
        (_value(scale=0), RejectReason.OUT_OF_RANGE),
        (_value(last_close=0.0), RejectReason.NON_POSITIVE),
        (_value(last_close=None), RejectReason.SCHEMA),
        (_value(last_close="1.3"), RejectReason.SCHEMA),
        (_value(paths=_b64([2**31 - 1] * 12, "<i4"), dtype="<i4", scale=1), RejectReason.NON_FINITE),
        (_value(paths=_b64([2**31 - 1] * 12, "<i4"), dtype="<i4", scale=10**5), RejectReason.NON_FINITE),
        (_value(paths=_b64([2_100_000] * 12, "<i4"), dtype="<i4"), RejectReason.OUT_OF_RANGE),  # 1.39 e^21 > 1e9
        (_value(paths=_b64([-(2**31)] * 12, "<i4"), dtype="<i4", scale=1), RejectReason.OUT_OF_RANGE),
        (_value(paths=_b64([30_000] * 12), scale=1_000), RejectReason.OUT_OF_RANGE),  # 1.39 * e^30 > PRICE_MAX
        (_value(paths=None), RejectReason.SCHEMA),
        (_value(paths=1), RejectReason.SCHEMA),
        (b'{"v":1,"paths":NaN}', RejectReason.NON_FINITE),
        (_value().replace(b'"last_close": 1.3872', b'"last_close": 1e999'), RejectReason.NON_FINITE),
        (b"\xff\xfe", RejectReason.MALFORMED),
        (b"[]", RejectReason.SCHEMA),
        (_value(v=2), RejectReason.SCHEMA_VERSION),
    ],
)
def test_hostile_values_are_refused_with_their_reason(raw: bytes, reason: RejectReason) -> None:
    with pytest.raises(ValidationError) as ei:
        wire.decode_paths(raw)
    assert ei.value.reason is reason, ei.value


def test_a_record_over_max_bytes_is_refused_before_parsing() -> None:
    raw = wire.encode_paths(HEADER, PRICES)
    assert wire.decode_paths(raw, max_bytes=len(raw))[1].shape == (4, 3)
    with pytest.raises(ValidationError) as ei:
        wire.decode_paths(raw, max_bytes=len(raw) - 1)
    assert ei.value.reason is RejectReason.OVERSIZE


_hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=80),
    st.lists(st.floats(allow_nan=True), max_size=5),
)


@settings(max_examples=1_000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([*HEADER, "n_paths", "scale", "dtype", "paths", "v"]), _hostile), max_size=4))
def test_decode_paths_lets_nothing_but_validation_errors_escape(changes: list[tuple[str, Any]]) -> None:
    obj = json.loads(wire.encode_paths(HEADER, PRICES))
    for name, value in changes:
        obj[name] = value
    try:
        header, prices = wire.decode_paths(json.dumps(obj, allow_nan=True).encode())
    except ValidationError as exc:
        assert exc.reason is not RejectReason.INTERNAL
        return
    assert prices.shape == (header["n_paths"], header["horizon"])
    assert np.all(np.isfinite(prices)) and np.all(prices > 0) and np.all(prices <= wire.PRICE_MAX * 1.00001)
