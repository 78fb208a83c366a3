"""Rolling coverage of the central intervals and PIT uniformity.

Part of :mod:`forex_diffusion.drift`; see its docstring for the detectors and their names.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from river import stats as river_stats
from river import utils as river_utils
from scipy import stats as sp_stats

from forex_diffusion.drift.base import Detection
from forex_diffusion.errors import ConfigError
from forex_diffusion.quality.evaluation import CENTRAL_INTERVALS

__all__ = ["CalibrationMonitor"]


# A step is inside the central 50 % / 90 % interval iff its PIT lies between the interval's levels.
_PIT50 = CENTRAL_INTERVALS["50"]


_PIT90 = CENTRAL_INTERVALS["90"]


class CalibrationMonitor:
    """Watch rolling interval coverage and PIT uniformity of probabilistic forecasts.

    Inputs are per forecast, once its outcome is known: the PIT value ``F(y)`` and/or the
    flags "outcome inside the central 50 % / 90 % interval" (derived from the PIT when not
    given: inside 50 % iff ``0.25 <= pit <= 0.75``).

    Detections (only once the window holds ``window`` values):

    ``coverage50`` / ``coverage90``
        ``|coverage - nominal| > z * sqrt(p (1 - p) / n_eff)``, ``n_eff = window / overlap``.
    ``pit_uniformity``
        chi-square of the PIT histogram (``bins`` equal bins) divided by ``overlap`` above
        the ``1 - pit_alpha`` quantile of chi-square with ``bins - 1`` degrees of freedom.

    After a condition fires it stays silent for ``window`` updates (a refractory period:
    no chatter around the threshold), then fires again if it still holds, so a persistent
    miscalibration is seen as persistent.

    Parameters
    ----------
    window
        Rolling window of forecasts.
    z
        Coverage tolerance in binomial standard errors.
    bins, pit_alpha
        PIT histogram bins and the test's false-alarm level per check.
    overlap
        Variance inflation for overlapping forecasts (use the horizon).

    Examples
    --------
    >>> mon = CalibrationMonitor(window=100)
    >>> for i in range(300):  # over-confident: outcomes land in the tails
    ...     mon.update(pit=0.02 if i % 2 else 0.98)
    ...     if mon.drift_detected:
    ...         break
    >>> i, sorted(d.detector for d in mon.detections)
    (99, ['coverage50', 'coverage90', 'pit_uniformity'])
    """

    NAMES: tuple[str, str, str] = ("coverage50", "coverage90", "pit_uniformity")

    def __init__(
        self,
        *,
        window: int = 250,
        z: float = 4.0,
        bins: int = 10,
        pit_alpha: float = 1e-3,
        overlap: int = 1,
    ) -> None:
        if window < 10:
            raise ConfigError(f"calibration window must be >= 10, got {window}")
        if z <= 0 or bins < 2 or not 0 < pit_alpha < 1 or overlap < 1:
            raise ConfigError("calibration needs z > 0, bins >= 2, pit_alpha in (0, 1), overlap >= 1")
        self.window = window
        self.z = z
        self.bins = bins
        self.pit_alpha = pit_alpha
        self.overlap = overlap
        # river's Rolling proxies the wrapped statistic dynamically (typed as Any here)
        self._cov50: Any = river_utils.Rolling(river_stats.Mean, window_size=window)
        self._cov90: Any = river_utils.Rolling(river_stats.Mean, window_size=window)
        self._pit_bins: deque[int] = deque(maxlen=window)
        self._counts = [0] * bins
        self._n = 0
        self._chi2_crit = float(sp_stats.chi2.ppf(1.0 - pit_alpha, bins - 1))
        self._since = dict.fromkeys(self.NAMES, window)
        self._detections: tuple[Detection, ...] = ()

    @property
    def coverage50(self) -> float:
        """Rolling share inside the 50 % interval (NaN before any)."""
        return float(self._cov50.get()) if self._cov50.n else math.nan

    @property
    def coverage90(self) -> float:
        """Rolling share inside the 90 % interval (NaN before any)."""
        return float(self._cov90.get()) if self._cov90.n else math.nan

    @property
    def pit_chi2(self) -> float:
        """Overlap-corrected chi-square of the rolling PIT histogram (NaN before any PIT)."""
        n = len(self._pit_bins)
        if n == 0:
            return math.nan
        e = n / self.bins
        return sum((c - e) ** 2 / e for c in self._counts) / self.overlap

    @property
    def detections(self) -> tuple[Detection, ...]:
        """What the last update detected."""
        return self._detections

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected anything."""
        return bool(self._detections)

    def update(self, *, pit: float | None = None, hit50: bool | None = None, hit90: bool | None = None) -> None:
        """Feed one realised forecast.

        Parameters
        ----------
        pit
            ``F(y)`` in [0, 1], the forecast CDF at the outcome.
        hit50, hit90
            Whether the outcome fell inside the central 50 % / 90 % interval; derived from
            ``pit`` when omitted.
        """
        if pit is not None:
            if not 0.0 <= pit <= 1.0:
                raise ConfigError(f"PIT must be in [0, 1], got {pit}")
            if hit50 is None:
                hit50 = _PIT50[0] <= pit <= _PIT50[1]
            if hit90 is None:
                hit90 = _PIT90[0] <= pit <= _PIT90[1]
            b = min(int(pit * self.bins), self.bins - 1)
            if len(self._pit_bins) == self.window:
                self._counts[self._pit_bins[0]] -= 1
            self._pit_bins.append(b)
            self._counts[b] += 1
        if hit50 is not None:
            self._cov50.update(1.0 if hit50 else 0.0)
        if hit90 is not None:
            self._cov90.update(1.0 if hit90 else 0.0)
        self._n += 1
        found: list[Detection] = []
        n_eff = self.window / self.overlap
        for name, roll, p in (("coverage50", self._cov50, 0.5), ("coverage90", self._cov90, 0.9)):
            if roll.n >= self.window:
                tol = self.z * math.sqrt(p * (1.0 - p) / n_eff)
                self._check(name, abs(float(roll.get()) - p), tol, found)
        if len(self._pit_bins) >= self.window:
            self._check("pit_uniformity", self.pit_chi2, self._chi2_crit, found)
        self._detections = tuple(found)

    def _check(self, name: str, stat: float, thr: float, found: list[Detection]) -> None:
        self._since[name] += 1
        if stat > thr and self._since[name] > self.window:
            self._since[name] = 0
            found.append(Detection(name, stat, thr))
