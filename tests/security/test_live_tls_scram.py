"""RELIABILITY.md §5.1 live: a worker configured only through the environment talks TLS and
SASL/SCRAM-SHA-512 to the broker, turns real ticks into candles in the database, never leaks
its password, and is refused with a wrong password, without TLS or with an untrusted
certificate.

Tansu 0.6.0 serves neither TLS nor a SCRAM user (the first test pins how), so TLS and the
SCRAM login are served by :class:`~tests.security.kafka_front.KafkaFront` in front of a
plaintext Tansu broker; the worker, its Faust clients and ``forexd replay`` are unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import count_candles, fetch_candles, make_engine
from forex_diffusion.wire import decode_candle
from streams.broker import EmbeddedBroker, free_port, resolve_broker_bin
from streams.kafka import client_kwargs, ensure_topics, make_consumer, make_producer
from streams.settings import Settings

from ..waiting import wait_for_workers
from .kafka_front import KafkaFront, TlsFiles, make_tls_files, scram_credential
from .test_secrets_and_sources import SENTINEL

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
USER = "forexd"
WRONG = "__WRONG_PASSWORD_51c9__"  # a second marker: the refused worker must not log it either
TIMEFRAMES = ("1m", "5m")


def _unavailable(why: str) -> None:
    if os.environ.get("FOREXD_TEST_REQUIRE_BROKER"):
        pytest.fail(f"the embedded broker is required here but unavailable: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    try:
        resolve_broker_bin()
    except ConfigError as exc:
        _unavailable(f"no embedded broker (Tansu) for the live TLS/SCRAM tests: {exc}")
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    if files is None:
        _unavailable("the openssl command is absent: the live TLS tests generate their CA with it")
    assert files is not None
    return files


def _broker(tmp_path: Path, name: str, **kw: Any) -> EmbeddedBroker:
    return EmbeddedBroker(log_path=tmp_path / f"{name}.log", **kw).start()


@pytest.fixture
def secure_broker(
    request: pytest.FixtureRequest, tls: TlsFiles, tmp_path: Path
) -> Iterator[tuple[EmbeddedBroker, KafkaFront]]:
    """A plaintext Tansu broker behind a TLS front that (unless the test's parameter is
    ``SSL``) also requires a SCRAM-SHA-512 login and knows one user, ``forexd``, whose
    password is the sentinel; the broker advertises the front."""
    scram = getattr(request, "param", "SASL_SSL") == "SASL_SSL"
    port = free_port()
    broker = _broker(tmp_path, "broker", advertised_port=port)
    users = {USER: scram_credential(SENTINEL, iterations=8192)} if scram else None
    front = KafkaFront(broker.port, ssl_context=tls.server_context(), users=users, port=port).start()
    yield broker, front
    front.stop()
    broker.stop()


def _secure_env(
    worker_env: dict[str, str], front: KafkaFront, tls: TlsFiles, password: str, protocol: str = "SASL_SSL"
) -> dict[str, str]:
    """The worker's environment for the front. With ``SSL`` the SASL variables stay set: an
    unused password must not leak either."""
    return dict(
        worker_env,
        FOREXD_BROKER_URL=f"kafka://{front.bootstrap}",
        FOREXD_KAFKA_SECURITY_PROTOCOL=protocol,
        FOREXD_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        FOREXD_KAFKA_SASL_USERNAME=USER,
        FOREXD_KAFKA_SASL_PASSWORD=password,
        FOREXD_KAFKA_SSL_CAFILE=str(tls.ca),
        FOREXD_SYMBOLS="EURUSD",
        FOREXD_TIMEFRAMES=",".join(TIMEFRAMES),
        FOREXD_FORECAST_TIMEFRAMES="1m",
    )


def _tick_file(sample_ticks: Path, tmp_path: Path, n: int = 6_000) -> Path:
    """The first ``n``-odd real ticks of the sample, cut at a 5-minute boundary so the idle
    timer closes every bar within seconds."""
    frame = read_ticks(sample_ticks).frame
    cut = (int(frame.ts_ms.iloc[n]) // 300_000 + 1) * 300_000
    path = tmp_path / "ticks.csv"
    frame[frame.ts_ms < cut][["ts_ms", "bid", "ask"]].to_csv(path, index=False)
    return path


def _key(c: Candle) -> tuple[str, str, int]:
    return (c.symbol, c.timeframe, c.open_ms)


def _db_path(env: dict[str, str]) -> Path:
    return Path(env["FOREXD_DATA_DIR"]) / "forexd.db"


def _db_candles(env: dict[str, str]) -> list[Candle]:
    eng = make_engine(f"sqlite:///{_db_path(env)}")
    try:
        return sorted((c for tf in TIMEFRAMES for c in fetch_candles(eng, "EURUSD", tf)), key=_key)
    finally:
        eng.dispose()


def _db_count(env: dict[str, str]) -> int:
    if not _db_path(env).exists():
        return 0
    eng = make_engine(f"sqlite:///{_db_path(env)}")
    try:
        return count_candles(eng)
    finally:
        eng.dispose()


def _replay(env: dict[str, str], path: Path) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(path), "--symbol", "EURUSD", "--speed", "max"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout + res.stderr


def _read(settings: Settings, topic: str, *, expect: int, idle_s: float = 1.0, timeout_s: float = 30.0) -> list[Any]:
    """The records of ``topic`` (at least ``expect``, then until idle), read with ``settings``
    (the worker's credentials)."""

    async def go() -> list[Any]:
        c = make_consumer(settings, topic)
        await c.start()
        out: list[Any] = []
        last = start = time.monotonic()
        try:
            while time.monotonic() - start < timeout_s and (len(out) < expect or time.monotonic() - last < idle_s):
                for msgs in (await c.getmany(timeout_ms=300)).values():
                    out += msgs
                    last = time.monotonic()
        finally:
            await c.stop()
        return out

    return asyncio.run(go())


def _publish(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    async def go() -> None:
        p = make_producer(settings)
        await p.start()
        try:
            for key, value in records:
                await (await p.send(settings.topic("ticks"), value=value, key=key))
        finally:
            await p.stop()

    asyncio.run(asyncio.wait_for(go(), 30))


def _topics_after_create(settings: Settings, topic: str) -> set[str]:
    asyncio.run(asyncio.wait_for(ensure_topics(settings, [topic]), 20))
    return _topics(settings)


def _topics(settings: Settings) -> set[str]:
    async def go() -> set[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**client_kwargs(settings))
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(asyncio.wait_for(go(), 20))


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def test_tansu_0_6_serves_no_tls_and_lets_no_scram_user_in(tls: TlsFiles, tmp_path: Path) -> None:
    """Pins why the live tests need the front (this fails when a Tansu upgrade lifts a limit:
    then serve TLS and SCRAM from the broker itself). ``--cert`` with ``--key`` is refused by
    Tansu's argument parser, and ``--cert`` alone serves plaintext. With ``--authentication``
    the broker refuses ``tansu user create`` and any plaintext client before a SASL login,
    and a SCRAM-SHA-512 login over TLS finds no user."""
    with pytest.raises(ConfigError, match="'--cert <CERT>' cannot be used with '--key <KEY>'"):
        _broker(tmp_path, "tls-broker", cert=tls.cert, key=tls.key)
    cert_only = _broker(tmp_path, "cert-only-broker", cert=tls.cert)
    try:
        assert "x" in _topics_after_create(Settings(broker_url=f"kafka://{cert_only.bootstrap}"), "x")
    finally:
        cert_only.stop()

    port = free_port()
    broker = _broker(tmp_path, "auth-broker", advertised_port=port, authentication=True)
    try:
        with KafkaFront(broker.port, ssl_context=tls.server_context(), port=port) as front:
            create = subprocess.run(
                [resolve_broker_bin(), "user", "create", "--broker", f"tcp://{broker.bootstrap}", USER, SENTINEL],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert create.returncode != 0, create.stdout + create.stderr
            assert "NotAuthenticated" in (tmp_path / "auth-broker.log").read_text(errors="replace")

            with pytest.raises(KafkaConnectionError):
                _topics_after_create(Settings(broker_url=f"kafka://{broker.bootstrap}"), "refused")
            # Tansu answers the login's last step with the RFC 5802 error "e=unknown-user";
            # aiokafka 0.14 expects "v=..." there and raises KeyError('v') (see the docs).
            scram = Settings(
                broker_url=f"kafka://{front.bootstrap}",
                kafka_security_protocol="SASL_SSL",
                kafka_sasl_username=USER,
                kafka_sasl_password=SENTINEL,
                kafka_ssl_cafile=str(tls.ca),
            )
            with pytest.raises((KeyError, KafkaError)) as refused:
                _topics_after_create(scram, "refused")
            assert SENTINEL not in repr(refused.value)
    finally:
        broker.stop()


@pytest.mark.parametrize("secure_broker", ["SASL_SSL", "SSL"], indirect=True)
def test_worker_over_tls_stores_real_ticks_as_candles_and_never_leaks_the_password(
    secure_broker: tuple[EmbeddedBroker, KafkaFront],
    tls: TlsFiles,
    worker_env: dict[str, str],
    spawn_worker: Any,
    sample_ticks: Path,
    tmp_path: Path,
) -> None:
    """SASL_SSL (TLS + SCRAM-SHA-512), and SSL alone: `forexd replay` publishes real ticks
    and two bad messages, the tick worker stores the candles (equal to the offline command's)
    and dead-letters the bad messages, all through the front; the sentinel is nowhere."""
    broker, front = secure_broker
    protocol = "SASL_SSL" if front.users is not None else "SSL"
    env = _secure_env(worker_env, front, tls, SENTINEL, protocol)
    settings = Settings.from_env(env)
    ticks = _tick_file(sample_ticks, tmp_path)
    expected = sorted(aggregate_ticks_file(ticks, symbol="EURUSD", timeframes=list(TIMEFRAMES)).candles, key=_key)
    assert len(expected) > 5

    replay_out = _replay(env, ticks)  # the producer and topic admin of `forexd replay`, over TLS
    _publish(
        settings, [(b"EURUSD", b"\xff\xfe not json"), (b"XAUUSD", b'{"v":1,"symbol":"XAUUSD","ts":1,"bid":1,"ask":2}')]
    )
    w = spawn_worker(env, role="ticks")
    # the worker starts, joins and consumes: the limit is on a stall of its log and of the DB
    wait_for_workers(
        lambda: _db_count(env) >= len(expected),
        w,
        what="every candle in the DB",
        timeout=60,
        progress=lambda: _db_count(env),
    )
    assert _db_candles(env) == expected
    dead = _read(settings, settings.topic("deadletter"), expect=2)
    assert sorted(json.loads(m.value)["reason"] for m in dead) == ["malformed", "unknown_symbol"]
    assert w.alive(), w.log()[-3000:]

    if protocol == "SASL_SSL":
        # Every connection of the replay and of the worker (consumer, producer, admin, group
        # coordinator) logged in as forexd with SCRAM-SHA-512; none sent a request without it.
        assert len(front.logins) >= 3 and set(front.logins) == {USER}, front.logins
        assert front.refusals == [] and front.unauthenticated == 0
    assert w.stop() == 0, w.log()[-3000:]

    # The sentinel password is nowhere: worker log, replay output, any file the worker wrote
    # (SQLite DB, Faust data dir), the candles and dead-letter topics, the broker's log.
    out = _read(settings, settings.topic("candles"), expect=len(expected))
    assert sorted((decode_candle(m.value, key=m.key) for m in out), key=_key) == expected
    assert SENTINEL not in w.log() and SENTINEL not in replay_out
    for path in _files_under(Path(env["FOREXD_DATA_DIR"])):
        assert SENTINEL.encode() not in path.read_bytes(), path
    for m in [*dead, *out]:
        assert SENTINEL.encode() not in (m.value or b"") + (m.key or b"")
        assert all(SENTINEL.encode() not in v for _, v in (m.headers or ()))
    assert SENTINEL not in (tmp_path / "broker.log").read_text(errors="replace")


def test_worker_with_a_wrong_password_is_refused_processes_nothing_and_logs_why_without_the_password(
    secure_broker: tuple[EmbeddedBroker, KafkaFront],
    tls: TlsFiles,
    worker_env: dict[str, str],
    spawn_worker: Any,
    sample_ticks: Path,
    tmp_path: Path,
) -> None:
    _, front = secure_broker
    good = _secure_env(worker_env, front, tls, SENTINEL)
    _replay(good, _tick_file(sample_ticks, tmp_path, n=2_000))  # ticks are waiting in fx.ticks
    logins = len(front.logins)

    env = _secure_env(worker_env, front, tls, WRONG)
    w = spawn_worker(env, role="ticks")
    # the worker gives up (it does not run without the broker) after its start-up: the limit
    # is on a stall of its log, not on the whole
    wait_for_workers(lambda: not w.alive(), w, what="the worker to give up on a wrong password")
    code = w.wait(0)
    log = w.log()
    assert code is not None and code != 0, f"the worker kept running with a wrong password\n{log[-3000:]}"
    assert "SaslAuthenticationFailed" in log and "invalid credentials with SASL mechanism SCRAM-SHA-512" in log, log[
        -3000:
    ]
    assert WRONG not in log and SENTINEL not in log
    assert len(front.logins) == logins, "the worker logged in with a wrong password"
    assert front.refusals and set(front.refusals) == {USER}
    assert _db_count(env) == 0
    good_settings = Settings.from_env(good)
    assert good_settings.topic("candles") not in _topics(good_settings)  # it created nothing either


def test_the_tls_port_refuses_plaintext_an_unknown_ca_and_a_certificate_for_another_host(
    secure_broker: tuple[EmbeddedBroker, KafkaFront],
    tls: TlsFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client built from Settings (``streams.kafka``) fails to connect, and never sends its
    password, when the transport is not what was configured."""
    broker, front = secure_broker
    other_port = free_port()
    scram: dict[str, Any] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": USER,
        "kafka_sasl_password": SENTINEL,
        "kafka_ssl_cafile": str(tls.ca),
    }
    with KafkaFront(
        broker.port,
        ssl_context=tls.server_context(other_host=True),
        port=other_port,
        users={USER: scram_credential(SENTINEL)},
    ) as other_host:
        cases = {  # what the client tried → why aiokafka logs it could not connect
            "plaintext to the TLS port": (Settings(broker_url=f"kafka://{front.bootstrap}"), "closed"),
            "TLS without the SCRAM login": (
                Settings(
                    broker_url=f"kafka://{front.bootstrap}", kafka_security_protocol="SSL", kafka_ssl_cafile=str(tls.ca)
                ),
                "closed",
            ),
            "a CA that did not sign the certificate": (
                Settings(broker_url=f"kafka://{front.bootstrap}", **dict(scram, kafka_ssl_cafile=str(tls.other_ca))),
                "CERTIFICATE_VERIFY_FAILED",
            ),
            "a certificate for another host name": (
                Settings(broker_url=f"kafka://{other_host.bootstrap}", **scram),
                "IP address mismatch",
            ),
        }
        for what, (settings, why) in cases.items():
            caplog.clear()
            with caplog.at_level("WARNING", logger="aiokafka"), pytest.raises(KafkaConnectionError) as refused:
                asyncio.run(asyncio.wait_for(ensure_topics(settings, ["refused"]), 20))
            assert why in caplog.text, (what, caplog.text)
            assert SENTINEL not in repr(refused.value) and SENTINEL not in caplog.text, what
        assert other_host.logins == [] and other_host.refusals == []
    assert front.logins == [] and front.refusals == [] and front.unauthenticated == 1
    # and the same settings with the right CA and host get in
    asyncio.run(
        asyncio.wait_for(ensure_topics(Settings(broker_url=f"kafka://{front.bootstrap}", **scram), ["admitted"]), 20)
    )
    assert front.logins and set(front.logins) == {USER}
