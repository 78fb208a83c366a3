"""A checkpoint's manifest written by someone hostile.

The sha256 in the manifest covers the weights, not the manifest itself, so anyone who can
write a model directory can put any value in the architecture, context or sampling
parameters. Loading such a model either gives a predictor that forecasts or refuses it
with ``ArtifactError`` — never another exception, and never after building the network
the manifest describes (a width of 10**5 would allocate tens of GB before the weights were
found not to fit).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.diffusion import model as model_module
from forex_diffusion.diffusion.predictor import Predictor
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ArtifactError

BUNDLED = Path(__file__).resolve().parents[3] / "forex_diffusion/bundled/models/EURUSD-1h-h24"
HOUR_MS = 3_600_000


def _bundled() -> tuple[Path, dict[str, Any]]:
    pt = next(BUNDLED.glob("*.pt"))
    return pt, json.loads(pt.with_suffix(".json").read_text())


def _with_manifest(tmp: Path, manifest: dict[str, Any]) -> Path:
    pt, _ = _bundled()
    tmp.mkdir(parents=True, exist_ok=True)
    dst = tmp / pt.name
    shutil.copyfile(pt, dst)
    dst.with_suffix(".json").write_text(json.dumps(manifest))
    return dst


def _candles(n: int) -> list[Candle]:
    rng = np.random.default_rng(7)
    closes = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    out = []
    for i, c in enumerate(closes):
        o = closes[i - 1] if i else c
        hi, lo = max(o, c) * 1.0005, min(o, c) * 0.9995
        t = 1_500_000_000_000 // HOUR_MS * HOUR_MS + i * HOUR_MS
        out.append(
            Candle(symbol="EURUSD", timeframe="1h", open_ms=t, close_ms=t + HOUR_MS, open=o, high=hi, low=lo, close=c)
        )
    return out


def _forecasts(pred: Predictor) -> None:
    ctx = pred.new_context("EURUSD", "1h")
    for c in _candles(pred.context_spec.ready_after + 2):
        ctx.update(c)
    req = ctx.request()
    assert req is not None
    fc = pred.forecast([req])[0]
    assert np.all(np.isfinite(fc.quantiles))


LEAVES = [
    ("model", "denoiser", "width"),
    ("model", "denoiser", "cond_width"),
    ("model", "denoiser", "blocks"),
    ("model", "denoiser", "horizon"),
    ("model", "denoiser", "cond_dim"),
    ("model", "denoiser", "time_dim"),
    ("model", "schedule", "steps"),
    ("model", "schedule", "kind"),
    ("model", "schedule", "beta_start"),
    ("model", "x0_clip"),
    ("context", "window"),
    ("context", "warmup"),
    ("context", "ewma_lambda"),
    ("context", "clip"),
    ("sampling", "steps"),
    ("sampling", "samples"),
    ("extra_dim",),
    ("horizon",),
    ("model",),
    ("context",),
    ("sampling",),
    ("series",),
    ("symbols",),
    ("inputs",),
    ("key",),
    ("version",),
    ("symbol",),
    ("timeframe",),
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, 47, 49, 96, 97, 199, 201, 10**5, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(
        st.sampled_from(["steps", "width", "names", "features", "timeframe", "x"]),
        st.one_of(
            st.integers(0, 300),
            st.text(max_size=3),
            st.lists(st.sampled_from(["indicators", "mtf", "cross:GBPUSD", "1h", "zz", 3]), max_size=3),
        ),
        max_size=3,
    ),
)


def _set(manifest: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(leaf=st.sampled_from(LEAVES), value=VALUES)
def test_any_value_anywhere_loads_and_forecasts_or_is_refused(
    tmp_path_factory: pytest.TempPathFactory, leaf: tuple[str, ...], value: Any
) -> None:
    _, manifest = _bundled()
    path = _with_manifest(tmp_path_factory.mktemp("m"), _set(manifest, leaf, value))
    try:
        pred = Predictor.load(path)
    except ArtifactError:
        return
    _forecasts(pred)


@pytest.mark.parametrize(
    ("leaf", "value"),
    [
        (("model", "denoiser", "width"), 97),
        (("model", "denoiser", "cond_width"), 129),
        (("model", "denoiser", "blocks"), 4),
        (("model", "schedule", "steps"), 201),
        (("model", "denoiser", "horizon"), 25),
    ],
)
def test_a_manifest_that_does_not_fit_the_weights_builds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leaf: tuple[str, ...], value: int
) -> None:
    """The architecture is checked against the weights' names and shapes on torch's meta
    device (no memory) before the network is built. Sizes one off the weights' show it
    without the cost: built first, a width of 20,000 allocated 9.6 GB (the former loader
    filled this 24 GiB machine on that case and was killed)."""
    built: list[str] = []
    real_init = model_module.DiffusionModel.__init__

    def spy(self: model_module.DiffusionModel, config: model_module.ModelConfig) -> None:
        built.append(str(torch.empty(0).device))
        real_init(self, config)

    monkeypatch.setattr(model_module.DiffusionModel, "__init__", spy)
    _, manifest = _bundled()
    path = _with_manifest(tmp_path, _set(manifest, leaf, value))
    with pytest.raises(ArtifactError, match="does not match"):
        Predictor.load(path)
    assert "cpu" not in built, f"a {leaf[-1]}={value} network was built before the refusal"


def test_the_bundled_manifest_loads_and_forecasts(tmp_path: Path) -> None:
    """The baseline of the property: the manifest as written loads and forecasts."""
    _, manifest = _bundled()
    _forecasts(Predictor.load(_with_manifest(tmp_path, manifest)))


@pytest.mark.parametrize("version", ["\ud800", "v 1", "", "v" * 129, 5, None])
def test_a_version_the_forecast_records_cannot_carry_is_refused(tmp_path: Path, version: Any) -> None:
    """The version seeds every forecast and is the records' ``model_version``: a lone
    surrogate loaded, then every forecast failed (UnicodeEncodeError in the seed's hash)."""
    _, manifest = _bundled()
    with pytest.raises(ArtifactError, match="version must be printable ASCII"):
        Predictor.load(_with_manifest(tmp_path, _set(manifest, ("version",), version)))
