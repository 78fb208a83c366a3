"""Benchmark the online learners and drift detectors, and measure the drift figures.

Run: ``.venv/bin/python bench/bench_online.py`` (about a minute on 2 cores).

Prints
1. cost per candle of ``OnlineLearnerSet.step`` (2 horizons) beside river's own
   ``predict_one`` + ``learn_one`` of the same pipelines, measured in this process, on the
   inputs the forecaster gives the learners: the indicator feature vector
   (``FeatureBuilder``) and the context's EWMA volatility (``SeriesContext.sigma``);
2. cost per update of each detector wrapper beside the bare river detector;
3. detection delays on synthetic regime changes (10 seeds) and false alarms on 20
   stationary seeds;
4. drift events and retrain requests per year on real hourly EUR/USD 2007-2017
   (bundled under ``tests/data/lean``), with the default policy and without cooldown / debounce.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from river import drift as river_drift

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forex_diffusion.diffusion.context import SeriesContext  # noqa: E402
from forex_diffusion.diffusion.inputs import frame_candles  # noqa: E402
from forex_diffusion.domain import Candle  # noqa: E402
from forex_diffusion.drift import (  # noqa: E402
    AdwinDetector,
    CalibrationMonitor,
    DriftEvent,
    DriftMonitor,
    KSFeatureDetector,
    PageHinkleyDetector,
)
from forex_diffusion.forecast.features import FeatureBuilder, FeatureConfig  # noqa: E402
from forex_diffusion.ingest.readers import read_candles  # noqa: E402
from forex_diffusion.online import (  # noqa: E402
    LearnerConfig,
    OnlineLearnerSet,
    default_classifier,
    default_regressor,
)
from forex_diffusion.quality.trigger import (  # noqa: E402
    TriggerPolicy,
    TriggerState,
    close_request,
    decide,
)

HOUR = 3_600_000
DAY = 24 * HOUR
H1_FILE = ROOT / "tests" / "data" / "lean" / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
SIGMA = 1e-3


def _best_of(fn: Callable[[], int], repeat: int = 3) -> float:
    """Return the best seconds-per-item of ``fn`` (which returns its item count)."""
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


class ProductFeatures:
    """The learners' inputs as ``SymbolForecaster.on_candle`` makes them, for one 1h series.

    The feature row is the indicator feature vector of the candle (``FeatureBuilder``, the
    default indicator set); the volatility is the serving context's EWMA sigma (NaN until
    known). The KS feature detector gets the same row.
    """

    def __init__(self) -> None:
        self.builder = FeatureBuilder(FeatureConfig(forecast_timeframe="1h", timeframes=("1h",)), symbol="EURUSD")
        self.context = SeriesContext(symbol="EURUSD", timeframe="1h")

    def update(self, candle: Candle) -> tuple[dict[str, float], float]:
        self.builder.on_candle(candle)
        self.context.update(candle)
        fv = self.builder.features("1h", candle.close_ms)
        sigma = self.context.sigma
        return (fv.as_dict() if fv is not None else {}), (sigma if sigma and math.isfinite(sigma) else math.nan)


def _candles(closes: list[float], t0: int = 0) -> list[Candle]:
    return [
        Candle(
            symbol="EURUSD",
            timeframe="1h",
            open_ms=t0 + i * HOUR,
            close_ms=t0 + (i + 1) * HOUR,
            open=c,
            high=c,
            low=c,
            close=c,
        )
        for i, c in enumerate(closes)
    ]


def bench_learners(candles: list[Candle]) -> None:
    feats = ProductFeatures()
    rows = [feats.update(c) for c in candles]

    def ours() -> int:
        ls = OnlineLearnerSet("EURUSD", "1h", LearnerConfig(horizons=(1, 12)))
        for c, (f, v) in zip(candles, rows, strict=True):
            ls.step(c, f, v)
        return len(candles)

    def river_only() -> int:
        # the same work river does for us: per horizon, predict both models and learn both
        models = {h: (default_regressor(), default_classifier()) for h in (1, 12)}
        for i, (f, v) in enumerate(rows):
            if not f or not v > 0:
                continue  # the learner set skips candles without features or volatility too
            # river types its rows dict[Hashable, Any], which dict[str, float] is not (dict is invariant)
            for h, (reg, clf) in models.items():
                reg.predict_one(f)  # type: ignore[arg-type]
                clf.predict_proba_one(f)  # type: ignore[arg-type]
                if i >= h and rows[i - h][0]:
                    x = rows[i - h][0]
                    reg.learn_one(x, 0.1)  # type: ignore[arg-type]
                    clf.learn_one(x, True)  # type: ignore[arg-type]
        return len(rows)

    def features_only() -> int:
        fb = ProductFeatures()
        for c in candles:
            fb.update(c)
        return len(candles)

    t_ours, t_river, t_feat = _best_of(ours), _best_of(river_only), _best_of(features_only)
    print(f"== learners: per closed candle, horizons (1, 12), real EUR/USD 1h, {len(rows[-1][0])} features ==")
    print(f"  OnlineLearnerSet.step          {t_ours * 1e6:8.1f} us")
    print(f"  river pipelines alone          {t_river * 1e6:8.1f} us   (ratio ours/river {t_ours / t_river:.2f})")
    print(f"  features + sigma (product)     {t_feat * 1e6:8.1f} us")


def bench_detectors(values: list[float]) -> None:
    def loop(make: Callable[[], object]) -> Callable[[], int]:
        def run() -> int:
            det = make()
            upd = det.update  # type: ignore[attr-defined]
            for x in values:
                upd(x)
            return len(values)

        return run

    pairs = [
        # river leaves ADWIN.__init__ unannotated
        ("ADWIN (clock=8)", lambda: AdwinDetector(clock=8), lambda: river_drift.ADWIN(clock=8)),  # type: ignore[no-untyped-call]
        ("Page-Hinkley", lambda: PageHinkleyDetector(), lambda: river_drift.PageHinkley(mode="up")),
    ]
    print("== detectors: per update, |scaled return| stream of real EUR/USD 1h ==")
    for name, ours, theirs in pairs:
        a, b = _best_of(loop(ours)), _best_of(loop(theirs))
        print(f"  {name:22s} ours {a * 1e6:6.2f} us   river {b * 1e6:6.2f} us   ratio {a / b:.2f}")
    rng = np.random.default_rng(0)
    pits = rng.uniform(size=len(values)).tolist()

    def calib() -> int:
        mon = CalibrationMonitor(window=250)
        for p in pits:
            mon.update(pit=p)
        return len(pits)

    rows = [{"a": float(x), "b": float(y)} for x, y in zip(values, pits, strict=True)]

    def ks() -> int:
        det = KSFeatureDetector(reference_size=250, recent_size=100, check_every=25)
        for r in rows:
            det.update(r)
        return len(rows)

    def monitor() -> int:
        mon = DriftMonitor("EURUSD", "1h")
        for i, x in enumerate(values):
            mon.update_loss("error", 1, x, i)
            mon.update_loss("error", 12, x, i)
            mon.update_calibration(1, i, pit=pits[i])
            mon.update_crps(1, x, i)
            mon.update_features(rows[i], i)
        return len(values)

    print(f"  CalibrationMonitor.update      {_best_of(calib) * 1e6:6.2f} us")
    print(f"  KSFeatureDetector.update       {_best_of(ks) * 1e6:6.2f} us  (2 features, test every 25)")
    print(f"  DriftMonitor, all inputs/candle {_best_of(monitor) * 1e6:5.2f} us")


# -- synthetic regimes ---------------------------------------------------------------------


def _ncdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _crps(z: float) -> float:
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return z * (2.0 * _ncdf(z) - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi)


def _regime_run(seed: int, kind: str, n: int, change: int) -> list[tuple[int, DriftEvent]]:
    rng = np.random.default_rng(seed)
    sig = np.full(n, SIGMA)
    mu = np.zeros(n)
    if kind == "vol":
        sig[change:] *= 3.0
    elif kind == "flip":
        mu[:change], mu[change:] = 0.2 * SIGMA, -0.2 * SIGMA
    closes = 1.1 * np.exp(np.cumsum(mu + sig * rng.standard_normal(n)))
    mu0 = float(mu[0])
    ls, mon, fb = OnlineLearnerSet("EURUSD", "1h"), DriftMonitor("EURUSD", "1h"), ProductFeatures()
    out = []
    for i, candle in enumerate(_candles(closes.tolist())):
        f, vol = fb.update(candle)
        evs = mon.update_learner(ls.step(candle, f, vol))
        for h in (1, 12):
            if i >= h:
                z = (math.log(candle.close / closes[i - h]) - mu0 * h) / (SIGMA * math.sqrt(h))
                evs += mon.update_calibration(h, candle.close_ms, pit=_ncdf(z))
                evs += mon.update_crps(h, _crps(z), candle.close_ms)
        evs += mon.update_features(f, candle.close_ms)
        out += [(i, e) for e in evs]
    return out


def regimes() -> None:
    print("== synthetic regimes (sigma 1e-3/candle, change at candle 2000 of 3000) ==")
    for kind, label in (("vol", "volatility x3"), ("flip", "drift +0.2σ → -0.2σ")):
        delays: list[int] = []
        first_by: Counter[str] = Counter()
        pre = 0
        for seed in range(10):
            evs = _regime_run(seed, kind, 3000, 2000)
            pre += sum(1 for i, _ in evs if i < 2000)
            post = [(i - 2000, e) for i, e in evs if i >= 2000]
            if post:
                delays.append(post[0][0])
                first_by[f"{post[0][1].detector}@{post[0][1].horizon}"] += 1
        print(
            f"  {label:22s} delay median {np.median(delays):.0f}, max {max(delays)} candles "
            f"({len(delays)}/10 detected); pre-change events {pre}; first: {dict(first_by)}"
        )
    for n in (1500, 3000):
        runs, events = 0, 0
        for seed in range(100, 120):
            evs = _regime_run(seed, "none", n, n)
            runs += bool(evs)
            events += len(evs)
        print(
            f"  stationary, 20 seeds x {n}: runs with an alarm {runs}/20, "
            f"events {events} ({events / (20 * n) * 1000:.3f} per 1000 candles)"
        )


# -- real data --------------------------------------------------------------------------------


def _real_batches(
    candles: list[Candle], baseline: bool
) -> tuple[list[tuple[int, list[DriftEvent]]], OnlineLearnerSet, float]:
    """Run learners + detectors over real candles; optionally a probabilistic baseline too.

    The baseline stands in for the diffusion model: a Gaussian random walk whose scale is
    the trailing vol, ``N(0, (vol * sqrt(h))^2)``; its PIT and CRPS feed the calibration
    and CRPS detectors. It ignores fat tails and the intraday vol cycle, so it is often
    miscalibrated: the case the cooldown exists for.
    """
    closes = [c.close for c in candles]
    ls, mon, fb = OnlineLearnerSet("EURUSD", "1h"), DriftMonitor("EURUSD", "1h"), ProductFeatures()
    vols: list[float] = []
    batches: list[tuple[int, list[DriftEvent]]] = []
    t = time.perf_counter()
    for i, candle in enumerate(candles):
        ts, c = candle.open_ms, candle.close
        f, vol = fb.update(candle)
        vols.append(vol)
        evs = mon.update_learner(ls.step(candle, f, vol)) + mon.update_features(f, ts + HOUR)
        if baseline:
            for h in (1, 12):
                v0 = vols[i - h] if i >= h else math.nan
                if v0 > 0:
                    z = math.log(c / closes[i - h]) / (v0 * math.sqrt(h))
                    evs += mon.update_calibration(h, ts + HOUR, pit=_ncdf(z))
                    evs += mon.update_crps(h, _crps(z), ts + HOUR)
        if evs:
            batches.append((ts + HOUR, evs))
    return batches, ls, time.perf_counter() - t


def real_rates(frame: pd.DataFrame) -> None:
    candles = frame_candles(frame, "EURUSD", "1h")
    ts_list = frame.ts_ms.tolist()
    closes = frame.close.tolist()
    years = (ts_list[-1] - ts_list[0]) / (365.25 * DAY)
    for baseline in (False, True):
        batches, ls, elapsed = _real_batches(candles, baseline)
        by = Counter(f"{e.detector}@{e.horizon}" for _, evs in batches for e in evs)
        n_events = sum(by.values())
        what = "learners + KS + baseline calibration/CRPS" if baseline else "learners + KS"
        print(f"== real EUR/USD 1h, {what}: {len(closes)} candles, {years:.2f} years ({elapsed:.1f} s) ==")
        print(f"  drift events {n_events} = {n_events / years:.2f}/year; by detector {dict(by.most_common())}")
        for name, pol in (
            ("default (2 detectors or x3 in 24h, cooldown 7d)", TriggerPolicy()),
            ("cooldown 1d", TriggerPolicy(cooldown_ms=DAY, request_ttl_ms=DAY)),
            ("no cooldown", TriggerPolicy(cooldown_ms=0, request_ttl_ms=DAY)),
            ("no debounce, no cooldown", TriggerPolicy(min_detectors=1, cooldown_ms=0, request_ttl_ms=DAY)),
        ):
            state, made = TriggerState(), []
            reasons: Counter[str] = Counter()
            for now, evs in batches:
                for rid, at in list(state.open_requests.values()):
                    if now - at > DAY:  # the retrain job finished within a day
                        state = close_request(state, rid)
                d, state = decide(evs, state, pol, now)
                reasons[d.reason.split(":")[0]] += 1
                if d.request is not None:
                    made.append(d.request)
            per_year = Counter(time.gmtime(r.requested_at_ms / 1000).tm_year for r in made)
            print(
                f"  requests, {name:48s} {len(made):4d} = {len(made) / years:6.2f}/year, "
                f"max in a calendar year {max(per_year.values(), default=0)}; decisions {dict(reasons)}"
            )
        if not baseline:
            for h, sk in ls.skills().items():
                print(
                    f"  learner +{h}: MAE {sk.mae:.4f}, no-change MAE {sk.naive_mae:.4f}, "
                    f"skill {sk.skill:+.4f}, hit rate {sk.hit_rate:.4f}"
                )


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        description=(
            "Online learners and drift detectors on real hourly EUR/USD 2007-2017: cost per candle of "
            "OnlineLearnerSet.step beside river's own pipelines, cost per update of each detector "
            "wrapper beside the bare river detector, detection delays and false alarms on synthetic "
            "regimes, and drift events and retrain requests per year (about a minute on 2 cores)."
        ),
        epilog=(
            "Prints 'ratio ours/river' for the learners and 'ratio' per detector: our time over "
            "river's (1.0: no overhead). Takes no arguments."
        ),
    )


def main() -> None:
    ap = build_parser()
    ap.parse_args()
    t0 = time.perf_counter()
    if not H1_FILE.exists():
        ap.error(f"{H1_FILE} is missing (bundled with the repository); nothing measured")
    frame = read_candles(H1_FILE, symbol="EURUSD", price="mid").frame
    closes = frame.close.tolist()
    bench_learners(frame_candles(frame.iloc[:8000], "EURUSD", "1h"))
    r = np.diff(np.log(np.asarray(closes[:20097])))
    vol = np.array([r[t - 96 : t].std(ddof=1) for t in range(96, r.size)])
    bench_detectors(np.abs(r[96:] / vol).tolist())
    regimes()
    real_rates(frame)
    print(f"(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
