"""Data shipped inside the package: the real tick sample and the pre-trained models.

Both travel with ``pip install`` (package data), so ``forexd demo`` and the image find them
without the source tree.

- :data:`SAMPLE_TICKS`: OANDA EUR/USD ticks, 2014-05-05 to 07 (QuantConnect/Lean, Apache-2.0;
  see ``sample/README.md``).
- :data:`MODELS`: a model directory (``<SYMBOL>-<tf>-h<H>/<version>.pt`` + ``.json``) with the
  bundled diffusion models (see ``models/README.md``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MODELS", "SAMPLE_TICKS"]

_HERE = Path(__file__).resolve().parent
SAMPLE_TICKS = _HERE / "sample" / "oanda_eurusd_ticks_2014-05-05_07.csv.gz"
MODELS = _HERE / "models"
