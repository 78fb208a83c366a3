"""Drift detection on forecast errors, CRPS, calibration and features.

Detectors only detect: each takes one value per :meth:`update` and exposes
``drift_detected`` (true on the update that detected), the ``statistic`` that crossed and
the ``threshold`` it crossed. Deciding what to do about it is
:func:`forex_diffusion.trigger.decide`'s job.

=========================  =================================================================
detector name              what it watches
=========================  =================================================================
``adwin:<signal>``         river ADWIN on a per-forecast loss (``error``: the online
                           learner's absolute scaled error; ``crps``: the diffusion CRPS)
``page_hinkley:<signal>``  river Page-Hinkley (upward mode) on the same loss
``coverage50/90``          rolling share of outcomes inside the 50 % / 90 % interval
``pit_uniformity``         chi-square of the rolling PIT histogram against uniform
``ks:features``            two-sample KS between a reference feature window and the recent one
=========================  =================================================================

:class:`DriftMonitor` holds them for one (symbol, timeframe), **per horizon** (a drift at
+1 is not averaged away by a calm +12) and turns detections into :class:`DriftEvent`.

Forecasts of horizon ``h`` made on consecutive candles overlap, so their losses are
autocorrelated and every test here assumes independence. The monitor therefore feeds the
loss detectors only every ``h``-th value of horizon ``h`` (non-overlapping forecasts) and
divides the calibration sample size by ``h``.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from river import drift as river_drift
from river import stats as river_stats
from river import utils as river_utils
from scipy import stats as sp_stats

from .domain import field_dict
from .errors import ConfigError
from .evaluation import CENTRAL_INTERVALS, StepScore
from .online.learners import LearnerStep
from .online.snapshot import dump_state, load_state

__all__ = [
    "AdwinDetector",
    "CalibrationMonitor",
    "Detection",
    "DriftConfig",
    "DriftEvent",
    "DriftMonitor",
    "KSFeatureDetector",
    "PageHinkleyDetector",
    "ScalarDetector",
]

logger = logging.getLogger(__name__)

# A step is inside the central 50 % / 90 % interval iff its PIT lies between the interval's levels.
_PIT50 = CENTRAL_INTERVALS["50"]
_PIT90 = CENTRAL_INTERVALS["90"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftEvent:
    """One detection on one series (and horizon, when the signal has one).

    ``ts_ms`` is the event time of the value that triggered it (the close of the candle
    that realised the forecast, or the candle of the feature row).
    """

    detector: str
    statistic: float
    threshold: float
    symbol: str
    timeframe: str
    horizon: int | None
    ts_ms: int

    def to_dict(self) -> dict[str, Any]:
        """Return the plain-data form (the ``fx.drift`` value without its schema version)."""
        return field_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftEvent:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ``ConfigError``."""
        keys = {"detector", "statistic", "threshold", "symbol", "timeframe", "horizon", "ts_ms"}
        if set(data) != keys:
            raise ConfigError(f"drift event keys {sorted(data)} != {sorted(keys)}")
        h = data["horizon"]
        return cls(
            detector=str(data["detector"]),
            statistic=float(data["statistic"]),
            threshold=float(data["threshold"]),
            symbol=str(data["symbol"]),
            timeframe=str(data["timeframe"]),
            horizon=None if h is None else int(h),
            ts_ms=int(data["ts_ms"]),
        )


@dataclass(frozen=True, slots=True)
class Detection:
    """A detector's finding on one update: its name, the statistic and the threshold."""

    detector: str
    statistic: float
    threshold: float


class ScalarDetector(Protocol):
    """What :class:`DriftMonitor` needs from a detector of a scalar stream."""

    name: str

    def update(self, x: float) -> None:
        """Feed one value."""

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a change."""

    @property
    def statistic(self) -> float:
        """The test statistic at the last detection."""

    @property
    def threshold(self) -> float:
        """The threshold the statistic crossed."""


class _RiverDetector:
    """What :class:`AdwinDetector` and :class:`PageHinkleyDetector` share: river's detector
    (:attr:`_river`; each keeps it under its own attribute, the name its snapshots pickle)
    and the statistic it kept at the last detection."""

    _statistic: float

    @property
    def _river(self) -> Any:
        raise NotImplementedError

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a change."""
        return bool(self._river.drift_detected)

    @property
    def statistic(self) -> float:
        """The statistic at the last detection, as the class describes it (NaN before any)."""
        return self._statistic


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
    def threshold(self) -> float:
        """ADWIN's cut bound at the last detection (NaN before any)."""
        return self._threshold

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
        """River's lambda."""
        return self.threshold_

    def update(self, x: float) -> None:
        """Feed one value."""
        ph = self._ph
        ph.update(x)
        if ph.drift_detected:
            up = ph._sum_increase - ph._min_increase
            down = ph._max_decrease - ph._sum_decrease
            self._statistic = float(up if self.mode == "up" else down if self.mode == "down" else max(up, down))


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


