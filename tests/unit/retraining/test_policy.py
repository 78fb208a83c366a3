"""The promotion rule is pure and returns its reason."""

from __future__ import annotations

import copy
import math

import pytest

from forex_diffusion.errors import ConfigError
from retraining.policy import HoldoutScores, PromotionPolicy, decide_promotion


def scores(crps: float, *, rw: float = 1.0, cover90: float = 0.9, n: int = 100) -> HoldoutScores:
    return HoldoutScores(crps=crps, rw_crps=rw, cover90=cover90, cover50=0.5, n=n)


POL = PromotionPolicy(min_improvement=0.01, coverage90_bounds=(0.8, 0.97), min_skill_vs_rw=0.0, min_windows=20)


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "code"),
    [
        (scores(0.95), scores(1.0), True, "better"),
        (scores(0.995), scores(1.0), False, "not_better"),  # better, but under the margin
        (scores(1.10), scores(1.0), False, "not_better"),  # worse challenger
        (scores(0.90, cover90=0.70), scores(1.0), False, "coverage"),
        (scores(0.90, cover90=0.99), scores(1.0), False, "coverage"),
        (scores(0.90, n=5), scores(1.0), False, "too_few_windows"),
        (scores(math.nan), scores(1.0), False, "invalid"),
        (scores(0.99), None, True, "no_champion_beats_rw"),
        (scores(1.01), None, False, "no_champion_worse_than_rw"),
        (scores(0.99), scores(math.nan), True, "no_champion_beats_rw"),  # an unscorable champion counts as none
    ],
)
def test_rule_decides_and_names_its_reason(
    challenger: HoldoutScores, champion: HoldoutScores | None, promote: bool, code: str
) -> None:
    before = (copy.deepcopy(challenger), copy.deepcopy(champion))
    d = decide_promotion(challenger, champion, POL)
    assert (d.promote, d.reason.split(":")[0]) == (promote, code)
    assert decide_promotion(challenger, champion, POL) == d  # same inputs, same decision
    assert (challenger, champion) == before or math.isnan(challenger.crps)


def test_policy_validates_and_round_trips() -> None:
    assert PromotionPolicy.from_dict(POL.to_dict()) == POL
    for bad in ({"coverage90_bounds": (0.9, 0.8)}, {"min_windows": 0}, {"min_improvement": 1.5}):
        with pytest.raises(ConfigError):
            PromotionPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown"):
        PromotionPolicy.from_dict({"margin": 0.1})
    s = scores(0.9)
    assert HoldoutScores.from_dict(s.to_dict()) == s and s.skill == pytest.approx(0.1)
