"""Tests for the rolling forecast-quality monitor (forex_diffusion.quality.monitoring)."""

from __future__ import annotations

import doctest
import math
import pickle

import numpy as np
import pytest
from scipy import stats

from forex_diffusion.errors import ConfigError, ForexDiffusionError, ValidationError
from forex_diffusion.quality import monitoring
from forex_diffusion.quality.monitoring import (
    HorizonGroup,
    QualityMonitor,
    crps_from_quantiles,
    pinball_loss,
)

LEVELS = [0.05, 0.25, 0.5, 0.75, 0.95]


def _normal_quantiles(mu: float, sigma: float, levels: list[float] = LEVELS) -> list[float]:
    return [float(v) for v in stats.norm.ppf(levels, loc=mu, scale=sigma)]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(monitoring)
    assert result.attempted > 0
    assert result.failed == 0


def test_pinball_loss_matches_definition_on_both_sides() -> None:
    assert pinball_loss(0.1, 0.0, 2.0) == pytest.approx(0.2)
    assert pinball_loss(0.1, 0.0, -2.0) == pytest.approx(1.8)
    assert pinball_loss(0.5, 3.0, 3.0) == 0.0


def test_crps_from_quantiles_is_twice_mean_pinball_loss() -> None:
    rng = np.random.default_rng(7)
    levels = sorted(rng.uniform(0.01, 0.99, size=9).tolist())
    qs = sorted(rng.normal(size=9).tolist())
    y = 0.3
    expected = 2.0 * np.mean([max(t * (y - q), (t - 1) * (y - q)) for t, q in zip(levels, qs, strict=True)])
    assert crps_from_quantiles(levels, qs, y) == pytest.approx(expected, rel=1e-12)


def test_crps_from_dense_quantiles_approaches_closed_form_normal_crps() -> None:
    # Gneiting & Raftery: CRPS(N(0,1), y) = y(2Φ(y)-1) + 2φ(y) - 1/sqrt(pi).
    levels = np.linspace(0.0005, 0.9995, 1999).tolist()
    qs = stats.norm.ppf(levels).tolist()
    for y in (-1.3, 0.0, 0.7, 2.5):
        closed = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / math.sqrt(math.pi)
        assert crps_from_quantiles(levels, qs, y) == pytest.approx(closed, rel=2e-3)


def test_monitor_rolling_means_match_recomputation_over_last_window() -> None:
    rng = np.random.default_rng(1)
    mon = QualityMonitor(window=20)
    model, ref = [], []
    for _ in range(57):
        y = float(rng.normal(1.1, 0.01))
        q = _normal_quantiles(1.1, 0.01)
        rw = _normal_quantiles(1.1, 0.03)
        mon.update("EURUSD", "1h", 1, LEVELS, q, rw, y)
        model.append(crps_from_quantiles(LEVELS, q, y))
        ref.append(crps_from_quantiles(LEVELS, rw, y))
    (row,) = mon.snapshot_metrics()
    assert row.count == 20
    assert row.crps == pytest.approx(np.mean(model[-20:]), rel=1e-12)
    assert row.crps_rw == pytest.approx(np.mean(ref[-20:]), rel=1e-12)
    assert row.crps_skill == pytest.approx(1 - np.mean(model[-20:]) / np.mean(ref[-20:]))


def test_calibrated_sharper_model_beats_random_walk_and_covers_nominally() -> None:
    rng = np.random.default_rng(3)
    mon = QualityMonitor(window=4000)
    for _ in range(4000):
        mu = float(rng.normal())
        y = float(rng.normal(mu, 1.0))
        # Model knows mu (sharp and calibrated); the reference is wide and centred at 0.
        mon.update("EURUSD", "5m", 2, LEVELS, _normal_quantiles(mu, 1.0), _normal_quantiles(0.0, math.sqrt(2.0)), y)
    (row,) = mon.snapshot_metrics()
    assert row.horizon == "2-4"
    assert row.crps_skill is not None and row.crps_skill > 0.2
    assert row.coverage_50 == pytest.approx(0.5, abs=0.03)
    assert row.coverage_90 == pytest.approx(0.9, abs=0.02)


def test_worse_than_random_walk_gives_negative_skill() -> None:
    mon = QualityMonitor()
    for y in (1.0, 1.02, 0.98, 1.01):
        mon.update("GBPUSD", "5m", 1, LEVELS, _normal_quantiles(1.5, 0.01), _normal_quantiles(1.0, 0.02), y)
    (row,) = mon.snapshot_metrics()
    assert row.crps_skill is not None and row.crps_skill < 0
    assert row.coverage_50 == 0.0 and row.coverage_90 == 0.0


def test_coverage_interval_ends_are_inclusive() -> None:
    mon = QualityMonitor()
    q = [1.0, 2.0, 3.0, 4.0, 5.0]
    mon.update("EURUSD", "5m", 1, LEVELS, q, q, 2.0)  # on the 25 % quantile
    mon.update("EURUSD", "5m", 1, LEVELS, q, q, 5.0)  # on the 95 % quantile
    (row,) = mon.snapshot_metrics()
    assert row.coverage_50 == 0.5
    assert row.coverage_90 == 1.0


