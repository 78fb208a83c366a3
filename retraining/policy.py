"""The promotion rule: a pure function from hold-out scores to a decision and its reason.

Challenger and champion are scored on the SAME recent hold-out (walk-forward forecasts,
quantile CRPS in price units, 90 % interval coverage, and the EWMA random walk's CRPS on
the same origins). The rule, in order:

1. the challenger's scores must be finite and cover at least ``min_windows`` origins;
2. its 90 % interval coverage must lie within ``coverage90_bounds``;
3. with a champion: the challenger's CRPS must be below the champion's by at least
   ``min_improvement`` (relative); without one: below the random walk's CRPS by at least
   ``min_skill_vs_rw`` (relative; a negative value tolerates a slightly worse model).

>>> pol = PromotionPolicy(min_improvement=0.01)
>>> ch = HoldoutScores(crps=0.98, rw_crps=1.0, cover90=0.9, cover50=0.5, n=100)
>>> decide_promotion(ch, HoldoutScores(crps=1.0, rw_crps=1.0, cover90=0.9, cover50=0.5, n=100), pol).promote
True
>>> d = decide_promotion(ch, HoldoutScores(crps=0.985, rw_crps=1.0, cover90=0.9, cover50=0.5, n=100), pol)
>>> d.promote, d.reason.split(":")[0]
(False, 'not_better')

A challenger that passes may first serve in **shadow** (issue 16): its live forecasts are
scored beside the champion's on the same origins, and :func:`decide_shadow` promotes it
once ``required`` of them are realised if its CRPS is no worse than the champion's there:

>>> live = ShadowScores(n=48, crps=1.02, champion_crps=1.0, rw_crps=1.1, cover90=0.9, champion_cover90=0.9)
>>> decide_shadow(live, required=96) is None  # still waiting
True
>>> decide_shadow(live, required=48).reason.split(":")[0]
'shadow_worse'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from forex_diffusion.domain import field_dict
from forex_diffusion.errors import ConfigError, check_field_types
from forex_diffusion.quality.evaluation import mean_of, skill_score

__all__ = [
    "HoldoutScores",
    "PromotionDecision",
    "PromotionPolicy",
    "ShadowScores",
    "decide_global",
    "decide_promotion",
    "decide_shadow",
    "pool_scores",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldoutScores:
    """Scores of one model on the hold-out.

    Parameters
    ----------
    crps
        Mean quantile CRPS over origins and steps (price units).
    rw_crps
        The EWMA random walk's CRPS on the same origins and steps.
    cover90, cover50
        Fractions of realised closes inside the 5–95 % and 25–75 % intervals.
    n
        Forecast origins scored.
    """

    crps: float
    rw_crps: float
    cover90: float
    cover50: float
    n: int

    @property
    def skill(self) -> float:
        """``1 - crps / rw_crps`` (NaN when undefined)."""
        return skill_score(self.crps, self.rw_crps)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form (the fields, then ``skill``)."""
        return {**field_dict(self), "skill": self.skill}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HoldoutScores:
        """Inverse of :meth:`to_dict` (``skill`` is derived, so ignored)."""
        return cls(
            crps=float(data["crps"]),
            rw_crps=float(data["rw_crps"]),
            cover90=float(data["cover90"]),
            cover50=float(data["cover50"]),
            n=int(data["n"]),
        )


