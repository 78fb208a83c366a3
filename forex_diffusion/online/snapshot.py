"""Hash-verified snapshots of the service's own learner and detector state.

River models are plain Python objects and are stored pickled. A pickle runs code when it is
loaded, so RELIABILITY.md §5.5 allows it only for artifacts this service wrote itself, and
only after the bytes are verified. A snapshot is::

    MAGIC (8 bytes) | digest (32 bytes) | pickle payload

The digest is ``HMAC-SHA256(key, payload)`` when a key is given (the deployment's secret:
a reader without it cannot forge a snapshot) and plain ``SHA256(payload)`` otherwise (which
catches corruption and truncation, not tampering). The digest is checked *before* anything
is unpickled; any mismatch raises :class:`~forex_diffusion.errors.ArtifactError`.

>>> blob = dump_state({"n": 3})
>>> load_state(blob)
{'n': 3}
>>> load_state(blob[:-1])
Traceback (most recent call last):
...
forex_diffusion.errors.ArtifactError: snapshot digest mismatch (corrupt, truncated or signed with another key)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from typing import Any, TypeVar

from ..errors import ArtifactError

__all__ = ["SNAPSHOT_MAGIC", "dump_state", "load_state"]

logger = logging.getLogger(__name__)

SNAPSHOT_MAGIC = b"FXDSNAP1"
_DIGEST_LEN = 32

T = TypeVar("T")


def _digest(payload: bytes, key: bytes | None) -> bytes:
    if key is None:
        return hashlib.sha256(payload).digest()
    return hmac.new(key, payload, hashlib.sha256).digest()


def dump_state(obj: object, *, key: bytes | None = None) -> bytes:
    """Serialise ``obj`` into a digest-prefixed snapshot.

    Parameters
    ----------
    obj
        Any picklable object owned by the service (learner set, drift monitor, ...).
    key
        Optional HMAC key; without it the digest is a plain SHA-256.

    Returns
    -------
    bytes
        ``MAGIC | digest | payload``.
    """
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return SNAPSHOT_MAGIC + _digest(payload, key) + payload


def load_state(data: bytes, *, key: bytes | None = None, expected: type[T] | None = None) -> T | Any:
    """Verify and deserialise a snapshot made by :func:`dump_state`.

    Parameters
    ----------
    data
        The snapshot bytes.
    key
        The HMAC key it was written with (None for a plain SHA-256 digest).
    expected
        If given, the restored object must be an instance of this type.

    Returns
    -------
    object
        The restored object.

    Raises
    ------
    ArtifactError
        Wrong magic, digest mismatch (checked before unpickling), unreadable payload or an
        object of the wrong type.
    """
    head = len(SNAPSHOT_MAGIC)
    if len(data) < head + _DIGEST_LEN or data[:head] != SNAPSHOT_MAGIC:
        raise ArtifactError("not a forex_diffusion state snapshot (bad magic or too short)")
    digest = data[head : head + _DIGEST_LEN]
    payload = data[head + _DIGEST_LEN :]
    if not hmac.compare_digest(digest, _digest(payload, key)):
        logger.warning("snapshot refused reason=digest_mismatch size=%d", len(data))
        raise ArtifactError(
            "snapshot digest mismatch (corrupt, truncated or signed with another key)"
        )
    try:
        obj = pickle.loads(payload)  # noqa: S301 - verified service-owned artifact (§5.5)
    except Exception as exc:  # a verified but unreadable payload (version skew)
        raise ArtifactError(f"snapshot payload cannot be restored: {exc}") from exc
    if expected is not None and not isinstance(obj, expected):
        raise ArtifactError(
            f"snapshot holds a {type(obj).__name__}, expected {expected.__name__}"
        )
    return obj
