"""Issue 13, findings 4 and 5: a retrain request is a hostile input like any other record.

- a ``request_id`` of ``../``, ``*``, ``/``, ``/../../../*`` or 10,000 characters creates and
  removes nothing outside the model directory (finding 4: it went into a staging path and a
  ``glob`` + ``rmtree`` cleanup that matched the model directory's siblings);
- a schema-valid request for a key outside the configured symbols, timeframes and horizons
  is dead-lettered with its reason and the agent goes on (finding 5: ``symbol="EUR/USD"``,
  ``horizon=0`` raised ``ConfigError`` out of the agent);
- jobs run at most ``retrain_concurrency`` at once from a bounded queue, a second request
  for a queued or running key coalesces, and a job past its timeout is killed with its
  process group and reported ``failed``/``timeout`` with no stderr in the outcome.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from forex_diffusion.errors import ModelError, RegistryError
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey
from retraining.jobs import JobOutcome, decode_request, encode_request, run_retrain
from retraining.registry import ModelRegistry
from retraining.runner import run_job_async
from streams.agents import retrain as retrain_agent
from streams.agents.retrain import RetrainAgent
from streams.settings import Settings

from ...waiting import until
from .conftest import HORIZON, request, tiny_job

HOSTILE_IDS = ["../", "*", "/", "/../../../*", "x" * 10_000, "a/b", "..", ".staging", "id with space", ""]
TIMEFRAMES = ("1m", "2m", "3m", "5m", "10m", "15m", "30m", "1h", "4h", "1d")


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for a directory)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _siblings(tmp_path: Path) -> Path:
    """A model directory among siblings that must survive (names match the old cleanup glob)."""
    area = tmp_path / "area"
    (area / "sibling-dir").mkdir(parents=True)
    (area / "sibling-dir" / "keep.txt").write_text("keep")
    (area / "other-file.txt").write_text("keep")
    (area / "x-y").mkdir()
    models = area / "models"
    (models / ".staging").mkdir(parents=True)
    return models


def _outside(models: Path) -> dict[str, bytes | None]:
    """The tree around the model directory, without it."""
    return {k: v for k, v in _tree(models.parent).items() if not k.startswith("models")}


# -- finding 4: paths stay inside the model directory ----------------------------------------------


@pytest.mark.parametrize("request_id", HOSTILE_IDS, ids=lambda r: repr(r[:16]))
def test_hostile_request_id_is_refused_by_the_wire_decoder(request_id: str) -> None:
    raw = json.dumps({"v": 1, **request(request_id).to_dict()})
    with pytest.raises(ValueError, match="request_id"):
        decode_request(raw)


def test_request_ids_the_cli_the_trigger_and_the_schedule_generate_stay_valid() -> None:
    from forex_diffusion.quality.trigger import request_id_for

    for reason in ("manual", "drift", "schedule"):
        rid = request_id_for("EURUSD", "1h", 24, reason, 1_700_000_000_000)
        assert decode_request(encode_request(request(rid))).request_id == rid
    assert decode_request(encode_request(request("r1_a-B"))).request_id == "r1_a-B"


@pytest.mark.parametrize("request_id", ["../", "*", "/", "/../../../*", "x" * 10_000])
def test_job_with_hostile_request_id_creates_and_removes_nothing_outside_the_model_directory(
    request_id: str, sqlite_db: str, tmp_path: Path
) -> None:
    models = _siblings(tmp_path)
    before = _outside(models)

    def stop_in_training(stage: str, detail: Any) -> None:
        if stage == "train":  # the staging directory exists now: abort, the cleanup runs
            raise ModelError("stop the test job mid-training")

    eng = make_engine(sqlite_db)
    try:
        out = run_retrain(
            request(request_id), engine=eng, model_dir=models, config=tiny_job(), progress=stop_in_training
        )
    finally:
        eng.dispose()
    assert _outside(models) == before, "something outside the model directory was created or removed"
    assert out.status == "failed" and out.reason.startswith("schema"), out.reason
    assert len(out.request_id) <= 64


def test_registry_staging_dir_refuses_a_job_id_that_leaves_its_root(tmp_path: Path) -> None:
    models = _siblings(tmp_path)
    reg = ModelRegistry(make_engine(f"sqlite:///{tmp_path / 'r.db'}"), models)
    key = ModelKey(symbol="EURUSD", timeframe="1h", horizon=HORIZON)
    before = _outside(models)
    for job_id in ("../../escape", "/abs", "a/../../b", "*", ""):
        with pytest.raises(RegistryError):
            reg.staging_dir(key, job_id)
    assert _outside(models) == before
    assert reg.staging_dir(key, "r1-abc123").resolve().is_relative_to((models / ".staging").resolve())


# -- finding 5: the agent refuses what it cannot run, never crashes, caps its jobs -------------------


class FakeTopic:
    """Records what an agent sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> asyncio.Future[None]:
        self.sent.append({"key": key, "value": value, "headers": dict(headers or [])})
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)  # the broker's acknowledgement
        return acked


