"""Rolling live forecast quality: CRPS, CRPS skill against the random walk, interval coverage.

A forecast of a series ``(symbol, timeframe)`` states quantiles of the price for each
horizon step. Once a step has been realised, :meth:`QualityMonitor.update` scores it and
adds the score to a rolling window kept per series and *horizon group* (a fixed, small
set of step ranges, so the number of tracked keys stays bounded and is safe as a metric
label). :meth:`QualityMonitor.snapshot_metrics` returns one :class:`QualityRow` per key.

Scores, for quantile levels :math:`\\tau_1 < \\dots < \\tau_K` and realised value
:math:`y`:

- CRPS, in its quantile-loss form: :math:`2 \\cdot \\frac{1}{K} \\sum_k \\rho_{\\tau_k}(y - q_k)`
  with the pinball loss :math:`\\rho_\\tau(u) = \\max(\\tau u, (\\tau - 1) u)`; in price units.
- CRPS skill against a reference (the EWMA random walk's quantiles):
  :math:`1 - \\overline{\\mathrm{CRPS}}_{model} / \\overline{\\mathrm{CRPS}}_{rw}` over the window;
  positive means better than the random walk.
- Coverage of the central 50 % interval (quantiles 25/75 %) and 90 % interval (5/95 %):
  the share of realised values inside the interval, ends included; an end between two
  levels at most 0.1 apart is interpolated (``q25`` from ``q20``/``q30``); ``None`` when
  the levels cannot measure the interval.

Every score comes from :mod:`forex_diffusion.quality.evaluation` (:func:`~forex_diffusion.quality.evaluation.score_step`);
the forecaster scores each realised step once and hands the :class:`~forex_diffusion.quality.evaluation.StepScore`
to :meth:`QualityMonitor.add`.

The module is pure: no metrics library, no I/O. The streaming shell turns rows into
Prometheus gauges.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from forex_diffusion.errors import ConfigError, RejectReason, StateError, ValidationError
from forex_diffusion.quality.evaluation import StepScore, crps_quantiles, mean_of, pinball_loss, score_step
from forex_diffusion.state import count, finite, malformed, number, numbers, unwrap, wrap

__all__ = [
    "DEFAULT_HORIZON_GROUPS",
    "HorizonGroup",
    "QualityMonitor",
    "QualityRow",
    "crps_from_quantiles",
    "pinball_loss",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HorizonGroup:
    """A contiguous range of horizon steps ``first..last`` (``last=None``: no upper end)."""

    first: int
    last: int | None = None

    def __post_init__(self) -> None:
        if self.first < 1:
            raise ConfigError(f"horizon group must start at step >= 1, got {self.first}")
        if self.last is not None and self.last < self.first:
            raise ConfigError(f"horizon group end {self.last} precedes its start {self.first}")

    @property
    def label(self) -> str:
        """Return the group's label: ``"1"``, ``"2-4"`` or ``"13+"``."""
        if self.last is None:
            return f"{self.first}+"
        if self.last == self.first:
            return str(self.first)
        return f"{self.first}-{self.last}"

    def contains(self, step: int) -> bool:
        """Return whether horizon ``step`` falls in this group."""
        return step >= self.first and (self.last is None or step <= self.last)


DEFAULT_HORIZON_GROUPS: tuple[HorizonGroup, ...] = (
    HorizonGroup(1, 1),
    HorizonGroup(2, 4),
    HorizonGroup(5, 12),
    HorizonGroup(13, None),
)


@dataclass(frozen=True, slots=True)
class QualityRow:
    """Rolling forecast quality of one series and horizon group.

    Attributes
    ----------
    symbol, timeframe
        The series.
    horizon
        The horizon group's label (see :attr:`HorizonGroup.label`).
    count
        Number of scored steps in the window.
    crps, crps_rw
        Mean CRPS of the model and of the random-walk reference over the window, in
        price units.
    crps_skill
        ``1 - crps / crps_rw``; ``None`` when the reference's CRPS is zero.
    coverage_50, coverage_90
        Share of realised values inside the central 50 % / 90 % interval; ``None``
        when no forecast in the window carried the needed quantile levels.
    """

    symbol: str
    timeframe: str
    horizon: str
    count: int
    crps: float
    crps_rw: float
    crps_skill: float | None
    coverage_50: float | None
    coverage_90: float | None


