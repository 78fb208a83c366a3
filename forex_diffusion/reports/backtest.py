"""Walk-forward backtest of a diffusion model through the per-candle pipeline.

:func:`backtest` feeds a :class:`~forex_diffusion.diffusion.SeriesContext` candle by
candle, exactly as the forecast agent does, asks the :class:`~forex_diffusion.diffusion.Predictor`
for a forecast at each due ``as_of`` (several as_of per sampling call: per-series seeding
makes each forecast independent of its batch), and pairs each step with the realised
close and the EWMA random-walk quantiles. The rows are those of ``forexd backtest``::

    symbol,timeframe,as_of,step,q05,…,q95,mean,p_up,realized,rw_q05,…,rw_q95

``as_of`` is the close time (epoch ms UTC) of the last closed candle; ``realized`` is the
close ``step`` candles later, empty where the file ends first.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from forex_diffusion.diffusion.context import ForecastRequest
from forex_diffusion.diffusion.inputs import build_extra, frame_candles
from forex_diffusion.diffusion.predictor import Forecast, Predictor
from forex_diffusion.errors import ConfigError
from forex_diffusion.forecast.result import not_prices
from forex_diffusion.forecast.touch import TOUCH_COLUMNS, realised_touch, touch_rows
from forex_diffusion.quality.evaluation import QUANTILE_COLUMNS, ewma_random_walk_quantiles
from forex_diffusion.reports._bitmap_font import draw_text, text_width
from forex_diffusion.timeframes import Timeframe, datetime_to_ms

__all__ = [
    "BACKTEST_COLUMNS",
    "BacktestConfig",
    "backtest",
    "fan_chart_png",
    "fan_chart_text",
    "parse_utc_date",
    "touch_frame",
    "write_backtest_csv",
]

logger = logging.getLogger(__name__)

#: Column order of the backtest CSV.
BACKTEST_COLUMNS: tuple[str, ...] = (
    "symbol",
    "timeframe",
    "as_of",
    "step",
    *QUANTILE_COLUMNS,
    "mean",
    "p_up",
    "realized",
    *[f"rw_{q}" for q in QUANTILE_COLUMNS],
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestConfig:
    """Parameters of a walk-forward backtest.

    Parameters
    ----------
    symbol, timeframe
        The series (the candles' symbol and period).
    from_ms, to_ms
        Forecast origins satisfy ``from_ms <= as_of <= to_ms``; candles before
        ``from_ms`` still warm the context up.
    every
        Forecast at every ``every``-th eligible candle.
    steps, samples
        Sampler settings (None: the model's defaults).
    batch
        Forecast origins per sampling call.
    """

    symbol: str
    timeframe: str
    from_ms: int | None = None
    to_ms: int | None = None
    every: int = 1
    steps: int | None = None
    samples: int | None = None
    batch: int = 32

    def __post_init__(self) -> None:
        Timeframe.parse(self.timeframe)
        if self.every < 1 or self.batch < 1:
            raise ConfigError("every and batch must be >= 1")
        if self.from_ms is not None and self.to_ms is not None and self.from_ms > self.to_ms:
            raise ConfigError("--from must not be after --to")


def parse_utc_date(text: str) -> int:
    """Parse ``YYYY-MM-DD`` or an ISO-8601 time (naive = UTC) to epoch ms.

    >>> parse_utc_date("2017-01-01")
    1483228800000
    """
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(f"bad date {text!r}: expected YYYY-MM-DD or ISO-8601") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return datetime_to_ms(dt)


def backtest(
    candles: pd.DataFrame,
    predictor: Predictor,
    config: BacktestConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    touch: list[pd.DataFrame] | None = None,
    others: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Walk forward through ``candles`` and return one row per (as_of, step).

    Parameters
    ----------
    candles
        Columns ``ts_ms`` (bar open), ``open``, ``high``, ``low``, ``close``; not modified.
    predictor
        The loaded model.
    config
        Window, cadence and sampler settings.
    progress
        Called with ``(candles_done, candles_total)`` after each sampling call.
    others
        Candles of the other pairs a model's ``cross`` input names (same columns and
        timeframe), by symbol. A model with named inputs gets them from
        :func:`~forex_diffusion.diffusion.inputs.build_extra` (the builder the stream
        runs); a candle whose inputs are not ready yet gets no forecast.
    touch
        When given, one frame per sampling call is appended to it: the touch probabilities
        of the predictor's bands with the realised touches (:func:`touch_frame`), for
        :func:`~forex_diffusion.forecast.touch.summarize_touch`. The returned rows do not change.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`BACKTEST_COLUMNS`, sorted by ``as_of`` then ``step``.
    """
    tf = Timeframe.parse(config.timeframe)
    bars = frame_candles(candles, config.symbol, tf.name)
    closes = np.array([b.close for b in bars])
    ctx = predictor.new_context(config.symbol, tf.name)
    extras = None
    if predictor.inputs:
        missing = [s for s in predictor.inputs.cross_symbols if s not in (others or {})]
        if missing:
            raise ConfigError(
                f"model {predictor.key} takes other pairs' returns as input: give the candles of {', '.join(missing)}"
            )
        extras = build_extra(
            bars,
            predictor.inputs,
            {s: frame_candles(f, s, tf.name) for s, f in (others or {}).items() if s in predictor.inputs.cross_symbols},
        )
    pending: list[tuple[int, ForecastRequest]] = []
    blocks: list[pd.DataFrame] = []
    eligible = 0
    h = predictor.horizon

    def flush(done: int) -> None:
        if not pending:
            return
        made = predictor.forecast([r for _, r in pending], steps=config.steps, samples=config.samples)
        # a forecast that is no prices is left out, as the stream leaves it out (not_prices)
        kept = [(i, r, f) for (i, r), f in zip(pending, made, strict=True) if not_prices(f, r.sigma) is None]
        if len(kept) < len(made):
            logger.warning("backtest.not_prices symbol=%s forecasts=%d", config.symbol, len(made) - len(kept))
        pending.clear()
        if kept:
            index, reqs, forecasts = [i for i, _, _ in kept], [r for _, r, _ in kept], [f for _, _, f in kept]
            blocks.append(_rows(index, reqs, forecasts, closes, h))
            if touch is not None:
                touch.append(touch_frame(index, forecasts, closes))
        if progress is not None:
            progress(done, len(bars))

    for i, bar in enumerate(bars):
        ctx.update(bar)
        if config.from_ms is not None and bar.close_ms < config.from_ms:
            continue
        if config.to_ms is not None and bar.close_ms > config.to_ms:
            break
        extra = None
        if extras is not None:
            extra = extras[i]
            if not np.isfinite(extra).all():
                continue  # the model's inputs are still warming up
        req = ctx.request(bar.close_ms, extra=extra)
        if req is None:
            continue
        eligible += 1
        if (eligible - 1) % config.every:
            continue
        pending.append((i, req))
        if len(pending) >= config.batch:
            flush(i + 1)
    flush(len(bars))
    if not blocks:
        logger.warning(
            "backtest produced no forecast symbol=%s from=%s to=%s", config.symbol, config.from_ms, config.to_ms
        )
        return pd.DataFrame({c: [] for c in BACKTEST_COLUMNS})
    return pd.concat(blocks, ignore_index=True)


def _rows(
    index: list[int], reqs: list[ForecastRequest], fcs: list[Forecast], closes: np.ndarray, h: int
) -> pd.DataFrame:
    n = len(fcs)
    idx = np.asarray(index)
    steps = np.arange(1, h + 1)
    pos = idx[:, None] + steps[None, :]
    realized = np.where(pos < len(closes), closes[np.minimum(pos, len(closes) - 1)], np.nan)
    rw = ewma_random_walk_quantiles(np.array([r.last_close for r in reqs]), np.array([r.sigma for r in reqs]), h)
    q = np.stack([f.quantiles for f in fcs])  # [n, H, Q]
    data: dict[str, object] = {
        "symbol": np.repeat([f.symbol for f in fcs], h),
        "timeframe": np.repeat([f.timeframe for f in fcs], h),
        "as_of": np.repeat([f.as_of_ms for f in fcs], h),
        "step": np.tile(steps, n),
    }
    for k, name in enumerate(QUANTILE_COLUMNS):
        data[name] = q[:, :, k].ravel()
    data["mean"] = np.stack([f.mean for f in fcs]).ravel()
    data["p_up"] = np.stack([f.p_up for f in fcs]).ravel()
    data["realized"] = realized.ravel()
    for k, name in enumerate(QUANTILE_COLUMNS):
        data[f"rw_{name}"] = rw[:, :, k].ravel()
    return pd.DataFrame(data, columns=list(BACKTEST_COLUMNS))


def touch_frame(index: list[int], fcs: list[Forecast], closes: np.ndarray) -> pd.DataFrame:
    """Touch rows (:data:`~forex_diffusion.forecast.touch.TOUCH_COLUMNS`) of forecasts made on the closes at ``index``."""
    done = [(i, f) for i, f in zip(index, fcs, strict=True) if f.touch is not None]
    if not done:
        return pd.DataFrame({c: [] for c in TOUCH_COLUMNS})
    t0 = done[0][1].touch
    assert t0 is not None
    sides = [1 if b.startswith("+") else -1 for b in t0.bands]
    levels = np.stack([f.touch.levels for _, f in done])  # type: ignore[union-attr]
    hit = realised_touch(closes, np.asarray([i for i, _ in done]), levels, sides, done[0][1].horizon)
    return touch_rows(
        np.asarray([f.as_of_ms for _, f in done]),
        t0.bands,
        levels,
        np.stack([f.touch.p for _, f in done]),  # type: ignore[union-attr]
        np.stack([f.touch.rw_p for _, f in done]),  # type: ignore[union-attr]
        hit,
    )


def write_backtest_csv(rows: pd.DataFrame, out: str | Path | IO[str]) -> None:
    """Write backtest rows as CSV (floats in shortest round-trip form, empty for NaN)."""
    rows.to_csv(out, index=False, na_rep="", lineterminator="\n")


_FAN_BANDS = (
    ((QUANTILE_COLUMNS[0], QUANTILE_COLUMNS[-1]), (198, 219, 239), "model 5-95 %"),
    ((QUANTILE_COLUMNS[2], QUANTILE_COLUMNS[8]), (107, 174, 214), "20-80 %"),
    ((QUANTILE_COLUMNS[4], QUANTILE_COLUMNS[6]), (33, 113, 181), "40-60 %"),
)
_FAN_LINES = (
    ("q50", (8, 48, 107), "median"),
    ("realized", (203, 24, 29), "realised close"),
    ("rw_q05", (120, 120, 120), "random walk 5-95 %"),
    ("rw_q95", (120, 120, 120), ""),
)
_INK, _GRID, _FRAME = (40, 40, 40), (232, 232, 232), (150, 150, 150)


def _ticks(lo: float, hi: float, n: int = 6) -> tuple[np.ndarray, int]:
    """Round tick values inside ``[lo, hi]`` and the decimals that print them."""
    raw = (hi - lo) / max(n, 1) or abs(hi) * 1e-4 or 1.0
    mag = 10.0 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = np.arange(np.ceil(lo / step) * step, hi + step * 1e-9, step)
    return ticks, int(max(0, -np.floor(np.log10(step)) + (1 if round(step / mag, 3) == 2.5 else 0)))


def fan_chart_text(rows: pd.DataFrame, as_of: int) -> dict[str, str]:
    """Return the title, axis titles and legend of the fan chart of the forecast at ``as_of``."""
    g = rows[rows["as_of"] == as_of]
    symbol, tf = str(g["symbol"].iloc[0]), str(g["timeframe"].iloc[0])
    when = datetime.fromtimestamp(as_of / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
    return {
        "title": f"{symbol} {tf} forecast at {when} UTC, {len(g)} steps",
        "x": f"time (UTC), one step = {tf}",
        "y": f"price ({symbol})",
        "legend": ", ".join(lbl for *_x, lbl in (*_FAN_BANDS, *_FAN_LINES) if lbl),
    }


def fan_chart_png(
    rows: pd.DataFrame, out: str | Path, *, as_of: int | None = None, width: int = 900, height: int = 480
) -> int:
    """Draw the fan chart of one forecast against the realised path as a PNG; return its as_of.

    Bands: model 5–95 % (light), 20–80 % (mid), 40–60 % (dark blue), median (navy line);
    the random walk's 5–95 % bounds (grey lines); realised closes (red). The x axis is the
    step's close time in UTC (ticks ``MM-DD HH:MM``, the first with its year), the y axis
    the price in the instrument's quote currency; a title names the series and the forecast
    time, a legend the layers. ``as_of`` defaults to the last forecast whose whole horizon
    is realised. Pure numpy + zlib with a built-in 5×7 font (no plotting library needed);
    the title, axis titles and legend are also stored as the PNG's ``Title`` and
    ``Description`` text chunks.
    """
    if rows.empty:
        raise ConfigError("no backtest rows to plot")
    done = rows.groupby("as_of")["realized"].apply(lambda s: bool(np.isfinite(s.to_numpy(dtype=float)).all()))
    if as_of is None:
        full = done[done].index
        as_of = int(full.max() if len(full) else rows["as_of"].max())
    g = rows[rows["as_of"] == as_of].sort_values("step")
    if g.empty:
        raise ConfigError(f"no forecast at as_of={as_of}")
    text = fan_chart_text(rows, as_of)
    dur = Timeframe.parse(str(g["timeframe"].iloc[0])).duration_ms
    t = as_of + g["step"].to_numpy(dtype=np.float64) * dur  # close time of each step
    cols = [*QUANTILE_COLUMNS, "rw_q05", "rw_q95", "realized"]
    vals = g[cols].to_numpy(dtype=np.float64)
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    pad = 0.05 * (hi - lo or abs(hi) * 1e-4 or 1.0)
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = 96, 24, 56, 56
    x0, x1, y0, y1 = left, width - right, top, height - bottom  # the plot area, in pixels
    t0, t1 = float(as_of), float(as_of + (len(g) + 0.5) * dur)
    img = np.full((height, width, 3), 255, dtype=np.uint8)

    def ypix(v: np.ndarray) -> np.ndarray:
        out: np.ndarray = y0 + (y1 - y0) * (1.0 - (v - lo) / (hi - lo))
        return out

    x = x0 + (x1 - x0) * (t - t0) / (t1 - t0)
    yticks, dec = _ticks(lo, hi)
    for v in yticks:
        py = int(round(float(ypix(np.asarray(v, dtype=np.float64)))))
        img[py, x0:x1] = _GRID
        img[py, x0 - 4 : x0] = _FRAME
        draw_text(img, f"{v:.{dec}f}", x0 - 7, py - 3, _INK, anchor="right")
    xs = np.arange(width)
    for (a, b), colour, _label in _FAN_BANDS:
        upper = np.interp(xs, x, ypix(g[b].to_numpy(dtype=np.float64)), left=np.nan, right=np.nan)
        lower = np.interp(xs, x, ypix(g[a].to_numpy(dtype=np.float64)), left=np.nan, right=np.nan)
        for xi in np.flatnonzero(np.isfinite(upper) & np.isfinite(lower)):
            img[int(max(upper[xi], y0)) : int(min(lower[xi], y1)) + 1, xi] = colour
    for name, colour, _label in _FAN_LINES:
        yv = g[name].to_numpy(dtype=np.float64)
        ok = np.isfinite(yv)
        if ok.sum() >= 1:
            _polyline(img, x[ok], ypix(yv[ok]), colour)
    # frame, x ticks (every k-th step), axis titles, title, legend
    img[y0, x0 : x1 + 1] = img[y1, x0 : x1 + 1] = _FRAME
    img[y0 : y1 + 1, x0] = img[y0 : y1 + 1, x1] = _FRAME
    every = max(1, int(np.ceil(len(g) / max(1, (x1 - x0) // 110))))
    free = x0  # labels never overlap: one that would is left out (its tick stays)
    for i in range(0, len(g), every):
        px = int(round(float(x[i])))
        img[y1 : y1 + 5, px] = _FRAME
        fmt = "%Y-%m-%d %H:%M" if i == 0 else ("%H:%M" if t1 - t0 < 86_400_000 else "%m-%d %H:%M")
        label = datetime.fromtimestamp(t[i] / 1000, tz=UTC).strftime(fmt)
        start = px if i == 0 else px - text_width(label) // 2
        if start >= free:
            draw_text(img, label, start, y1 + 9, _INK)
            free = start + text_width(label) + 12
    draw_text(img, text["x"], (x0 + x1) // 2, height - 20, _INK, anchor="middle")
    draw_text(img, text["y"], 8, (y0 + y1) // 2, _INK, anchor="middle", vertical=True)
    draw_text(img, text["title"], width // 2, 8, _INK, scale=2, anchor="middle")
    lx = x0
    for colour, label in [(c, lbl) for _ab, c, lbl in _FAN_BANDS] + [(c, lbl) for _n, c, lbl in _FAN_LINES if lbl]:
        img[36:43, lx : lx + 14] = colour
        draw_text(img, label, lx + 18, 36, _INK)
        lx += 18 + text_width(label) + 16
    _write_png(
        img,
        Path(out) if not isinstance(out, Path) else out,
        {
            "Title": text["title"],
            "Description": f"x: {text['x']}; y: {text['y']}; legend: {text['legend']}",
            "Software": "forexd backtest --plot",
        },
    )
    return as_of


def _polyline(img: np.ndarray, x: np.ndarray, y: np.ndarray, colour: tuple[int, int, int]) -> None:
    hgt, wid = img.shape[:2]
    pts = max(2, int(abs(x[-1] - x[0])) * 2 + 2) if len(x) > 1 else 1
    t = np.linspace(0, len(x) - 1, pts)
    xi = np.interp(t, np.arange(len(x)), x)
    yi = np.interp(t, np.arange(len(y)), y)
    for dx in (0, 1):
        for dy in (0, 1):
            cx = np.clip(np.round(xi).astype(int) + dx, 0, wid - 1)
            cy = np.clip(np.round(yi).astype(int) + dy, 0, hgt - 1)
            img[cy, cx] = colour


def _write_png(img: np.ndarray, path: Path, text: dict[str, str] | None = None) -> None:
    hgt, wid = img.shape[:2]
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(hgt))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    meta = b"".join(
        chunk(b"tEXt", k.encode("latin-1") + b"\x00" + v.encode("latin-1", "replace")) for k, v in (text or {}).items()
    )
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", wid, hgt, 8, 2, 0, 0, 0))
        + meta
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(png)
