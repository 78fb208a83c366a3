"""Page-Hinkley (upward mode) on a per-forecast loss.

Part of :mod:`forex_diffusion.drift`; see its docstring for the detectors and their names.
"""

from __future__ import annotations

import math
from typing import Any

from river import drift as river_drift

from forex_diffusion.drift.base import _RiverDetector
from forex_diffusion.errors import ConfigError

__all__ = ["PageHinkleyDetector"]


class PageHinkleyDetector(_RiverDetector):
    """River's Page-Hinkley on a scalar stream (default: increases only).

    ``statistic`` is the cumulative deviation ``m_T - min m_t`` (upward) or
    ``max M_t - M_T`` (downward) that crossed river's ``threshold`` (lambda).

    Parameters
    ----------
    name
        Detector name carried by events.
    min_instances, delta, threshold, alpha, mode
        River's PageHinkley parameters; ``mode="up"`` watches loss increases.

    Examples
    --------
    >>> det = PageHinkleyDetector(threshold=10.0)
    >>> for i, x in enumerate([0.5] * 100 + [1.5] * 40):
    ...     det.update(x)
    ...     if det.drift_detected:
    ...         break
    >>> i, det.statistic > det.threshold
    (110, True)
    """

    def __init__(
        self,
        name: str = "page_hinkley",
        *,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "up",
    ) -> None:
        if min_instances < 1 or threshold <= 0 or delta < 0 or not 0 < alpha <= 1:
            raise ConfigError("Page-Hinkley needs min_instances >= 1, threshold > 0, delta >= 0, alpha in (0, 1]")
        if mode not in ("up", "down", "both"):
            raise ConfigError(f"Page-Hinkley mode must be up, down or both, not {mode!r}")
        self.name = name
        self.min_instances = min_instances
        self.delta = delta
        self.threshold_ = threshold
        self.alpha = alpha
        self.mode = mode
        self._ph: Any = river_drift.PageHinkley(
            min_instances=min_instances, delta=delta, threshold=threshold, alpha=alpha, mode=mode
        )
        self._statistic = math.nan

    @property
    def _river(self) -> Any:
        return self._ph

    @property
    def threshold(self) -> float:
        """River's lambda (a parameter: set before any detection)."""
        return self.threshold_

    def update(self, x: float) -> None:
        """Feed one value."""
        ph = self._ph
        ph.update(x)
        if ph.drift_detected:
            up = ph._sum_increase - ph._min_increase
            down = ph._max_decrease - ph._sum_decrease
            self._statistic = float(up if self.mode == "up" else down if self.mode == "down" else max(up, down))