def crps_from_quantiles(quantile_levels: Sequence[float], quantiles: Sequence[float], realized: float) -> float:
    """Return the CRPS approximated from quantiles: twice the mean pinball loss over levels.

    :func:`forex_diffusion.quality.evaluation.crps_quantiles` for one forecast, with the
    monitor's error for mismatched lengths.

    Examples
    --------
    >>> crps_from_quantiles([0.5], [1.0], 1.0)
    0.0
    >>> round(crps_from_quantiles([0.25, 0.5, 0.75], [0.0, 1.0, 2.0], 1.0), 4)
    0.3333
    """
    if len(quantile_levels) != len(quantiles) or len(quantiles) == 0:
        raise ValidationError(
            RejectReason.INCONSISTENT,
            f"{len(quantiles)} quantiles for {len(quantile_levels)} levels",
        )
    return float(crps_quantiles(np.asarray(quantiles, dtype=np.float64), realized, quantile_levels))


class _Window:
    """Scores of one key: bounded deques, summed exactly on read.

    ``at`` holds each entry's place in stream order, ``(realised_ms, as_of_ms)``: a step
    scored late (a forecast recorded after later candles of its batch, see
    :meth:`QualityMonitor.add`) goes where candle-by-candle scoring would have put it. It is
    not state: entries restored from a snapshot come before any new one.
    """

    __slots__ = ("crps", "crps_rw", "cover_50", "cover_90", "at")

    def __init__(self, size: int) -> None:
        self.crps: deque[float] = deque(maxlen=size)
        self.crps_rw: deque[float] = deque(maxlen=size)
        # One entry per scored step: 1.0 inside, 0.0 outside, None when not measurable.
        self.cover_50: deque[float | None] = deque(maxlen=size)
        self.cover_90: deque[float | None] = deque(maxlen=size)
        self.at: deque[tuple[int, int]] = deque(maxlen=size)

    def put(self, at: tuple[int, int] | None, values: tuple[float, float, float | None, float | None]) -> None:
        """Add one scored step at its place ``at`` (None: after every entry): the window then
        holds the ``size`` latest steps in stream order, as if they had come in that order."""
        parts: tuple[deque[Any], ...] = (self.crps, self.crps_rw, self.cover_50, self.cover_90)
        last = self.at[-1] if self.at else (-1, -1)
        if at is None or at >= last:
            self.at.append(last if at is None else at)
            for d, v in zip(parts, values, strict=True):
                d.append(v)
            return
        i = bisect.bisect_right(self.at, at)
        if len(self.at) == self.at.maxlen:
            if i == 0:
                return  # older than the whole window: in stream order it would have left it already
            for d in (*parts, self.at):
                d.popleft()
            i -= 1
        self.at.insert(i, at)
        for d, v in zip(parts, values, strict=True):
            d.insert(i, v)

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        if "at" not in state:  # pickled before ``at``: its entries come first
            self.at = deque([(-1, -1)] * len(self.crps), maxlen=self.crps.maxlen)


