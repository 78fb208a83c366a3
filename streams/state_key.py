"""The worker's state key: what signs the pickle-bearing state snapshots (issue 13).

``FOREXD_STATE_KEY`` when set; otherwise a key generated once into ``<data_dir>/state.key``
(mode 0600, created atomically, so two workers starting on one data directory agree) and
reused on every start. Every worker that shares a database must use the same key: set
``FOREXD_STATE_KEY`` (or copy the file) on all of them. See docs/operations.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from forex_diffusion.errors import ConfigError
from forex_diffusion.online.snapshot import MIN_KEY_BYTES, configure_state_key

from .settings import Settings

__all__ = ["KEY_FILE", "install_state_key", "load_or_create_key"]

log = logging.getLogger(__name__)

KEY_FILE = "state.key"


def load_or_create_key(data_dir: Path) -> bytes:
    """Return the key in ``data_dir/state.key``, creating it (64 hex digits, mode 0600) if absent.

    Raises
    ------
    ConfigError
        The file is readable or writable by group or others, or too short.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    if not path.exists():
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another worker just wrote
            log.warning(
                "state.key_generated path=%s: a new state key; workers sharing this database "
                "must all use it (FOREXD_STATE_KEY)",
                path,
            )
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is accessible by group or others (mode {mode:o}): chmod 600 it")
    key = path.read_text().strip().encode()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{path} holds a key shorter than {MIN_KEY_BYTES} characters")
    return key


def install_state_key(settings: Settings) -> None:
    """Install the worker's state key in the core (``FOREXD_STATE_KEY``, else the data dir's file)."""
    key = settings.state_key.encode() if settings.state_key else load_or_create_key(settings.data_dir)
    configure_state_key(key, accept_unsigned=settings.state_unsigned == "accept")
