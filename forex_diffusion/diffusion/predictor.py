"""Serve a trained model: batched, seeded sampling of price-path quantiles.

One :meth:`Predictor.forecast` call samples many series at once. Each series draws its
initial noise from its own ``torch.Generator`` seeded from ``(symbol, timeframe,
as_of_ms, model_version)``, and the DDIM sampler is deterministic, so a forecast does not
depend on which other series share the batch (up to float32 matmul rounding, see
``docs/diffusion.md``) and a replay reproduces it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forex_diffusion.diffusion.checkpoint import load_checkpoint
from forex_diffusion.diffusion.context import ContextSpec, ForecastRequest, SeriesContext
from forex_diffusion.diffusion.denoiser import SIZE_MAX
from forex_diffusion.diffusion.inputs import InputsBuilder, InputSpec
from forex_diffusion.diffusion.model import DiffusionModel, ModelConfig
from forex_diffusion.errors import ArtifactError, ConfigError, ModelError, check_field_types
from forex_diffusion.forecast.batching import SAMPLES_MAX, SAMPLES_MIN, STEPS_MAX
from forex_diffusion.forecast.result import Forecast
from forex_diffusion.forecast.touch import (
    EXTREME_LEVELS,
    ExtremesForecast,
    TouchBand,
    TouchForecast,
    band_distances,
    extremes_from_paths,
    parse_touch_bands,
    rw_touch_table,
    touch_from_paths,
)
from forex_diffusion.quality.evaluation import QUANTILE_LEVELS

__all__ = ["Forecast", "Predictor", "antithetic_noise", "resolve_device", "series_seed"]

logger = logging.getLogger(__name__)

#: Longest horizon given touch probabilities and running extremes: the random walk's table
#: grows as H**1.5 (H=720: 190 MB, ~17 s to build, ~0.6 GB at peak; H=10000: ~10 GB), built
#: at load; a longer model forecasts without them (the fields are optional), as before them.
TOUCH_HORIZON_MAX = 720


def series_seed(symbol: str, timeframe: str, as_of_ms: int, model_version: str) -> int:
    """Return the 63-bit sampling seed of one forecast key."""
    digest = hashlib.sha256(f"{symbol}|{timeframe}|{as_of_ms}|{model_version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def antithetic_noise(seed: int, samples: int, horizon: int) -> torch.Tensor:
    """Return ``[samples, horizon]`` standard normal noise ``(z, -z)`` from one seeded generator."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn((math.ceil(samples / 2), horizon), generator=g)
    return torch.cat([z, -z], dim=0)[:samples]


def resolve_device(device: str) -> torch.device:
    """Map ``auto|cpu|cuda[:n]`` to a torch device (``auto`` picks CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but CUDA is not available")
        try:
            return torch.device(device)
        except RuntimeError as exc:  # "cuda:x", "cpu:1"
            raise ConfigError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N") from exc
    raise ConfigError(f"unknown device {device!r}; expected auto, cpu or cuda")


def _version(manifest: dict[str, Any]) -> str:
    """The manifest's version: it seeds every forecast's noise and is ``model_version`` on
    ``fx.forecasts``, so it is what that field takes (printable ASCII, no space, 1..128)."""
    version = manifest.get("version", "unversioned")
    if not (isinstance(version, str) and 0 < len(version) <= 128 and all("!" <= c <= "~" for c in version)):
        raise ConfigError(f"version must be printable ASCII without spaces (1..128 characters), got {version!r:.60}")
    return version


def _names(manifest: dict[str, Any], field: str) -> tuple[str, ...]:
    """A global model's ``series`` or ``symbols``: a list of strings, or none.

    Each of ``symbols`` must be a canonical currency pair: six ASCII letters, upper case
    (``EURUSD``), as :class:`~forex_diffusion.instruments.InstrumentRegistry` requires of an
    instrument and the wire (``[A-Z]{6}``) of a record's symbol. Any string was taken: a
    model naming ``eur/usd`` or ``EURUSD\n`` was registered and refused only when served.
    """
    names = manifest.get(field, [])
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        raise ConfigError(f"{field} must be a list of names, got {names!r:.60}")
    if field == "symbols":
        for name in names:
            # InstrumentRegistry's rule (six upper-case letters), ASCII: str.isalpha takes 'É'
            if not (len(name) == 6 and name.isascii() and name.isalpha() and name.isupper()):
                raise ConfigError(
                    f"symbols must be canonical currency pairs (six upper-case ASCII letters, e.g. EURUSD), "
                    f"got {name!r:.40}"
                )
    return tuple(names)


@dataclass(frozen=True, slots=True)
class _Sampling:
    """The manifest's ``sampling`` object (field types for :func:`check_field_types`)."""

    steps: int = 8
    samples: int = 100


