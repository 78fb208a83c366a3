"""The producer watch is configured from FOREXD_PRODUCER_RESET_AFTER_S and wired into the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from forex_diffusion.errors import ConfigError
from streams.app import create_app
from streams.settings import Settings


def test_reset_after_is_read_from_the_environment_and_wired_to_the_app_producer(tmp_path: Path) -> None:
    s = Settings.from_env({"FOREXD_PRODUCER_RESET_AFTER_S": "7.5", "FOREXD_PRODUCER_REQUEST_TIMEOUT_S": "3"},
                          data_dir=tmp_path)
    rt = create_app(s, roles=("ticks",))
    assert rt.producer is not None
    assert rt.producer.after_s == 7.5 and rt.producer.start_timeout_s == 3.0
    assert rt.producer.app is rt.app
    # the swap relies on these two names of Faust's aiokafka producer (faust-streaming pin)
    assert hasattr(rt.app.producer, "_new_producer") and hasattr(rt.app.producer, "_producer")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_non_positive_reset_after_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="producer_reset_after_s"):
        Settings.from_env({"FOREXD_PRODUCER_RESET_AFTER_S": value})