def _outcome(req: RetrainRequest, horizon: int) -> JobOutcome:
    return JobOutcome(
        request_id=req.request_id,
        key=f"{req.symbol}/{req.timeframe}/{horizon}",
        symbol=req.symbol,
        timeframe=req.timeframe,
        horizon=horizon,
        version=None,
        status="rejected",
        reason="not_better: test",
    )


class Jobs:
    """A stand-in for ``run_job_async`` that measures how many jobs run at once."""

    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.live = 0
        self.peak = 0
        self.ran: list[str] = []
        self.kwargs: list[dict[str, Any]] = []
        self.hold = hold  # while given and not set, jobs do not finish

    async def __call__(self, req: RetrainRequest, **kw: Any) -> JobOutcome:
        self.live += 1
        self.peak = max(self.peak, self.live)
        self.kwargs.append(kw)
        try:
            if self.hold is not None:
                await self.hold.wait()
            for _ in range(5):  # stay alive across several loop turns
                await asyncio.sleep(0)
        finally:
            self.live -= 1
        self.ran.append(req.request_id)
        return _outcome(req, req.horizon or 24)


def _agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: Jobs, **settings: Any
) -> tuple[RetrainAgent, dict[str, FakeTopic]]:
    s = Settings(data_dir=tmp_path, horizon=HORIZON, **settings)
    topics = {"deadletter": FakeTopic(), "models": FakeTopic()}
    monkeypatch.setattr(retrain_agent, "run_job_async", jobs)
    rt = SimpleNamespace(settings=s, metrics=None, app=None, topics=topics)
    return RetrainAgent(rt), topics  # type: ignore[arg-type]


_SYMBOL_KEY: Any = object()  # default key of _msg: the request's symbol, as every producer sends it


def _msg(value: bytes | str, offset: int = 0, *, key: Any = _SYMBOL_KEY) -> Any:
    raw = value.encode() if isinstance(value, str) else value
    if key is _SYMBOL_KEY:  # the value's symbol (B19: keys are the canonical symbol); b"k" for a broken value
        try:
            key = str(json.loads(raw)["symbol"]).encode()
        except (ValueError, KeyError, TypeError):
            key = b"k"
    return SimpleNamespace(topic="fx.retrain.requests", partition=0, offset=offset, key=key, value=raw)


def _raw(**kw: Any) -> str:
    base = {"v": 1, **request("r1").to_dict()}
    base.update(kw)
    return json.dumps(base)


STALL_S = 60.0  # the longest time without progress a wait allows: generous for a loaded machine


async def _until(cond: Callable[[], bool], what: str, progress: Callable[[], Any] | None = None) -> None:
    """Wait until ``cond()`` while the agent's tasks and threads work: failing after
    :data:`STALL_S` seconds in which ``progress()`` (e.g. jobs run, records sent) did not
    change, or, for work of one step (no ``progress``), after :data:`STALL_S` in all; never a
    count of loop turns, nor a timing assertion."""
    await until(cond, STALL_S, what=what, progress=progress)


def _sent(jobs: Jobs, topics: dict[str, Any]) -> tuple[int, ...]:
    """Progress of the agent: jobs run, and records sent on each topic."""
    return (len(jobs.ran), *(len(t.sent) for _name, t in sorted(topics.items())))


def _reasons(topic: FakeTopic) -> list[str]:
    return [json.loads(m["value"])["reason"] for m in topic.sent]


