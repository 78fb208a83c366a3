"""HMAC-signed snapshots of the service's own learner and detector state.

River models are plain Python objects and are stored pickled. A pickle runs code when it is
loaded, so RELIABILITY.md §5.5 allows it only for artifacts this service wrote itself, and
only after the bytes are verified. Whoever can write the state table must not be able to
forge one (issue 13), so every snapshot is signed with the deployment's secret state key::

    MAGIC "FXDSNAP2" (8 bytes) | key id (8 bytes) | HMAC-SHA256(key, MAGIC | key id | payload) (32) | pickle payload

The key id (a hash of the key, not the key) says which key signed it, so a worker with
another key says so instead of "tampered". The signature is checked *before* anything is
unpickled; a mismatch raises :class:`~forex_diffusion.errors.ArtifactError` and is logged
at ERROR (``state.refused``).

The key is the process's state key, installed once by the worker from its settings
(:func:`configure_state_key`; the core never reads the environment), or ``key=`` per call.
Until one is installed a random per-process key is used: snapshots then round-trip inside
the process only (tests, offline tools), and nothing another process wrote loads.

Old snapshots (``FXDSNAP1``: a plain SHA-256 anyone can recompute, or an HMAC of the bare
payload) are refused unless the worker runs with ``accept_unsigned`` (the migration setting
``FOREXD_STATE_UNSIGNED=accept``); the next checkpoint writes them back signed.

>>> blob = dump_state({"n": 3})
>>> load_state(blob)
{'n': 3}
>>> load_state(blob[:-1])
Traceback (most recent call last):
...
forex_diffusion.errors.ArtifactError: state snapshot signature mismatch (tampered, corrupt, or another series' state: signed for another context than ''): refused, not loaded
>>> mine = dump_state({"n": 3}, context=b"EURUSD/1m/learners")
>>> load_state(mine, context=b"GBPUSD/1m/learners")
Traceback (most recent call last):
...
forex_diffusion.errors.ArtifactError: state snapshot signature mismatch (tampered, corrupt, or another series' state: signed for another context than 'GBPUSD/1m/learners'): refused, not loaded
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
import secrets
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from forex_diffusion.errors import ArtifactError, ConfigError

__all__ = [
    "LEGACY_MAGIC",
    "MIN_KEY_BYTES",
    "SNAPSHOT_MAGIC",
    "SignedState",
    "configure_state_key",
    "dump_state",
    "key_id",
    "load_state",
]

logger = logging.getLogger(__name__)

SNAPSHOT_MAGIC = b"FXDSNAP2"
#: The unsigned format written before issue 13 (refused unless migrating).
LEGACY_MAGIC = b"FXDSNAP1"
#: The shortest state key :func:`configure_state_key` accepts.
MIN_KEY_BYTES = 32
_ID_LEN = 8
_DIGEST_LEN = 32

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Signing:
    key: bytes
    accept_unsigned: bool = False


# The process's state key (see the module docstring): a random one until the worker installs
# the deployment's key with configure_state_key().
_signing = _Signing(secrets.token_bytes(32))


def configure_state_key(key: bytes, *, accept_unsigned: bool = False) -> None:
    """Install the deployment's state key for this process (the worker calls it once at start).

    Parameters
    ----------
    key
        The secret (at least :data:`MIN_KEY_BYTES` bytes); every worker of a deployment that
        shares a database must use the same one.
    accept_unsigned
        Also load old unsigned (``FXDSNAP1``) snapshots: a one-off migration switch.

    Raises
    ------
    ConfigError
        A key shorter than :data:`MIN_KEY_BYTES`.
    """
    global _signing
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the state key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
    _signing = _Signing(bytes(key), accept_unsigned)
    logger.info("state key installed key_id=%s accept_unsigned=%s", key_id(key), accept_unsigned)


def key_id(key: bytes) -> str:
    """A public fingerprint of a state key (16 hex digits; reveals nothing usable of it)."""
    return hashlib.sha256(b"forexd-state-key-id\0" + key).hexdigest()[: 2 * _ID_LEN]


def _sign(key: bytes, kid: bytes, payload: bytes, context: bytes = b"") -> bytes:
    # the context (e.g. ``EURUSD/1m/learners``) is signed with the payload: a snapshot copied
    # into another series' place fails its signature there
    if len(context) > 0xFFFF:
        raise ValueError("snapshot context longer than 65,535 bytes")
    head = SNAPSHOT_MAGIC + kid + len(context).to_bytes(2, "big") + context
    return hmac.new(key, head + payload, hashlib.sha256).digest()


def dump_state(obj: object, *, key: bytes | None = None, context: bytes = b"") -> bytes:
    """Serialise ``obj`` into a signed snapshot.

    Parameters
    ----------
    obj
        Any picklable object owned by the service (learner set, drift monitor, ...).
    key
        HMAC key (default: the process's state key).
    context
        What the state belongs to (e.g. ``b"EURUSD/1m/learners"``), signed with it, not stored:
        :func:`load_state` must be given the same context.

    Returns
    -------
    bytes
        ``MAGIC | key id | signature | payload``.
    """
    k = _signing.key if key is None else key
    kid = bytes.fromhex(key_id(k))
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return SNAPSHOT_MAGIC + kid + _sign(k, kid, payload, context) + payload


def _refuse(reason: str, message: str, size: int) -> ArtifactError:
    logger.error("state.refused reason=%s size=%d: %s", reason, size, message)
    return ArtifactError(message)


def load_state(
    data: bytes, *, key: bytes | None = None, expected: type[T] | None = None, context: bytes = b""
) -> T | Any:
    """Verify and deserialise a snapshot made by :func:`dump_state`.

    Parameters
    ----------
    data
        The snapshot bytes.
    key
        The HMAC key it was signed with (default: the process's state key).
    expected
        If given, the restored object must be an instance of this type.
    context
        The context it was signed for (:func:`dump_state`); another one fails the signature.

    Returns
    -------
    object
        The restored object.

    Raises
    ------
    ArtifactError
        Not a snapshot, signed with another key, signature mismatch (all checked before
        unpickling), an old unsigned snapshot outside a migration, an unreadable payload or
        an object of the wrong type.
    """
    k = _signing.key if key is None else key
    head = len(SNAPSHOT_MAGIC)
    magic = data[:head]
    if magic == LEGACY_MAGIC:
        payload = _legacy_payload(data, key)
    elif magic == SNAPSHOT_MAGIC and len(data) >= head + _ID_LEN + _DIGEST_LEN:
        kid = data[head : head + _ID_LEN]
        digest = data[head + _ID_LEN : head + _ID_LEN + _DIGEST_LEN]
        payload = data[head + _ID_LEN + _DIGEST_LEN :]
        mine = key_id(k)
        if kid.hex() != mine:
            raise _refuse(
                "other_key",
                f"state snapshot signed with another state key (key id {kid.hex()}, this "
                f"process has {mine}): every worker of a deployment must share FOREXD_STATE_KEY",
                len(data),
            )
        if not hmac.compare_digest(digest, _sign(k, kid, payload, context)):
            raise _refuse(
                "signature",
                "state snapshot signature mismatch (tampered, corrupt, or another "
                f"series' state: signed for another context than {context.decode(errors='replace')!r}): "
                "refused, not loaded",
                len(data),
            )
    else:
        raise _refuse("format", "not a forex_diffusion state snapshot (bad magic or too short)", len(data))
    try:
        obj = pickle.loads(payload)  # noqa: S301 - signed service-owned artifact (§5.5)
    except Exception as exc:  # a verified but unreadable payload (version skew)
        raise ArtifactError(f"snapshot payload cannot be restored: {exc}") from exc
    if expected is not None and not isinstance(obj, expected):
        raise ArtifactError(f"snapshot holds a {type(obj).__name__}, expected {expected.__name__}")
    return obj


class SignedState:
    """``snapshot``/``restore`` for a class whose whole state is stored as one signed snapshot
    (:func:`dump_state`; a restore verifies the bytes, then checks the restored type)."""

    __slots__ = ()

    def snapshot(self, *, key: bytes | None = None, context: bytes = b"") -> bytes:
        """Return the whole state as verified snapshot bytes."""
        return dump_state(self, key=key, context=context)

    @classmethod
    def restore(cls, data: bytes, *, key: bytes | None = None, context: bytes = b"") -> Self:
        """Rebuild an instance from :meth:`snapshot` bytes (raises ``ArtifactError``)."""
        obj: Self = load_state(data, key=key, expected=cls, context=context)
        return obj


def _legacy_payload(data: bytes, key: bytes | None) -> bytes:
    """The payload of an old ``FXDSNAP1`` snapshot, verified, if migrating (else refused)."""
    if not _signing.accept_unsigned:
        raise _refuse(
            "unsigned",
            "old unsigned state snapshot refused (it could be forged); set "
            "FOREXD_STATE_UNSIGNED=accept once to migrate it",
            len(data),
        )
    head = len(LEGACY_MAGIC)
    digest, payload = data[head : head + _DIGEST_LEN], data[head + _DIGEST_LEN :]
    want = hashlib.sha256(payload).digest() if key is None else hmac.new(key, payload, hashlib.sha256).digest()
    if len(digest) != _DIGEST_LEN or not hmac.compare_digest(digest, want):
        raise _refuse("signature", "old state snapshot digest mismatch (tampered or corrupt): refused", len(data))
    logger.warning("state.migrated_unsigned size=%d: loaded an old unsigned snapshot (migration)", len(data))
    return payload
