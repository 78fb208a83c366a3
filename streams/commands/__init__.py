"""``forexd`` sub-commands: one module each, each with ``register(app)``.

:mod:`streams.cli` discovers the modules (``pkgutil.iter_modules``) and registers them; they
are the command line's parts, not a library API, so the package re-exports nothing.
"""

from __future__ import annotations

__all__: list[str] = []
