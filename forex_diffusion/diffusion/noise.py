"""Noise schedule of the diffusion process, held in registered buffers.

``alpha_bar[t] = prod_{s<=t} (1 - beta_s)`` for ``t = 0 .. T-1``. The default is a short
linear schedule (``T = 200``, beta 1e-4 → 0.05, terminal ``alpha_bar ≈ 0.007``): with few
DDIM steps an almost-zero terminal ``alpha_bar`` (cosine) amplifies the error of the
first noise prediction thousands of times, this one about twelve. The cosine schedule of
Nichol & Dhariwal (2021) is available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from forex_diffusion.diffusion.denoiser import SIZE_MAX
from forex_diffusion.errors import ConfigError

__all__ = ["NoiseSchedule", "ScheduleConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleConfig:
    """Parameters of the noise schedule.

    Parameters
    ----------
    steps
        Number of training diffusion steps ``T``.
    kind
        ``"cosine"`` or ``"linear"``.
    beta_start, beta_end
        Range of the linear schedule.
    """

    steps: int = 200
    kind: Literal["cosine", "linear"] = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.05

    def __post_init__(self) -> None:
        if not 2 <= self.steps <= SIZE_MAX:
            raise ConfigError(f"schedule steps must be in 2..{SIZE_MAX}, got {self.steps!r:.40}")
        if self.kind not in ("cosine", "linear"):
            raise ConfigError(f"unknown schedule kind {self.kind!r}")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ConfigError("need 0 < beta_start < beta_end < 1")


class NoiseSchedule(nn.Module):
    """Buffers ``betas``, ``alpha_bar``, ``sqrt_alpha_bar``, ``sqrt_one_minus_alpha_bar`` (all ``[T]``)."""

    betas: torch.Tensor
    alpha_bar: torch.Tensor
    sqrt_alpha_bar: torch.Tensor
    sqrt_one_minus_alpha_bar: torch.Tensor

    def __init__(self, config: ScheduleConfig) -> None:
        super().__init__()
        self.config = config
        t = config.steps
        if config.kind == "cosine":
            s = 0.008
            x = torch.linspace(0, t, t + 1, dtype=torch.float64)
            f = torch.cos(((x / t) + s) / (1 + s) * math.pi / 2) ** 2
            ab = f / f[0]
            betas = (1 - ab[1:] / ab[:-1]).clamp(max=0.999)
        else:
            betas = torch.linspace(config.beta_start, config.beta_end, t, dtype=torch.float64)
        alpha_bar = torch.cumprod(1.0 - betas, dim=0)
        self.register_buffer("betas", betas.float())
        self.register_buffer("alpha_bar", alpha_bar.float())
        self.register_buffer("sqrt_alpha_bar", alpha_bar.sqrt().float())
        self.register_buffer("sqrt_one_minus_alpha_bar", (1 - alpha_bar).sqrt().float())

    @property
    def steps(self) -> int:
        """Number of training steps ``T``."""
        return self.config.steps

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Return ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``.

        Shapes: ``x0, noise [B, H]``, ``t [B]`` (long) → ``[B, H]``.
        """
        a = self.sqrt_alpha_bar[t].unsqueeze(-1)
        b = self.sqrt_one_minus_alpha_bar[t].unsqueeze(-1)
        return a * x0 + b * noise

    def ddim_timesteps(self, n: int) -> list[int]:
        """Return ``n`` decreasing timesteps from ``T-1`` to ``0`` for the DDIM sampler."""
        if not 1 <= n <= self.steps:
            raise ConfigError(f"sampling steps must be in 1..{self.steps}, got {n}")
        ts = torch.linspace(self.steps - 1, 0, n).round().long().tolist()
        out: list[int] = []
        for t in ts:
            if not out or t != out[-1]:
                out.append(int(t))
        return out
