"""The drift detectors live one per module (issue 15), and snapshots pickled before the split load.

A worker's checkpoint holds the drift monitor pickled (signed, ``online/snapshot.py``); the
pickle names each class by the module it was defined in. Before issue 15 that was
``forex_diffusion.drift`` for every detector; ``tests/data/drift_monitor_before_split.snap``
is such a snapshot, written by the code before the split (key and context below, 400 candles
of seeded losses, PIT values and features). Restored now, it must continue exactly as a
monitor built by today's code from the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import forex_diffusion.drift as drift
from forex_diffusion.drift import DriftEvent, DriftMonitor

FIXTURE = Path(__file__).parents[1] / "data" / "drift_monitor_before_split.snap"
KEY, CONTEXT = b"drift-split-fixture-key-32-bytes", b"EURUSD/1m/drift"
T0 = 1_700_000_000_000


def _feed_first_400(m: DriftMonitor) -> None:
    """The inputs the fixture was written after (same seed, same order)."""
    rng = np.random.default_rng(7)
    for i in range(400):
        ts = T0 + i * 60_000
        m.update_loss("error", 1, float(abs(rng.normal())), ts)
        m.update_crps(1, float(abs(rng.normal())), ts)
        m.update_calibration(1, ts, pit=float(rng.uniform()))
        m.update_features({"a": float(rng.normal()), "b": float(rng.normal())}, ts)


def _continue(m: DriftMonitor) -> list[DriftEvent]:
    """A jump in the loss: the detectors must fire."""
    events: list[DriftEvent] = []
    for i in range(400, 600):
        events += m.update_loss("error", 1, 5.0, T0 + i * 60_000)
    return events


def test_a_snapshot_pickled_before_the_split_continues_as_todays_monitor() -> None:
    old = DriftMonitor.restore(FIXTURE.read_bytes(), key=KEY, context=CONTEXT)
    fresh = DriftMonitor("EURUSD", "1m")
    _feed_first_400(fresh)
    got, want = _continue(old), _continue(fresh)
    assert {e.detector for e in want} >= {"adwin:error", "page_hinkley:error"}
    assert got == want


def test_each_detector_has_its_module_and_the_package_names_them_all() -> None:
    modules = {name: getattr(drift, name).__module__ for name in drift.__all__}
    detectors = ("AdwinDetector", "PageHinkleyDetector", "CalibrationMonitor", "KSFeatureDetector")
    assert len({modules[d] for d in detectors}) == len(detectors)  # one detector per module
    assert all(m.startswith("forex_diffusion.drift.") for m in modules.values())
