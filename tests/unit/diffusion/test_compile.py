"""``--compile``: training through ``torch.compile`` runs, learns what eager training learns, and
saves a model that loads into a plain (uncompiled) model and forecasts.

The first compilation takes 10-30 s on 2 CPU cores (inductor generates and builds C++ kernels;
later runs reuse its cache), so this is one test with one short run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from forex_diffusion.diffusion import Predictor, load_checkpoint, train
from forex_diffusion.diffusion.inputs import frame_candles

from .conftest import tiny_config

pytestmark = [
    # torch's inductor imports torch.utils.mkldnn, which warns about its own deprecated API
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


def test_compiled_training_matches_eager_and_gives_a_loadable_model(hourly: pd.DataFrame, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    # the step count, not the clock, ends both runs: on a busy machine the compilation alone
    # outlasted tiny_config's 2-minute budget and the compiled run stopped after its first step
    budget = {"max_steps": 6, "eval_every": 6, "max_minutes": 60.0}
    eager = train(tiny_config(**budget), hourly, tmp_path / "eager")
    res = train(tiny_config(compile=True, **budget), hourly, tmp_path / "compiled")
    assert res.metrics["steps"] == 6 and res.manifest["train_config"]["compile"] is True
    # same seed, same batches and noise: the compiled loss computes the same function
    s_eager, _ = load_checkpoint(eager.checkpoint)
    s_comp, _ = load_checkpoint(res.checkpoint)
    assert set(s_comp) == set(s_eager)  # no torch.compile wrapper prefixes in the saved names
    for k, v in s_eager.items():
        np.testing.assert_allclose(s_comp[k].numpy(), v.numpy(), rtol=1e-3, atol=1e-5, err_msg=k)
    pred = Predictor.load(res.checkpoint)
    ctx = pred.new_context("EURUSD", "1h")
    for candle in frame_candles(hourly.iloc[:200], "EURUSD", "1h"):
        ctx.update(candle)
    req = ctx.request()
    assert req is not None
    fc = pred.forecast([req], samples=40)[0]
    assert np.all(np.isfinite(fc.quantiles)) and np.all(np.diff(fc.quantiles, axis=1) >= 0)
