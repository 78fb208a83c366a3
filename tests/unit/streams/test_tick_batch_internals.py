"""The Faust and aiokafka internals :mod:`streams.broker_facts` relies on (the one module that reads
them: the tick agent's bulk path and the idle close's broker facts) are there, with the behaviour
it mirrors. A Faust or aiokafka upgrade that renames or changes one fails here, loudly, instead of
the bulk path silently falling back to Faust's per-record path (or, for the idle close, the
broker's silence going unnoticed: ``last_fetch_ms`` answers None for an unknown name)."""

from __future__ import annotations

import inspect
from pathlib import Path

import aiokafka
import faust.streams
import faust.transport.consumer
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.broker_facts import BulkConsumer, BulkFeed, last_fetch_ms

from .test_tick_batch import TICKS, _record, _worker

#: what broker_facts.py reads or calls on Faust's consumer (an instance of its aiokafka driver's)
CONSUMER_INTERNALS = (
    "_wait_next_records",  # BulkConsumer overrides it: each fetch's records, before getmany iterates them
    "_read_offset",  # BulkFeed.put: Faust's drain loop drops records below it and moves it on
    "_to_message",  # the ConsumerMessage Faust's conductor gets, stamped with the generation
    "_buffered_partitions",  # getmany's "active or buffered" rule, and on_buffer_full/drop's set
    "on_buffer_full",
    "on_buffer_drop",
    "_get_active_partitions",
    "flow_active",
    "should_stop",
    "highwater",  # broker_facts.highwater
    "_thread",  # broker_facts.last_fetch_ms: _thread._consumer.last_poll_timestamp
)


def test_every_consumer_internal_the_bulk_path_uses_is_there(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    c = rt.app.consumer
    assert type(c).__mro__[1] is faust_aiokafka.Consumer  # BulkConsumer is Faust's aiokafka consumer, overridden
    missing = [name for name in CONSUMER_INTERNALS if not hasattr(c, name)]
    assert missing == []
    assert list(inspect.signature(faust_aiokafka.Consumer._wait_next_records).parameters) == ["self", "timeout"]
    assert rt.app.transport.Consumer is BulkConsumer and rt.app._consumer is c  # BulkFeed.install's two
    assert hasattr(c._thread, "_consumer")  # the aiokafka consumer, once started
    assert callable(aiokafka.AIOKafkaConsumer.last_poll_timestamp)
    for name in ("consumer_generation_id", "flow_control", "sensors"):
        assert hasattr(rt.app, name)
    assert callable(rt.app.sensors.on_topic_buffer_full)


def test_faust_still_delivers_a_fetch_the_way_the_bulk_path_mirrors() -> None:
    getmany = inspect.getsource(faust.transport.consumer.Consumer.getmany)
    # getmany takes each fetch from _wait_next_records, and its generation right after it
    assert "await self._wait_next_records(timeout)" in getmany
    assert "generation_id = self.app.consumer_generation_id" in getmany
    assert "tp in active_partitions" in getmany and "tp in self._buffered_partitions" in getmany
    # the drain loop delivers a record at or past the read offset, and moves it to that record
    drain = inspect.getsource(faust.transport.consumer.Consumer._drain_messages)
    assert "r_offset is None or offset >= r_offset" in drain and "set_read_offset(tp, offset)" in drain
    # the stream leaves out what it takes while the flow is held or of an older generation (BulkFeed.fresh)
    stream = inspect.getsource(faust.streams.Stream)
    assert "not self.app.flow_control.is_active()" in stream
    assert "message.generation_id != self.app.consumer_generation_id" in stream


def test_faust_clears_the_feed_when_a_rebalance_resumes_the_flow(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    ta = rt.tick_agent
    assert ta is not None
    feed: BulkFeed = ta.feed
    feed.attach()
    c = rt.app.consumer
    feed._queue.append(c._to_message(TP(TICKS, 0), _record(TICKS, 0, 0, b"x")))
    rt.app.flow_control.resume()  # Faust's recovery resumes the streams after a rebalance
    assert not feed._queue
    assert feed.fresh(c._to_message(TP(TICKS, 0), _record(TICKS, 0, 1, b"x")))


@pytest.mark.asyncio
async def test_last_fetch_ms_reads_aiokafkas_last_poll_timestamp(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    c = rt.app.consumer
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started: no broker
    tp = aiokafka.TopicPartition(TICKS, 0)
    consumer._subscription.assign_from_user({tp})
    consumer._subscription.subscription.assignment.state_value(tp).timestamp = 1_700_000_000_123  # as its fetcher
    c._thread._consumer = consumer
    assert last_fetch_ms(c, TP(TICKS, 0)) == 1_700_000_000_123.0
