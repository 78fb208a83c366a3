"""The Faust application: one App configured from :class:`Settings`, its topics and agents.

Agents are thin (decode → core call → send). Stateful consumers keep their state per
partition in the database *together with the offset it reflects* (one transaction), and
on assignment restore it and seek to the next offset — so a crash or a rebalance never
loses or doubles a tick, whatever Faust's own offset commits did.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust

from forex_diffusion.instruments import InstrumentRegistry

from .producer import ProducerWatch
from .settings import Settings
from .state_key import install_state_key

if TYPE_CHECKING:
    from .agents.candles import CandleAgent
    from .agents.retrain import RetrainAgent
    from .agents.ticks import TickAgent

__all__ = ["Runtime", "create_app"]

log = logging.getLogger(__name__)


def _credentials(settings: Settings) -> Any:
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    ctx = ssl.create_default_context(cafile=settings.kafka_ssl_cafile) if proto in ("SSL", "SASL_SSL") else None
    if proto == "SSL":
        return faust.SSLCredentials(ctx)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        ssl_context=ctx,
        mechanism=settings.kafka_sasl_mechanism,
    )


@dataclass
class Runtime:
    """The App with its topics and shared services."""

    settings: Settings
    app: faust.App
    topics: dict[str, faust.TopicT]
    instruments: InstrumentRegistry
    engine: Any
    metrics: Any = None
    producer: ProducerWatch | None = None
    tick_agent: TickAgent | None = None
    candle_agent: CandleAgent | None = None
    retrain_agent: RetrainAgent | None = None


def create_app(settings: Settings, *, roles: tuple[str, ...] = ("ticks",), metrics: Any = None) -> Runtime:
    """Build the Faust App and register the agents of the given roles."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    install_state_key(settings)  # issue 13: the key that signs the state snapshots, before any restore
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=_credentials(settings),
        store="memory://",
        autodiscover=False,
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        # Faust's default is 20 minutes: a produce request the broker never answers would hold
        # a checkpoint that long before the producer retries it.
        producer_request_timeout=settings.producer_request_timeout_s,
        producer_max_request_size=max(1_048_576, settings.max_message_bytes * 4),
        consumer_max_fetch_size=4 * 1_048_576,
    )
    # The stateful consumers (ticks, candles) commit their offsets themselves, right after each
    # checkpoint (streams/progress.py). Their topics do not ack to Faust, so Faust never
    # commits them: neither periodically nor when the worker stops (a commit on stop would
    # run ahead of the checkpoint and skip the ticks in between after a restart). The other
    # consumed topics (retrain requests, model outcomes) use Faust's own periodic commits.
    checkpointed = ("ticks", "candles")
    topics = {
        name: app.topic(
            settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            acks=name not in checkpointed,
        )
        for name in ("ticks", "candles", "indicators", "forecasts", "drift", "models", "deadletter")
        + (("forecasts.paths",) if settings.paths else ())  # issue 16: each forecast's sample paths
    }
    topics["retrain.requests"] = app.topic(
        settings.topic("retrain.requests"), key_type=bytes, value_type=bytes, partitions=settings.partitions
    )
    rt = Runtime(
        settings=settings,
        app=app,
        topics=topics,
        instruments=InstrumentRegistry.of(settings.symbols),
        engine=settings.make_db_engine(),  # issue 15: with the FOREXD_DB_*_TIMEOUT_S bounds
        metrics=metrics,
    )
    # one for the app's producer, which both checkpointing agents share
    rt.producer = ProducerWatch(
        app,
        after_s=settings.producer_reset_after_s,
        start_timeout_s=settings.producer_request_timeout_s,
        metrics=metrics,
    )
    from .agents import register_agents

    register_agents(rt, roles)
    return rt
