"""Drift events, detections and what every scalar detector shares.

Part of :mod:`forex_diffusion.drift`; see its docstring for the detectors and their names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from forex_diffusion.domain import field_dict
from forex_diffusion.errors import ConfigError

__all__ = ["DriftEvent", "Detection", "ScalarDetector"]


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


class _Detector:
    """What every detector here shares: the statistic and the threshold it kept at the last
    detection (NaN before any); each class's docstring says what they measure."""

    _statistic: float
    _threshold: float

    @property
    def statistic(self) -> float:
        """The statistic at the last detection, as the class describes it (NaN before any)."""
        return self._statistic

    @property
    def threshold(self) -> float:
        """The threshold the statistic crossed, as the class describes it (NaN before any)."""
        return self._threshold


class _RiverDetector(_Detector):
    """What :class:`AdwinDetector` and :class:`PageHinkleyDetector` share besides: river's
    detector (:attr:`_river`; each keeps it under its own attribute, the name its snapshots
    pickle), which decides :attr:`drift_detected`."""

    @property
    def _river(self) -> Any:
        raise NotImplementedError

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a change."""
        return bool(self._river.drift_detected)
