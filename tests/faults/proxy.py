"""A TCP fault proxy: the network faults of RELIABILITY §1 (F15, F16) without ``tc`` or ``iptables``.

``tc qdisc … netem`` and ``iptables`` are not available on the test machines, so a test puts
this proxy between a process under test and the service it talks to (PostgreSQL, the
broker) and switches its mode at run time:

* ``passthrough()`` / ``heal()``: bytes are forwarded as they arrive.
* ``delay(ms)``: every chunk read from either side is written to the other ``ms`` later
  (the ``netem delay`` analogue: latency, not a bandwidth limit; chunks keep their order and
  later ones do not wait for earlier ones' delays beyond their own).
* ``blackhole()``: nothing is forwarded in either direction, the connections stay open (an
  ``iptables … -j DROP`` analogue). Data and end-of-stream read meanwhile are held, at most
  :attr:`FaultProxy.HOLD_CHUNKS` chunks per direction before the sender's TCP window fills,
  and go out in order on :meth:`heal`, as TCP retransmits after a DROP rule is deleted. New
  connections are accepted (the kernel completes the handshake) but the proxy connects them
  upstream only after the heal, so they hang like a dropped SYN.
* ``reset()``: abort every open connection on both sides (RST).

The proxy runs an asyncio loop in a daemon thread; the switching methods are synchronous and
in effect when they return. :meth:`FaultProxy.stats` counts connections and bytes for a
test's report.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from streams.broker import free_port

__all__ = ["FaultProxy", "ProxyStats"]

T = TypeVar("T")
_EOF = b""


@dataclass(frozen=True)
class ProxyStats:
    """Counters of a :class:`FaultProxy` since it started."""

    accepted: int  # client connections accepted
    connected: int  # of those, connected upstream
    open: int  # client connections open now
    bytes_up: int  # forwarded client -> upstream
    bytes_down: int  # forwarded upstream -> client
    chunks_delayed: int  # chunks forwarded while a delay was set
    resets: int  # connections aborted by reset()

    def summary(self) -> str:
        return (
            f"accepted={self.accepted} connected={self.connected} open={self.open} "
            f"up={self.bytes_up}B down={self.bytes_down}B delayed_chunks={self.chunks_delayed} "
            f"resets={self.resets}"
        )


class _Conn:
    """One proxied connection: the client side, the upstream side once connected, its task."""

    def __init__(self, client: asyncio.StreamWriter, task: asyncio.Task[None]) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task = task
        self.up = self.down = 0  # bytes forwarded each way
        self.held = [0, 0]  # chunks read but not yet forwarded, up and down
        self.eof = [False, False]  # end of stream forwarded, up and down

    def describe(self) -> str:
        peer = self.client.get_extra_info("peername")
        return (
            f"client_port={peer[1] if peer else '?'} upstream={'yes' if self.upstream else 'no'} "
            f"up={self.up}B down={self.down}B held_up={self.held[0]} held_down={self.held[1]} "
            f"eof_up={self.eof[0]} eof_down={self.eof[1]}"
        )

    def abort(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None and not w.transport.is_closing():
                w.transport.abort()


class FaultProxy:
    """Forward ``127.0.0.1:port`` to ``upstream_host:upstream_port`` with switchable faults.

    >>> proxy = FaultProxy("127.0.0.1", 5432).start()   # doctest: +SKIP
    >>> proxy.delay(200); ...; proxy.heal()              # doctest: +SKIP
    >>> proxy.stop()                                     # doctest: +SKIP
    """

    HOLD_CHUNKS = 64  # chunks read ahead per direction while the writer side is held
    CHUNK = 64 * 1024

    def __init__(self, upstream_host: str, upstream_port: int, *, port: int | None = None) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._open: asyncio.Event | None = None  # set: forwarding; clear: blackhole
        self._delay_s = 0.0
        self._conns: set[_Conn] = set()
        self._accepted = self._connected = self._up = self._down = self._delayed = self._resets = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:port``, what clients dial."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        """Listen on the port and forward in pass mode."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True, name=f"fault-proxy-{self.port}")
        self._thread.start()
        self._run(self._listen())
        return self

    async def _listen(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def stop(self) -> None:
        """Abort every connection, stop listening and end the thread."""
        if self._loop is None:
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()
        tasks = [c.task for c in self._conns]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- modes ----------------------------------------------------------------------------

    def passthrough(self) -> None:
        """Forward everything as it arrives (also ends a blackhole or a delay)."""
        self._call(self._set_mode, False, 0.0)

    heal = passthrough

    def delay(self, ms: float) -> None:
        """Hold each chunk read from now on ``ms`` before forwarding it, in each direction."""
        if ms < 0:
            raise ValueError("delay must be >= 0 ms")
        self._call(self._set_mode, False, ms / 1000.0)

    def blackhole(self) -> None:
        """Forward nothing in either direction; keep connections open; new ones hang."""
        self._call(self._set_mode, True, self._delay_s)

    def reset(self) -> int:
        """Abort every open connection on both sides; how many were aborted."""
        return self._call(self._abort_all)

    @property
    def mode(self) -> str:
        """``pass``, ``delay(<ms>ms)`` or ``blackhole``."""
        if self._open is not None and not self._open.is_set():
            return "blackhole"
        return f"delay({self._delay_s * 1000:g}ms)" if self._delay_s else "pass"

    def connections(self) -> list[str]:
        """One line per open connection (bytes each way, chunks held, ends forwarded), to
        diagnose a client that hangs."""
        return self._call(lambda: [c.describe() for c in self._conns])

    def stats(self) -> ProxyStats:
        return self._call(
            lambda: ProxyStats(
                self._accepted, self._connected, len(self._conns), self._up, self._down, self._delayed, self._resets
            )
        )

    def _set_mode(self, blackhole: bool, delay_s: float) -> None:
        assert self._open is not None
        self._delay_s = delay_s
        if blackhole:
            self._open.clear()
        else:
            self._open.set()

    def _abort_all(self) -> int:
        conns = list(self._conns)
        for c in conns:
            c.abort()
            c.task.cancel()
        self._resets += len(conns)
        return len(conns)

    # -- plumbing -------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            raise RuntimeError("the proxy is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async def call() -> T:
            return fn(*args)

        return self._run(call())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._open is not None
        conn = _Conn(writer, task)
        self._conns.add(conn)
        self._accepted += 1
        try:
            await self._open.wait()  # a blackholed proxy connects nowhere: the client hangs
            try:
                up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            except OSError:
                return
            conn.upstream = up_writer
            self._connected += 1
            await asyncio.gather(
                self._pipe(conn, reader, up_writer, up=True), self._pipe(conn, up_reader, writer, up=False)
            )
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            self._conns.discard(conn)
            for w in (conn.client, conn.upstream):
                if w is not None:
                    w.close()

    async def _pipe(self, conn: _Conn, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, up: bool) -> None:
        """Copy ``src`` to ``dst`` through a bounded FIFO: the reader stamps each chunk with its
        release time (now + delay); the writer waits for it and for the gate."""
        assert self._loop is not None and self._open is not None
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(self.HOLD_CHUNKS)
        side = 0 if up else 1

        async def read() -> None:
            while True:
                try:
                    chunk = await src.read(self.CHUNK)
                except OSError:
                    chunk = _EOF
                conn.held[side] += 1
                await queue.put((self._loop.time() + self._delay_s, chunk))  # type: ignore[union-attr]
                if not chunk:
                    return

        async def write() -> None:
            while True:
                release, chunk = await queue.get()
                wait = release - self._loop.time()  # type: ignore[union-attr]
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._open.wait()  # type: ignore[union-attr]
                conn.held[side] -= 1
                if not chunk:
                    conn.eof[side] = True
                    with contextlib.suppress(OSError, RuntimeError):
                        if dst.can_write_eof():
                            dst.write_eof()
                        else:
                            dst.close()
                    return
                dst.write(chunk)
                await dst.drain()
                if up:
                    self._up += len(chunk)
                    conn.up += len(chunk)
                else:
                    self._down += len(chunk)
                    conn.down += len(chunk)
                if self._delay_s:
                    self._delayed += 1

        reader = asyncio.ensure_future(read())
        try:
            await write()
        except OSError:
            dst.transport.abort()
        finally:
            reader.cancel()
