"""Plain aiokafka helpers for the command-line tools (replay, tail, retrain --wait)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .settings import Settings, bootstrap_of

__all__ = [
    "CO_PARTITIONED",
    "bootstrap_of",
    "check_partitions",
    "client_kwargs",
    "ensure_topics",
    "make_consumer",
    "make_producer",
]

log = logging.getLogger(__name__)

_ASK_S = 15.0  # check_partitions: how long the broker may take to say its topics


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


#: The topics keyed by symbol whose partitions the workers' state is kept by (a checkpoint per
#: partition, a symbol's forming candles in its partition's): they must have the configured
#: partition count, or a symbol's ticks and candles land on partitions of other numbers than
#: the workers' (and their metrics') partitions, silently.
CO_PARTITIONED = ("ticks", "candles")


async def ensure_topics(settings: Settings, names: Iterable[str]) -> None:
    """Create the topics (with the configured partition count) where missing, after checking
    the partition count of those that exist.

    An existing ``fx.ticks`` or ``fx.candles`` (:data:`CO_PARTITIONED`; both are checked as
    soon as one of them is named) whose partition count is not ``settings.partitions`` is
    refused before anything is created; another named topic with another count is logged
    at WARNING and used as it is (its readers read it whole, by key or not).

    Raises
    ------
    SettingsError
        A co-partitioned topic with another partition count than ``FOREXD_PARTITIONS``
        (exit 78), naming the topic, its count and the configured one.
    """
    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        co = [settings.topic(n) for n in CO_PARTITIONED]
        checked = [n for n in wanted if n in existing]
        if any(n in co for n in wanted):
            checked += [n for n in co if n in existing and n not in checked]
        if checked:
            _check_partitions(settings, await _partition_counts(admin, checked), co)
        new = [NewTopic(n, settings.partitions, 1) for n in wanted if n not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def check_partitions(settings: Settings) -> None:
    """Refuse, as :func:`ensure_topics` does, an existing ``fx.ticks`` or ``fx.candles`` whose
    partition count is not ``settings.partitions`` (the worker, before it joins its group;
    it creates nothing). A broker that cannot be asked is left to the worker's own waits:
    logged at INFO, not refused.

    Raises
    ------
    SettingsError
        As :func:`ensure_topics`.
    """
    from aiokafka.errors import KafkaError

    co = [settings.topic(n) for n in CO_PARTITIONED]
    admin = AIOKafkaAdminClient(**client_kwargs(settings))

    async def ask() -> dict[str, int]:
        await admin.start()
        existing = [n for n in co if n in set(await admin.list_topics())]
        return await _partition_counts(admin, existing) if existing else {}

    try:
        counts = await asyncio.wait_for(ask(), _ASK_S)  # a listener that speaks no Kafka: not for ever
    except (KafkaError, OSError, TimeoutError) as exc:
        log.info("topic.partitions_unchecked error=%s", type(exc).__name__)
        return
    finally:
        try:
            await admin.close()
        except (KafkaError, OSError):  # a client that never started
            pass
    _check_partitions(settings, counts, co)


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """The partition count of each of ``names`` the broker describes (without an error)."""
    counts: dict[str, int] = {}
    for t in await admin.describe_topics(names):
        if isinstance(t, dict) and not t.get("error_code") and t.get("topic") in names:
            counts[str(t["topic"])] = len(t.get("partitions") or ())
    return counts


def _check_partitions(settings: Settings, counts: dict[str, int], co: list[str]) -> None:
    """Refuse a co-partitioned topic of another partition count than the configured one; warn
    of any other (:func:`ensure_topics`)."""
    from forex_diffusion.errors import SettingsError

    want = settings.partitions
    for name, n in counts.items():
        if n == want or name in co:
            continue
        log.warning(
            "topic.partitions topic=%s partitions=%d configured=%d: used as it is "
            "(FOREXD_PARTITIONS applies to the topics it creates)",
            name,
            n,
            want,
        )
    off = [(name, counts[name]) for name in co if name in counts and counts[name] != want]
    if not off:
        return
    name, n = off[0]
    others = {counts[c] for c in co if c in counts}
    fix = (
        f"set FOREXD_PARTITIONS={n} (the count of every existing one of {', '.join(co)}), or recreate "
        f"{name} with {want}"
        if others == {n}
        else f"recreate {name} with {want} partitions (the topics disagree: {', '.join(f'{c}={counts[c]}' for c in co if c in counts)})"
    )
    raise SettingsError(
        f"topic {name} has {n} partition{'s' if n != 1 else ''}, but FOREXD_PARTITIONS is {want}: "
        f"{' and '.join(co)} are keyed by symbol and the workers keep their state by partition, so each "
        f"must have FOREXD_PARTITIONS partitions: {fix}"
    )


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
