"""Plain aiokafka helpers for the command-line tools (replay, tail, retrain --wait)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .settings import Settings, bootstrap_of

__all__ = ["bootstrap_of", "client_kwargs", "ensure_topics", "make_consumer", "make_producer"]

log = logging.getLogger(__name__)


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection keyword arguments (bootstrap, TLS, SASL) from settings."""
    kw: dict[str, Any] = {"bootstrap_servers": bootstrap_of(settings.broker_url)}
    proto = settings.kafka_security_protocol
    if proto != "PLAINTEXT":
        kw["security_protocol"] = proto
        if proto in ("SSL", "SASL_SSL"):
            kw["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
        if proto.startswith("SASL"):
            kw["sasl_mechanism"] = settings.kafka_sasl_mechanism
            kw["sasl_plain_username"] = settings.kafka_sasl_username
            kw["sasl_plain_password"] = settings.kafka_sasl_password
    return kw


async def ensure_topics(settings: Settings, names: Iterable[str]) -> None:
    """Create the topics (with the configured partition count) where missing."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, settings.partitions, 1) for n in names if n not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def make_producer(settings: Settings, **kw: Any) -> AIOKafkaProducer:
    """A producer with batching suited to bulk replay."""
    opts: dict[str, Any] = {
        "linger_ms": 20,
        "max_batch_size": 256 * 1024,
        "acks": "all",
        "enable_idempotence": False,
        **client_kwargs(settings),
        **kw,
    }
    return AIOKafkaProducer(**opts)


def make_consumer(settings: Settings, *topics: str, **kw: Any) -> AIOKafkaConsumer:
    """A consumer of ``topics`` (no group unless given)."""
    opts: dict[str, Any] = {
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        **client_kwargs(settings),
        **kw,
    }
    return AIOKafkaConsumer(*topics, **opts)
