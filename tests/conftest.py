"""Shared fixtures: real data paths, the embedded broker, PostgreSQL, worker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from forex_diffusion.bundled import SAMPLE_TICKS

from .pg_embedded import EmbeddedPostgresError, EmbeddedPostgresMissing, configured_url
from .pg_embedded import start as start_embedded_pg
from .pg_embedded import stop as stop_embedded_pg
from .waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]

# Hypothesis's clock checks, off for the whole suite: a test may take as long as the machine
# needs (no 200 ms ``deadline`` per example), and drawing the examples may too (``too_slow``,
# about a second of generation, fails on a busy machine though nothing is wrong). A test's own
# ``@settings`` inherit this profile, except a ``suppress_health_check`` it names itself.
settings.register_profile("forexd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("forexd")


SOAK_TIMEOUT_S = 1800  # a soak marked without a timeout of its own


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.soak`` tests (the long forms, minutes to an hour each) run only when
    asked for with ``-m soak``: here, not in ``tests/faults/conftest.py``, so that
    ``pytest tests/unit/wire`` does not start the 100,000-example fuzz soaks either. A soak
    without a ``timeout`` mark of its own gets :data:`SOAK_TIMEOUT_S`.

    The ``broker`` tests (worker processes through a broker: 10-80 s each, a third of a core
    each, the rest waiting on them) are spread evenly over the first three quarters of the
    others, each group kept in its order. ``make test`` hands tests out two at a time to
    whichever process is free (``--dist load --maxschedchunk 2``): while some processes wait on
    workers the others run the short CPU-bound tests, and the run ends on short tests, not
    with one process alone on a minute-long one (worksteal's chunks did; all broker tests
    first left the CPU 40 % idle for their first minutes)."""
    if "soak" not in (config.getoption("-m") or ""):
        soak = [i for i in items if i.get_closest_marker("soak") is not None]
        if soak:
            config.hook.pytest_deselected(items=soak)
            items[:] = [i for i in items if i.get_closest_marker("soak") is None]
    for item in items:
        # a soak without its own timeout gets SOAK_TIMEOUT_S, not pytest's 600 s: the fuzz
        # decoder soaks take about 3 minutes each on an idle 2-core machine, and 600 s stopped
        # one on a machine 3.5x busier. A soak fails on what it finds, not on the clock
        if item.get_closest_marker("soak") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SOAK_TIMEOUT_S))
    items[:] = _spread(
        [i for i in items if i.get_closest_marker("broker") is not None],
        [i for i in items if i.get_closest_marker("broker") is None],
    )


def _spread(long: list[pytest.Item], short: list[pytest.Item]) -> list[pytest.Item]:
    """``long`` interleaved evenly over the first three quarters of ``short`` (deterministic:
    every xdist process collects the same order)."""
    out: list[pytest.Item] = []
    step = 0.75 * len(short) / max(len(long), 1)
    j = 0
    for k, item in enumerate(long):
        at = int(k * step)
        out.extend(short[j:at])
        j = max(j, at)
        out.append(item)
    out.extend(short[j:])
    return out


