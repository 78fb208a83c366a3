"""The Kafka shell: the Faust app and its agents, the metrics endpoint, the ``forexd`` CLI.

The package root re-exports the names a deployment or an embedding program builds on. They
load on first use (PEP 562): ``import streams`` imports neither faust nor aiokafka, and
importing a module of the package starts nothing (no app, no loop, no connection).

>>> import streams
>>> streams.Settings.from_env({"FOREXD_SYMBOLS": "EURUSD,USDJPY", "FOREXD_HORIZON": "12"}).symbols
('EURUSD', 'USDJPY')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forex_diffusion._lazy import lazy_exports

if TYPE_CHECKING:
    from .app import Runtime, create_app
    from .launch import run_worker
    from .metrics import Metrics
    from .settings import Settings

__all__ = ["Metrics", "Runtime", "Settings", "create_app", "run_worker"]

#: Each public name → the module (under this package) that defines it.
_EXPORTS = {
    "Runtime": "app",
    "create_app": "app",
    "Metrics": "metrics",
    "run_worker": "launch",
    "Settings": "settings",
}

# ``__all__`` is spelled out above, beside the imports the type checker reads; the names
# are the same as ``_EXPORTS``'s keys
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)[1:]
