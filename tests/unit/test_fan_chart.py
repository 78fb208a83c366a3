"""The ``forexd backtest --plot`` fan chart: a PNG with a title, axes in UTC time and price
with tick labels and axis titles, and a legend naming every layer (regression: it had none)."""

from __future__ import annotations

import doctest
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forex_diffusion.errors import ConfigError
from forex_diffusion.quality.evaluation import QUANTILE_LEVELS
from forex_diffusion.reports import _bitmap_font
from forex_diffusion.reports.backtest import BACKTEST_COLUMNS, fan_chart_png, fan_chart_text

AS_OF = 1_514_581_200_000  # 2017-12-29 21:00 UTC
LEGEND = {
    (198, 219, 239): "model 5-95 %",
    (107, 174, 214): "20-80 %",
    (33, 113, 181): "40-60 %",
    (8, 48, 107): "median",
    (203, 24, 29): "realised close",
    (120, 120, 120): "random walk 5-95 %",
}


def _rows(h: int = 24, as_of: int = AS_OF) -> pd.DataFrame:
    z = np.array([-1.645, -1.282, -0.842, -0.524, -0.253, 0.0, 0.253, 0.524, 0.842, 1.282, 1.645])
    assert len(z) == len(QUANTILE_LEVELS)
    realised = 1.2 + 0.0004 * np.sin(np.arange(1, h + 1))
    out = []
    for k in range(1, h + 1):
        sd = 0.0008 * np.sqrt(k)
        r: dict[str, object] = {
            "symbol": "EURUSD",
            "timeframe": "1h",
            "as_of": as_of,
            "step": k,
            "mean": 1.2,
            "p_up": 0.5,
            "realized": realised[k - 1],
        }
        for t, v in zip(QUANTILE_LEVELS, 1.2 + z * sd, strict=True):
            r[f"q{round(t * 100):02d}"] = v
            r[f"rw_q{round(t * 100):02d}"] = v + np.sign(v - 1.2) * 0.3 * sd
        out.append(r)
    return pd.DataFrame(out, columns=list(BACKTEST_COLUMNS))


def _read_png(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, text = 8, b"", {}
    width = height = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            key, value = body.split(b"\x00", 1)
            text[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (raw[:, 0] == 0).all()  # filter type None on every row
    return raw[:, 1:].reshape(height, width, 3), text


def test_fan_chart_has_title_axis_titles_and_legend_text(tmp_path: Path) -> None:
    out = tmp_path / "fan.png"
    assert fan_chart_png(_rows(), out) == AS_OF
    img, text = _read_png(out)
    labels = fan_chart_text(_rows(), AS_OF)
    assert labels["title"] == "EURUSD 1h forecast at 2017-12-29 21:00 UTC, 24 steps"
    assert labels["x"] == "time (UTC), one step = 1h"
    assert labels["y"] == "price (EURUSD)"
    assert text["Title"] == labels["title"]
    for name in LEGEND.values():
        assert name in labels["legend"] and name in text["Description"]
    assert "time (UTC)" in text["Description"] and "price (EURUSD)" in text["Description"]
    assert img.shape == (480, 900, 3)


def _has_text(img: np.ndarray, label: str, colour: tuple[int, int, int] = (40, 40, 40), scale: int = 1) -> bool:
    """Whether ``label``'s glyph mask appears in ``img``, drawn in ``colour`` on a clear box."""
    mask = _bitmap_font.text_mask(label, scale)
    ink = (img == colour).all(axis=2)
    h, w = mask.shape
    r0, c0 = np.argwhere(mask)[0]
    for y, x in np.argwhere(ink):
        top, left = y - r0, x - c0
        if (
            0 <= top
            and 0 <= left
            and top + h <= ink.shape[0]
            and left + w <= ink.shape[1]
            and (ink[top : top + h, left : left + w] == mask).all()
        ):
            return True
    return False


def test_the_png_draws_the_title_ticks_axis_titles_and_legend_swatches(tmp_path: Path) -> None:
    out = tmp_path / "fan.png"
    fan_chart_png(_rows(), out)
    img, _ = _read_png(out)
    labels = fan_chart_text(_rows(), AS_OF)
    # every legend colour is drawn as a 14-pixel swatch in the legend row, every layer in the plot
    legend_row = img[36:43]
    for colour in LEGEND:
        match = (legend_row == colour).all(axis=2).all(axis=0)
        assert match.sum() >= 14, colour
        assert (img[60:420] == colour).all(axis=2).sum() > 50, colour
    # the text itself, in the built-in font: title (double size), axis title, tick labels
    assert _has_text(img[:40], labels["title"], scale=2)
    assert _has_text(img[440:], labels["x"])
    assert _has_text(img, "2017-12-29 22:00")  # the first x tick: the first step's close, with its year
    assert _has_text(img, "1.200")  # a price tick
    for name in LEGEND.values():
        assert _has_text(img[30:50], name), name
    # the y title is drawn vertically on the left
    vertical = np.rot90(_bitmap_font.text_mask(labels["y"]))
    ink = (img[:, :30] == (40, 40, 40)).all(axis=2)
    assert ink.sum() == vertical.sum()


def test_fan_chart_of_an_explicit_as_of_and_refusals(tmp_path: Path) -> None:
    rows = pd.concat([_rows(), _rows(as_of=AS_OF + 3_600_000)])
    assert fan_chart_png(rows, tmp_path / "a.png", as_of=AS_OF) == AS_OF
    assert fan_chart_png(rows, tmp_path / "b.png") == AS_OF + 3_600_000  # the last fully realised
    with pytest.raises(ConfigError):
        fan_chart_png(rows, tmp_path / "c.png", as_of=AS_OF + 1)
    with pytest.raises(ConfigError):
        fan_chart_png(rows.iloc[0:0], tmp_path / "d.png")


def test_font_examples_run_and_every_glyph_is_5_by_7() -> None:
    assert doctest.testmod(_bitmap_font).failed == 0
    for ch, rows in _bitmap_font._GLYPHS.items():
        assert len(rows) == 7 and all(0 <= r < 32 for r in rows), ch
    assert _bitmap_font.text_width("ab", 2) == 2 * 11
    assert (_bitmap_font.text_mask("a") == _bitmap_font.text_mask("A")).all()
