"""The drift monitor of one (symbol, timeframe): every detector, per horizon, turned into events.

Part of :mod:`forex_diffusion.drift`; see its docstring for the detectors and their names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from forex_diffusion.drift.adwin import AdwinDetector
from forex_diffusion.drift.base import DriftEvent
from forex_diffusion.drift.calibration import CalibrationMonitor
from forex_diffusion.drift.ks import KSFeatureDetector
from forex_diffusion.drift.page_hinkley import PageHinkleyDetector
from forex_diffusion.errors import ConfigError
from forex_diffusion.online.learners import LearnerStep
from forex_diffusion.online.snapshot import SignedState
from forex_diffusion.quality.evaluation import StepScore

__all__ = ["DriftConfig", "DriftMonitor"]


logger = logging.getLogger("forex_diffusion.drift")


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


class DriftMonitor(SignedState):
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
        """Feed one realised step scored by :func:`~forex_diffusion.quality.evaluation.score_step`: CRPS, PIT, hits."""
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
