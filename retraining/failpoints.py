"""Failpoints for fault tests: ``FOREXD_FAILPOINT=name[:n]`` arms one named point.

``name:n`` fires on the n-th time the point is reached (default 1). :func:`failpoint` exits
the process there (``os._exit(137)``, like a SIGKILL: no cleanup, no flush); :func:`fires`
only reports it, for points whose fault is something else (``wedge_producer``).
"""

from __future__ import annotations

import os

__all__ = ["failpoint", "fires"]

_spec = os.environ.get("FOREXD_FAILPOINT", "")
_name, _, _count = _spec.partition(":")
_remaining = int(_count) if _count.isdigit() else 1


def fires(name: str) -> bool:
    """True exactly once: on the n-th time the armed point ``name`` is reached."""
    global _remaining
    if _name and name == _name and _remaining > 0:
        _remaining -= 1
        return _remaining == 0
    return False


def failpoint(name: str) -> None:
    """Exit with status 137 if ``name`` is the armed failpoint (after its count)."""
    if fires(name):
        os._exit(137)
