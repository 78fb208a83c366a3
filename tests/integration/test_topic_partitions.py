"""``ensure_topics`` (replay, retrain without --local, demo) created missing topics with
``FOREXD_PARTITIONS`` but never looked at an existing topic's count: an ``fx.ticks`` or
``fx.candles`` of another count than the configured one was used as it was, and a symbol's
ticks and candles then land on partition numbers that are not the workers' (whose state is
kept by partition), silently. Against the embedded broker: such a topic is refused before
anything is created, naming it, its count and the configured one; another topic of another
count is only logged."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner

from forex_diffusion.errors import SettingsError
from forex_diffusion.quality.trigger import RetrainRequest
from retraining.jobs import encode_request
from streams.cli import app
from streams.kafka import ensure_topics
from streams.settings import Settings

from .kafka_io import create_topics, publish, read_all

pytestmark = pytest.mark.broker

runner = CliRunner()


def _settings(bootstrap: str, prefix: str, partitions: int) -> Settings:
    return Settings(broker_url=f"kafka://{bootstrap}", topic_prefix=prefix, partitions=partitions)


def _counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    async def go() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            there = [n for n in names if n in existing]
            described = await admin.describe_topics(there) if there else []
            return {t["topic"]: len(t["partitions"]) for t in described}
        finally:
            await admin.close()

    return asyncio.run(go())


def test_an_existing_ticks_topic_of_another_count_is_refused_naming_it(kafka_bootstrap: str, topic_prefix: str) -> None:
    s = _settings(kafka_bootstrap, topic_prefix, 2)
    ticks, candles = s.topic("ticks"), s.topic("candles")
    create_topics(kafka_bootstrap, [ticks], 3)  # made before, with another count
    with pytest.raises(SettingsError) as caught:
        asyncio.run(ensure_topics(s, [ticks, candles]))
    line = str(caught.value)
    assert "\n" not in line
    assert f"topic {ticks} has 3 partitions, but FOREXD_PARTITIONS is 2" in line, line
    assert "FOREXD_PARTITIONS=3" in line, line  # the fix: every existing one has 3
    assert _counts(kafka_bootstrap, [ticks, candles]) == {ticks: 3}  # nothing created


def test_the_candles_topic_is_checked_when_only_ticks_are_named(kafka_bootstrap: str, topic_prefix: str) -> None:
    s = _settings(kafka_bootstrap, topic_prefix, 2)
    ticks, candles = s.topic("ticks"), s.topic("candles")
    create_topics(kafka_bootstrap, [candles], 4)
    with pytest.raises(SettingsError, match=f"topic {candles} has 4 partitions, but FOREXD_PARTITIONS is 2"):
        asyncio.run(ensure_topics(s, [ticks]))  # replay of a tick file
    assert _counts(kafka_bootstrap, [ticks, candles]) == {candles: 4}


def test_ticks_and_candles_that_disagree_name_both_counts(kafka_bootstrap: str, topic_prefix: str) -> None:
    s = _settings(kafka_bootstrap, topic_prefix, 2)
    ticks, candles = s.topic("ticks"), s.topic("candles")
    create_topics(kafka_bootstrap, [ticks], 2)
    create_topics(kafka_bootstrap, [candles], 3)
    with pytest.raises(SettingsError) as caught:
        asyncio.run(ensure_topics(s, [ticks]))
    line = str(caught.value)
    assert f"topic {candles} has 3 partitions" in line and f"recreate {candles} with 2 partitions" in line, line
    assert f"{ticks}=2" in line and f"{candles}=3" in line, line


def test_another_topic_of_another_count_is_logged_and_used(
    kafka_bootstrap: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = _settings(kafka_bootstrap, topic_prefix, 2)
    models, ticks = s.topic("models"), s.topic("ticks")
    create_topics(kafka_bootstrap, [models], 3)
    with caplog.at_level(logging.WARNING, logger="streams.kafka"):
        asyncio.run(ensure_topics(s, [models, ticks]))
    warned = [r.getMessage() for r in caplog.records if r.name == "streams.kafka"]
    assert any(f"topic={models} partitions=3 configured=2" in m for m in warned), warned
    assert _counts(kafka_bootstrap, [models, ticks]) == {models: 3, ticks: 2}


def test_replay_into_a_ticks_topic_of_another_count_exits_78_in_one_line(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    s = _settings(kafka_bootstrap, topic_prefix, 2)
    create_topics(kafka_bootstrap, [s.topic("ticks")], 3)
    src = tmp_path / "EURUSD_ticks.csv"
    src.write_text("ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n1398902400920,1.38676,1.38687\n")
    env = {
        "FOREXD_BROKER_URL": f"kafka://{kafka_bootstrap}",
        "FOREXD_TOPIC_PREFIX": topic_prefix,
        "FOREXD_PARTITIONS": "2",
    }
    res = runner.invoke(app, ["replay", str(src), "--symbol", "EURUSD"], env=env)
    assert res.exit_code == 78, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"topic {s.topic('ticks')} has 3 partitions" in lines[0], res.stderr
    assert "Traceback" not in res.output


def test_a_worker_on_a_candles_topic_of_another_count_exits_78_before_it_joins(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """The worker creates no topic (Faust does), so ensure_topics never ran for it: it joined
    its group on a topic of another count. It now asks first, and creates nothing."""
    s = _settings(kafka_bootstrap, topic_prefix, 2)
    create_topics(kafka_bootstrap, [s.topic("candles")], 3)
    env = {
        "FOREXD_BROKER_URL": f"kafka://{kafka_bootstrap}",
        "FOREXD_TOPIC_PREFIX": topic_prefix,
        "FOREXD_PARTITIONS": "2",
        "FOREXD_DATA_DIR": str(tmp_path / "data"),
        "FOREXD_METRICS_PORT": "-1",
    }
    res = runner.invoke(app, ["worker", "--role", "candles"], env=env)
    assert res.exit_code == 78, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"topic {s.topic('candles')} has 3 partitions" in lines[0], res.stderr
    assert _counts(kafka_bootstrap, [s.topic("ticks"), s.topic("candles")]) == {s.topic("candles"): 3}


def test_a_retrain_only_worker_is_not_refused_for_the_stream_topics_count(
    worker_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A retrain worker consumes fx.retrain.requests alone and keeps no state by partition:
    the count of fx.candles is not its to refuse (it exited 78 on it). It runs: a request for
    a symbol it does not serve comes back as a dead letter."""
    s = _settings(kafka_bootstrap, topic_prefix, 2)
    create_topics(kafka_bootstrap, [s.topic("candles")], 3)
    create_topics(kafka_bootstrap, [s.topic("retrain.requests"), s.topic("deadletter"), s.topic("models")], 2)
    w = spawn_worker(worker_env, role="retrain")
    request = RetrainRequest.create("GBPCHF", "1m", None, "manual", 0)
    publish(kafka_bootstrap, s.topic("retrain.requests"), [(b"GBPCHF", encode_request(request))])
    dead = read_all(kafka_bootstrap, s.topic("deadletter"), expect=1, timeout_s=120)
    assert w.alive() and "has 3 partitions" not in w.log(), w.log()[-2000:]
    assert len(dead) == 1 and json.loads(dead[0].value)["reason"] == "unknown_symbol", dead