def test_schema_valid_request_for_an_unconfigured_key_is_dead_lettered_and_the_agent_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 13 finding 5): ``EUR/USD`` with ``horizon=0`` raised ConfigError out of the agent."""
    jobs = Jobs()

    async def go() -> None:
        agent, topics = _agent(tmp_path, monkeypatch, jobs, symbols=("EURUSD",), timeframes=("1m", "1h"))
        bad = [
            _raw(symbol="EUR/USD", horizon=0),
            _raw(symbol="EURUSD", horizon=0),
            _raw(symbol="GBPUSD"),
            _raw(symbol="EURUSD", timeframe="4h"),
            _raw(horizon=999),
            _raw(symbol="*"),
            _raw(request_id="/../../../*"),
            _raw(request_id="x" * 10_000),
        ]
        for i, raw in enumerate(bad):
            await agent.handle(_msg(raw, i))  # never raises
        await agent.handle(_msg(_raw(request_id="good"), 99))
        await _until(
            lambda: (
                len(topics["deadletter"].sent) == len(bad) and jobs.ran == ["good"] and len(topics["models"].sent) == 1
            ),
            "dead letters and the good job",
            lambda: _sent(jobs, topics),
        )
        # the topic's schema (forex_diffusion.wire) refuses what no request can be (a symbol
        # that is no canonical pair, horizon 0, a bad id); the key check what this worker
        # does not serve
        assert _reasons(topics["deadletter"]) == [
            "schema",
            "out_of_range",
            "unknown_symbol",
            "unknown_key",
            "unknown_key",
            "schema",
            "schema",
            "out_of_range",
        ]
        heads = topics["deadletter"].sent[0]["headers"]
        assert heads["x-error-reason"] == b"schema" and heads["x-orig-offset"] == b"0"

    asyncio.run(go())


@pytest.mark.parametrize("key", [None, b"GBPUSD", b"\xff", b"EUR/USD", b"eurusd", b""])
def test_a_valid_request_whose_kafka_key_is_not_its_symbol_is_dead_lettered_as_key_mismatch(
    key: bytes | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (B19): the retrain agent never read the Kafka key: a valid EURUSD request
    keyed None, GBPUSD or 0xff was queued and run (0 dead letters), while fx.ticks, fx.candles
    and fx.models refuse such a key (a wrong key breaks co-partitioning)."""
    jobs = Jobs()

    async def go() -> None:
        agent, topics = _agent(tmp_path, monkeypatch, jobs, symbols=("EURUSD", "GBPUSD"))
        await agent.handle(_msg(_raw(request_id="bad", symbol="EURUSD"), 0, key=key))
        await agent.handle(_msg(_raw(request_id="good", symbol="EURUSD"), 1, key=b"EURUSD"))
        await _until(
            lambda: len(topics["deadletter"].sent) == 1 and len(topics["models"].sent) == 1,
            "the dead letter and the good job",
            lambda: _sent(jobs, topics),
        )
        assert jobs.ran == ["good"]
        assert _reasons(topics["deadletter"]) == ["key_mismatch"]
        letter = topics["deadletter"].sent[0]
        assert letter["headers"]["x-error-reason"] == b"key_mismatch" and letter["headers"]["x-orig-offset"] == b"0"

    asyncio.run(go())


def test_an_unexpected_error_in_the_per_record_path_is_dead_lettered_as_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = Jobs()

    def boom(raw: Any) -> Any:
        raise RuntimeError("a bug")

    async def go() -> None:
        agent, topics = _agent(tmp_path, monkeypatch, jobs)
        monkeypatch.setattr(retrain_agent, "decode_request", boom)
        await agent.handle(_msg(_raw()))
        await _until(lambda: len(topics["deadletter"].sent) == 1, "internal dead letter")
        letter = json.loads(topics["deadletter"].sent[0]["value"])
        assert letter["reason"] == "internal" and "RuntimeError" in letter["error"]

    asyncio.run(go())