class KSFeatureDetector:
    """Two-sample Kolmogorov-Smirnov test between a reference feature window and the recent one.

    The reference is the first ``reference_size`` rows after start (or after a detection,
    or what :meth:`set_reference` gives: e.g. the training window). Every ``check_every``
    rows, once both windows are full, each feature is tested with
    :func:`scipy.stats.ks_2samp`; a detection needs a p-value below ``alpha / n_features``
    (Bonferroni). ``statistic`` is the largest KS distance among the rejected features and
    ``threshold`` the asymptotic critical distance at that level. After a detection the
    reference is rebuilt from the rows that follow.

    Parameters
    ----------
    reference_size, recent_size
        Window lengths in rows.
    alpha
        Family-wise false-alarm level per check.
    check_every
        Rows between tests.
    features
        Feature names to test (default: every name seen, so a feature that only appears
        after warm-up is added when it first shows up).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> ks = KSFeatureDetector(reference_size=200, recent_size=100, check_every=10)
    >>> for i in range(600):
    ...     ks.update({"x": rng.gauss(0.0 if i < 400 else 1.5, 1.0)})
    ...     if ks.drift_detected:
    ...         break
    >>> 400 <= i < 500, ks.feature
    (True, 'x')
    """

    def __init__(
        self,
        *,
        reference_size: int = 500,
        recent_size: int = 200,
        alpha: float = 1e-4,
        check_every: int = 50,
        features: Sequence[str] | None = None,
    ) -> None:
        if reference_size < 20 or recent_size < 20 or check_every < 1 or not 0 < alpha < 1:
            raise ConfigError("KS needs windows >= 20 rows, check_every >= 1, alpha in (0, 1)")
        self.name = "ks:features"
        self.reference_size = reference_size
        self.recent_size = recent_size
        self.alpha = alpha
        self.check_every = check_every
        self.features: tuple[str, ...] | None = tuple(features) if features is not None else None
        self._auto = features is None
        self._reference: dict[str, list[float]] = {}
        self._recent: dict[str, deque[float]] = {}
        self._n_ref = 0
        self._since_check = 0
        self._detected = False
        self._statistic = math.nan
        self._threshold = math.nan
        self._feature: str | None = None

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a change."""
        return self._detected

    @property
    def statistic(self) -> float:
        """Largest rejected KS distance at the last detection."""
        return self._statistic

    @property
    def threshold(self) -> float:
        """Critical KS distance at the last detection."""
        return self._threshold

    @property
    def feature(self) -> str | None:
        """The feature with the largest rejected distance at the last detection."""
        return self._feature

    @property
    def reference_ready(self) -> bool:
        """Whether the reference window is full."""
        return self._n_ref >= self.reference_size

    def set_reference(self, rows: Iterable[Mapping[str, float]]) -> None:
        """Replace the reference window with the last ``reference_size`` of ``rows``."""
        rows = list(rows)[-self.reference_size :]
        names = self.features or (tuple(rows[0]) if rows else ())
        self._reference = {k: [float(r[k]) for r in rows if k in r and math.isfinite(r[k])] for k in names}
        self._n_ref = len(rows)

    def update(self, features: Mapping[str, float]) -> None:
        """Feed one feature row (missing or non-finite values are skipped per feature)."""
        self._detected = False
        if self._auto and not features.keys() <= set(self.features or ()):
            # names learned from the data; a feature that appears after warm-up joins late
            self.features = tuple(sorted(set(self.features or ()) | set(features)))
        if not self.features:
            return
        if not self.reference_ready:
            for k in self.features:
                v = features.get(k)
                if v is not None and math.isfinite(v):
                    self._reference.setdefault(k, []).append(float(v))
            self._n_ref += 1
            return
        for k in self.features:
            v = features.get(k)
            if v is not None and math.isfinite(v):
                self._recent.setdefault(k, deque(maxlen=self.recent_size)).append(float(v))
        self._since_check += 1
        if self._since_check < self.check_every:
            return
        self._since_check = 0
        self._test()

    def _test(self) -> None:
        level = self.alpha / max(len(self.features or ()), 1)
        worst: tuple[float, float, str] | None = None
        for k in self.features or ():
            ref = self._reference.get(k, [])
            rec = self._recent.get(k)
            if rec is None or len(rec) < self.recent_size or len(ref) < 20:
                continue
            res = sp_stats.ks_2samp(ref, list(rec), method="asymp")
            if res.pvalue < level:
                n, m = len(ref), len(rec)
                crit = math.sqrt(-math.log(level / 2.0) / 2.0) * math.sqrt((n + m) / (n * m))
                if worst is None or res.statistic > worst[0]:
                    worst = (float(res.statistic), crit, k)
        if worst is not None:
            self._detected = True
            self._statistic, self._threshold, self._feature = worst
            self._reference = {}
            self._recent = {}
            self._n_ref = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftConfig:
    """Parameters of a :class:`DriftMonitor` (see the detectors for their meaning).

    ``non_overlapping`` feeds the loss detectors of horizon ``h`` only every ``h``-th value;
    ``ks_stride`` feeds the KS detector every ``ks_stride``-th feature row (features built
    from overlapping windows are autocorrelated, which the KS test does not allow for), so
    its windows span ``ks_*_size * ks_stride`` candles.
    """

    adwin_delta: float = 0.002
    adwin_clock: int = 8
    ph_threshold: float = 25.0
    ph_delta: float = 0.05
    ph_min_instances: int = 30
    ph_alpha: float = 1 - 0.0001
    non_overlapping: bool = True
    calibration_window: int = 250
    coverage_z: float = 4.5
    pit_bins: int = 10
    pit_alpha: float = 1e-4
    ks_reference_size: int = 250
    ks_recent_size: int = 100
    ks_alpha: float = 1e-3
    ks_check_every: int = 25
    ks_stride: int = 12
    ks_features: tuple[str, ...] | None = None
    enable_features: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.adwin_delta < 1 or self.adwin_clock < 1:
            raise ConfigError("adwin_delta must be in (0, 1) and adwin_clock >= 1")
        if self.ph_threshold <= 0 or self.ph_delta < 0 or self.ph_min_instances < 1:
            raise ConfigError("ph_threshold > 0, ph_delta >= 0 and ph_min_instances >= 1 required")
        if not 0 < self.ph_alpha <= 1:
            raise ConfigError("ph_alpha must be in (0, 1]")
        if self.ks_stride < 1:
            raise ConfigError("ks_stride must be >= 1")
        # The detector constructors validate the rest; build one of each now to fail early.
        CalibrationMonitor(
            window=self.calibration_window, z=self.coverage_z, bins=self.pit_bins, pit_alpha=self.pit_alpha
        )
        KSFeatureDetector(
            reference_size=self.ks_reference_size,
            recent_size=self.ks_recent_size,
            alpha=self.ks_alpha,
            check_every=self.ks_check_every,
            features=self.ks_features,
        )


class DriftMonitor:
    """Every drift detector of one (symbol, timeframe), per horizon; returns events.

    Detectors are created lazily per (signal, horizon) on their first input, so any set of
    horizons works. Each ``update_*`` returns the :class:`DriftEvent` list of that input.

    Parameters
    ----------
    symbol, timeframe
        The series, copied into every event.
    config
        Detector parameters.
    """

    def __init__(self, symbol: str, timeframe: str, config: DriftConfig | None = None) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.config = config or DriftConfig()
        self._loss: dict[tuple[str, int], tuple[AdwinDetector, PageHinkleyDetector]] = {}
        self._loss_seen: dict[tuple[str, int], int] = {}
        self._calibration: dict[int, CalibrationMonitor] = {}
        self._ks = KSFeatureDetector(
            reference_size=self.config.ks_reference_size,
            recent_size=self.config.ks_recent_size,
            alpha=self.config.ks_alpha,
            check_every=self.config.ks_check_every,
            features=self.config.ks_features,
        )
        self._feature_rows = 0
        self.n_events = 0

    def _event(self, det: str, stat: float, thr: float, horizon: int | None, ts_ms: int) -> DriftEvent:
        self.n_events += 1
        ev = DriftEvent(
            detector=det,
            statistic=stat,
            threshold=thr,
            symbol=self.symbol,
            timeframe=self.timeframe,
            horizon=horizon,
            ts_ms=ts_ms,
        )
        logger.info(
            "drift detector=%s symbol=%s timeframe=%s horizon=%s statistic=%.6g threshold=%.6g ts=%d",
            det,
            self.symbol,
            self.timeframe,
            horizon,
            stat,
            thr,
            ts_ms,
        )
        return ev

    def update_loss(self, signal: str, horizon: int, value: float, ts_ms: int) -> list[DriftEvent]:
        """Feed one per-forecast loss (``signal`` names it: ``error``, ``crps``, ...).

        Parameters
        ----------
        signal
            The loss stream's name, part of the detector names.
        horizon
            Forecast horizon in candles.
        value
            The loss of one realised forecast (non-finite values are ignored).
        ts_ms
            Event time of the realisation.

        Returns
        -------
        list[DriftEvent]
            ``adwin:<signal>`` and/or ``page_hinkley:<signal>`` detections.
        """
        if horizon < 1:
            raise ConfigError(f"horizon must be >= 1, got {horizon}")
        if not math.isfinite(value):
            return []
        key = (signal, horizon)
        seen = self._loss_seen.get(key, 0)
        self._loss_seen[key] = seen + 1
        if self.config.non_overlapping and seen % horizon:
            return []
        dets = self._loss.get(key)
        if dets is None:
            c = self.config
            dets = (
                AdwinDetector(f"adwin:{signal}", delta=c.adwin_delta, clock=c.adwin_clock),
                PageHinkleyDetector(
                    f"page_hinkley:{signal}",
                    min_instances=c.ph_min_instances,
                    delta=c.ph_delta,
                    threshold=c.ph_threshold,
                    alpha=c.ph_alpha,
                    mode="up",
                ),
            )
            self._loss[key] = dets
        out = []
        for d in dets:
            d.update(value)
            if d.drift_detected:
                out.append(self._event(d.name, d.statistic, d.threshold, horizon, ts_ms))
        return out

    def update_learner(self, step: LearnerStep) -> list[DriftEvent]:
        """Feed the absolute scaled errors of the labels a learner step trained on."""
        out: list[DriftEvent] = []
        for r in step.realised:
            if r.trained:
                out.extend(self.update_loss("error", r.horizon, r.abs_error, r.realised_ms))
        return out

    def update_crps(self, horizon: int, crps: float, ts_ms: int) -> list[DriftEvent]:
        """Feed the CRPS of one realised diffusion forecast."""
        return self.update_loss("crps", horizon, crps, ts_ms)

    def update_score(self, horizon: int, ts_ms: int, score: StepScore) -> list[DriftEvent]:
        """Feed one realised step scored by :func:`~forex_diffusion.evaluation.score_step`: CRPS, PIT, hits."""
        events = self.update_crps(horizon, score.crps, ts_ms)
        return events + self.update_calibration(horizon, ts_ms, pit=score.pit, hit50=score.hit50, hit90=score.hit90)

    def update_calibration(
        self,
        horizon: int,
        ts_ms: int,
        *,
        pit: float | None = None,
        hit50: bool | None = None,
        hit90: bool | None = None,
    ) -> list[DriftEvent]:
        """Feed the PIT value and/or interval hits of one realised probabilistic forecast."""
        mon = self._calibration.get(horizon)
        if mon is None:
            c = self.config
            mon = CalibrationMonitor(
                window=c.calibration_window,
                z=c.coverage_z,
                bins=c.pit_bins,
                pit_alpha=c.pit_alpha,
                overlap=horizon,
            )
            self._calibration[horizon] = mon
        mon.update(pit=pit, hit50=hit50, hit90=hit90)
        return [self._event(d.detector, d.statistic, d.threshold, horizon, ts_ms) for d in mon.detections]

    def update_features(self, features: Mapping[str, float], ts_ms: int) -> list[DriftEvent]:
        """Feed one feature row to the KS detector (a series-level event: horizon None)."""
        if not self.config.enable_features:
            return []
        self._feature_rows += 1
        if (self._feature_rows - 1) % self.config.ks_stride:
            return []
        self._ks.update(features)
        if self._ks.drift_detected:
            return [self._event(self._ks.name, self._ks.statistic, self._ks.threshold, None, ts_ms)]
        return []

    def calibration(self, horizon: int) -> CalibrationMonitor | None:
        """Return the calibration monitor of ``horizon`` (None before its first input)."""
        return self._calibration.get(horizon)

    @property
    def features_detector(self) -> KSFeatureDetector:
        """The KS feature-window detector (e.g. to :meth:`~KSFeatureDetector.set_reference`)."""
        return self._ks

    def snapshot(self, *, key: bytes | None = None, context: bytes = b"") -> bytes:
        """Return the whole monitor state as verified snapshot bytes."""
        return dump_state(self, key=key, context=context)

    @classmethod
    def restore(cls, data: bytes, *, key: bytes | None = None, context: bytes = b"") -> DriftMonitor:
        """Rebuild a monitor from :meth:`snapshot` bytes (raises ``ArtifactError``)."""
        obj: DriftMonitor = load_state(data, key=key, expected=cls, context=context)
        return obj
