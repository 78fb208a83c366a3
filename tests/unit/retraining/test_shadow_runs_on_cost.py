"""``ModelRegistry.shadow_runs_on`` does bounded work on a large symbol set.

A global model's shadow runs on the recorded series while the set serves it, else on the
first symbol of its set that the set still serves. Finding that symbol resolved the champion
of each symbol in turn, and each resolution of a symbol without a champion of its own listed
every registry version to find the global champions: a set of thousands of symbols whose
members another (smaller) set serves cost one full registry scan per member, on every
refresh of every worker's model book. The global champions are now listed once per call.

Real registry rows in SQLite; the scans are counted where the registry reads its versions.
"""

from __future__ import annotations

import itertools
import string
from pathlib import Path

import pytest

import retraining.registry as registry_module
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion, insert_version, promote_version
from retraining.registry import ModelRegistry

NOW = 1_700_000_000_000


def _pairs(n: int) -> list[str]:
    """``n`` distinct six-letter pairs, sorted."""
    codes = ("".join(c) for c in itertools.product(string.ascii_uppercase, repeat=3))
    usd = [c for c in itertools.islice(codes, n + 1) if c != "USD"][:n]
    return sorted(c + "USD" for c in usd)


def _row(version: str, key: ModelKey, metrics: dict[str, object] | None = None) -> ModelVersion:
    return ModelVersion(
        version=version, key=key, artifact=f"{version}.pt", sha256="0" * 64, config_hash="c", metrics=metrics or {}
    )


@pytest.mark.parametrize("n_symbols", [3, 60])
def test_the_shadow_of_a_set_whose_members_left_it_costs_one_registry_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_symbols: int
) -> None:
    symbols = _pairs(n_symbols)
    engine = make_engine(f"sqlite:///{tmp_path / 'reg.db'}")
    key = ModelKey.for_symbols(symbols, "1d", 10)
    insert_version(engine, _row("champ", key, {"symbols": symbols}), now_ms=NOW)
    promote_version(engine, "champ", reason="t", now_ms=NOW)
    shadow = insert_version(
        engine, _row("shadow", key, {"symbols": symbols, "shadow": {"symbol": symbols[0]}}), now_ms=NOW + 1
    )
    # a smaller set serves every member but the last (the most specific model wins), and the
    # first member also has a champion of its own: the set serves only the last one
    smaller = symbols[:-1]
    insert_version(engine, _row("small", ModelKey.for_symbols(smaller, "1d", 10), {"symbols": smaller}), now_ms=NOW)
    promote_version(engine, "small", reason="t", now_ms=NOW)
    insert_version(engine, _row("own", ModelKey(symbol=symbols[0], timeframe="1d", horizon=10)), now_ms=NOW)
    promote_version(engine, "own", reason="t", now_ms=NOW)
    reg = ModelRegistry(engine, tmp_path / "models")
    scans = 0
    real = registry_module.store.list_versions

    def counted(*args: object, **kwargs: object) -> list[ModelVersion]:
        nonlocal scans
        scans += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry_module.store, "list_versions", counted)
    assert reg.shadow_runs_on(shadow) == symbols[-1]
    assert scans == 1, f"{scans} registry scans for a set of {n_symbols} symbols"
    # and the answer is the one resolve_champion gives symbol by symbol
    assert [reg.resolve_champion(s, "1d", 10).version for s in symbols] == [  # type: ignore[union-attr]
        "own",
        *(["small"] * (n_symbols - 2)),
        "champ",
    ]
    engine.dispose()