def test_hundred_distinct_key_requests_run_at_most_the_configured_number_of_jobs_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 13 finding 5): every distinct key started its own child process at once."""
    symbols = InstrumentRegistry().symbols
    keys = [(s, tf) for s in symbols for tf in TIMEFRAMES][:100]
    burst = asyncio.Event()  # the 100 requests arrive before any job ends (each dead letter is awaited)
    jobs = Jobs(hold=burst)

    async def go() -> None:
        agent, topics = _agent(
            tmp_path,
            monkeypatch,
            jobs,
            symbols=symbols,
            timeframes=TIMEFRAMES,
            retrain_concurrency=3,
            retrain_timeout_s=77.0,
        )
        for i, (sym, tf) in enumerate(keys):
            await agent.handle(_msg(_raw(request_id=f"r{i}", symbol=sym, timeframe=tf), i))
        burst.set()
        await _until(
            lambda: (
                len(jobs.ran) + len(topics["deadletter"].sent) == 100 and len(topics["models"].sent) == len(jobs.ran)
            ),
            "every request accounted for",
            lambda: _sent(jobs, topics),
        )
        assert 1 <= jobs.peak <= 3, jobs.peak
        refused = _reasons(topics["deadletter"])
        assert set(refused) <= {"queue_full"}
        assert len(jobs.ran) == 3 + agent.queue.max_queued  # the running ones and a full queue
        assert all(kw["timeout_s"] == 77.0 for kw in jobs.kwargs)

    asyncio.run(go())


def test_a_request_for_a_queued_or_running_key_coalesces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = Jobs()

    async def go() -> None:
        agent, topics = _agent(tmp_path, monkeypatch, jobs, timeframes=("1m", "1h"))
        await agent.handle(_msg(_raw(request_id="a", timeframe="1h"), 0))  # runs
        await agent.handle(_msg(_raw(request_id="b", timeframe="1m"), 1))  # queued (concurrency 1)
        await agent.handle(_msg(_raw(request_id="c", timeframe="1h"), 2))  # running key: coalesced
        await agent.handle(_msg(_raw(request_id="d", timeframe="1m"), 3))  # queued key: coalesced
        await agent.handle(_msg(_raw(request_id="a", timeframe="1h"), 4))  # redelivery: duplicate
        await _until(lambda: len(topics["models"].sent) == 2, "two jobs", lambda: _sent(jobs, topics))
        assert jobs.ran == ["a", "b"] and jobs.peak == 1 and topics["deadletter"].sent == []
        await agent.handle(_msg(_raw(request_id="e", timeframe="1h"), 5))  # the key is free again
        await _until(lambda: jobs.ran == ["a", "b", "e"], "a new job of a finished key")

    asyncio.run(go())


# -- the child process: timeout kills its process group; no stderr in the outcome ---------------------


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_a_job_past_its_timeout_is_killed_with_its_process_group_and_reported_failed_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    # the "job" starts a grandchild in its process group, then hangs forever
    cmd = ["sh", "-c", f"sleep 600 & echo $! > {pidfile}; echo secret-in-stderr >&2; wait"]

    async def go() -> JobOutcome:
        return await run_job_async(
            request("slow"), db_url="sqlite://", model_dir=tmp_path / "m", timeout_s=3.0, command=cmd
        )

    out = asyncio.run(go())
    assert out.status == "failed" and out.reason == "timeout", out.reason
    assert "secret" not in json.dumps(out.to_dict())
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 60  # SIGKILL was sent; wait for the kernel to finish it
    while not _dead(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _dead(grandchild), "the job's grandchild survived the timeout"


def test_a_failed_child_outcome_carries_its_exit_status_and_no_stderr(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; sys.stderr.write('password=hunter2 Traceback'); sys.exit(3)"]

    async def go() -> JobOutcome:
        return await run_job_async(
            request("bad"), db_url="sqlite://", model_dir=tmp_path / "m", timeout_s=120.0, command=cmd
        )

    out = asyncio.run(go())
    assert out.status == "failed" and out.reason == "process_exit: status 3", out.reason
    assert "hunter2" not in json.dumps(out.to_dict())


@pytest.mark.parametrize("last_line", [b"42", b"[1, 2]", b"null", b"[" * 100_000])
def test_a_child_whose_last_line_is_json_but_no_outcome_is_reported_failed(last_line: bytes) -> None:
    """Was: ``JobOutcome.from_dict(42)`` raised TypeError out of the runner, nothing was published."""
    from retraining.runner import _outcome

    r = RetrainRequest(request_id="r1", symbol="EURUSD", timeframe="1h", horizon=12, reason="manual", requested_at_ms=1)
    out = _outcome({"request": r.to_dict(), "config": {"horizon": 12}}, 0, last_line + b"\n", b"", 0.1)
    assert out.status == "failed" and out.request_id == "r1"
