"""The fault proxy (``proxy.py``) against a tiny echo server: pass, delay, blackhole, heal, reset."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from .proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.connections += 1  # type: ignore[attr-defined]
        while data := self.request.recv(65536):
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.connections = 0


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    p = FaultProxy("127.0.0.1", echo.server_address[1]).start()
    yield p
    p.stop()


def _client(proxy: FaultProxy, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _nothing_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        s.recv(1)  # data or end of stream: something came through
    except TimeoutError:
        return True
    finally:
        s.settimeout(5.0)
    return False


def test_pass_mode_forwards_both_ways_and_counts_bytes(proxy: FaultProxy, echo: EchoServer) -> None:
    with _client(proxy) as s:
        s.sendall(b"x" * 100_000)
        assert _recv_exactly(s, 100_000) == b"x" * 100_000
    st = proxy.stats()
    assert (proxy.mode, st.accepted, st.connected, st.bytes_up, st.bytes_down) == ("pass", 1, 1, 100_000, 100_000)
    assert echo.connections == 1


def test_delay_holds_each_chunk_in_each_direction_and_keeps_order(proxy: FaultProxy) -> None:
    with _client(proxy) as s:
        s.sendall(b"warm")
        assert _recv_exactly(s, 4) == b"warm"
        proxy.delay(150)
        assert proxy.mode == "delay(150ms)"
        t0 = time.monotonic()
        s.sendall(b"ping")
        assert _recv_exactly(s, 4) == b"ping"
        rtt = time.monotonic() - t0
        assert rtt >= 0.29, f"round trip {rtt:.3f}s under a 150 ms delay each way"
        # a stream of small writes arrives complete and in order; the delays overlap (latency,
        # not a bandwidth limit): 20 writes 10 ms apart take ~0.5 s, not 20 round trips
        msgs = [f"<{i:03d}>".encode() for i in range(20)]
        t0 = time.monotonic()
        for m in msgs:
            s.sendall(m)
            time.sleep(0.01)
        assert _recv_exactly(s, 100) == b"".join(msgs)
        took = time.monotonic() - t0
        assert 0.3 <= took < 2.0, took
        proxy.heal()
        t0 = time.monotonic()
        s.sendall(b"pong")
        assert _recv_exactly(s, 4) == b"pong"
        assert time.monotonic() - t0 < 0.25
    assert proxy.stats().chunks_delayed >= 2


def test_blackhole_forwards_nothing_holds_new_connections_and_heal_delivers_in_order(
    proxy: FaultProxy,
    echo: EchoServer,
) -> None:
    with _client(proxy) as old:
        old.sendall(b"a")
        assert _recv_exactly(old, 1) == b"a"
        proxy.blackhole()
        assert proxy.mode == "blackhole"
        old.sendall(b"bcd")
        new = _client(proxy)  # the connect succeeds (the kernel accepts), then nothing happens
        new.sendall(b"new")
        assert _nothing_within(old, 0.6)
        assert _nothing_within(new, 0.1)
        st = proxy.stats()
        assert (st.accepted, st.connected, st.open, echo.connections) == (2, 1, 2, 1)
        assert st.bytes_up == 1  # only the "a" before the blackhole
        proxy.heal()
        assert _recv_exactly(old, 3) == b"bcd"
        assert _recv_exactly(new, 3) == b"new"
        new.close()
    assert echo.connections == 2


def test_reset_aborts_open_connections_and_new_ones_work(proxy: FaultProxy) -> None:
    a, b = _client(proxy), _client(proxy)
    for s in (a, b):
        s.sendall(b"hi")
        assert _recv_exactly(s, 2) == b"hi"
    assert proxy.reset() == 2
    for s in (a, b):
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        s.close()
    with _client(proxy) as c:
        c.sendall(b"again")
        assert _recv_exactly(c, 5) == b"again"
    assert proxy.stats().resets == 2


def test_a_dead_upstream_closes_the_client_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # closed again before the proxy dials it
    with FaultProxy("127.0.0.1", dead_port) as p, _client(p) as c:
        assert c.recv(10) == b""
        assert p.stats().connected == 0
