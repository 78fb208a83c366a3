"""Shadow metrics (issue 16): both roles exported per key, bounded labels, series gone after the decision."""

from __future__ import annotations

import pytest

from streams.metrics import SHADOW_DECISIONS, SHADOW_ROLES, Metrics

KEY = "EURUSD/1m/24"


def _value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_shadow_progress_exports_both_roles_and_the_decision_removes_the_key() -> None:
    m = Metrics(["EURUSD"], timeframes=["1m"])
    assert _value(m, "forexd_shadow_decisions_total", outcome="promoted") == 0  # exported from the start
    m.shadow_progress(KEY, "v1", realised=12, required=96, crps=0.9, champion_crps=1.0)
    assert _value(m, "forexd_shadow_crps", key=KEY, role="shadow") == 0.9
    assert _value(m, "forexd_shadow_crps", key=KEY, role="champion") == 1.0
    assert _value(m, "forexd_shadow_skill_ratio", key=KEY) == pytest.approx(0.1)
    assert _value(m, "forexd_shadow_realised_forecasts", key=KEY) == 12
    assert _value(m, "forexd_shadow_required_forecasts", key=KEY) == 96
    assert _value(m, "forexd_model_version_in_shadow", key=KEY, version="v1") == 1
    # a new shadow version for the key replaces the series (one version per key)
    m.shadow_progress(KEY, "v2", realised=0, required=96, crps=float("nan"), champion_crps=None)
    assert _value(m, "forexd_model_version_in_shadow", key=KEY, version="v1") is None
    assert _value(m, "forexd_model_version_in_shadow", key=KEY, version="v2") == 1
    assert _value(m, "forexd_shadow_crps", key=KEY, role="shadow") is None  # nothing realised: no value
    assert _value(m, "forexd_shadow_skill_ratio", key=KEY) is None
    m.shadow_ended(KEY, "rejected")
    assert _value(m, "forexd_shadow_decisions_total", outcome="rejected") == 1
    text = m.render().decode()
    assert "forexd_shadow_crps{" not in text and "forexd_model_version_in_shadow{" not in text


def test_shadow_labels_take_only_bounded_values() -> None:
    m = Metrics(["EURUSD"], timeframes=["1m"])
    before = m.invalid_label_values._value.get()
    m.shadow_progress("GBPUSD/1m/24", "v1", realised=1, required=2, crps=1.0, champion_crps=1.0)  # unconfigured
    m.shadow_progress("EURUSD/1m/24/x", "v1", realised=1, required=2, crps=1.0, champion_crps=1.0)
    m.shadow_progress(KEY, "v 7<b>", realised=1, required=2, crps=1.0, champion_crps=1.0)
    m.shadow_ended(KEY, "exploded")
    assert m.invalid_label_values._value.get() - before == 3
    values = {
        v
        for fam in m.registry.collect()
        if fam.name.startswith("forexd_shadow") or fam.name == "forexd_model_version_in_shadow"
        for s in fam.samples
        for v in s.labels.values()
    }
    assert values <= SHADOW_ROLES | SHADOW_DECISIONS