# -- CPU accounting -------------------------------------------------------------------------
# FOREXD_TEST_CPU_LOG=DIR: each test's wall time, this process's CPU time and the CPU time of
# the subprocesses it reaped (workers, CLI runs) appended to DIR/<xdist worker>.tsv, so a
# slow suite can be cut where the CPU goes (wall times on 2 shared cores say mostly who waited).
_CPU_LOG = os.environ.get("FOREXD_TEST_CPU_LOG")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if not _CPU_LOG:
        yield
        return
    import resource
    import time

    def now() -> tuple[float, float, float]:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.monotonic(), time.process_time(), kids.ru_utime + kids.ru_stime

    before = now()
    yield
    after = now()
    name = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(Path(_CPU_LOG) / f"{name}.tsv", "a", encoding="utf-8") as out:
        wall, own, kids = (b - a for a, b in zip(before, after, strict=True))
        out.write(f"{wall:.2f}\t{own:.2f}\t{kids:.2f}\t{item.nodeid}\n")


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT as Python's default (``KeyboardInterrupt``) for the test: a suite started in the
    background (a shell's ``&``) inherits it ignored, and a test of Ctrl-C then saw none."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def sample_ticks() -> Path:
    return SAMPLE_TICKS


# -- broker ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka-protocol broker: $FOREXD_TEST_KAFKA_BOOTSTRAP or the embedded one."""
    given = os.environ.get("FOREXD_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    from forex_diffusion.errors import ConfigError
    from streams.broker import EmbeddedBroker

    log = tmp_path_factory.mktemp("broker") / "broker.log"
    try:
        broker = EmbeddedBroker(log_path=log).start()  # waits up to 120 s: a busy machine; a hang still ends
    except ConfigError as exc:
        if os.environ.get("FOREXD_TEST_REQUIRE_BROKER"):
            raise
        pytest.skip(f"no Kafka broker for integration tests: {exc}")
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix per test, so tests sharing the broker never see each other."""
    return f"t{uuid.uuid4().hex[:10]}."


# -- databases ------------------------------------------------------------------------------

# Consumer-group session timeout of the test workers. The embedded broker (Tansu) holds a
# JoinGroup for half of it and a killed member keeps its partitions for the whole of it, so it
# sets how long every kill-and-restart test waits: 6 s against 8 s took the three signal tests of
# tests/faults/test_worker_faults.py from 90 s to 70 s (SIGKILL recovery 23.4 s to 19.7 s). With
# the 2 s heartbeat a live worker still sends three per session. A fault that must outlast it
# (a paused worker or broker) lasts 2 s longer (tests/faults/harness.py, past_session_s).
TEST_SESSION_TIMEOUT_S = 6.0


PG_URL = configured_url()


def _pg_available(url: str) -> str | None:
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(sa.text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # any connection problem means "not available"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    """PostgreSQL at $FOREXD_TEST_POSTGRES_URL if it answers, else an embedded server of this
    process (tests/pg_embedded.py); with FOREXD_TEST_REQUIRE_POSTGRES=1 (CI) it must answer."""
    why = _pg_available(PG_URL)
    if why is None:
        yield PG_URL
        return
    if os.environ.get("FOREXD_TEST_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL is required here but unreachable at {PG_URL}: {why}")
    try:
        server = start_embedded_pg()
    except EmbeddedPostgresMissing as exc:  # no wheel for this platform
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({why}), and {exc}; set FOREXD_TEST_POSTGRES_URL")
    except EmbeddedPostgresError as exc:
        pytest.fail(f"PostgreSQL not reachable at {PG_URL} ({why}), and the embedded one did not start: {exc}")
    print(f"\nembedded PostgreSQL at {server.url} (ready in {server.startup_s:.1f} s)", file=sys.stderr)
    yield server.url
    stop_embedded_pg()


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose default schema is fresh for this test."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(pg_base_url)
    with eng.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))  # identifier from uuid, not input
    eng.dispose()  # a fault test may restart PostgreSQL: the drop below opens a fresh connection
    sep = "&" if "?" in pg_base_url else "?"
    yield f"{pg_base_url}{sep}options=-csearch_path%3D{schema}"
    with eng.begin() as c:
        c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("pg_url"))


# -- worker processes -----------------------------------------------------------------------


class WorkerProcess:
    """A ``forexd worker`` subprocess with its own environment."""

    def __init__(self, env: dict[str, str], log_path: Path, role: str = "stream") -> None:
        self.env = env
        self.log_path = log_path
        self.role = role
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--role", self.role, "--loglevel", "info"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        return self.proc.returncode

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def worker_env(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a worker on the test broker with a fresh prefix and data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    env.update(
        {
            "FOREXD_BROKER_URL": f"kafka://{kafka_bootstrap}",
            "FOREXD_TOPIC_PREFIX": topic_prefix,
            "FOREXD_APP_ID": f"forexd-{topic_prefix.rstrip('.')}",
            "FOREXD_DATA_DIR": str(tmp_path / "var"),
            "FOREXD_SYMBOLS": "EURUSD,USDJPY",
            "FOREXD_PARTITIONS": "2",
            "FOREXD_TIMEFRAMES": "1m,5m,1h",
            "FOREXD_FORECAST_TIMEFRAMES": "1m",
            "FOREXD_IDLE_CLOSE_S": "3",
            "FOREXD_STATUS_INTERVAL_S": "5",
            # short, so that a restarted worker soon gets its partitions: see TEST_SESSION_TIMEOUT_S
            "FOREXD_BROKER_SESSION_TIMEOUT_S": str(TEST_SESSION_TIMEOUT_S),
            "FOREXD_METRICS_PORT": "-1",
            # One state-signing key for every worker of a test, as a multi-worker deployment shares
            # one (each worker's own data dir would otherwise generate its own: docs/operations.md).
            "FOREXD_STATE_KEY": f"test-state-key-{topic_prefix}-0123456789abcdef",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Factory of worker subprocesses; all are stopped at teardown."""
    procs: list[WorkerProcess] = []

    def spawn(env: dict[str, str], role: str = "stream", name: str | None = None) -> WorkerProcess:
        w = WorkerProcess(env, tmp_path / f"{name or 'worker'}-{len(procs)}.log", role).start()
        procs.append(w)
        return w

    yield spawn
    for w in procs:
        w.stop()


@pytest.fixture(name="wait_until")
def _wait_until_fixture():  # type: ignore[no-untyped-def]
    return wait_until


@pytest.fixture
def broker_port() -> Iterator[int]:
    """A TCP listener standing in for the broker: a worker's broker wait passes, so it reaches
    its database wait (nothing is ever read from it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]
