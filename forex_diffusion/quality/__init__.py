"""Quality: how good the forecasts are, live and offline, and what to do about it.

Modules: :mod:`.evaluation` (CRPS, coverage, PIT and the random-walk baseline: their one
home), :mod:`.monitoring` (rolling live quality), :mod:`.shadow` (a challenger scored beside
the champion), :mod:`.trigger` (drift events → a retrain request). The detectors, one per
module, are :mod:`forex_diffusion.drift`.
"""

from __future__ import annotations

from forex_diffusion._lazy import lazy_exports

#: Each public name → the module (under this package) that defines it.
_EXPORTS = {
    "crps_quantiles": "evaluation",
    "score_step": "evaluation",
    "QualityMonitor": "monitoring",
    "ShadowTracker": "shadow",
    "RetrainRequest": "trigger",
    "TriggerPolicy": "trigger",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
