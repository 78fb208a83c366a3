"""The denoising network: an MLP over the horizon with FiLM conditioning.

The context encoding is computed once per series and shared by all its samples, so
the cost per sample is a few ``width x width`` matmuls per sampler step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from forex_diffusion.errors import ConfigError

__all__ = ["Denoiser", "DenoiserConfig"]


#: Largest sizes of a model: training refuses larger ones (a run would fail allocating, not
#: learn) and so does the loader, for a manifest (which its sha256 does not cover).
WIDTH_MAX = 4096  # width, cond_width and time_dim
BLOCKS_MAX = 64
HORIZON_MAX = 10_000  # the most steps an fx.forecasts record carries (wire.FORECAST_STEPS_MAX)
SIZE_MAX = 1 << 20  # any other dimension: cond_dim, the series embedding, schedule steps


@dataclass(frozen=True, slots=True, kw_only=True)
class DenoiserConfig:
    """Sizes of the denoiser.

    Parameters
    ----------
    horizon
        ``H``, length of the generated return path.
    cond_dim
        Width of the (normalised) conditioning vector.
    width
        Hidden width of the per-sample MLP.
    cond_width
        Width of the context encoding.
    blocks
        Number of residual FiLM blocks.
    time_dim
        Width of the sinusoidal diffusion-step embedding.
    series, series_dim
        A global model's learnt series embedding: ``series`` rows of width ``series_dim``,
        projected (no bias) and added to the context encoding. ``series_dim`` 0 (the
        default, every per-series model) means no embedding; index ``-1`` (a series the
        model was not trained on) is the zero vector, i.e. adds nothing.
    """

    horizon: int
    cond_dim: int
    width: int = 128
    cond_width: int = 128
    blocks: int = 3
    time_dim: int = 32
    series: int = 0
    series_dim: int = 0

    def __post_init__(self) -> None:
        for name, most in (
            ("horizon", HORIZON_MAX),
            ("cond_dim", SIZE_MAX),
            ("width", WIDTH_MAX),
            ("cond_width", WIDTH_MAX),
            ("blocks", BLOCKS_MAX),
            ("time_dim", WIDTH_MAX),
        ):
            if not 1 <= getattr(self, name) <= most:
                raise ConfigError(f"{name} must be in 1..{most}, got {getattr(self, name)!r:.40}")
        if self.series > SIZE_MAX or self.series_dim > SIZE_MAX:
            raise ConfigError(
                f"series embedding sizes must be <= {SIZE_MAX}, got {self.series!r:.40} x {self.series_dim!r:.40}"
            )
        if self.time_dim % 2:
            raise ConfigError("time_dim must be even")
        if self.series < 0 or self.series_dim < 0 or (self.series_dim > 0) != (self.series > 0):
            raise ConfigError(
                f"series embedding needs series >= 1 and series_dim >= 1 (or both 0), "
                f"got {self.series!r:.40} x {self.series_dim!r:.40}"
            )


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Return sinusoidal embeddings of integer steps: ``t [B]`` → ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().unsqueeze(-1) * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class _Block(nn.Module):
    def __init__(self, width: int, cond_width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.film = nn.Linear(cond_width, 2 * width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``h [B, S, W]``, ``c [B, C]`` → ``[B, S, W]``."""
        gamma, beta = self.film(c).unsqueeze(1).chunk(2, dim=-1)
        z = self.norm(h) * (1.0 + gamma) + beta
        out: torch.Tensor = h + self.fc2(self.act(self.fc1(z)))
        return out


class Denoiser(nn.Module):
    """Predict the noise of ``x_t`` given the diffusion step and the context encoding."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        self.config = config
        w, cw = config.width, config.cond_width
        self.cond_encoder = nn.Sequential(nn.Linear(config.cond_dim, cw), nn.SiLU(), nn.Linear(cw, cw), nn.SiLU())
        self.time_mlp = nn.Sequential(nn.Linear(config.time_dim, cw), nn.SiLU())
        self.inp = nn.Linear(config.horizon, w)
        self.blocks = nn.ModuleList(_Block(w, cw) for _ in range(config.blocks))
        self.out_norm = nn.LayerNorm(w, elementwise_affine=False)
        self.out = nn.Linear(w, config.horizon)
        if config.series_dim:
            self.series_emb = nn.Embedding(config.series, config.series_dim)
            self.series_proj = nn.Linear(config.series_dim, cw, bias=False)

    def encode(self, cond: torch.Tensor, series: torch.Tensor | None = None) -> torch.Tensor:
        """Encode normalised conditioning ``[B, D]`` → ``[B, C]`` (once per series).

        ``series [B]`` (long) indexes the series embedding of a global model; ``-1`` adds
        nothing; ignored without an embedding.
        """
        out: torch.Tensor = self.cond_encoder(cond)
        if self.config.series_dim and series is not None:
            known = (series >= 0).unsqueeze(-1).to(out.dtype)
            out = out + self.series_proj(self.series_emb(series.clamp(min=0)) * known)
        return out

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond_emb: torch.Tensor) -> torch.Tensor:
        """Return predicted noise.

        Shapes: ``x_t [B, S, H]``, ``t [B]`` (long), ``cond_emb [B, C]`` → ``[B, S, H]``.
        """
        c = cond_emb + self.time_mlp(timestep_embedding(t, self.config.time_dim))
        h = self.inp(x_t)
        for block in self.blocks:
            h = block(h, c)
        out: torch.Tensor = self.out(self.out_norm(h))
        return out