def test_coverage_is_none_without_interval_levels_and_skill_none_for_zero_reference() -> None:
    mon = QualityMonitor()
    levels = [0.1, 0.5, 0.9]
    mon.update("EURUSD", "5m", 1, levels, [0.9, 1.0, 1.1], [1.0, 1.0, 1.0], 1.0)
    (row,) = mon.snapshot_metrics()
    assert row.coverage_50 is None and row.coverage_90 is None
    assert row.crps_rw == 0.0 and row.crps_skill is None


def test_steps_are_grouped_into_bounded_horizon_groups() -> None:
    mon = QualityMonitor()
    q = _normal_quantiles(1.0, 0.01)
    for step in range(1, 40):
        mon.update("EURUSD", "5m", step, LEVELS, q, q, 1.0)
    rows = mon.snapshot_metrics()
    assert {r.horizon for r in rows} == {"1", "2-4", "5-12", "13+"}
    assert {r.horizon: r.count for r in rows} == {"1": 1, "2-4": 3, "5-12": 8, "13+": 27}
    assert mon.horizon_labels == ("1", "2-4", "5-12", "13+")


def test_step_outside_every_group_is_not_recorded() -> None:
    mon = QualityMonitor(horizon_groups=[HorizonGroup(1, 3)])
    q = _normal_quantiles(1.0, 0.01)
    assert mon.update("EURUSD", "5m", 4, LEVELS, q, q, 1.0) is None
    assert mon.snapshot_metrics() == []


def test_series_beyond_limit_are_dropped_and_counted() -> None:
    mon = QualityMonitor(max_series=2)
    q = _normal_quantiles(1.0, 0.01)
    for sym in ("EURUSD", "GBPUSD", "USDJPY", "AUDUSD"):
        mon.update(sym, "5m", 1, LEVELS, q, q, 1.0)
    assert {r.symbol for r in mon.snapshot_metrics()} == {"EURUSD", "GBPUSD"}
    assert mon.dropped == 2


@pytest.mark.parametrize(
    ("levels", "qs", "rw", "y"),
    [
        ([0.25, 0.75], [1.0], [1.0, 2.0], 1.0),
        ([0.25, 0.75], [1.0, 2.0], [1.0], 1.0),
        ([0.75, 0.25], [1.0, 2.0], [1.0, 2.0], 1.0),
        ([0.0, 0.5], [1.0, 2.0], [1.0, 2.0], 1.0),
        ([0.25, 0.75], [1.0, math.nan], [1.0, 2.0], 1.0),
        ([0.25, 0.75], [1.0, 2.0], [1.0, 2.0], math.inf),
        ([], [], [], 1.0),
    ],
)
def test_inconsistent_input_is_refused_and_records_nothing(
    levels: list[float], qs: list[float], rw: list[float], y: float
) -> None:
    mon = QualityMonitor()
    with pytest.raises(ValidationError) as info:
        mon.update("EURUSD", "5m", 1, levels, qs, rw, y)
    assert isinstance(info.value, ForexDiffusionError)
    assert info.value.reason.value == "inconsistent"
    assert mon.snapshot_metrics() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0},
        {"max_series": 0},
        {"horizon_groups": []},
        {"horizon_groups": [HorizonGroup(1, 4), HorizonGroup(3, 6)]},
        {"horizon_groups": [HorizonGroup(1, None), HorizonGroup(3, 6)]},
    ],
)
def test_invalid_parameters_are_refused_at_construction(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        QualityMonitor(**kwargs)  # type: ignore[arg-type]


def test_horizon_group_validation_and_labels() -> None:
    with pytest.raises(ConfigError):
        HorizonGroup(0, 2)
    with pytest.raises(ConfigError):
        HorizonGroup(5, 2)
    assert [HorizonGroup(1, 1).label, HorizonGroup(2, 4).label, HorizonGroup(9).label] == [
        "1",
        "2-4",
        "9+",
    ]


def test_update_does_not_mutate_inputs() -> None:
    mon = QualityMonitor()
    levels, qs, rw = list(LEVELS), [1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 2.0, 3.0, 4.0, 6.0]
    copies = (list(levels), list(qs), list(rw))
    mon.update("EURUSD", "5m", 1, levels, qs, rw, 3.3)
    assert (levels, qs, rw) == copies


def test_pickle_round_trip_keeps_state_and_clone_is_empty() -> None:
    mon = QualityMonitor(window=5)
    q = _normal_quantiles(1.0, 0.01)
    for y in (1.0, 1.01, 0.99):
        mon.update("EURUSD", "5m", 1, LEVELS, q, _normal_quantiles(1.0, 0.02), y)
    restored = pickle.loads(pickle.dumps(mon))
    assert restored.snapshot_metrics() == mon.snapshot_metrics()
    restored.update("EURUSD", "5m", 1, LEVELS, q, q, 1.0)
    assert restored.snapshot_metrics()[0].count == 4
    fresh = mon.clone()
    assert fresh.snapshot_metrics() == [] and fresh.window == 5
    mon.reset()
    assert mon.snapshot_metrics() == [] and mon.dropped == 0
