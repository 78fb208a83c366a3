"""A TLS and SASL/SCRAM front for the embedded broker, and throwaway certificates (test helpers).

Tansu 0.6.0 can serve neither TLS nor a SCRAM user (docs/reliability.md, "Security checks"):
``--cert`` and ``--key`` are mutually exclusive on its command line, and with
``--authentication`` it refuses every request but ApiVersions before a SASL login,
``tansu user create`` included, while a user created on a broker without it does not survive
the restart with it (nor on ``s3://`` storage). So the live tests put
this front between the worker and a plaintext Tansu broker, which advertises the front's
port:

* TLS: the front terminates TLS with a server certificate signed by a throwaway CA (Python's
  ``ssl``); a client must verify the chain and the host name.
* SCRAM: like a Kafka broker with SASL enabled, the front answers ``SaslHandshake`` and
  ``SaslAuthenticate`` itself (RFC 5802 server side, stored keys only, never the password),
  answers a failed login with ``SASL_AUTHENTICATION_FAILED`` (58) and closes the connection,
  and closes any connection that sends another request before a successful login
  (``ApiVersions`` is forwarded, as a broker answers it before a login). After the login the
  connection is relayed byte for byte.

The worker, its Faust clients and the ``forexd`` commands run unchanged: their TLS and SCRAM
client code is the code under test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import shutil
import ssl
import struct
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.broker import free_port

__all__ = ["KafkaFront", "ScramCredential", "TlsFiles", "make_tls_files", "scram_credential"]

API_SASL_HANDSHAKE = 17
API_API_VERSIONS = 18
API_SASL_AUTHENTICATE = 36
UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58
HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}


# -- SCRAM (RFC 5802, server side) ----------------------------------------------------------


@dataclass(frozen=True)
class ScramCredential:
    """What a broker stores for a SCRAM user: salt, iterations and the two keys."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


def _hmac(mechanism: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, HASHES[mechanism]).digest()


def scram_credential(password: str, *, mechanism: str = "SCRAM-SHA-512", iterations: int = 4096) -> ScramCredential:
    """Derive the stored credential of ``password`` (Kafka's minimum is 4096 iterations)."""
    salt = secrets.token_bytes(24)
    salted = hashlib.pbkdf2_hmac(HASHES[mechanism]().name, password.encode(), salt, iterations)
    client_key = _hmac(mechanism, salted, b"Client Key")
    return ScramCredential(
        mechanism, salt, iterations, HASHES[mechanism](client_key).digest(), _hmac(mechanism, salted, b"Server Key")
    )


def _attrs(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(",") if "=" in part)


class _ScramExchange:
    """One server-side SCRAM exchange: ``first(client_first)`` then ``final(client_final)``."""

    def __init__(self, mechanism: str, users: Mapping[str, ScramCredential]) -> None:
        self.mechanism = mechanism
        self.users = users
        self.user = ""
        self._cred: ScramCredential | None = None
        self._first_bare = self._server_first = self._nonce = ""

    @property
    def started(self) -> bool:
        """Whether the server-first message was sent."""
        return bool(self._server_first)

    def first(self, client_first: str) -> str:
        if not client_first.startswith("n,,"):
            raise ValueError("channel binding or an authzid is not supported")
        self._first_bare = client_first[3:]
        attrs = _attrs(self._first_bare)
        self.user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
        cred = self.users.get(self.user)
        self._cred = cred if cred is not None and cred.mechanism == self.mechanism else None
        # An unknown user gets a plausible salt and fails at the proof, as a Kafka broker does.
        salt = self._cred.salt if self._cred else hashlib.sha256(self.user.encode()).digest()
        iterations = self._cred.iterations if self._cred else 4096
        self._nonce = attrs["r"] + base64.b64encode(secrets.token_bytes(18)).decode()
        self._server_first = f"r={self._nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        return self._server_first

    def final(self, client_final: str) -> str | None:
        """The server-final message, or ``None`` when the proof is wrong."""
        without_proof, _, proof_b64 = client_final.rpartition(",p=")
        attrs = _attrs(without_proof)
        if self._cred is None or attrs.get("r") != self._nonce or attrs.get("c") != "biws":
            return None
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(self.mechanism, self._cred.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof_b64), signature, strict=False))
        if not hmac.compare_digest(HASHES[self.mechanism](client_key).digest(), self._cred.stored_key):
            return None
        return "v=" + base64.b64encode(_hmac(self.mechanism, self._cred.server_key, auth_message)).decode()


# -- Kafka framing ---------------------------------------------------------------------------


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    try:
        size = struct.unpack(">i", await reader.readexactly(4))[0]
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        return None


def _write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(struct.pack(">i", len(payload)) + payload)


def _request_body(frame: bytes) -> bytes:
    """The body after a request header v1 (api key, version, correlation id, client id)."""
    (client_id_len,) = struct.unpack(">h", frame[8:10])
    return frame[10 + max(client_id_len, 0) :]


