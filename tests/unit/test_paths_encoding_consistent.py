"""``encode_paths`` never writes what ``decode_paths`` refuses as ``inconsistent``: more paths
than ``samples``, or an ``rw_weight`` of another length than the horizon (hostile review:
the producer wrote such records and every consumer refused them; the forecaster itself never
asks for one, so the encoder refuses it as a producer's bug, reason ``internal``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.wire import decode_paths, encode_paths

HEADER: dict[str, Any] = {
    "symbol": "EURUSD",
    "timeframe": "1m",
    "as_of": 1399000000000,
    "horizon": 2,
    "model_version": "v1",
    "last_close": 1.1,
    "sigma": 1e-4,
    "rw_weight": [0.0, 0.5],
    "samples": 2,
}
PATHS = np.array([[1.1001, 1.1003], [1.0998, 1.0991]])


@pytest.mark.parametrize(
    "change", [{"samples": 1}, {"rw_weight": [0.5]}, {"rw_weight": [0.5, 0.5, 0.5]}, {"rw_weight": None}]
)
def test_what_the_decoder_refuses_is_never_encoded(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        encode_paths({**HEADER, **change}, PATHS)
    assert caught.value.reason is RejectReason.INTERNAL


def test_a_consistent_record_still_round_trips() -> None:
    header, prices = decode_paths(encode_paths(HEADER, PATHS))
    assert header["n_paths"] == 2 and prices.shape == (2, 2)
