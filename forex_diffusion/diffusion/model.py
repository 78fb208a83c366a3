"""The conditional diffusion model: noise-prediction loss and the DDIM sampler.

The model generates ``x0 [H]``, the next ``H`` log returns divided by the EWMA
volatility at the origin. It holds, as buffers, the normalisation of the conditioning
vector (train-set mean and std, ``std == 0`` replaced by 1) and the calibration fitted on
the validation set, so a checkpoint's ``state_dict`` is the whole model:
``spread_scale [H]`` multiplies the sampled cumulative paths (mean, ``p_up`` and the base
quantiles come from these), ``quantile_scale [H, Q]`` then corrects each quantile level of
the cumulative log change (heavy tails: the CRPS-optimal spread alone under-covers the
90 % interval), and ``rw_weight [H]`` averages the quantiles with those of the EWMA random
walk (quantile averaging), fitted per step on validation so that a step where the
network adds nothing falls back to the baseline instead of doing worse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from forex_diffusion.diffusion.denoiser import Denoiser, DenoiserConfig
from forex_diffusion.diffusion.noise import NoiseSchedule, ScheduleConfig
from forex_diffusion.errors import ConfigError, check_field_types
from forex_diffusion.quality.evaluation import QUANTILE_LEVELS, random_walk_log_quantiles

__all__ = ["DiffusionModel", "ModelConfig", "random_walk_log_quantiles"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """Architecture of a :class:`DiffusionModel`.

    Parameters
    ----------
    denoiser
        Network sizes (``horizon`` and ``cond_dim`` live here).
    schedule
        Noise schedule.
    x0_clip
        The sampler clips its estimate of ``x0`` to ``[-x0_clip, x0_clip]``.
    """

    denoiser: DenoiserConfig
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    x0_clip: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.x0_clip <= 1e4:  # in units of the EWMA volatility: 10 by default
            raise ConfigError(f"x0_clip must be in (0, 10000], got {self.x0_clip!r:.40}")

    @property
    def horizon(self) -> int:
        """Steps ahead ``H``."""
        return self.denoiser.horizon

    def to_dict(self) -> dict[str, Any]:
        """Return the plain-data form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys and values of another type are refused."""
        fields = check_field_types(cls, data, "model config")
        try:
            return cls(
                denoiser=DenoiserConfig(**check_field_types(DenoiserConfig, fields["denoiser"], "model denoiser")),
                schedule=ScheduleConfig(**check_field_types(ScheduleConfig, fields["schedule"], "model schedule")),
                x0_clip=fields["x0_clip"],
            )
        except (KeyError, TypeError) as exc:  # a part or a required size missing
            raise ConfigError(f"bad model config: {exc}") from exc

    def check_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        """Raise :class:`ConfigError` unless a :class:`DiffusionModel` of this configuration
        has exactly the names and shapes of ``state``.

        The model is built on torch's meta device, which allocates nothing: a manifest
        naming a width of 10**5 or 10**9 schedule steps beside small weights is refused
        before the network is built. The block count is checked first, as building 10**6
        blocks takes minutes even there.
        """
        blocks = {k.split(".")[2] for k in state if k.startswith("denoiser.blocks.")}
        if self.denoiser.blocks != len(blocks):
            raise ConfigError(f"{self.denoiser.blocks} blocks, the weights hold {len(blocks)}")
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in DiffusionModel(self).state_dict().items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if want != got:
            name = sorted(set(want) ^ set(got)) or sorted(k for k in want if want[k] != got[k])
            raise ConfigError(
                f"weight {name[0]} is {got.get(name[0], 'missing')}, the architecture asks {want.get(name[0], 'none')}"
            )


class DiffusionModel(nn.Module):
    """Denoiser + schedule + normalisation and calibration buffers."""

    cond_mean: torch.Tensor
    cond_std: torch.Tensor
    spread_scale: torch.Tensor
    quantile_scale: torch.Tensor
    rw_weight: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.schedule = NoiseSchedule(config.schedule)
        self.denoiser = Denoiser(config.denoiser)
        d, h = config.denoiser.cond_dim, config.horizon
        self.register_buffer("cond_mean", torch.zeros(d))
        self.register_buffer("cond_std", torch.ones(d))
        self.register_buffer("spread_scale", torch.ones(h))
        self.register_buffer("quantile_scale", torch.ones(h, len(QUANTILE_LEVELS)))
        self.register_buffer("rw_weight", torch.zeros(h))

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the conditioning mean/std ``[D]``; a zero std is replaced by 1."""
        std = torch.where(std > 0, std, torch.ones_like(std))
        self.cond_mean.copy_(mean)
        self.cond_std.copy_(std)

    def normalise(self, cond: torch.Tensor) -> torch.Tensor:
        """Standardise raw conditioning ``[B, D]`` → ``[B, D]`` (returns a new tensor)."""
        return (cond - self.cond_mean) / self.cond_std

    def loss(
        self,
        x0: torch.Tensor,
        cond: torch.Tensor,
        generator: torch.Generator | None = None,
        series: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the noise-prediction MSE for a batch.

        Shapes: ``x0 [B, H]`` scaled returns, ``cond [B, D]`` raw conditioning, ``series
        [B]`` (long, a global model's series index, optional) → scalar.
        """
        b = x0.shape[0]
        t = torch.randint(0, self.schedule.steps, (b,), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        x_t = self.schedule.q_sample(x0, t, noise)
        emb = self.denoiser.encode(self.normalise(cond), series)
        eps = self.denoiser(x_t.unsqueeze(1), t, emb).squeeze(1)
        return F.mse_loss(eps, noise)

    @torch.no_grad()
    def sample(
        self, cond: torch.Tensor, noise: torch.Tensor, steps: int, series: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run the deterministic DDIM sampler (eta = 0) from ``noise``.

        Shapes: ``cond [B, D]`` raw conditioning, ``noise [B, S, H]``, ``series [B]``
        (long, optional, see :meth:`Denoiser.encode`) → ``x0 [B, S, H]`` (uncalibrated
        scaled returns). Inputs are not modified.
        """
        sched = self.schedule
        emb = self.denoiser.encode(self.normalise(cond), series)
        b = cond.shape[0]
        clip = self.config.x0_clip
        ts = sched.ddim_timesteps(steps)
        x = noise
        x0 = noise
        for i, t in enumerate(ts):
            tt = torch.full((b,), t, dtype=torch.long, device=cond.device)
            eps = self.denoiser(x, tt, emb)
            a, s = sched.sqrt_alpha_bar[t], sched.sqrt_one_minus_alpha_bar[t]
            x0 = ((x - s * eps) / a).clamp(-clip, clip)
            if i + 1 < len(ts):
                tn = ts[i + 1]
                x = sched.sqrt_alpha_bar[tn] * x0 + sched.sqrt_one_minus_alpha_bar[tn] * eps
        return x0

    def calibrated_paths(self, x0: torch.Tensor) -> torch.Tensor:
        """Return cumulative scaled returns with the per-step spread calibration applied.

        Shapes: ``x0 [B, S, H]`` → ``[B, S, H]``; ``out[..., h]`` is the log price change
        from the origin to step ``h+1`` divided by the origin volatility.
        """
        return torch.cumsum(x0, dim=-1) * self.spread_scale

    def calibrate_quantiles(self, q: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """Calibrate log-change quantiles: per-level scale, sort, blend with the random walk.

        Shapes: ``q [B, H, Q]`` (float64, levels ``QUANTILE_LEVELS``), ``sigma [B]`` (EWMA
        volatility at the origin) → ``[B, H, Q]``, a new array. Sorting (monotone
        rearrangement) never increases the quantile loss.
        """
        scale = self.quantile_scale.detach().cpu().numpy().astype(np.float64)
        w = self.rw_weight.detach().cpu().numpy().astype(np.float64)[:, None]
        model_q = np.sort(q * scale, axis=-1)
        out: np.ndarray = (1.0 - w) * model_q + w * random_walk_log_quantiles(sigma, q.shape[-2])
        return out
