"""ADWIN on a per-forecast loss (river's ADWIN with the statistic it crossed).

Part of :mod:`forex_diffusion.drift`; see its docstring for the detectors and their names.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from river import drift as river_drift

from forex_diffusion.drift.base import _RiverDetector
from forex_diffusion.errors import ConfigError

__all__ = ["AdwinDetector"]


class AdwinDetector(_RiverDetector):
    """River's ADWIN on a scalar stream, reporting the mean shift it cut on.

    River's ADWIN (Rust) does not expose the split it tested, so on a detection the
    detector recomputes it from a shadow copy of the last ``shadow_size`` values: over every
    split ``W0 | W1`` of that window (each side at least ``min_window_length``), the one
    whose mean difference exceeds ADWIN's bound the most. ``statistic`` is that
    ``|mean(W0) - mean(W1)|`` and ``threshold`` the bound
    ``sqrt(2 m' var d) + 2/3 d m'`` with ``m' = 1/(n0 - L + 1) + 1/(n1 - L + 1)``,
    ``d = ln(2 ln(n) / δ)`` and ``var`` the per-value variance of the window (river's
    formula). Detection itself is river's.

    Parameters
    ----------
    name
        Detector name carried by events (e.g. ``"adwin:error"``).
    delta, clock, min_window_length, grace_period
        River's ADWIN parameters.
    shadow_size
        Values kept to report the statistic (bounded memory).

    Examples
    --------
    >>> det = AdwinDetector(clock=1)
    >>> stream = [0.0, 1.0] * 100 + [3.0, 4.0] * 20
    >>> hits = []
    >>> for i, x in enumerate(stream):
    ...     det.update(x)
    ...     if det.drift_detected:
    ...         hits.append(i)
    >>> hits[0] > 200, det.statistic > det.threshold
    (True, True)
    """

    def __init__(
        self,
        name: str = "adwin",
        *,
        delta: float = 0.002,
        clock: int = 8,
        min_window_length: int = 5,
        grace_period: int = 10,
        shadow_size: int = 1024,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ConfigError(f"ADWIN delta must be in (0, 1), got {delta}")
        if clock < 1 or min_window_length < 1 or grace_period < 1:
            raise ConfigError("ADWIN clock, min_window_length and grace_period must be >= 1")
        if shadow_size < 2 * min_window_length:
            raise ConfigError("ADWIN shadow_size must hold two minimal sub-windows")
        self.name = name
        self.delta = delta
        self.clock = clock
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.shadow_size = shadow_size
        self._adwin: Any = river_drift.ADWIN(  # type: ignore[no-untyped-call]  # river's ADWIN.__init__ is unannotated
            delta=delta, clock=clock, min_window_length=min_window_length, grace_period=grace_period
        )
        self._shadow: deque[float] = deque(maxlen=shadow_size)
        self._statistic = math.nan
        self._threshold = math.nan

    @property
    def _river(self) -> Any:
        return self._adwin

    @property
    def estimation(self) -> float:
        """Mean of ADWIN's current window."""
        return float(self._adwin.estimation)

    def update(self, x: float) -> None:
        """Feed one value."""
        adw = self._adwin
        if adw.drift_detected:  # river restarts its window on the update after a detection
            self._shadow.clear()
        self._shadow.append(float(x))
        adw.update(x)
        if adw.drift_detected:
            self._statistic, self._threshold = self._best_split()

    def _best_split(self) -> tuple[float, float]:
        vals = np.fromiter(self._shadow, dtype=float)
        n = vals.size
        lo = self.min_window_length
        if n < 2 * lo:
            return math.nan, math.nan
        var = float(vals.var())
        csum = np.cumsum(vals)
        n0 = np.arange(lo, n - lo + 1, dtype=float)
        n1 = n - n0
        s0 = csum[lo - 1 : n - lo]
        diff = np.abs(s0 / n0 - (csum[-1] - s0) / n1)
        m_recip = 1.0 / (n0 - lo + 1.0) + 1.0 / (n1 - lo + 1.0)
        d = math.log(2.0 * max(math.log(n), 1e-12) / self.delta)
        eps = np.sqrt(2.0 * m_recip * var * d) + 2.0 / 3.0 * d * m_recip
        i = int(np.argmax(diff - eps))
        return float(diff[i]), float(eps[i])