def _share(values: deque[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return mean_of(known) if known else None


class QualityMonitor:
    """Track rolling forecast quality per series and horizon group, in bounded memory.

    Parameters
    ----------
    window
        Number of most recent scored steps kept per key (series x horizon group).
    horizon_groups
        Disjoint step ranges, in increasing order; a step outside all of them is not scored.
    max_series
        Most ``(symbol, timeframe)`` series tracked; updates for further series are
        dropped (and counted in :attr:`dropped`), so memory stays bounded whatever the
        caller sends.

    Examples
    --------
    >>> mon = QualityMonitor(window=3)
    >>> levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    >>> for y in (1.0, 1.1, 0.4):
    ...     _ = mon.update("EURUSD", "5m", 1, levels, [0.6, 0.9, 1.0, 1.1, 1.4],
    ...                    [0.2, 0.7, 1.0, 1.3, 1.8], y)
    >>> row, = mon.snapshot_metrics()
    >>> row.horizon, row.count, round(row.coverage_50, 3), round(row.coverage_90, 3)
    ('1', 3, 0.667, 0.667)
    >>> row.crps_skill > 0
    True
    """

    state_kind = "quality_monitor"
    state_version = 1

    def __init__(
        self,
        window: int = 500,
        horizon_groups: Sequence[HorizonGroup] = DEFAULT_HORIZON_GROUPS,
        max_series: int = 1024,
    ) -> None:
        if window < 1:
            raise ConfigError(f"window must be >= 1, got {window}")
        if max_series < 1:
            raise ConfigError(f"max_series must be >= 1, got {max_series}")
        if not horizon_groups:
            raise ConfigError("at least one horizon group is needed")
        for prev, cur in zip(horizon_groups, horizon_groups[1:], strict=False):
            if prev.last is None or cur.first <= prev.last:
                raise ConfigError("horizon groups must be disjoint and in increasing order")
        self.window = window
        self.horizon_groups = tuple(horizon_groups)
        self.max_series = max_series
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._series: set[tuple[str, str]] = set()
        self.dropped = 0

    @property
    def horizon_labels(self) -> tuple[str, ...]:
        """Return the labels of the horizon groups, in order (a bounded label set)."""
        return tuple(g.label for g in self.horizon_groups)

    def group_of(self, step: int) -> str | None:
        """Return the label of the horizon group holding ``step``, or None."""
        for group in self.horizon_groups:
            if group.contains(step):
                return group.label
        return None

    def update(
        self,
        symbol: str,
        timeframe: str,
        step: int,
        quantile_levels: Sequence[float],
        quantiles: Sequence[float],
        rw_quantiles: Sequence[float],
        realized: float,
    ) -> float | None:
        """Score one realised horizon step and add it to its window.

        Parameters
        ----------
        symbol, timeframe
            The series.
        step
            Horizon step, 1-based.
        quantile_levels
            Levels in (0, 1), strictly increasing, shape ``(K,)``.
        quantiles
            The model's quantiles of price at those levels, shape ``(K,)``.
        rw_quantiles
            The random-walk reference's quantiles at the same levels, shape ``(K,)``.
        realized
            The realised price.

        Returns
        -------
        float or None
            The model's CRPS for this step; None when the step falls in no horizon
            group or the series limit is reached (nothing is recorded then).

        Raises
        ------
        ValidationError
            Mismatched lengths, levels outside (0, 1) or not increasing, or non-finite
            values (reason ``inconsistent``); nothing is recorded.
        """
        self._check(quantile_levels, quantiles, rw_quantiles, realized)
        if self.group_of(step) is None:
            return None
        return self.add(symbol, timeframe, step, score_step(quantiles, rw_quantiles, realized, quantile_levels))

    def add(
        self, symbol: str, timeframe: str, step: int, score: StepScore, *, at: tuple[int, int] | None = None
    ) -> float | None:
        """Add one already scored realised step (:func:`~forex_diffusion.quality.evaluation.score_step`).

        The forecaster scores each realised step once per candle and hands the score here;
        :meth:`update` is this with the scoring done first. Returns the step's CRPS, or None
        when the step falls in no horizon group or the series limit is reached.

        ``at`` is the step's place in stream order, ``(realised_ms, as_of_ms)`` (None: after
        every step added so far). The forecaster scores the steps of a forecast recorded after
        later candles of its batch when it records it; with ``at`` they take the place
        candle-by-candle scoring gives them, so the windows do not depend on the batching.
        """
        group = self.group_of(step)
        if group is None:
            return None
        series = (symbol, timeframe)
        if series not in self._series:
            if len(self._series) >= self.max_series:
                self.dropped += 1
                if self.dropped == 1:
                    logger.warning(
                        "quality monitor full max_series=%d dropped symbol=%s timeframe=%s",
                        self.max_series,
                        symbol,
                        timeframe,
                    )
                return None
            self._series.add(series)
        key = (symbol, timeframe, group)
        win = self._windows.get(key)
        if win is None:
            win = self._windows[key] = _Window(self.window)
        hit50 = None if score.hit50 is None else float(score.hit50)
        win.put(at, (score.crps, score.crps_rw, hit50, None if score.hit90 is None else float(score.hit90)))
        return score.crps

    @staticmethod
    def _check(
        levels: Sequence[float],
        quantiles: Sequence[float],
        rw_quantiles: Sequence[float],
        realized: float,
    ) -> None:
        def bad(detail: str) -> ValidationError:
            return ValidationError(RejectReason.INCONSISTENT, detail)

        if not levels or len(quantiles) != len(levels) or len(rw_quantiles) != len(levels):
            raise bad(f"levels/quantiles/rw_quantiles lengths {len(levels)}/{len(quantiles)}/{len(rw_quantiles)}")
        if any(not (0.0 < t < 1.0) for t in levels):
            raise bad("quantile levels must lie in (0, 1)")
        if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
            raise bad("quantile levels must be strictly increasing")
        values = [*quantiles, *rw_quantiles, realized]
        if not all(math.isfinite(v) for v in values):
            raise bad("non-finite quantile or realised value")

    def snapshot_metrics(self) -> list[QualityRow]:
        """Return one row per tracked series and horizon group, sorted by key."""
        rows = []
        for (symbol, timeframe, group), win in sorted(self._windows.items()):
            n = len(win.crps)
            if n == 0:
                continue
            crps = mean_of(win.crps)
            crps_rw = mean_of(win.crps_rw)
            rows.append(
                QualityRow(
                    symbol=symbol,
                    timeframe=timeframe,
                    horizon=group,
                    count=n,
                    crps=crps,
                    crps_rw=crps_rw,
                    crps_skill=1.0 - crps / crps_rw if crps_rw > 0.0 else None,
                    coverage_50=_share(win.cover_50),
                    coverage_90=_share(win.cover_90),
                )
            )
        return rows

    def reset(self) -> None:
        """Forget every score (hyperparameters are kept)."""
        self._windows.clear()
        self._series.clear()
        self.dropped = 0

    def clone(self) -> QualityMonitor:
        """Return a fresh, empty monitor with the same hyperparameters."""
        return QualityMonitor(self.window, self.horizon_groups, self.max_series)

    # -- state ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return the hyperparameters and every window as JSON-able plain data, in the envelope
        (:mod:`forex_diffusion.state`); bounded by ``max_series`` x groups x ``window``."""
        state = {
            "window": self.window,
            "groups": [[g.first, g.last] for g in self.horizon_groups],
            "max_series": self.max_series,
            "dropped": self.dropped,
            "series": sorted([s, tf] for s, tf in self._series),
            "windows": [
                [s, tf, group, list(w.crps), list(w.crps_rw), list(w.cover_50), list(w.cover_90)]
                for (s, tf, group), w in sorted(self._windows.items())
            ],
        }
        return wrap(self, state)

    @classmethod
    def restore(cls, data: dict[str, Any]) -> QualityMonitor:
        """Rebuild a monitor from :meth:`snapshot` output; a malformed one is a ``StateError``.

        Numbers are read by type (:mod:`forex_diffusion.state`): steps, sizes and counts are
        integers (not ``"1"``, ``True`` or ``2.5``), scores finite numbers >= 0, coverages
        None or in ``[0, 1]``."""
        state = unwrap(data, cls)
        finite(cls, state)  # a nan coverage or 1e308 score: inf/nan means, no JSON
        with malformed(cls):
            groups = [
                HorizonGroup(count(a, field="group first"), None if b is None else count(b, field="group last"))
                for a, b in state["groups"]
            ]
            mon = cls(
                count(state["window"], low=1, field="window"),
                groups,
                count(state["max_series"], low=1, field="max_series"),
            )
            mon.dropped = count(state["dropped"], field="dropped")
            mon._series = {(str(s), str(tf)) for s, tf in state["series"]}
            labels = set(mon.horizon_labels)
            for s, tf, group, crps, crps_rw, c50, c90 in state["windows"]:
                if group not in labels or (s, tf) not in mon._series:
                    raise StateError(f"quality window {s}/{tf}/{group} outside the monitor's series or groups")
                if not len(crps) == len(crps_rw) == len(c50) == len(c90) <= mon.window:
                    raise StateError(f"quality window {s}/{tf}/{group}: uneven or longer than {mon.window}")
                w = _Window(mon.window)
                w.crps.extend(numbers(crps, low=0.0, field="crps"))
                w.crps_rw.extend(numbers(crps_rw, low=0.0, field="crps_rw"))
                if type(c50) is not list or type(c90) is not list:
                    raise StateError(f"quality window {s}/{tf}/{group}: coverages are not lists")
                w.cover_50.extend(None if x is None else number(x, low=0.0, high=1.0, field="cover_50") for x in c50)
                w.cover_90.extend(None if x is None else number(x, low=0.0, high=1.0, field="cover_90") for x in c90)
                w.at.extend([(-1, -1)] * len(w.crps))  # before any step added from now on
                mon._windows[(str(s), str(tf), str(group))] = w
            if len(mon._series) > mon.max_series:
                raise StateError(f"quality monitor state holds more than {mon.max_series} series")
        return mon
