"""The producer watch is configured from FOREXD_PRODUCER_RESET_AFTER_S and wired into the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from forex_diffusion.errors import ConfigError
from streams.app import create_app
from streams.settings import Settings


def test_reset_after_is_read_from_the_environment_and_wired_to_the_app_producer(tmp_path: Path) -> None:
    s = Settings.from_env(
        {"FOREXD_PRODUCER_RESET_AFTER_S": "7.5", "FOREXD_PRODUCER_REQUEST_TIMEOUT_S": "3"}, data_dir=tmp_path
    )
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


def test_sends_abandoned_by_a_failed_checkpoint_do_not_log_unretrieved_exceptions() -> None:
    """A checkpoint whose second send is refused abandons the first send's future; when that
    future fails later (the broker unreachable), asyncio must not log "exception was never
    retrieved" at ERROR (the F16 soak logged 35 such lines): send_all marks it seen."""
    import asyncio
    import gc
    from types import SimpleNamespace

    from streams.producer import ProducerSendFailed, send_all

    seen: list[dict[str, object]] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
        pending: list[asyncio.Future[None]] = []

        class Topic:
            async def send(self, *, key: bytes | None, value: bytes, headers: object = None) -> asyncio.Future[None]:
                if pending:
                    raise RuntimeError("producer refused the record")
                fut: asyncio.Future[None] = loop.create_future()
                pending.append(fut)
                return fut

        rt = SimpleNamespace(settings=SimpleNamespace(send_ack_timeout_s=5.0), producer=None)
        with pytest.raises(ProducerSendFailed, match="RuntimeError: producer refused"):
            await send_all(rt, [(Topic(), b"k", b"v1", None), (Topic(), b"k", b"v2", None)])
        pending.pop().set_exception(ConnectionError("broker unreachable"))
        await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(go())
    assert not [c for c in seen if "never retrieved" in str(c.get("message"))], seen
