"""Global model against per-series models over several seeds: issue 16's first acceptance test.

Run: ``.venv/bin/python bench/study_global.py daily --seeds 0-4 --out /tmp/study`` (and
``hourly``). Not a ``bench_*`` script (``make bench`` does not run it): one seed is a few
minutes (daily) to tens of minutes (hourly) of 1-thread training per model.

For every seed it trains, with ``forexd train`` itself (the protocol of
``docs/diffusion.md``, "Per-series against global"), one per-series model for each series
and one global model over all of them, then compares the global model's
``metrics.test_series[name]`` with the per-series model's ``metrics.test``: the same evenly
spaced test windows and the same sample noise per window. A run whose manifest is already
under ``--out`` is not trained again, so an interrupted study resumes where it stopped.

Prints, per series and step group, the per-series CRPS and skill, the global model's skill,
ΔCRPS (global / per-series - 1; minus is better) for every seed, and over the seeds: the
ΔCRPS of the seed-averaged CRPS (the test windows are the same for every seed, so this is
the ΔCRPS of the per-window CRPS averaged over seeds) with a t interval from the seeds'
spread, and how many seeds leave the global model worse. ``--series-embedding D`` gives the
global model a learnt series embedding (its runs apart, the per-series runs shared).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
LEAN = ROOT / "tests" / "data" / "lean"
SHARED = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Protocol:
    """One data set of the comparison: files, the per-series runs and the global run."""

    timeframe: str
    horizon: int
    split: str
    groups: tuple[tuple[int, int], ...]  # 1-based inclusive step ranges
    files: tuple[Path, ...]
    symbols: tuple[str, ...]  # daily: the symbols of one file; hourly: one symbol, several files

    def per_series(self) -> list[tuple[str, list[str]]]:
        """(series name the global model reports, the forexd train arguments selecting it)."""
        if len(self.files) == 1:
            return [(s, [str(self.files[0]), "--symbol", s]) for s in self.symbols]
        (sym,) = self.symbols
        return [(f"{sym}@{f.name.split('.')[0]}", [str(f), "--symbol", sym]) for f in self.files]

    def global_args(self) -> list[str]:
        return [*map(str, self.files), "--symbol", ",".join(self.symbols) if len(self.files) == 1 else self.symbols[0]]


PROTOCOLS = {
    "daily": Protocol(
        "1d",
        10,
        "2015-01-01,2017-01-01",
        ((1, 1), (2, 5), (6, 10)),
        (LEAN / "lean_oanda_d1_4pairs.csv.gz",),
        ("EURGBP", "EURUSD", "GBPUSD", "NZDUSD"),
    ),
    "hourly": Protocol(
        "1h",
        24,
        "2016-01-01,2017-01-01",
        ((1, 1), (2, 6), (7, 12), (13, 24)),
        (LEAN / "lean_oanda_eurusd_h1_2007_2017.csv.gz", SHARED / "lean_fxcm_eurusd_h1_2007_2017.csv.gz"),
        ("EURUSD",),
    ),
}


MAX_SEEDS = 1000


def _seeds(text: str) -> list[int]:
    out: dict[int, None] = {}  # each seed once, in order: 0-2,1 does not count seed 1 twice in the means
    for part in text.split(","):
        m = re.fullmatch(r"([0-9]{1,6})(?:-([0-9]{1,6}))?", part.strip())
        if m is None:  # "1-", "1--2", "x", "", a digit of another script: not a seed or a range of seeds
            raise argparse.ArgumentTypeError(f"bad seeds {text!r:.40}: {part!r:.20} is not N or N-M")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:  # 5-3 was no seed at all, silently
            raise argparse.ArgumentTypeError(f"bad seeds {text!r:.40}: {part} runs backwards")
        if hi - lo >= MAX_SEEDS:  # each seed is minutes of training: 0-999999 is a typo
            raise argparse.ArgumentTypeError(f"bad seeds {text!r:.40}: more than {MAX_SEEDS} seeds")
        out.update(dict.fromkeys(range(lo, hi + 1)))
        if len(out) > MAX_SEEDS:
            raise argparse.ArgumentTypeError(f"bad seeds {text!r:.40}: more than {MAX_SEEDS} seeds")
    return list(out)


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (forexd train's own bounds)."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]{1,19}", text.strip()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r:.40} is not an integer from {low} to {high}")
        return int(text)

    return parse


def _folder(text: str) -> Path:
    if not text.strip():  # Path("") is the current folder: the runs would land wherever it was started
        raise argparse.ArgumentTypeError("an empty folder name")
    return Path(text)


def _interval(mean: float, half: float | None) -> str:
    return "[—]" if half is None else f"[{(mean - half) * 100:+.2f}, {(mean + half) * 100:+.2f}]"


def _manifest(run_dir: Path, seed: int, max_steps: int) -> dict[str, Any] | None:
    """The manifest of the run in ``run_dir`` (``KEY/VERSION.json`` beside its ``.pt``), or
    None; one line (SystemExit) for a manifest that cannot be read or is another run's."""
    found = sorted(f for f in run_dir.glob("*/*.json") if f.with_suffix(".pt").is_file())
    if not found:
        return None
    try:
        m = json.loads(found[-1].read_text())
        cfg, metrics = m["train_config"], m["metrics"]
        ran = (cfg["seed"], cfg["max_steps"])
        if type(metrics) is not dict:
            raise TypeError("metrics is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"bad manifest {found[-1]}: {type(exc).__name__}: {exc}"[:300]) from None
    if ran != (seed, max_steps):
        raise SystemExit(
            f"{run_dir} holds a run of seed {ran[0]}, --max-steps {ran[1]}, not seed {seed}, --max-steps {max_steps}:"
            " give another --out"
        )
    return m


def _train(p: Protocol, args: list[str], run_dir: Path, seed: int, max_steps: int, threads: int) -> dict[str, Any]:
    """The run's manifest, training it first with ``forexd train`` unless it exists."""
    if (m := _manifest(run_dir, seed, max_steps)) is not None:
        return m
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(Path(sys.executable).with_name("forexd")),
        "train",
        *args,
        "--timeframe",
        p.timeframe,
        "--horizon",
        str(p.horizon),
        "--split",
        p.split,
        "--max-steps",
        str(max_steps),
        "--max-minutes",
        "60",
        "--threads",
        str(threads),
        "--seed",
        str(seed),
        "--device",
        "cpu",
        "--model-dir",
        str(run_dir),
    ]
    print(f"# training {run_dir.name} seed {seed}", file=sys.stderr, flush=True)
    with (run_dir / "train.log").open("w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise SystemExit(f"forexd train failed (exit {done.returncode}): see {run_dir / 'train.log'}")
    m = _manifest(run_dir, seed, max_steps)
    assert m is not None, f"forexd train wrote no manifest under {run_dir}"
    return m


def _group(values: list[float], g: tuple[int, int]) -> float:
    return float(np.mean(values[g[0] - 1 : g[1]]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", choices=sorted(PROTOCOLS))
    ap.add_argument("--seeds", type=_seeds, default=[0, 1, 2])
    ap.add_argument("--out", type=_folder, required=True, help="folder of the runs (resumed if present)")
    ap.add_argument("--max-steps", type=_int_in(1, 10**9), default=3000)
    ap.add_argument("--threads", type=_int_in(1, 256), default=1)
    ap.add_argument(
        "--series-embedding",
        type=_int_in(0, 1024),
        default=0,
        help="the global model's (forexd train --series-embedding)",
    )
    ap.add_argument("--json", action="store_true", help="also print the table as one JSON line")
    a = ap.parse_args()
    p = PROTOCOLS[a.data]
    if missing := [str(f) for f in p.files if not f.is_file()]:
        hint = " (the hourly study needs ../shared/data)" if any(SHARED in Path(f).parents for f in missing) else ""
        raise SystemExit(f"candle file not found: {', '.join(missing)}{hint}")
    # crps[(series, seed)] = (per-series per-step CRPS, global per-step CRPS, per-series rw CRPS)
    per: dict[tuple[str, int], tuple[list[float], list[float], list[float]]] = {}
    for seed in a.seeds:
        base = a.out / a.data / f"seed{seed}"
        emb = ["--series-embedding", str(a.series_embedding)] if a.series_embedding else []
        gdir = base / (f"global-emb{a.series_embedding}" if a.series_embedding else "global")
        gm = _train(p, [*p.global_args(), *emb], gdir, seed, a.max_steps, a.threads)
        for name, args in p.per_series():
            m = _train(p, args, base / name.replace("@", "_"), seed, a.max_steps, a.threads)
            ps, gs = m["metrics"]["test"], gm["metrics"]["test_series"][name]  # type: ignore[index]
            if ps["n"] != gs["n"]:
                raise SystemExit(f"{name} seed {seed}: {ps['n']} per-series test windows, {gs['n']} global")
            crps = (ps["crps"], gs["crps"], ps["rw_crps"])
            if not all(len(c) == p.horizon and all(math.isfinite(x) and x > 0 for x in c) for c in crps):
                raise SystemExit(f"{name} seed {seed}: a CRPS that is not {p.horizon} positive numbers in {base}")
            per[(name, seed)] = crps
    rows = []
    print(
        "| series | steps | per-series CRPS | skill | global skill | "
        + " | ".join(f"ΔCRPS seed {s}" for s in a.seeds)
        + " | ΔCRPS seed mean [90 % t] | seeds worse |"
    )
    print("|---|---|---|---|---|" + "---|" * len(a.seeds) + "---|---|")
    for name, _ in p.per_series():
        for g in p.groups:
            ps = np.array([_group(per[(name, s)][0], g) for s in a.seeds])
            gs = np.array([_group(per[(name, s)][1], g) for s in a.seeds])
            rw = _group(per[(name, a.seeds[0])][2], g)
            deltas = gs / ps - 1.0
            mean = float(gs.mean() / ps.mean() - 1.0)
            half = (  # no interval from one seed (None: JSON has no NaN)
                float(stats.t.ppf(0.95, len(deltas) - 1) * deltas.std(ddof=1) / math.sqrt(len(deltas)))
                if len(deltas) > 1
                else None
            )
            steps = f"{g[0]}" if g[0] == g[1] else f"{g[0]}–{g[1]}"
            worse = int((deltas > 0).sum())
            rows.append({"series": name, "steps": steps, "delta": deltas.tolist(), "mean": mean, "half": half})
            cells = " | ".join(f"{d * 100:+.2f} %" for d in deltas)
            print(
                f"| {name} | {steps} | {ps.mean():.3e} | {1 - ps.mean() / rw:+.4f} | {1 - gs.mean() / rw:+.4f} | "
                f"{cells} | {mean * 100:+.2f} % {_interval(mean, half)} | "
                f"{worse} of {len(deltas)} |"
            )
    if a.json:
        print(json.dumps({"data": a.data, "seeds": a.seeds, "rows": rows}))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # the table piped into head: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except OSError as exc:  # --out a file, unwritable, a name too long: one line
        raise SystemExit(f"study_global.py: {exc}") from None
