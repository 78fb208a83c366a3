"""Reports: the walk-forward backtest and the quality report page (``forexd backtest``, ``forexd report``).

Modules: :mod:`.backtest` (a model walked forward through the per-candle pipeline, its CSV and
fan chart), :mod:`.html` (stored candles, forecasts and model changes → one HTML page).
"""

from __future__ import annotations

from forex_diffusion._lazy import lazy_exports

#: Each public name → the module (under this package) that defines it.
_EXPORTS = {
    "BacktestConfig": "backtest",
    "ReportConfig": "html",
    "load_report": "html",
    "render_report": "html",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
