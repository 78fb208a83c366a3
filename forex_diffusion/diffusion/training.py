"""Train a conditional diffusion forecaster on a candle frame and save a checkpoint.

:func:`train` is a plain function (the retraining jobs call it; ``forexd train`` wraps it):

1. features with :func:`~.context.build_features` (the recursion of
   :class:`~.context.SeriesContext`), targets = the next ``H`` log returns over the
   origin's EWMA volatility;
2. chronological split: train (targets end before ``DATE1``), validation (origins from
   ``DATE1``, targets end before ``DATE2``), test (origins from ``DATE2``); 60/20/20 of
   the candles when no dates are given; a two-sample KS test on the time stamps must
   find the sets disjoint (statistic 1), else :class:`~forex_diffusion.errors.ModelError`;
3. noise-prediction training with AdamW, early stopping on validation CRPS, a wall-clock
   budget over the whole call (calibration and test scoring cut their windows to fit);
4. calibration on validation windows: the per-step factor ``s_h`` (grid 0.5–2.0) of the
   sampled cumulative log returns that minimises the CRPS around step ``h`` (losses
   averaged over steps ``h ± H/12``), then a factor per
   (step, quantile level) (grid 0.7–1.5) that minimises that level's pinball loss, then
   a per-step weight (grid 0–1, same step smoothing) of the EWMA random walk's quantiles
   in a quantile average, so that a step where the network adds nothing falls back to
   the baseline: the largest weight whose validation CRPS is within one standard error
   of the best weight's (the one-standard-error rule; the error from blocks of ``H``
   consecutive windows), so the network keeps weight only where validation shows a
   gain larger than its noise;
5. test scores against the EWMA random walk; checkpoint + manifest.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import ks_2samp

from forex_diffusion.diffusion.checkpoint import CheckpointManager, Protected, model_key
from forex_diffusion.diffusion.context import CALENDAR_DIM, ContextSpec, build_features
from forex_diffusion.diffusion.denoiser import BLOCKS_MAX, HORIZON_MAX, WIDTH_MAX, DenoiserConfig
from forex_diffusion.diffusion.inputs import InputSpec
from forex_diffusion.diffusion.model import DiffusionModel, ModelConfig
from forex_diffusion.diffusion.noise import ScheduleConfig
from forex_diffusion.diffusion.predictor import antithetic_noise, resolve_device
from forex_diffusion.errors import ConfigError, ModelError, check_field_types
from forex_diffusion.forecast.batching import SAMPLES_MAX, SAMPLES_MIN, STEPS_MAX
from forex_diffusion.instruments import series_symbol, symbol_set_key
from forex_diffusion.quality.evaluation import (
    QUANTILE_LEVELS,
    crps_quantiles,
    interval_hits,
    pinball_loss,
    random_walk_log_quantiles,
)
from forex_diffusion.timeframes import Timeframe

__all__ = ["TrainConfig", "TrainProgress", "TrainResult", "train"]

logger = logging.getLogger(__name__)

_SCALE_GRID = np.round(np.arange(0.5, 2.0001, 0.025), 4)
_QSCALE_GRID = np.round(np.arange(0.7, 1.5001, 0.02), 4)
_RW_GRID = np.round(np.arange(0.0, 1.0001, 0.1), 4)
_SAMPLE_BATCH = 64  # windows sampled at once after training

#: Calibration and test windows a time budget never cuts below: per set, and per series
#: for a global model's per-series test scores (a smaller set or configuration keeps its size).
BUDGET_MIN_WINDOWS = 64
#: Margin on the measured sampling cost when the remaining budget is shared out (the
#: calibration fits and the scores also take time, and the rate varies with the load).
_BUDGET_MARGIN = 1.2


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Everything :func:`train` needs besides the data; stored in the manifest.

    Parameters
    ----------
    symbol, timeframe, horizon
        The model key.
    context
        Context window and volatility scaling.
    width, cond_width, blocks, time_dim
        Denoiser sizes.
    schedule
        Diffusion noise schedule.
    split
        ``(DATE1, DATE2)`` in epoch ms; None → 60/20/20 of the candles.
    until_ms
        Ignore candles closing after this time.
    max_minutes, max_steps
        Wall-clock budget of the whole :func:`train` call (training stops in time for
        calibration and test scoring, which cut their windows to what fits; see its Notes)
        and step cap.
    batch_size, lr, weight_decay, seed
        Optimisation.
    ema_decay
        Exponential moving average of the weights, evaluated and saved (0 disables).
    device, compile
        ``auto|cpu|cuda``; wrap the loss in ``torch.compile``.
    eval_every, patience, val_windows, val_samples
        Early stopping: validation CRPS every ``eval_every`` steps on ``val_windows``
        windows with ``val_samples`` paths; stop after ``patience`` evaluations without
        improvement.
    calib_windows, test_windows
        Windows used for calibration and for the test scores (evenly spaced subsets).
    sample_steps, samples
        Default DDIM steps and sample paths of the saved model.
    keep
        Checkpoints kept per model key.
    series
        A global model's series, in embedding-index order (empty: one series, the usual
        per-series model). A name is a symbol, optionally ``@`` and a tag telling apart
        two series of one symbol (``EURUSD@oanda``); ``symbol`` is then the key of the
        symbol set (:func:`~forex_diffusion.instruments.symbol_set_key`).
    series_embedding
        Width of the learnt series embedding of a global model (0: none).
    inputs
        Named model inputs (``indicators``, ``mtf[:TF,..]``, ``cross:SYM,..``; see
        :mod:`.inputs`); the ``extra`` given to :func:`train` must be their features.
    """

    symbol: str
    timeframe: str
    horizon: int = 24
    context: ContextSpec = field(default_factory=ContextSpec)
    width: int = 96
    cond_width: int = 128
    blocks: int = 3
    time_dim: int = 32
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    split: tuple[int, int] | None = None
    until_ms: int | None = None
    max_minutes: float = 10.0
    max_steps: int = 20_000
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ema_decay: float = 0.99
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    eval_every: int = 250
    patience: int = 8
    val_windows: int = 512
    val_samples: int = 32
    calib_windows: int = 4096
    test_windows: int = 4096
    sample_steps: int = 8
    samples: int = 100
    keep: int = 3
    series: tuple[str, ...] = ()
    series_embedding: int = 0
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        Timeframe.parse(self.timeframe)
        object.__setattr__(self, "inputs", InputSpec.parse(self.inputs, self.timeframe).names)
        object.__setattr__(self, "series", tuple(str(x) for x in self.series))
        if len(set(self.series)) != len(self.series):
            raise ConfigError(f"series names repeat: {list(self.series)}")
        if self.series_embedding < 0 or (self.series_embedding and not self.series):
            raise ConfigError("series_embedding must be >= 0 and needs several series")
        if self.series and self.symbol != symbol_set_key(series_symbol(n) for n in self.series):
            raise ConfigError(
                f"a global model's symbol is its symbol set's key "
                f"{symbol_set_key(series_symbol(n) for n in self.series)}, not {self.symbol}"
            )
        if not self.symbol:
            raise ConfigError("symbol is required")
        for name in (
            "horizon",
            "max_steps",
            "batch_size",
            "eval_every",
            "patience",
            "val_windows",
            "val_samples",
            "calib_windows",
            "test_windows",
            "sample_steps",
            "keep",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        # sizes past these are allocation failures (a traceback after minutes), not models
        for name, most in (
            ("width", WIDTH_MAX),
            ("cond_width", WIDTH_MAX),
            ("time_dim", WIDTH_MAX),
            ("blocks", BLOCKS_MAX),
            ("horizon", HORIZON_MAX),
        ):
            if getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most}, got {getattr(self, name)}")
        if not (SAMPLES_MIN <= self.samples <= SAMPLES_MAX and SAMPLES_MIN <= self.val_samples <= SAMPLES_MAX):
            raise ConfigError(f"samples and val_samples must be in {SAMPLES_MIN}..{SAMPLES_MAX}")
        if not 1 <= self.sample_steps <= min(STEPS_MAX, self.schedule.steps):  # a model must forecast with its defaults
            raise ConfigError(
                f"sample_steps must be in 1..{min(STEPS_MAX, self.schedule.steps)}, got {self.sample_steps}"
            )
        if not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be > 0, got {self.max_minutes}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ConfigError("lr must be > 0 and weight_decay >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.split is not None and not self.split[0] < self.split[1]:
            raise ConfigError(f"split dates must increase, got {self.split}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"unknown device {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the plain-data form."""
        d = asdict(self)
        d["split"] = list(self.split) if self.split else None
        d["series"] = list(self.series)
        d["inputs"] = list(self.inputs)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from plain data; unknown keys are refused."""
        d = check_field_types(cls, data, "TrainConfig")  # unknown keys, wrong plain types
        try:
            if isinstance(d.get("context"), dict):
                d["context"] = ContextSpec.from_dict(d["context"])
            if isinstance(d.get("schedule"), dict):
                d["schedule"] = ScheduleConfig(**check_field_types(ScheduleConfig, d["schedule"], "schedule"))
            if d.get("split") is not None:
                d["split"] = (int(d["split"][0]), int(d["split"][1]))
            if d.get("series") is not None:
                d["series"] = tuple(d["series"])
            if d.get("inputs") is not None:
                d["inputs"] = tuple(d["inputs"])
            return cls(**d)
        except (
            TypeError,
            ValueError,
            IndexError,
            KeyError,
            AttributeError,
        ) as exc:  # a nested value of the wrong shape
            raise ConfigError(f"TrainConfig: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class TrainProgress:
    """One progress report (every evaluation)."""

    step: int
    max_steps: int
    elapsed_s: float
    budget_s: float
    loss: float
    val_crps: float
    best_val_crps: float


@dataclass(frozen=True, slots=True)
class TrainResult:
    """Outcome of :func:`train`: the checkpoint path, its version and manifest."""

    checkpoint: Path
    version: str
    metrics: dict[str, Any]
    manifest: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Windows:
    cond: np.ndarray  # [N, D] raw conditioning
    target: np.ndarray  # [N, H] scaled returns (clipped)
    cum: np.ndarray  # [N, H] realised cumulative log change (unscaled, unclipped)
    sigma: np.ndarray  # [N]
    origin_ms: np.ndarray  # [N] close time of the origin candle
    first_ms: np.ndarray  # [N] close time of the first target candle
    end_ms: np.ndarray  # [N] close time of the last target candle
    series: np.ndarray | None = None  # [N] series index of a global model's windows

    def take(self, idx: np.ndarray) -> _Windows:
        return _Windows(
            self.cond[idx],
            self.target[idx],
            self.cum[idx],
            self.sigma[idx],
            self.origin_ms[idx],
            self.first_ms[idx],
            self.end_ms[idx],
            None if self.series is None else self.series[idx],
        )

    def __len__(self) -> int:
        return len(self.sigma)


@dataclass(frozen=True, slots=True)
class _Clock:
    """The wall-clock budget of one :func:`train` call on a monotonic clock ``now``."""

    now: Callable[[], float]
    start: float
    budget_s: float

    def elapsed(self) -> float:
        return self.now() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()


@dataclass(slots=True)
class _PostBudget:
    """The windows that calibration and test scoring sample within the budget's remainder.

    ``calib_planned`` and ``test_planned`` are the configured numbers (capped by the sets;
    ``test_planned`` counts a global model's per-series test windows too). Each phase
    samples its first batch of the configured set, timed, and asks :meth:`share` how
    many windows the time left allows for it and the phases after it; the batch is kept
    when nothing is cut, so a budget that does not bind changes no number.
    """

    clock: _Clock
    calib_planned: int
    test_planned: int
    calib_used: int = 0
    test_used: int = 0
    cut: bool = False
    window_s: list[float] = field(default_factory=list)

    def share(self, n_planned: int, window_s: float, done: int, later: int) -> int:
        """Windows of a phase planned at ``n_planned`` that fit the time left.

        ``window_s``: the measured sampling time of one window; ``done``: windows of this
        phase already sampled (kept if nothing is cut); ``later``: windows the phases after
        it plan. Everything fits: ``n_planned``. Otherwise the time left is shared in
        proportion to the plans (this phase sampled afresh), never below
        :data:`BUDGET_MIN_WINDOWS`.
        """
        self.window_s.append(window_s)
        left = self.clock.left()
        cost = _BUDGET_MARGIN * window_s
        if cost * (n_planned - done + later) <= left:
            return n_planned
        share = max(left, 0.0) / (cost * (n_planned + later)) if cost > 0 else 0.0  # 0: past the budget
        n = max(min(n_planned, BUDGET_MIN_WINDOWS), min(n_planned, math.floor(share * n_planned)))
        self.cut = self.cut or n < n_planned
        return n

    def metrics(self) -> dict[str, Any]:
        """The budget's entry in the metrics: the windows used against the plan, whether
        the budget cut them, and whether the run ended past the budget anyway."""
        return {
            "budget_s": self.clock.budget_s,
            "calib_windows": self.calib_used,
            "calib_windows_planned": self.calib_planned,
            "test_windows": self.test_used,
            "test_windows_planned": self.test_planned,
            "cut": self.cut,
            "exceeded": self.clock.left() < 0,
            "window_ms": [round(1000.0 * w, 4) for w in self.window_s],
        }


def _close_times(ts_ms: np.ndarray, tf: Timeframe) -> np.ndarray:
    if not tf.is_daily:
        return ts_ms + tf.duration_ms
    return np.array([tf.end_of(int(t)) for t in ts_ms], dtype=np.int64)


def _windows(candles: pd.DataFrame, config: TrainConfig, extra: np.ndarray | None) -> _Windows:
    missing = {"ts_ms", "high", "low", "close"} - set(candles.columns)
    if missing:
        raise ConfigError(f"candles frame lacks columns {sorted(missing)}")
    frame = candles.sort_values("ts_ms", kind="stable")
    if extra is not None:
        if len(extra) != len(candles):
            raise ConfigError(f"extra has {len(extra)} rows, candles {len(candles)}")
        extra = np.asarray(extra, dtype=np.float64)[frame.index.to_numpy()]
    frame = frame.reset_index(drop=True)
    # of a repeated open time the first row (file order; the sort is stable) is kept, as the
    # stream keeps the first candle of an open time it receives (inputs.frame_candles: the same)
    keep = ~frame["ts_ms"].duplicated(keep="first").to_numpy()
    tf = Timeframe.parse(config.timeframe)
    close_ms = _close_times(frame["ts_ms"].to_numpy(dtype=np.int64), tf)
    if config.until_ms is not None:
        keep &= close_ms <= config.until_ms
    frame, close_ms = frame[keep].reset_index(drop=True), close_ms[keep]
    if extra is not None:
        extra = extra[keep]
    feats = build_features(
        close_ms,
        frame["high"].to_numpy(dtype=np.float64),
        frame["low"].to_numpy(dtype=np.float64),
        frame["close"].to_numpy(dtype=np.float64),
        config.context,
        extra,
    )
    h = config.horizon
    n = len(close_ms)
    idx = np.flatnonzero(feats.ready[: max(n - h, 0)])
    if idx.size == 0:
        raise ModelError(f"not enough candles ({n}) for context {config.context.ready_after} + horizon {h}")
    lc = feats.log_close
    steps = np.arange(1, h + 1)
    cum = lc[idx[:, None] + steps] - lc[idx][:, None]
    rets = np.diff(lc[idx[:, None] + np.arange(0, h + 1)], axis=1)
    sig = feats.sigma[idx]
    target = np.clip(rets / sig[:, None], -config.context.clip, config.context.clip)
    return _Windows(feats.cond[idx], target, cum, sig, close_ms[idx], close_ms[idx + 1], close_ms[idx + h])


def _pooled_windows(
    candles: Mapping[str, pd.DataFrame], config: TrainConfig, extra: Mapping[str, np.ndarray] | None
) -> _Windows:
    """Windows of each series of a global model, concatenated (none spans two series).

    Each series gets its own features (its own EWMA volatility, context and calendar);
    ``series`` holds the index of ``config.series`` each window comes from.
    """
    missing = set(config.series) - set(candles)
    if missing or set(candles) - set(config.series):
        raise ConfigError(f"candles name series {sorted(candles)}, the config {list(config.series)}")
    parts = []
    for i, name in enumerate(config.series):
        try:
            w = _windows(candles[name], config, None if extra is None else extra[name])
        except ModelError as exc:
            raise ModelError(f"series {name}: {exc}") from exc
        parts.append(
            _Windows(
                w.cond, w.target, w.cum, w.sigma, w.origin_ms, w.first_ms, w.end_ms, np.full(len(w), i, dtype=np.int64)
            )
        )
    return _Windows(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Windows)))


def _split(w: _Windows, config: TrainConfig) -> tuple[_Windows, _Windows, _Windows, tuple[int, int]]:
    if config.split is not None:
        d1, d2 = config.split
    else:
        times = np.sort(w.origin_ms)
        d1, d2 = int(times[int(0.6 * len(times))]), int(times[int(0.8 * len(times))])
    tr = np.flatnonzero(w.end_ms <= d1)
    va = np.flatnonzero((w.origin_ms >= d1) & (w.end_ms <= d2))
    te = np.flatnonzero(w.origin_ms >= d2)
    if tr.size < config.batch_size or va.size < 16:
        raise ModelError(
            f"split leaves {tr.size} train / {va.size} validation windows; give more data or other split dates"
        )
    return w.take(tr), w.take(va), w.take(te), (d1, d2)


def _leakage_check(train: _Windows, val: _Windows, test: _Windows) -> dict[str, float]:
    """KS two-sample tests on target time stamps: a later set's targets lie wholly after the earlier's.

    The statistic is 1 exactly when the two sets of target times do not overlap.
    """
    out: dict[str, float] = {}
    pairs = [("train_val", train.end_ms, val.first_ms)]
    if len(test):
        pairs.append(("val_test", val.end_ms, test.first_ms))
    for name, early, late in pairs:
        stat = float(ks_2samp(early, late).statistic)
        # the statistic is also 1 for sets in the wrong order: the bounds decide that
        if stat < 1.0 or early.max() >= late.min():
            raise ModelError(
                f"leakage: {name} time stamps overlap (KS statistic {stat:.4f}; the earlier "
                f"set's last target closes at {int(early.max())} ms, the later set's first "
                f"at {int(late.min())} ms)"
            )
        out[f"ks_time_{name}"] = stat
    # information only: shift of the scaled-return distribution between train and later sets
    out["ks_returns_train_val"] = float(ks_2samp(train.target[:, 0], val.target[:, 0]).statistic)
    if len(test):
        out["ks_returns_train_test"] = float(ks_2samp(train.target[:, 0], test.target[:, 0]).statistic)
    return out


def _spread_idx(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


def _sample_cum(
    model: DiffusionModel,
    w: _Windows,
    samples: int,
    steps: int,
    seed: int,
    device: torch.device,
    calibrated: bool,
    batch: int = _SAMPLE_BATCH,
    start: int = 0,
    stop: int | None = None,
) -> np.ndarray:
    """Return sampled cumulative log changes ``[N, S, H]`` (float64, unscaled) of windows
    ``start:stop`` of ``w`` (all by default). Window ``i`` draws its noise from ``seed + i``
    and batches start at multiples of ``batch``, so sampling a set in two ranges split at
    such a multiple gives the same numbers as sampling it at once."""
    out = []
    h = model.config.horizon
    end = len(w) if stop is None else min(stop, len(w))
    model.eval()
    with torch.inference_mode():
        for lo in range(start, end, batch):
            hi = min(lo + batch, end)
            cond = torch.as_tensor(w.cond[lo:hi], dtype=torch.float32, device=device)
            noise = torch.stack([antithetic_noise(seed + i, samples, h) for i in range(lo, hi)]).to(device)
            series = None if w.series is None else torch.as_tensor(w.series[lo:hi], device=device)
            x0 = model.sample(cond, noise, steps, series)
            paths = model.calibrated_paths(x0) if calibrated else torch.cumsum(x0, dim=-1)
            out.append(paths.cpu().numpy().astype(np.float64) * w.sigma[lo:hi, None, None])
    return np.concatenate(out)


def _quantiles(cum: np.ndarray) -> np.ndarray:
    """``[N, S, H]`` → ``[N, H, Q]``."""
    return np.moveaxis(np.quantile(cum, QUANTILE_LEVELS, axis=1), 0, -1)


def _fit_scales(q: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-step scale minimising the quantile CRPS; returns ``(scale [H], crps [H])``."""
    losses = np.stack([crps_quantiles(g * q, y).mean(axis=0) for g in _SCALE_GRID])  # [G, H]
    best = _smooth_steps(losses).argmin(axis=0)
    return _SCALE_GRID[best], losses[best, np.arange(q.shape[1])]


def _fit_quantile_scales(q: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per (step, level) factor minimising that level's pinball loss; ``[H, Q]``."""
    tau = np.asarray(QUANTILE_LEVELS)
    losses = [pinball_loss(tau, g * q, y[:, :, None]).mean(axis=0) for g in _QSCALE_GRID]  # [H, Q] each
    out: np.ndarray = _QSCALE_GRID[np.stack(losses).argmin(axis=0)]
    return out


def _fit_rw_weight(model: DiffusionModel, q: np.ndarray, w: _Windows) -> np.ndarray:
    """Per-step weight of the random walk in the quantile average, by the one-standard-error rule.

    For each step, the validation CRPS (smoothed over neighbouring steps) of every grid
    weight is compared with the best weight's: the largest weight whose excess over the
    best is at most one standard error of that excess is chosen. The error comes from
    the means of blocks of ``H`` consecutive windows (overlapping targets make single
    windows dependent); with fewer than two blocks the best weight is taken. A weight
    below 1 thus needs a validation gain of the network larger than its noise: a model
    calibrated on few windows (one validation year of daily candles) leans on the
    random walk unless the gain is clear, one calibrated on many (a global model's
    pooled windows, hourly candles) keeps the network where it helps.
    """
    h = q.shape[1]
    per_window = []
    for g in _RW_GRID:
        model.rw_weight.fill_(float(g))
        per_window.append(_smooth_steps(crps_quantiles(model.calibrate_quantiles(q, w.sigma), w.cum)))
    losses = np.stack(per_window)  # [G, N, H]
    mean = losses.mean(axis=1)  # [G, H]
    best = mean.argmin(axis=0)  # [H]
    blocks = losses.shape[1] // h
    if blocks < 2:
        out: np.ndarray = _RW_GRID[best]
        return out
    excess = losses - losses[best, :, np.arange(h)].T[None]  # [G, N, H]
    block_means = excess[:, : blocks * h].reshape(len(_RW_GRID), blocks, h, h).mean(axis=2)  # [G, B, H]
    se = block_means.std(axis=1, ddof=1) / math.sqrt(blocks)  # [G, H]
    within = mean - mean[best, np.arange(h)] <= se  # the best weight itself always qualifies
    out = _RW_GRID[len(_RW_GRID) - 1 - within[::-1].argmax(axis=0)]
    return out


def _smooth_steps(losses: np.ndarray) -> np.ndarray:
    """Average ``[G, H]`` loss curves over neighbouring steps (±H/12) to cut selection noise."""
    h = losses.shape[1]
    half = h // 12
    if half == 0:
        return losses
    c = np.cumsum(np.pad(losses, ((0, 0), (1, 0))), axis=1)
    lo = np.clip(np.arange(h) - half, 0, h)
    hi = np.clip(np.arange(h) + half + 1, 0, h)
    out: np.ndarray = (c[:, hi] - c[:, lo]) / (hi - lo)
    return out


def _scores(q: np.ndarray, w: _Windows) -> dict[str, Any]:
    crps = crps_quantiles(q, w.cum).mean(axis=0)
    rw = crps_quantiles(random_walk_log_quantiles(w.sigma, w.cum.shape[1]), w.cum).mean(axis=0)
    cover = {name: hits.mean(axis=0) for name in ("50", "90") if (hits := interval_hits(q, w.cum, name)) is not None}
    cover50, cover90 = cover["50"], cover["90"]
    return {
        "n": len(w),
        "crps": crps.tolist(),
        "rw_crps": rw.tolist(),
        "skill": (1.0 - crps / rw).tolist(),
        "cover50": cover50.tolist(),
        "cover90": cover90.tolist(),
    }


def train(
    config: TrainConfig,
    candles: pd.DataFrame | Mapping[str, pd.DataFrame],
    model_dir: str | Path,
    *,
    extra: np.ndarray | Mapping[str, np.ndarray] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    protected: Protected | None = None,
    clock: Callable[[], float] | None = None,
) -> TrainResult:
    """Train, calibrate, score and save a model; return the checkpoint.

    Parameters
    ----------
    config
        Training configuration.
    candles
        Closed candles of one series with columns ``ts_ms`` (bar open), ``high``, ``low``,
        ``close`` (as :func:`forex_diffusion.ingest.readers.read_candles` gives). Not modified.
        A global model (``config.series`` given) takes ``{series name: frame}``: windows
        are built per series (never across two), the same split dates cut every series,
        and the training windows are pooled (targets are in volatility units).
    model_dir
        Checkpoint root; the checkpoint goes to ``model_dir/<key>/<version>.pt``.
    extra
        Optional ``[N, E]`` extra features aligned with ``candles`` rows (a mapping by
        series name for a global model).
    progress
        Called after each validation evaluation.
    protected
        Versions the checkpoint retention must keep (``(key, candidates) -> kept``, e.g. the
        versions a model registry names); see :class:`~.checkpoint.CheckpointManager`.
    clock
        Monotonic time in seconds that the budget (``config.max_minutes``) is measured on;
        :func:`time.monotonic` by default.

    Returns
    -------
    TrainResult
        Checkpoint path, version, metrics (validation/test CRPS, skill vs the EWMA random
        walk and coverage per step, calibration scales, leakage KS statistics, and
        ``budget``: the calibration and test windows used against those configured).

    Notes
    -----
    ``config.max_minutes`` bounds the whole call, from building the windows to scoring;
    saving the checkpoint (well under a second) comes after it. The training loop stops
    early enough to leave the phases after it at least a quarter of the budget (at most
    60 s) and, once an evaluation has been timed, the time the configured calibration and
    test windows need, up to half the budget. Calibration and test scoring each time
    their first batch of windows; when the time left cannot cover the configured windows,
    they use evenly spaced subsets that fit, never fewer than :data:`BUDGET_MIN_WINDOWS`
    per set (``budget.cut``, logged at WARNING). A budget too small even for those ends
    with them and past the budget (``budget.exceeded``, logged at WARNING). A budget
    that cuts nothing changes no number: the same windows and seeds as without one.
    """
    now = time.monotonic if clock is None else clock
    budget = _Clock(now, now(), config.max_minutes * 60.0)
    device = resolve_device(config.device)
    inputs = InputSpec(config.inputs, config.timeframe)
    _check_extra(inputs, extra)
    windows = _series_windows(config, candles, extra)
    train_w, val_w, test_w, split_ms = _split(windows, config)
    ks = _leakage_check(train_w, val_w, test_w)
    e_dim = _extra_dim(extra)
    model, mconf = _new_model(config, config.context.cond_dim(e_dim), train_w, device)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "train start key=%s params=%d train=%d val=%d test=%d device=%s",
        model_key(config.symbol, config.timeframe, config.horizon),
        n_params,
        len(train_w),
        len(val_w),
        len(test_w),
        device,
    )
    n_calib, n_test = _planned_windows(config, val_w, test_w)
    fit = _fit(model, config, train_w, val_w, (n_calib, n_test), device, budget=budget, progress=progress)
    model.load_state_dict(fit.best_state)
    post = _PostBudget(budget, n_calib, n_test)
    metrics: dict[str, Any] = {
        "params": n_params,
        "steps": fit.steps,
        "stop_reason": fit.stop_reason,
        "best_val_crps": fit.best_val,
        "train_seconds": budget.elapsed(),
        **_calibrate(model, config, val_w, device, post),
        **ks,
    }
    if len(test_w):
        metrics.update(_test_scores(model, config, test_w, device, post))
    metrics["train_seconds"] = budget.elapsed()
    metrics["budget"] = post.metrics()
    _log_budget(metrics["budget"], metrics["train_seconds"])
    manifest = _manifest(config, mconf, inputs, e_dim, windows, split_ms, (train_w, val_w, test_w), metrics)
    mgr = CheckpointManager(model_dir, keep=config.keep, protected=protected)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path = mgr.save(state, manifest, key=model_key(config.symbol, config.timeframe, config.horizon))
    saved = json_manifest(path)
    logger.info(
        "train done path=%s steps=%d stop=%s seconds=%.1f", path, fit.steps, fit.stop_reason, metrics["train_seconds"]
    )
    return TrainResult(checkpoint=path, version=saved["version"], metrics=metrics, manifest=saved)


def _log_budget(b: dict[str, Any], seconds: float) -> None:
    """Say at WARNING when the budget cut the windows or was exceeded."""
    if b["cut"]:
        logger.warning(
            "train budget cut windows budget_s=%.3g calib=%d/%d test=%d/%d window_ms=%s",
            b["budget_s"],
            b["calib_windows"],
            b["calib_windows_planned"],
            b["test_windows"],
            b["test_windows_planned"],
            b["window_ms"],
        )
    if b["exceeded"]:
        logger.warning(
            "train budget exceeded seconds=%.1f budget_s=%.3g calib=%d test=%d (minimum %d windows per set)",
            seconds,
            b["budget_s"],
            b["calib_windows"],
            b["test_windows"],
            BUDGET_MIN_WINDOWS,
        )


def _series_windows(
    config: TrainConfig,
    candles: pd.DataFrame | Mapping[str, pd.DataFrame],
    extra: np.ndarray | Mapping[str, np.ndarray] | None,
) -> _Windows:
    """One series' windows, or a global model's pooled per series (``config.series``)."""
    if config.series:
        if not isinstance(candles, Mapping) or (extra is not None and not isinstance(extra, Mapping)):
            raise ConfigError("a global model (config.series) takes candles (and extra) by series name")
        return _pooled_windows(candles, config, extra)
    if isinstance(candles, Mapping) or isinstance(extra, Mapping):
        raise ConfigError("candles by series name need config.series (a global model)")
    return _windows(candles, config, extra)


def _extra_dim(extra: np.ndarray | Mapping[str, np.ndarray] | None) -> int:
    if extra is None:
        return 0
    if isinstance(extra, Mapping):
        return int(np.asarray(next(iter(extra.values()))).shape[1])
    return int(np.asarray(extra).shape[1])


def _new_model(
    config: TrainConfig, cond_dim: int, train_w: _Windows, device: torch.device
) -> tuple[DiffusionModel, ModelConfig]:
    """The untrained model (its weights drawn from ``config.seed``), normalised on ``train_w``."""
    torch.manual_seed(config.seed)
    mconf = ModelConfig(
        denoiser=DenoiserConfig(
            horizon=config.horizon,
            cond_dim=cond_dim,
            width=config.width,
            cond_width=config.cond_width,
            blocks=config.blocks,
            time_dim=config.time_dim,
            series=len(config.series) if config.series_embedding else 0,
            series_dim=config.series_embedding,
        ),
        schedule=config.schedule,
        x0_clip=config.context.clip,
    )
    model = DiffusionModel(mconf)
    model.set_normalisation(
        torch.as_tensor(train_w.cond.mean(axis=0), dtype=torch.float32),
        torch.as_tensor(train_w.cond.std(axis=0), dtype=torch.float32),
    )
    model.to(device)
    return model, mconf


@dataclass(frozen=True, slots=True)
class _Fit:
    """How a training run ended: its steps, why it stopped, and the best averaged weights."""

    steps: int
    stop_reason: str
    best_val: float
    best_state: dict[str, Any]


def _fit(
    model: DiffusionModel,
    config: TrainConfig,
    train_w: _Windows,
    val_w: _Windows,
    planned: tuple[int, int],
    device: torch.device,
    *,
    budget: _Clock,
    progress: Callable[[TrainProgress], None] | None,
) -> _Fit:
    """The training loop: AdamW on the denoising loss, an exponential moving average of the
    weights, evaluated on validation windows every ``eval_every`` steps; early stopping,
    and a time budget that keeps a share for the last evaluation, calibration and scoring
    (``planned``: their calibration and test windows)."""
    x_all = torch.as_tensor(train_w.target, dtype=torch.float32, device=device)
    c_all = torch.as_tensor(train_w.cond, dtype=torch.float32, device=device)
    s_all = None if train_w.series is None else torch.as_tensor(train_w.series, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    idx_gen = torch.Generator(device="cpu").manual_seed(config.seed + 1)
    loss_fn: Callable[..., torch.Tensor] = model.loss
    if config.compile:
        loss_fn = torch.compile(model.loss)
    val_sub = val_w.take(_spread_idx(len(val_w), config.val_windows))
    ema = copy.deepcopy(model)  # the averaged weights are evaluated and saved
    ema_params = list(ema.parameters())
    params = list(model.parameters())
    best_state = copy.deepcopy(model.state_dict())
    best_val, bad_evals, step, last_loss = math.inf, 0, 0, math.nan
    running = 0.0
    # time kept for calibration and scoring: at least min(25 %, 60 s), and, once an
    # evaluation has been timed, that time scaled by the sampling work still to do, up to
    # half the budget (past it, calibration and scoring cut their windows to fit); the
    # last evaluation's time is kept too
    budget_s = budget.budget_s
    reserve = min(0.25 * budget_s, 60.0)
    n_calib, n_test = planned
    eval_s = math.inf
    work_ratio = (n_calib + n_test) * config.samples / max(1, len(val_sub) * config.val_samples)
    stop_reason = "max_steps"
    while step < config.max_steps:
        model.train()
        bi = torch.randint(0, len(train_w), (config.batch_size,), generator=idx_gen).to(device)
        loss = loss_fn(x_all[bi], c_all[bi], gen) if s_all is None else loss_fn(x_all[bi], c_all[bi], gen, s_all[bi])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema_params, params, strict=True):
                e.lerp_(p, 1.0 - config.ema_decay)
        step += 1
        running += float(loss.detach())
        out_of_time = budget.elapsed() + (0.0 if math.isinf(eval_s) else eval_s) > budget_s - reserve
        if step % config.eval_every == 0 or out_of_time or step == config.max_steps:
            last_loss = running / max(1, (step - 1) % config.eval_every + 1)
            running = 0.0
            t_eval = budget.now()
            # out of time before any evaluation: this one only scores the averaged weights
            # (nothing to compare with), on BUDGET_MIN_WINDOWS evenly spaced validation windows
            vw = (
                val_sub.take(_spread_idx(len(val_sub), BUDGET_MIN_WINDOWS))
                if out_of_time and math.isinf(eval_s)
                else val_sub
            )
            cum = _sample_cum(ema, vw, config.val_samples, config.sample_steps, 10_000_019, device, calibrated=False)
            # the fastest evaluation so far (the first pays one-off set-up costs) times the work left
            eval_s = min(eval_s, budget.now() - t_eval)
            reserve = max(reserve, min(1.2 * work_ratio * eval_s, 0.5 * budget_s))
            _, crps_h = _fit_scales(_quantiles(cum), vw.cum)
            val_crps = float(crps_h.mean())
            if val_crps < best_val:
                best_val, bad_evals = val_crps, 0
                best_state = copy.deepcopy(ema.state_dict())
            else:
                bad_evals += 1
            logger.info("train eval step=%d loss=%.4f val_crps=%.3e best=%.3e", step, last_loss, val_crps, best_val)
            if progress is not None:
                progress(
                    TrainProgress(step, config.max_steps, budget.elapsed(), budget_s, last_loss, val_crps, best_val)
                )
            if bad_evals >= config.patience:
                stop_reason = "early_stopping"
                break
            if out_of_time:
                stop_reason = "time_budget"
                break
    return _Fit(steps=step, stop_reason=stop_reason, best_val=best_val, best_state=best_state)


def _coarse_to_fine(n: int) -> np.ndarray:
    """The order ``0..n-1`` by bit-reversed index: every prefix spreads over the whole range."""
    if n <= 1:
        return np.arange(n)
    k = (n - 1).bit_length()
    return np.argsort([int(f"{i:0{k}b}"[::-1], 2) for i in range(n)], kind="stable")


def _sample_within(
    model: DiffusionModel,
    config: TrainConfig,
    full: _Windows,
    sets: Callable[[int], _Windows],
    seed: int,
    device: torch.device,
    *,
    calibrated: bool,
    post: _PostBudget,
    later: int,
) -> tuple[_Windows, np.ndarray]:
    """Sample the windows of one phase after training within the budget; return them (in
    time order) with their sampled paths.

    The first batch of the configured set ``full`` is timed. When the time left covers the
    rest (and the ``later`` windows of the phases after this one), the rest is sampled in
    the same batches with the same seeds (the numbers of a run without a budget), batches
    taken coarse to fine over the span; else the ``n`` windows :meth:`_PostBudget.share`
    allows, ``sets(n)``, are sampled afresh, coarse to fine. Before each batch the time left
    is checked at the last batch's rate (the load may change): when the batch would eat into
    the later phases' share, the phase stops with the windows sampled so far (an evenly
    spread part of the span), never fewer than :data:`BUDGET_MIN_WINDOWS`.
    """
    size = _SAMPLE_BATCH

    def timed(w: _Windows, lo: int) -> tuple[np.ndarray, float]:
        t0 = post.clock.now()
        out = _sample_cum(
            model, w, config.samples, config.sample_steps, seed, device, calibrated=calibrated, start=lo, stop=lo + size
        )
        return out, max(post.clock.now() - t0, 0.0) / max(1, len(out))

    first, rate = timed(full, 0)
    n = post.share(len(full), rate, len(first), later)
    keep_later = later * n / len(full)  # the later phases' share at this phase's
    least = min(len(full), BUDGET_MIN_WINDOWS)

    def room(next_len: int, done: int) -> bool:
        need = _BUDGET_MARGIN * rate * (next_len + keep_later)
        return done < least or post.clock.left() >= need

    if n == len(full):
        parts = {0: first}
        done = len(first)
        for b in _coarse_to_fine(math.ceil(len(full) / size))[1:]:
            if not room(min(size, len(full) - b * size), done):
                post.cut = True
                break
            parts[int(b)], rate = timed(full, int(b) * size)
            done += len(parts[int(b)])
        kept = sorted(parts)
        if done == len(full):
            return full, np.concatenate([parts[b] for b in kept])
        idx = np.concatenate([np.arange(b * size, min((b + 1) * size, len(full))) for b in kept])
        return full.take(idx), np.concatenate([parts[b] for b in kept])
    cut = sets(n)
    perm = _coarse_to_fine(len(cut))
    ordered = cut.take(perm)
    got: list[np.ndarray] = []
    done = 0
    for lo in range(0, len(cut), size):
        if not room(min(size, len(cut) - lo), done):
            break
        part, rate = timed(ordered, lo)
        got.append(part)
        done += len(part)
    back = np.argsort(perm[:done])  # to time order
    return cut.take(perm[:done][back]), np.concatenate(got)[back]


def _calibrate(
    model: DiffusionModel, config: TrainConfig, val_w: _Windows, device: torch.device, post: _PostBudget
) -> dict[str, Any]:
    """Fit the per-step spread, the per-level scales and the random-walk weight on validation
    windows into ``model``'s buffers; return them with the calibrated validation scores."""
    calib, cum = _sample_within(
        model,
        config,
        val_w.take(_spread_idx(len(val_w), config.calib_windows)),
        lambda n: val_w.take(_spread_idx(len(val_w), n)),
        20_000_003,
        device,
        calibrated=False,
        post=post,
        later=post.test_planned,
    )
    post.calib_used = len(calib)
    scales, _ = _fit_scales(_quantiles(cum), calib.cum)
    model.spread_scale.copy_(torch.as_tensor(scales, dtype=torch.float32))
    # fitted in volatility units (each window weighs the same), so the levels match coverage
    qscale = _fit_quantile_scales(
        _quantiles(cum * scales) / calib.sigma[:, None, None], calib.cum / calib.sigma[:, None]
    )
    model.quantile_scale.copy_(torch.as_tensor(qscale, dtype=torch.float32))
    rw_w = _fit_rw_weight(model, _quantiles(cum * scales), calib)
    model.rw_weight.copy_(torch.as_tensor(rw_w, dtype=torch.float32))
    val_scores = _scores(model.calibrate_quantiles(_quantiles(cum * scales), calib.sigma), calib)
    return {"spread_scale": scales.tolist(), "rw_weight": rw_w.tolist(), "val": val_scores}


def _series_test_sets(config: TrainConfig, test_w: _Windows) -> list[tuple[str, _Windows]]:
    """A global model's test windows by series (series without any left out)."""
    if test_w.series is None:
        return []
    out = []
    for i, name in enumerate(config.series):
        ws = test_w.take(np.flatnonzero(test_w.series == i))
        if len(ws):
            out.append((name, ws))
    return out


def _planned_windows(config: TrainConfig, val_w: _Windows, test_w: _Windows) -> tuple[int, int]:
    """Calibration and test windows the configuration asks for (test: with a global model's
    per-series test windows)."""
    n_test = len(_spread_idx(len(test_w), config.test_windows)) if len(test_w) else 0
    n_series = sum(len(_spread_idx(len(ws), config.test_windows)) for _, ws in _series_test_sets(config, test_w))
    return len(_spread_idx(len(val_w), config.calib_windows)), n_test + n_series


def _test_scores(
    model: DiffusionModel, config: TrainConfig, test_w: _Windows, device: torch.device, post: _PostBudget
) -> dict[str, Any]:
    """``test``: the calibrated model's scores on evenly spaced test windows; for a global
    model also ``test_series``, per series on the windows a per-series model of that series
    would score (the same evenly spaced subset of its test span), for side-by-side reports.
    A budget that cuts the test windows cuts each series' in the same proportion."""
    full = test_w.take(_spread_idx(len(test_w), config.test_windows))
    by_series = _series_test_sets(config, test_w)
    tsub, tcum = _sample_within(
        model,
        config,
        full,
        lambda n: test_w.take(_spread_idx(len(test_w), n)),
        30_000_001,
        device,
        calibrated=True,
        post=post,
        later=post.test_planned - len(full),
    )
    out: dict[str, Any] = {"test": _scores(model.calibrate_quantiles(_quantiles(tcum), tsub.sigma), tsub)}
    used = len(tsub)
    if test_w.series is not None:
        scored: dict[str, Any] = {}
        for name, ws in by_series:
            n = len(_spread_idx(len(ws), config.test_windows))
            if len(tsub) < len(full):  # the share the budget left the pooled test windows
                n = max(min(n, BUDGET_MIN_WINDOWS), n * len(tsub) // len(full))
            ws = ws.take(_spread_idx(len(ws), n))
            used += len(ws)
            scum = _sample_cum(model, ws, config.samples, config.sample_steps, 30_000_001, device, calibrated=True)
            scored[name] = _scores(model.calibrate_quantiles(_quantiles(scum), ws.sigma), ws)
        out["test_series"] = scored
    post.test_used = used
    return out


def _manifest(
    config: TrainConfig,
    mconf: ModelConfig,
    inputs: InputSpec,
    e_dim: int,
    windows: _Windows,
    split_ms: tuple[int, int],
    sets: tuple[_Windows, _Windows, _Windows],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """What the checkpoint's manifest says of the model, its inputs, its data and its scores."""
    train_w, val_w, test_w = sets
    return {
        "symbol": config.symbol,
        "timeframe": config.timeframe,
        "horizon": config.horizon,
        "model": mconf.to_dict(),
        "context": config.context.to_dict(),
        "train_config": config.to_dict(),
        "sampling": {"steps": config.sample_steps, "samples": config.samples},
        "extra_dim": e_dim,
        **({"inputs": inputs.to_dict()} if inputs else {}),
        **(
            {
                "series": list(config.series),
                "symbols": sorted({series_symbol(n) for n in config.series}),
                "series_embedding": config.series_embedding,
            }
            if config.series
            else {}
        ),
        "feature_spec": {
            "cond": [
                f"past_return[{config.context.window}]",
                f"past_range[{config.context.window}]",
                f"calendar[{CALENDAR_DIM}]",
                "vol_ratio",
                f"extra[{e_dim}]",
            ],
            "target": "next H log returns / EWMA sigma at origin",
        },
        "data_window": {
            "first_close_ms": int(windows.origin_ms.min()),
            "last_close_ms": int(windows.end_ms.max()),
            "split_ms": list(split_ms),
            "n_train": len(train_w),
            "n_val": len(val_w),
            "n_test": len(test_w),
        },
        "metrics": metrics,
    }


def _check_extra(inputs: InputSpec, extra: np.ndarray | Mapping[str, np.ndarray] | None) -> None:
    """The extra features must be the named inputs' (build them with :func:`.inputs.build_extra_frame`)."""
    if not inputs:
        return
    if extra is None:
        raise ConfigError(
            f"config.inputs names {','.join(inputs.names)} but no extra features were given: "
            "build them with forex_diffusion.diffusion.inputs.build_extra_frame"
        )
    for e in extra.values() if isinstance(extra, Mapping) else [extra]:
        if np.asarray(e).ndim != 2 or np.asarray(e).shape[1] != len(inputs.features):
            raise ConfigError(
                f"extra features have shape {np.asarray(e).shape}, the inputs "
                f"{','.join(inputs.names)} have {len(inputs.features)} columns"
            )


def json_manifest(path: Path) -> dict[str, Any]:
    """Return the manifest stored next to a checkpoint."""
    import json

    data: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    return data
