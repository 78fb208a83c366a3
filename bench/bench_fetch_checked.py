"""Checked candle reads: ``fetch_candles(checked=True)`` (every row checked as the stream would
have written it, then built with float prices) against the unchecked read of the same rows,
in the same process on the same SQLite file; seconds per row and the checked/unchecked ratio.

The rows are clean 1m candles (all accepted: the checked read's worst case, every row built),
written with ``executemany`` into a temporary SQLite file; each read runs ``REPEATS`` times
alternately and the best time counts. Before the hoisting (per-row ``tf.bounds`` and a
dataclass ``replace`` per candle) the ratio was about 3.

Run: ``.venv/bin/python bench/bench_fetch_checked.py [ROWS]`` (default 200,000).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from _cli import optional_count  # bench/ is first on sys.path when a script runs

from forex_diffusion.storage import fetch_candles, make_engine

T0 = 1_400_000_000_000 - 1_400_000_000_000 % 60_000
REPEATS = 3


def _write(path: Path, n: int) -> None:
    make_engine(f"sqlite:///{path}").dispose()
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO candles (symbol, timeframe, open_ms, close_ms, open, high, low, close, volume, tick_count, "
        "spread_mean, spread_min, spread_max, revision, final) "
        "VALUES ('EURUSD', '1m', ?, ?, ?, ?, ?, ?, 10.0, 12, 1e-4, 5e-5, 2e-4, 0, 1)",
        ((T0 + i * 60_000, T0 + (i + 1) * 60_000, 1.1 + i * 1e-9, 1.2, 1.0, 1.15 - i * 1e-9) for i in range(n)),
    )
    con.commit()
    con.close()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    optional_count(ap, "rows", default=200_000, metavar="ROWS", help="candle rows to read (default 200000)")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    n = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        _write(path, n)
        eng = make_engine(f"sqlite:///{path}")
        best = {"unchecked": float("inf"), "checked": float("inf")}
        for _ in range(REPEATS):
            for name, checked in (("unchecked", False), ("checked", True)):
                t = time.perf_counter()
                got = fetch_candles(eng, "EURUSD", "1m", checked=checked)
                best[name] = min(best[name], time.perf_counter() - t)
                assert len(got) == n, (name, len(got))
        eng.dispose()
    print(f"fetch_candles, {n:,} SQLite 1m candles, best of {REPEATS}")
    print(f"{'':12}{'seconds':>10}{'us/row':>10}")
    for name, sec in best.items():
        print(f"{name:12}{sec:>10.3f}{1e6 * sec / n:>10.2f}")
    print(f"checked/unchecked per row: {best['checked'] / best['unchecked']:.2f}")


if __name__ == "__main__":
    main()