def pool_scores(by_series: Mapping[str, HoldoutScores], *, weights: Mapping[str, int] | None = None) -> HoldoutScores:
    """One global model's hold-out scores over its series, in random-walk units; pure.

    Price units differ between pairs (a USD/JPY CRPS is ~100 times a EUR/USD one), so each
    series' CRPS is divided by its own random walk's before the series are pooled: ``crps``
    is the weighted mean of ``crps_i / rw_crps_i`` and ``rw_crps`` is 1, so ``skill`` and a
    comparison of two pooled scores over the same series and weights are relative ones.
    Weights are each series' origins, or ``weights`` (two models compared with the same
    ones: :func:`decide_global`); coverages are weighted alike; ``n`` is the total of
    origins. A series with no origin adds nothing; one whose random walk scored no valid
    CRPS, or whose CRPS is negative or not finite, makes the pooled ``crps`` NaN (the rule
    refuses it).

    >>> a = HoldoutScores(crps=0.9, rw_crps=1.0, cover90=0.9, cover50=0.5, n=30)
    >>> b = HoldoutScores(crps=95.0, rw_crps=100.0, cover90=0.8, cover50=0.4, n=10)
    >>> p = pool_scores({"EURUSD": a, "USDJPY": b})
    >>> round(p.crps, 4), p.rw_crps, round(p.cover90, 3), p.n
    (0.9125, 1.0, 0.875, 40)
    >>> round(pool_scores({"EURUSD": a, "USDJPY": b}, weights={"EURUSD": 1, "USDJPY": 1}).crps, 4)
    0.925
    """
    scored = [(s, s.n if weights is None else weights.get(name, 0)) for name, s in by_series.items() if s.n > 0]
    scored = [(s, w) for s, w in scored if w > 0]
    total = sum(w for _, w in scored)
    if total == 0:
        return HoldoutScores(crps=math.nan, rw_crps=math.nan, cover90=math.nan, cover50=math.nan, n=0)

    def rel(s: HoldoutScores) -> float:
        ok = math.isfinite(s.crps) and s.crps >= 0 and math.isfinite(s.rw_crps) and s.rw_crps > 0
        return s.crps / s.rw_crps if ok else math.nan

    return HoldoutScores(
        crps=sum(w * rel(s) for s, w in scored) / total,
        rw_crps=1.0,
        cover90=sum(w * s.cover90 for s, w in scored) / total,
        cover50=sum(w * s.cover50 for s, w in scored) / total,
        n=sum(s.n for s, _ in scored),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PromotionPolicy:
    """Parameters of :func:`decide_promotion`.

    Parameters
    ----------
    min_improvement
        Relative CRPS improvement over the champion required (0.005 = 0.5 % better).
    coverage90_bounds
        Accepted range of the challenger's 90 % interval coverage.
    min_skill_vs_rw
        Without a champion: required relative CRPS improvement over the random walk.
    min_windows
        Minimum hold-out origins scored.
    max_series_loss
        A global model's challenger (decided on its series pooled, :func:`decide_global`):
        the most its CRPS may exceed the champion's on any one series (0.05 = 5 % worse).
    """

    min_improvement: float = 0.005
    coverage90_bounds: tuple[float, float] = (0.80, 0.97)
    min_skill_vs_rw: float = 0.0
    min_windows: int = 20
    max_series_loss: float = 0.05

    def __post_init__(self) -> None:
        lo, hi = self.coverage90_bounds
        if not 0.0 <= lo < hi <= 1.0:
            raise ConfigError(f"coverage90_bounds must satisfy 0 <= lo < hi <= 1, got {self.coverage90_bounds}")
        if not (math.isfinite(self.min_improvement) and math.isfinite(self.min_skill_vs_rw)):
            raise ConfigError("min_improvement and min_skill_vs_rw must be finite")
        if self.min_improvement >= 1.0 or self.min_skill_vs_rw >= 1.0:
            raise ConfigError("a relative improvement must be < 1")
        if self.min_windows < 1:
            raise ConfigError(f"min_windows must be >= 1, got {self.min_windows}")
        if not (math.isfinite(self.max_series_loss) and self.max_series_loss >= 0):
            raise ConfigError(f"max_series_loss must be finite and >= 0, got {self.max_series_loss}")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return {
            "min_improvement": self.min_improvement,
            "coverage90_bounds": list(self.coverage90_bounds),
            "min_skill_vs_rw": self.min_skill_vs_rw,
            "min_windows": self.min_windows,
            "max_series_loss": self.max_series_loss,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromotionPolicy:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError``."""
        d: dict[str, Any] = check_field_types(cls, data, "PromotionPolicy")
        if "coverage90_bounds" in d:
            b = d["coverage90_bounds"]
            if (
                not isinstance(b, list | tuple)
                or len(b) != 2
                or any(isinstance(x, bool) or not isinstance(x, int | float) for x in b)
            ):
                raise ConfigError(f"PromotionPolicy: coverage90_bounds must be two numbers [lo, hi], got {b!r:.40}")
            d["coverage90_bounds"] = (float(b[0]), float(b[1]))
        return cls(**d)


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    """Whether to promote, and why (``code: detail``)."""

    promote: bool
    reason: str


def decide_promotion(
    challenger: HoldoutScores, champion: HoldoutScores | None, policy: PromotionPolicy
) -> PromotionDecision:
    """Apply the promotion rule; pure (no clock, no I/O, inputs untouched).

    Reason codes: ``invalid``, ``too_few_windows``, ``coverage``, ``not_better``,
    ``better`` (promote), ``no_champion_worse_than_rw``, ``no_champion_beats_rw`` (promote).
    """
    c = challenger
    if not all(math.isfinite(x) for x in (c.crps, c.rw_crps, c.cover90)) or c.crps < 0:
        return PromotionDecision(False, f"invalid: non-finite challenger scores (crps={c.crps}, cover90={c.cover90})")
    if c.n < policy.min_windows:
        return PromotionDecision(False, f"too_few_windows: {c.n} < {policy.min_windows}")
    lo, hi = policy.coverage90_bounds
    if not lo <= c.cover90 <= hi:
        return PromotionDecision(False, f"coverage: cover90 {c.cover90:.3f} outside [{lo:.2f}, {hi:.2f}]")
    if champion is not None and math.isfinite(champion.crps) and champion.crps > 0:
        gain = 1.0 - c.crps / champion.crps
        text = (
            f"crps {c.crps:.6g} vs champion {champion.crps:.6g} ({100 * gain:+.2f} %, "
            f"need {100 * policy.min_improvement:+.2f} %), cover90 {c.cover90:.3f}"
        )
        if gain >= policy.min_improvement:
            return PromotionDecision(True, f"better: {text}")
        return PromotionDecision(False, f"not_better: {text}")
    skill = c.skill
    text = (
        f"no valid champion; crps {c.crps:.6g} vs random walk {c.rw_crps:.6g} "
        f"(skill {100 * skill:+.2f} %, need {100 * policy.min_skill_vs_rw:+.2f} %), cover90 {c.cover90:.3f}"
    )
    if math.isfinite(skill) and skill >= policy.min_skill_vs_rw:
        return PromotionDecision(True, f"no_champion_beats_rw: {text}")
    return PromotionDecision(False, f"no_champion_worse_than_rw: {text}")


def _scored(s: HoldoutScores) -> bool:
    """Whether a series' scores can be compared: origins, a finite positive CRPS and random walk."""
    return s.n > 0 and math.isfinite(s.crps) and s.crps > 0 and math.isfinite(s.rw_crps) and s.rw_crps > 0


def decide_global(
    challenger: Mapping[str, HoldoutScores],
    champion: Mapping[str, HoldoutScores] | None,
    policy: PromotionPolicy,
) -> PromotionDecision:
    """The promotion rule of a global model's challenger, given each series' scores; pure.

    1. :func:`decide_promotion` on the scores pooled over the series (:func:`pool_scores`):
       the CRPS compared with the champion's over the series the champion scored validly,
       both pooled with the challenger's origins as weights (so neither gains from the
       weighting alone); validity, origins and coverage over every series. A champion scored
       validly on none is no champion: the pooled random-walk rule decides.
    2. Each series the champion did not score validly (all of them for a set's first model)
       must pass the random-walk rule on its own, as a per-series model of it would
       (``series_refused: GBPUSD: no_champion_worse_than_rw …``): a pool never hides a
       series the model serves worse than the random walk.
    3. Each series both scored: the challenger's CRPS may not exceed the champion's by more
       than ``max_series_loss`` (``series_worse``), so a gain on some pairs never buys a loss
       on another.

    >>> a = HoldoutScores(crps=0.8, rw_crps=1.0, cover90=0.9, cover50=0.5, n=50)
    >>> b = HoldoutScores(crps=1.0, rw_crps=1.0, cover90=0.9, cover50=0.5, n=50)
    >>> decide_global({"X": a, "Y": a}, {"X": b, "Y": b}, PromotionPolicy()).promote
    True
    >>> decide_global({"X": a, "Y": b}, {"X": b, "Y": a}, PromotionPolicy(min_improvement=-1.0)).reason[:12]
    'series_worse'
    """
    pooled = pool_scores(challenger)
    valid = {n: s for n, s in (champion or {}).items() if n in challenger and _scored(s)}
    if not valid or not math.isfinite(pooled.crps):
        decision = decide_promotion(pooled, None, policy)  # an invalid challenger is refused there
    else:
        weights = {n: challenger[n].n for n in valid}
        common = pool_scores({n: challenger[n] for n in valid})
        head = HoldoutScores(crps=common.crps, rw_crps=1.0, cover90=pooled.cover90, cover50=pooled.cover50, n=pooled.n)
        decision = decide_promotion(head, pool_scores(valid, weights=weights), policy)
    if not decision.promote:
        return decision
    for name in sorted(set(challenger) - set(valid)):
        alone = decide_promotion(challenger[name], None, policy)
        if not alone.promote:
            return PromotionDecision(False, f"series_refused: {name}: {alone.reason}; pooled {decision.reason}")
    for name in sorted(valid):
        c, ch = challenger[name], valid[name]
        loss = c.crps / ch.crps - 1.0 if c.n > 0 else math.nan
        if not loss <= policy.max_series_loss:  # NaN (a series the challenger did not score) refuses too
            return PromotionDecision(
                False,
                f"series_worse: {name} crps {c.crps:.6g} vs champion {ch.crps:.6g} ({100 * loss:+.2f} % worse, "
                f"at most {100 * policy.max_series_loss:.2f} %); pooled {decision.reason}",
            )
    return decision


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowScores:
    """A shadow's realised live forecasts beside the champion's on the same origins.

    Parameters
    ----------
    n
        Realised forecast origins compared (every step of each realised).
    crps, champion_crps, rw_crps
        Mean quantile CRPS over those origins and steps (price units) of the shadow, of
        the champion that served them, and of the EWMA random walk.
    cover90, champion_cover90
        Fractions of realised closes inside each one's 5–95 % interval.
    """

    n: int
    crps: float
    champion_crps: float
    rw_crps: float
    cover90: float
    champion_cover90: float

    @property
    def skill(self) -> float:
        """``1 - crps / champion_crps``: above 0 the shadow beats the champion (NaN when undefined)."""
        return skill_score(self.crps, self.champion_crps)

    @property
    def skill_rw(self) -> float:
        """``1 - crps / rw_crps`` of the shadow (NaN when undefined)."""
        return skill_score(self.crps, self.rw_crps)

    @property
    def champion_skill_rw(self) -> float:
        """``1 - champion_crps / rw_crps`` (NaN when undefined)."""
        return skill_score(self.champion_crps, self.rw_crps)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form (the fields, then the skills)."""
        return {
            **field_dict(self),
            "skill": self.skill,
            "skill_rw": self.skill_rw,
            "champion_skill_rw": self.champion_skill_rw,
        }

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]]) -> ShadowScores:
        """Aggregate ``shadow_scores`` rows (one per origin, each a mean over its steps) with equal weights."""
        if not rows:
            return cls(
                n=0,
                crps=math.nan,
                champion_crps=math.nan,
                rw_crps=math.nan,
                cover90=math.nan,
                champion_cover90=math.nan,
            )

        def mean(name: str) -> float:
            return mean_of(float(r[name]) for r in rows)

        return cls(
            n=len(rows),
            crps=mean("crps"),
            champion_crps=mean("champion_crps"),
            rw_crps=mean("rw_crps"),
            cover90=mean("cover90"),
            champion_cover90=mean("champion_cover90"),
        )


def decide_shadow(scores: ShadowScores, *, required: int) -> PromotionDecision | None:
    """The shadow rule; pure. None while fewer than ``required`` forecasts are realised.

    Given exactly the first ``required`` realised origins (the caller passes no more, so a
    late decision sees the same rows as a timely one): promote when the shadow's CRPS is
    no worse than the champion's on them (``shadow_not_worse``), else reject
    (``shadow_worse``); non-finite scores reject (``shadow_invalid``).
    """
    if required < 1:
        raise ConfigError(f"required must be >= 1, got {required}")
    if scores.n < required:
        return None
    s = scores
    if not all(math.isfinite(x) for x in (s.crps, s.champion_crps)) or s.crps < 0:
        return PromotionDecision(
            False, f"shadow_invalid: non-finite live scores (crps={s.crps}, champion={s.champion_crps})"
        )
    text = (
        f"live crps {s.crps:.6g} vs champion {s.champion_crps:.6g} ({100 * s.skill:+.2f} %) over "
        f"{s.n} realised forecasts, cover90 {s.cover90:.3f} vs {s.champion_cover90:.3f}"
    )
    if s.crps <= s.champion_crps:
        return PromotionDecision(True, f"shadow_not_worse: {text}")
    return PromotionDecision(False, f"shadow_worse: {text}")