@dataclass(frozen=True, slots=True)
class _Extra:
    extra_dim: int = 0


class Predictor:
    """A loaded model ready to forecast; build with :meth:`load`.

    Parameters
    ----------
    model
        The model (its buffers hold normalisation and calibration).
    manifest
        The checkpoint manifest (``version``, ``context``, ``sampling`` ...).
    device
        Where to sample.
    touch_bands
        Bands whose touch probabilities each forecast carries (spec ``"0.5vol,1vol,20pip"``
        or parsed bands; None: :data:`~forex_diffusion.forecast.touch.DEFAULT_TOUCH_BANDS`; ``""``:
        none). Running max/min quantiles are always computed.
    """

    def __init__(
        self,
        model: DiffusionModel,
        manifest: dict[str, Any],
        *,
        device: str = "cpu",
        touch_bands: str | Sequence[TouchBand] | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.manifest = manifest
        self.version: str = _version(manifest)
        self.key: str = str(manifest.get("key", ""))
        self.context_spec = ContextSpec.from_dict(manifest["context"])
        sampling = check_field_types(_Sampling, manifest.get("sampling", {}), "sampling")
        self.default_steps = int(sampling.get("steps", 8))
        self.default_samples = int(sampling.get("samples", 100))
        self.extra_dim = int(
            check_field_types(_Extra, {"extra_dim": manifest.get("extra_dim", 0)}, "manifest")["extra_dim"]
        )
        self._check_sizes(manifest)
        self.inputs = InputSpec.from_manifest(manifest)  # named model inputs (none: extra_dim 0)
        if self.inputs and len(self.inputs.features) != self.extra_dim:
            raise ArtifactError(
                f"model {self.key}: extra_dim {self.extra_dim} but its inputs "
                f"{','.join(self.inputs.names)} have {len(self.inputs.features)} features"
            )
        # a global model: its series (embedding order) and the symbols it serves
        self.series: tuple[str, ...] = _names(manifest, "series")
        self.symbols: frozenset[str] = frozenset(_names(manifest, "symbols"))
        if self.model.config.denoiser.series and len(self.series) != self.model.config.denoiser.series:
            raise ConfigError(
                f"the series embedding has {self.model.config.denoiser.series} rows, the manifest names {len(self.series)} series"
            )
        self.levels: tuple[float, ...] = QUANTILE_LEVELS
        self.touch_bands: tuple[TouchBand, ...] = parse_touch_bands(touch_bands)
        self.path_stats = self.horizon <= TOUCH_HORIZON_MAX  # touch and extremes computed
        if self.path_stats:
            rw_touch_table(self.horizon)  # the random walk's touch table, built once per horizon (~0.5 s at H=24)
        elif self.touch_bands:
            logger.warning(
                "model %s: horizon %d > %d, forecasts carry no touch probabilities or extremes",
                self.key,
                self.horizon,
                TOUCH_HORIZON_MAX,
            )

    @classmethod
    def load(
        cls, path: str | Path, device: str = "cpu", *, touch_bands: str | Sequence[TouchBand] | None = None
    ) -> Predictor:
        """Load a verified checkpoint (``.pt``, its ``.json``, or a key directory).

        Raises
        ------
        ArtifactError
            Hash mismatch, pickle content, corrupt file, or weights that do not fit the
            manifest's architecture.
        """
        # the caller's choices first, and said as theirs: "device 'cuda' requested but CUDA is
        # not available" was "checkpoint does not match its manifest (…)", after reading the file
        resolve_device(device)
        bands = parse_touch_bands(touch_bands)
        state, manifest = load_checkpoint(path)
        try:
            config = ModelConfig.from_dict(manifest["model"])
            config.check_weights(state)  # before building: the manifest is not covered by the sha256
            model = DiffusionModel(config)
            model.load_state_dict(state, strict=True)
            pred = cls(model, manifest, device=device, touch_bands=bands)
        except (KeyError, RuntimeError, ConfigError) as exc:
            raise ArtifactError(f"{path}: checkpoint does not match its manifest ({exc})") from exc
        logger.info("model loaded key=%s version=%s", manifest.get("key"), manifest.get("version"))
        return pred

    def _check_sizes(self, manifest: dict[str, Any]) -> None:
        """The manifest's sizes agree with the network's, and its sampling is one a forecast
        can take (else every forecast of the model would fail, one by one, in the stream)."""
        config = self.model.config
        if not 0 <= self.extra_dim <= SIZE_MAX:
            raise ConfigError(f"extra_dim must be in 0..{SIZE_MAX}, got {self.extra_dim!r:.40}")
        want = self.context_spec.cond_dim(self.extra_dim)
        if config.denoiser.cond_dim != want:
            raise ConfigError(
                f"the network takes {config.denoiser.cond_dim} conditioning values, its context "
                f"(window {self.context_spec.window}, extra_dim {self.extra_dim}) makes {want}"
            )
        if manifest.get("horizon", config.horizon) != config.horizon:
            raise ConfigError(f"horizon {manifest.get('horizon')!r:.40}, the network's is {config.horizon}")
        if not 1 <= self.default_steps <= self.max_steps:
            raise ConfigError(f"sampling steps must be in 1..{self.max_steps}, got {self.default_steps!r:.40}")
        if not SAMPLES_MIN <= self.default_samples <= SAMPLES_MAX:
            raise ConfigError(
                f"sampling samples must be in {SAMPLES_MIN}..{SAMPLES_MAX}, got {self.default_samples!r:.40}"
            )

    @property
    def horizon(self) -> int:
        """Steps ahead ``H``."""
        return self.model.config.horizon

    @property
    def max_steps(self) -> int:
        """The most DDIM steps a forecast may take: the schedule's ``T``, within ``STEPS_MAX``."""
        return min(STEPS_MAX, self.model.schedule.steps)

    def series_index(self, name: str) -> int:
        """Index of a global model's series embedding for ``name``, or -1 (zero embedding).

        ``name`` is a series name (``EURUSD``, ``EURUSD@oanda``) or a symbol that names
        exactly one of the model's series; a symbol shared by several series (two vendors
        of EUR/USD) or unknown to the model gets -1.
        """
        if name in self.series:
            return self.series.index(name)
        from forex_diffusion.instruments import series_symbol

        hits = [i for i, s in enumerate(self.series) if series_symbol(s) == name.upper()]
        return hits[0] if len(hits) == 1 else -1

    def new_context(self, symbol: str, timeframe: str) -> SeriesContext:
        """Return an empty :class:`SeriesContext` with this model's context parameters."""
        return SeriesContext(symbol=symbol, timeframe=timeframe, spec=self.context_spec)

    def new_inputs(self, symbol: str) -> InputsBuilder | None:
        """Return an empty builder of this model's named inputs (None for a model without inputs)."""
        return InputsBuilder(self.inputs, symbol) if self.inputs else None

    def _conditioning(self, req: ForecastRequest) -> np.ndarray:
        parts = [req.past_returns, req.past_ranges, req.calendar, np.array([req.vol_ratio])]
        if self.extra_dim:
            if req.extra is None or np.asarray(req.extra).size != self.extra_dim:
                raise ModelError(
                    f"model {self.key} needs its inputs {','.join(self.inputs.names)} "
                    f"({self.extra_dim} extra features) for {req.symbol} at {req.as_of_ms}: "
                    "build them with Predictor.new_inputs"
                )
            parts.append(np.asarray(req.extra, dtype=np.float64).ravel())
        cond = np.concatenate(parts)
        if cond.size != self.model.config.denoiser.cond_dim:
            raise ModelError(
                f"conditioning has {cond.size} values, model {self.key} expects {self.model.config.denoiser.cond_dim}"
            )
        return cond

    def forecast(
        self, requests: Sequence[ForecastRequest], *, steps: int | None = None, samples: int | None = None
    ) -> list[Forecast]:
        """Forecast many series in one batched sampling call.

        Parameters
        ----------
        requests
            One request per series (from :meth:`SeriesContext.request`).
        steps, samples
            DDIM steps and sample paths; default to the manifest's sampling settings.

        Returns
        -------
        list[Forecast]
            In the order of ``requests``.
        """
        if not requests:
            return []
        n_steps = self.default_steps if steps is None else int(steps)
        n_samples = self.default_samples if samples is None else int(samples)
        if not SAMPLES_MIN <= n_samples <= SAMPLES_MAX:  # an absurd count would allocate at once
            raise ConfigError(f"samples must be in {SAMPLES_MIN}..{SAMPLES_MAX}, got {n_samples}")
        if not 1 <= n_steps <= self.max_steps:
            raise ConfigError(f"sampling steps must be in 1..{self.max_steps}, got {n_steps}")
        t0 = time.perf_counter()
        h = self.horizon
        cond = torch.as_tensor(np.stack([self._conditioning(r) for r in requests]), dtype=torch.float32)
        noise = torch.stack(
            [
                antithetic_noise(series_seed(r.symbol, r.timeframe, r.as_of_ms, self.version), n_samples, h)
                for r in requests
            ]
        )
        with torch.inference_mode():
            series = (
                torch.as_tensor([self.series_index(r.symbol) for r in requests], device=self.device)
                if self.model.config.denoiser.series_dim
                else None
            )
            x0 = self.model.sample(cond.to(self.device), noise.to(self.device), n_steps, series)
            paths = self.model.calibrated_paths(x0).cpu().numpy().astype(np.float64)  # [B, S, H]
        sigma = np.array([r.sigma for r in requests])[:, None, None]
        last = np.array([r.last_close for r in requests])[:, None, None]
        logchg = paths * sigma
        prices = last * np.exp(logchg)
        q_log = np.moveaxis(np.quantile(logchg, self.levels, axis=1), 0, -1)  # [B, H, Q]
        qs = last * np.exp(self.model.calibrate_quantiles(q_log, sigma[:, 0, 0]))
        # mean and p_up blend like a mixture with the random walk (weight rw_weight per step)
        w = self.model.rw_weight.detach().cpu().numpy().astype(np.float64)[None, :]
        steps_ = np.arange(1, h + 1, dtype=np.float64)[None, :]
        rw_mean = last[:, :, 0] * np.exp(0.5 * sigma[:, :, 0] ** 2 * steps_)
        means = (1.0 - w) * prices.mean(axis=1) + w * rw_mean
        p_up = (1.0 - w) * (prices > last).mean(axis=1) + w * 0.5
        touch: list[TouchForecast] = []
        extremes: list[ExtremesForecast | None] = [None] * len(requests)
        if self.path_stats:
            touch, ext = self._touch(requests, logchg, sigma[:, 0, 0], last[:, 0, 0], w[0])
            extremes = list(ext)
        latency = time.perf_counter() - t0
        return [
            Forecast(
                symbol=r.symbol,
                timeframe=r.timeframe,
                as_of_ms=r.as_of_ms,
                horizon=h,
                model_version=self.version,
                last_close=r.last_close,
                levels=self.levels,
                quantiles=qs[i],
                mean=means[i],
                p_up=p_up[i],
                steps=n_steps,
                samples=n_samples,
                latency_s=latency,
                touch=touch[i] if touch else None,
                extremes=extremes[i],
                paths=prices[i],
                rw_weight=w[0],
            )
            for i, r in enumerate(requests)
        ]

    def _touch(
        self,
        requests: Sequence[ForecastRequest],
        logchg: np.ndarray,
        sigma: np.ndarray,
        last: np.ndarray,
        w: np.ndarray,
    ) -> tuple[list[TouchForecast], list[ExtremesForecast]]:
        """Touch probabilities and running max/min quantiles of a batch (see :mod:`forex_diffusion.forecast.touch`)."""
        h = self.horizon
        mx, mn = extremes_from_paths(logchg, sigma, w)
        ext = [
            ExtremesForecast(levels=EXTREME_LEVELS, max=last[i] * np.exp(mx[i]), min=last[i] * np.exp(mn[i]))
            for i in range(len(requests))
        ]
        bands = self.touch_bands
        if not bands:
            return [], ext
        sides = [b.side for b in bands]
        dist = band_distances(bands, last, sigma, h, [r.symbol for r in requests])
        p, rw = touch_from_paths(logchg, dist, sides, sigma, w)
        with np.errstate(over="ignore"):  # a band too far to price (1e300sigma): inf, null on the wire
            levels = last[:, None] * np.exp(np.asarray(sides, dtype=np.float64)[None, :] * dist)
        names = tuple(b.name for b in bands)
        return [TouchForecast(bands=names, levels=levels[i], p=p[i], rw_p=rw[i]) for i in range(len(requests))], ext
