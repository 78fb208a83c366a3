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

from forex_diffusion.drift.adwin import AdwinDetector
from forex_diffusion.drift.base import Detection, DriftEvent, ScalarDetector
from forex_diffusion.drift.calibration import CalibrationMonitor
from forex_diffusion.drift.ks import KSFeatureDetector
from forex_diffusion.drift.monitor import DriftConfig, DriftMonitor
from forex_diffusion.drift.page_hinkley import PageHinkleyDetector

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
