"""Drift detection on forecast errors, CRPS, calibration and features.

Detectors only detect: each takes one value per :meth:`update` and exposes
``drift_detected`` (true on the update that detected), the ``statistic`` that crossed and
the ``threshold`` it crossed. Deciding what to do about it is
:func:`forex_diffusion.quality.trigger.decide`'s job.

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

One detector per module: :mod:`.adwin`, :mod:`.page_hinkley`, :mod:`.calibration` (coverage and PIT),
:mod:`.ks` (features); :mod:`.base` holds the event and detection records, :mod:`.monitor` the
monitor that holds them all. Snapshots pickled before the split name ``forex_diffusion.drift.<Class>``:
the names below keep them loadable.
"""

from __future__ import annotations

from forex_diffusion._lazy import lazy_exports

#: Each public name → the module (under this package) that defines it. Loaded on first use:
#: the wire codec needs only :class:`DriftEvent`, and a tick worker never loads river's drift
#: detectors (with scipy.stats under them, seconds of each start).
_EXPORTS = {
    "AdwinDetector": "adwin",
    "CalibrationMonitor": "calibration",
    "Detection": "base",
    "DriftConfig": "monitor",
    "DriftEvent": "base",
    "DriftMonitor": "monitor",
    "KSFeatureDetector": "ks",
    "PageHinkleyDetector": "page_hinkley",
    "ScalarDetector": "base",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
