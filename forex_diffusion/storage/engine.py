"""Engine construction with safe defaults for both backends."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from forex_diffusion.errors import ConfigError
from forex_diffusion.storage.tables import metadata

__all__ = [
    "CONNECT_TIMEOUT_S",
    "LOCK_TIMEOUT_S",
    "STATEMENT_TIMEOUT_S",
    "check_url_options",
    "create_tables",
    "is_option_error",
    "make_engine",
    "postgres_connect_args",
    "sqlite_url",
]

#: Defaults of the PostgreSQL timeouts (the worker's FOREXD_DB_*_TIMEOUT_S override them).
CONNECT_TIMEOUT_S = 10.0
STATEMENT_TIMEOUT_S = 60.0
LOCK_TIMEOUT_S = 10.0
# drivers built on libpq: ``connect_timeout`` and ``options`` are connection parameters
_LIBPQ_DRIVERS = ("psycopg2", "psycopg")


#: libpq options that take an integer (libpq's parse_int_param: a C int, spaces around it).
_LIBPQ_INT_OPTIONS = frozenset(
    {"port", "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count"}
    | {"tcp_user_timeout"}
)
_INT_TEXT = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]{1,10}[ \t\n\r\f\v]*")
#: libpq options that take one of a few words: every value some libpq release takes (an older
#: libpq may refuse one of them at connect, which :func:`is_option_error` recognises).
_LIBPQ_CHOICES: dict[str, tuple[str, ...]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
    "sslcertmode": ("disable", "allow", "require"),
    "sslnegotiation": ("postgres", "direct"),
}
#: What libpq or the server says of a connection option it refuses (``?sslmode=bogus``,
#: ``?foo=bar``, ``?options=-c statement_timeout=x``): the URL is wrong, the server not down.
_OPTION_REFUSED = re.compile(
    r"invalid dsn|invalid connection option|invalid [a-z_]+ value|invalid integer value|invalid port number"
    r"|invalid value for parameter|unrecognized configuration parameter|invalid command-line argument"
    r"|cannot be changed without restarting|cannot be changed now|cannot be set after connection start"
    r"|permission denied to set parameter"
    # TLS and channel binding the URL asks for and this server or client cannot give
    r"|does not support SSL, but SSL was required|channel binding required|certificate file .* does not exist"
    r"|could not (?:open|read|load) (?:root )?certificate|private key file .* (?:does not exist|has group or world access)",
    re.IGNORECASE,
)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else f"{value[:40]}...")


def check_url_options(url: str) -> None:
    """Refuse a PostgreSQL URL whose address or connection options cannot work, before any
    connection is tried: a :class:`~forex_diffusion.errors.ConfigError` naming the option
    (the message never holds the URL: the caller names it, password hidden).

    A port outside 1..65535 (libpq said "invalid port number" and the commands called the
    database unreachable; SQLAlchemy dropped a port of 0 and connected to 5432), a host that
    is not ASCII (libpq does not encode internationalised names: "could not translate host
    name"), an option libpq does not know (``?foo=bar``), an integer option that is no
    integer (``?connect_timeout=abc``) and a word option outside its words
    (``?sslmode=bogus``); for every backend, an asyncio driver (``postgresql+asyncpg``:
    the storage calls block). Other backends' options (SQLite's) are not checked here.
    """
    try:
        u = make_url(url)
    except ArgumentError as exc:  # "Could not parse SQLAlchemy URL from given URL string": no part of it
        raise ConfigError(f"is not valid ({exc})") from None
    except ValueError:  # int() of the port: its text may be a password's tail (u:p@ss:word@h, 'word@h')
        raise ConfigError(
            "has a port that is no number (is there a ':', '@' or '/' in the user name or password? "
            "write them as %3A, %40 and %2F)"
        ) from None
    try:
        is_async = bool(getattr(u.get_dialect(), "is_async", False))  # the dialect's class: no driver loaded
    except Exception:  # noqa: BLE001 - NoSuchModuleError and kin: the engine's creation names them
        is_async = False
    if is_async:  # postgresql+asyncpg, sqlite+aiosqlite: the storage calls are blocking
        raise ConfigError(
            f"names the asyncio driver {u.get_driver_name()}: forexd needs a blocking one, "
            "e.g. postgresql+psycopg2:// or sqlite:///"
        )
    if "@" in (u.host or ""):  # user:p@ss@host: the driver would echo 'ss@host', a part of the password
        raise ConfigError("has an '@' in its user name or password: write it as %40")
    if u.get_backend_name() != "postgresql":
        return
    if u.port is not None and not 1 <= u.port <= 65535:
        raise ConfigError(f"has port {u.port}, not a TCP port (1..65535)")
    host = u.host or ""
    if not host.isascii():
        try:
            hint = f" (written {host.encode('idna').decode('ascii')})"
        except UnicodeError:
            hint = ""
        raise ConfigError(f"has host {_shown(host)}: a host name is ASCII; write it in its IDNA form{hint}")
    if u.get_driver_name() not in _LIBPQ_DRIVERS:
        return
    for name, given in u.query.items():
        for value in (given,) if isinstance(given, str) else given:
            if name in _LIBPQ_INT_OPTIONS and not (_INT_TEXT.fullmatch(value) and abs(int(value)) < 2**31):
                raise ConfigError(f"has option {name}={_shown(value)}, which takes a whole number")
            if name in _LIBPQ_CHOICES and value not in _LIBPQ_CHOICES[name]:
                raise ConfigError(
                    f"has option {name}={_shown(value)}, which takes one of {', '.join(_LIBPQ_CHOICES[name])}"
                )
    if u.get_driver_name() == "psycopg2":  # the names psycopg2's own libpq knows (psycopg's may be newer)
        _check_option_names({k: v for k, v in u.query.items() if k != "plugin"})  # plugin: SQLAlchemy's own


def _check_option_names(query: Any) -> None:
    """Refuse a query option libpq does not know (as psycopg2 would at connect)."""
    try:
        from psycopg2.extensions import make_dsn, parse_dsn
    except ImportError:  # pragma: no cover - another libpq driver: it refuses the name at connect
        return
    for name in query:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is None:
            raise ConfigError(f"has option {_shown(name)}, which is no connection option name")
        try:
            parse_dsn(make_dsn(**{name: "1"}))
        except Exception:  # noqa: BLE001 - psycopg2.ProgrammingError: invalid connection option
            raise ConfigError(f"has option {name}, which is no libpq connection option") from None


def is_option_error(exc: BaseException) -> bool:
    """Whether a failed connection says that a connection option of the URL is refused (by
    libpq, or by the server for ``options=-c name=value``): a fix of the URL, where every
    other failure to connect is a server that does not answer (or refuses the login)."""
    orig = getattr(exc, "orig", None) or exc
    return _OPTION_REFUSED.search(str(orig)) is not None


def sqlite_url(path: str | Path) -> str:
    """Return the SQLAlchemy URL of a SQLite file.

    ``%``, ``?`` and ``#`` of the path are escaped: SQLAlchemy reads ``/data/50%41`` as
    ``/data/50A`` and ``/data/a?b/forexd.db`` as ``/data/a`` with a query (another file).

    >>> sqlite_url("/data/a?b/50%/forexd.db")
    'sqlite:////data/a%3Fb/50%25/forexd.db'
    """
    text = str(Path(path).resolve())
    return "sqlite:///" + text.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def _ms(seconds: float) -> int:
    """Milliseconds of a timeout, rounded up (a tiny positive timeout never becomes 0, which
    PostgreSQL reads as "no limit"); 0 for 0 or less."""
    return math.ceil(seconds * 1000) if seconds > 0 else 0


def postgres_connect_args(
    url: str,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> dict[str, Any]:
    """libpq connection parameters that bound connecting, each statement and each lock wait.

    ``options`` carries ``-c statement_timeout=… -c lock_timeout=…`` (milliseconds) *before*
    any ``options`` of ``url`` itself, so the URL's settings (a ``search_path``, or its own
    timeouts) are kept and win. A ``connect_timeout`` in the URL wins too. A timeout of 0 or
    less means no limit (PostgreSQL's and libpq's 0).
    """
    query = make_url(url).query
    given = query.get("options", "")
    user_options = " ".join(given) if isinstance(given, tuple) else given
    ours = f"-c statement_timeout={_ms(statement_timeout_s)} -c lock_timeout={_ms(lock_timeout_s)}"
    args: dict[str, Any] = {"options": f"{ours} {user_options}".strip()}
    if "connect_timeout" not in query:
        # whole seconds, rounded up (libpq waits forever with 0, and makes 1 s into 2 s)
        args["connect_timeout"] = math.ceil(connect_timeout_s) if connect_timeout_s > 0 else 0
    return args


def make_engine(
    url: str,
    *,
    create: bool = True,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    **kwargs: Any,
) -> Engine:
    """Create an engine for ``url`` and (by default) the project's tables.

    Bound parameters are kept out of logs and error strings (``hide_parameters``), pooled
    connections are pinged before use, and SQLite runs in WAL mode with a busy timeout so
    a concurrent writer waits instead of failing at once.

    On PostgreSQL every connection is bounded: connecting (``connect_timeout_s``), each
    statement (``statement_timeout_s``) and each wait for a lock (``lock_timeout_s``); 0 means
    no limit. A hung or locked database then fails a call with an error that
    :func:`~forex_diffusion.storage.retry.classify` calls transient (it is retried, and a
    consumer pauses as in an outage) instead of blocking the caller for ever. Drivers not
    built on libpq get the two statement timeouts with ``SET`` on each new connection.
    """
    opts: dict[str, Any] = {"hide_parameters": True, "pool_pre_ping": True, **kwargs}
    if url.startswith("sqlite"):
        opts.setdefault("connect_args", {"timeout": 5.0})
    parsed = make_url(url)
    postgres = parsed.get_backend_name() == "postgresql"
    libpq = postgres and parsed.get_driver_name() in _LIBPQ_DRIVERS
    if libpq:
        args = postgres_connect_args(
            url,
            connect_timeout_s=connect_timeout_s,
            statement_timeout_s=statement_timeout_s,
            lock_timeout_s=lock_timeout_s,
        )
        opts["connect_args"] = {**args, **opts.get("connect_args", {})}
    engine = create_engine(url, **opts)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    elif postgres and not libpq:  # pragma: no cover - the project's tests run psycopg2
        statement_ms, lock_ms = _ms(statement_timeout_s), _ms(lock_timeout_s)

        @event.listens_for(engine, "connect")
        def _timeouts(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"SET statement_timeout = {statement_ms}")  # integers, not input
            cur.execute(f"SET lock_timeout = {lock_ms}")
            cur.close()
            dbapi_conn.commit()  # a SET in a rolled-back transaction would be undone

    if create:
        from forex_diffusion.storage.retry import db_retry

        db_retry(create_tables)(engine)  # a database still starting up is waited for
    return engine


def create_tables(engine: Engine, *, attempts: int | None = None) -> None:
    """Create the project's tables that do not exist yet, tolerating a concurrent creator.

    ``create_all`` checks, then creates: another process (a second worker, a test reading the
    same file) creating a table in between makes it fail with "table ... already exists"
    (SQLite) or a duplicate ``pg_type`` row (PostgreSQL). That is not an error: the next
    check sees the table. (Found under load: a worker exited at start while the fault
    harness opened the same SQLite file.) Every lost race means one more table exists at the
    next check, so one attempt per table (plus one) always suffices: with 4 processes racing,
    one lost three races in a row (``table model_aliases already exists``).
    """
    if attempts is None:
        attempts = len(metadata.tables) + 1
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except DBAPIError as exc:
            if attempt + 1 < attempts and _lost_creation_race(exc):
                continue
            raise


def _lost_creation_race(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "already exists" in text or "pg_type_typname_nsp_index" in text
