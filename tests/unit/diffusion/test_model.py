"""Schedule, denoiser and model: shapes, invariants, no in-place changes."""

from __future__ import annotations

import pytest
import torch

from forex_diffusion.diffusion import (
    DenoiserConfig,
    DiffusionModel,
    ModelConfig,
    NoiseSchedule,
    ScheduleConfig,
)
from forex_diffusion.errors import ConfigError

torch.set_num_threads(2)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alpha_bar_decreases_from_one_towards_zero(kind: str) -> None:
    s = NoiseSchedule(ScheduleConfig(kind=kind, steps=200))
    ab = s.alpha_bar
    assert ab.shape == (200,)
    assert bool(torch.all(ab[1:] < ab[:-1]))
    assert 0.99 < float(ab[0]) <= 1.0 and float(ab[-1]) < 0.01
    torch.testing.assert_close(s.sqrt_alpha_bar**2 + s.sqrt_one_minus_alpha_bar**2, torch.ones(200))


def test_ddim_timesteps_run_from_last_to_zero_without_repeats() -> None:
    s = NoiseSchedule(ScheduleConfig(steps=200))
    ts = s.ddim_timesteps(8)
    assert ts[0] == 199 and ts[-1] == 0 and len(ts) == 8 and ts == sorted(ts, reverse=True)
    with pytest.raises(ConfigError):
        s.ddim_timesteps(0)


def _model(h: int = 6, d: int = 5) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(ModelConfig(denoiser=DenoiserConfig(horizon=h, cond_dim=d, width=16, cond_width=16)))


def test_sample_shapes_and_inputs_untouched() -> None:
    m = _model().eval()
    cond, noise = torch.randn(3, 5), torch.randn(3, 7, 6)
    c0, n0 = cond.clone(), noise.clone()
    x0 = m.sample(cond, noise, 4)
    assert x0.shape == (3, 7, 6)
    assert bool(torch.all(x0.abs() <= m.config.x0_clip))
    assert torch.equal(cond, c0) and torch.equal(noise, n0)
    assert m.calibrated_paths(x0).shape == (3, 7, 6)


def test_sampler_is_deterministic_given_noise() -> None:
    m = _model().eval()
    cond, noise = torch.randn(2, 5), torch.randn(2, 10, 6)
    assert torch.equal(m.sample(cond, noise, 5), m.sample(cond, noise, 5))


def test_training_loss_falls_on_a_learnable_conditional_target() -> None:
    # controlled cause: x0 = cond[:, :1] * ones — the network must read the condition
    m = _model(h=4, d=3)
    gen = torch.Generator().manual_seed(1)
    cond = torch.randn(256, 3, generator=gen)
    x0 = cond[:, :1].repeat(1, 4)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = m.loss(x0, cond, gen).item()
    for _ in range(150):
        loss = m.loss(x0, cond, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = sum(m.loss(x0, cond, gen).item() for _ in range(10)) / 10
    assert last < 0.5 * first


def test_zero_std_is_replaced_by_one_in_normalisation() -> None:
    m = _model(d=3)
    m.set_normalisation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 0.0, 1.0]))
    out = m.normalise(torch.tensor([[3.0, 2.0, 3.0]]))
    assert out.tolist() == [[1.0, 0.0, 0.0]]


def test_configs_refuse_bad_values() -> None:
    with pytest.raises(ConfigError):
        DenoiserConfig(horizon=0, cond_dim=3)
    with pytest.raises(ConfigError):
        ScheduleConfig(kind="quadratic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ModelConfig.from_dict({"denoiser": {"horizon": 2}})
