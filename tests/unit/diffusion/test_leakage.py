"""The KS leakage check refuses overlapping spans: train/validation/test targets must not share a candle.

:func:`train` splits chronologically and then checks the split; these tests feed it splits
that leak (through :func:`train` with a faulty split, and directly at the boundary) and see
the refusal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forex_diffusion.diffusion import training
from forex_diffusion.diffusion.training import _leakage_check, _split, _windows, train
from forex_diffusion.errors import ModelError

from .conftest import tiny_config


def _origin_split(
    w: training._Windows, config: training.TrainConfig
) -> tuple[training._Windows, training._Windows, training._Windows, tuple[int, int]]:
    """The classic mistake: train on windows whose ORIGIN precedes DATE1, so their targets
    run up to H candles into the validation span."""
    assert config.split is not None
    d1, d2 = config.split
    tr = np.flatnonzero(w.origin_ms < d1)
    va = np.flatnonzero((w.origin_ms >= d1) & (w.end_ms <= d2))
    te = np.flatnonzero(w.origin_ms >= d2)
    return w.take(tr), w.take(va), w.take(te), (d1, d2)


def test_train_refuses_a_split_whose_train_targets_reach_into_validation(
    hourly: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "_split", _origin_split)
    with pytest.raises(ModelError, match=r"^leakage: train_val time stamps overlap \(KS statistic 0\.\d+;"):
        train(tiny_config(), hourly, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before training: nothing saved


def test_the_check_sees_a_single_shared_candle_at_either_boundary(hourly: pd.DataFrame) -> None:
    config = tiny_config()
    w = _windows(hourly, config, None)
    tr, va, te, (d1, d2) = _split(w, config)
    ks = _leakage_check(tr, va, te)  # the real split passes with statistic 1
    assert ks["ks_time_train_val"] == 1.0 and ks["ks_time_val_test"] == 1.0
    # one more training window: its last target is the first validation window's first target
    nxt = np.flatnonzero(w.end_ms > tr.end_ms.max())[:1]
    assert w.end_ms[nxt][0] == va.first_ms.min()
    leaky_tr = w.take(np.concatenate([np.flatnonzero(w.end_ms <= d1), nxt]))
    with pytest.raises(ModelError, match="^leakage: train_val time stamps overlap"):
        _leakage_check(leaky_tr, va, te)
    # one more test window: its first target is the last validation window's last target
    shared = np.flatnonzero(w.first_ms == va.end_ms.max())
    assert shared.size == 1 and w.origin_ms[shared][0] < d2
    leaky_te = w.take(np.concatenate([shared, np.flatnonzero(w.origin_ms >= d2)]))
    with pytest.raises(ModelError, match="^leakage: val_test time stamps overlap"):
        _leakage_check(tr, va, leaky_te)


def test_sets_in_the_wrong_order_are_refused_although_their_ks_statistic_is_one(hourly: pd.DataFrame) -> None:
    config = tiny_config()
    tr, va, te, _ = _split(_windows(hourly, config, None), config)
    with pytest.raises(ModelError, match=r"^leakage: train_val time stamps overlap \(KS statistic 1\.0000;"):
        _leakage_check(te, va, tr)  # "training" after validation: disjoint, but the future