def _string(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def _bytes(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass


# -- the front -------------------------------------------------------------------------------


class KafkaFront:
    """Listen on 127.0.0.1 (TLS with ``ssl_context``, SCRAM with ``users``) and relay each
    connection to the plaintext broker on ``upstream_port``.

    ``logins`` and ``refusals`` record the user name of each successful and failed SCRAM
    login; ``unauthenticated`` counts connections closed for a request before a login.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        users: Mapping[str, ScramCredential] | None = None,
        mechanism: str = "SCRAM-SHA-512",
        port: int | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.ssl_context = ssl_context
        self.users = users
        self.mechanism = mechanism
        self.port = port or free_port()
        self.logins: list[str] = []
        self.refusals: list[str] = []
        self.unauthenticated = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"kafka-front-{self.port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> KafkaFront:
        # asyncio would log each client that fails the TLS handshake; the tests check the client.
        self._loop.set_exception_handler(lambda loop, context: None)
        self._thread.start()

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.ssl_context)

        self._server = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> KafkaFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            if self.users is not None and not await self._login(reader, writer, up_reader, up_writer):
                return
            pipes = [asyncio.ensure_future(_pipe(reader, up_writer)), asyncio.ensure_future(_pipe(up_reader, writer))]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for p in pipes:
                    p.cancel()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    async def _login(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> bool:
        """Run SaslHandshake + SaslAuthenticate (v0/v1) with the client; True once logged in."""
        assert self.users is not None
        exchange: _ScramExchange | None = None
        while (frame := await _read_frame(reader)) is not None:
            api_key, version, correlation = struct.unpack(">hhi", frame[:8])
            head = struct.pack(">i", correlation)
            if api_key == API_API_VERSIONS:
                _write_frame(up_writer, frame)
                response = await _read_frame(up_reader)
                if response is None:
                    return False
                _write_frame(writer, response)
            elif api_key == API_SASL_HANDSHAKE and version in (0, 1):
                body = _request_body(frame)
                (n,) = struct.unpack(">h", body[:2])
                requested = body[2 : 2 + n].decode()
                ok = requested == self.mechanism
                error = 0 if ok else UNSUPPORTED_SASL_MECHANISM
                _write_frame(writer, head + struct.pack(">hi", error, 1) + _string(self.mechanism))
                if not ok:
                    await writer.drain()
                    return False
                exchange = _ScramExchange(self.mechanism, self.users)
            elif api_key == API_SASL_AUTHENTICATE and version in (0, 1) and exchange is not None:
                body = _request_body(frame)
                (n,) = struct.unpack(">i", body[:4])
                message = body[4 : 4 + n].decode()
                tail = struct.pack(">q", 0) if version == 1 else b""
                done = exchange.started
                try:
                    reply = exchange.final(message) if done else exchange.first(message)
                except (KeyError, ValueError):
                    reply = None
                if reply is None:
                    self.refusals.append(exchange.user)
                    text = (
                        "Authentication failed during authentication due to invalid credentials "
                        f"with SASL mechanism {self.mechanism}"
                    )
                    _write_frame(
                        writer,
                        head + struct.pack(">h", SASL_AUTHENTICATION_FAILED) + _string(text) + _bytes(b"") + tail,
                    )
                    await writer.drain()
                    return False
                _write_frame(writer, head + struct.pack(">h", 0) + _string(None) + _bytes(reply.encode()) + tail)
                await writer.drain()
                if done:
                    self.logins.append(exchange.user)
                    return True
            else:  # any other request before a login: the connection is closed, as Kafka does
                self.unauthenticated += 1
                return False
            await writer.drain()
        return False


# -- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A CA, a server certificate it signed for 127.0.0.1/localhost, a certificate of the same
    CA for another host name only, and an unrelated CA."""

    ca: Path
    cert: Path
    key: Path
    other_host_cert: Path
    other_host_key: Path
    other_ca: Path

    def server_context(self, *, other_host: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if other_host:
            ctx.load_cert_chain(self.other_host_cert, self.other_host_key)
        else:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def make_tls_files(directory: Path) -> TlsFiles | None:
    """Generate the throwaway CA and certificates in ``directory`` (``None`` without openssl)."""
    if shutil.which("openssl") is None:
        return None
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    ca_ext = d / "ca.cnf"
    ca_ext.write_text(
        "[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\nbasicConstraints=critical,CA:TRUE\n"
        "keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n"
    )
    for name in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            d / f"{name}.key",
            "-out",
            d / f"{name}.pem",
            "-subj",
            f"/CN=forexd test {name}",
            "-config",
            ca_ext,
            "-extensions",
            "v3_ca",
        )
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"), ("other-host", "DNS:forexd.invalid")):
        ext = d / f"{name}.cnf"
        ext.write_text(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            d / f"{name}.key",
            "-out",
            d / f"{name}.csr",
            "-subj",
            f"/CN={san.split(',')[0].split(':')[1]}",
            "-config",
            ca_ext,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            d / f"{name}.csr",
            "-CA",
            d / "ca.pem",
            "-CAkey",
            d / "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            d / f"{name}.pem",
            "-extfile",
            ext,
        )
    return TlsFiles(
        ca=d / "ca.pem",
        cert=d / "server.pem",
        key=d / "server.key",
        other_host_cert=d / "other-host.pem",
        other_host_key=d / "other-host.key",
        other_ca=d / "other-ca.pem",
    )
