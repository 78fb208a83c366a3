"""Failpoints for fault tests: ``FOREXD_FAILPOINT=name[:n]`` exits the process at that point.

``name:n`` fires on the n-th time the point is reached (default 1). The exit is immediate
(``os._exit(137)``), like a SIGKILL: no cleanup, no flush.
"""

from __future__ import annotations

import os

__all__ = ["failpoint"]

_spec = os.environ.get("FOREXD_FAILPOINT", "")
_name, _, _count = _spec.partition(":")
_remaining = int(_count) if _count.isdigit() else 1


def failpoint(name: str) -> None:
    """Exit with status 137 if ``name`` is the armed failpoint (after its count)."""
    global _remaining
    if _name and name == _name:
        _remaining -= 1
        if _remaining <= 0:
            os._exit(137)
