"""Issue 13, finding 7: a state snapshot holds pickles, so whoever can write it must not be
able to make a worker run code. Every snapshot is HMAC-signed with the deployment's state key;
one that fails its signature, was signed with another key, or is an old unsigned one is
refused (``ArtifactError``, logged at ERROR) before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from forex_diffusion.errors import ArtifactError
from forex_diffusion.online import OnlineLearnerSet, snapshot
from forex_diffusion.online.snapshot import configure_state_key, dump_state, load_state

RAN: list[str] = []


def _mark(what: str) -> None:
    RAN.append(what)


class Payload:
    """What an attacker pickles: unpickling it runs :func:`_mark` (a stand-in for os.system)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_mark, ("attacker code ran",))


KEY_A = b"a" * 32
KEY_B = b"b" * 32


@pytest.fixture(autouse=True)
def _restore_process_key() -> Iterator[None]:
    saved = snapshot._signing  # noqa: SLF001 - the process-wide key is restored after each test
    RAN.clear()
    yield
    snapshot._signing = saved  # noqa: SLF001


def _legacy(payload: bytes) -> bytes:
    """The old format: magic, plain SHA-256, payload (anyone can compute it)."""
    return b"FXDSNAP1" + hashlib.sha256(payload).digest() + payload


def test_a_forged_snapshot_with_a_recomputed_sha256_never_runs_its_pickle(caplog: pytest.LogCaptureFixture) -> None:
    """Regression (issue 13 finding 7): the digest was an unkeyed SHA-256 a forger could recompute."""
    forged = _legacy(pickle.dumps(Payload()))
    with caplog.at_level(logging.ERROR), pytest.raises(ArtifactError, match="unsigned"):
        load_state(forged)
    with pytest.raises(ArtifactError):
        OnlineLearnerSet.restore(forged)
    assert RAN == []
    assert any(r.levelno == logging.ERROR and "state.refused" in r.getMessage() for r in caplog.records)


def test_every_snapshot_is_signed_and_a_resigned_forgery_without_the_key_is_refused() -> None:
    configure_state_key(KEY_A)
    blob = dump_state({"n": 3})
    assert blob[:8] == snapshot.SNAPSHOT_MAGIC and load_state(blob) == {"n": 3}
    evil = pickle.dumps(Payload())
    head = blob[: len(blob) - len(pickle.dumps({"n": 3}, protocol=pickle.HIGHEST_PROTOCOL))]
    for forged in (head + evil, head[:-32] + hashlib.sha256(evil).digest() + evil):
        with pytest.raises(ArtifactError, match="signature"):
            load_state(forged)
    assert RAN == []


@pytest.mark.parametrize("position", [0, 8, 12, 20, 50, -1])
def test_a_flipped_byte_anywhere_is_refused(position: int) -> None:
    configure_state_key(KEY_A)
    blob = bytearray(dump_state(list(range(20))))
    blob[position] ^= 0x01
    with pytest.raises(ArtifactError):
        load_state(bytes(blob))


def test_a_snapshot_signed_with_another_key_is_refused_naming_both_key_ids() -> None:
    configure_state_key(KEY_A)
    blob = dump_state({"n": 1})
    configure_state_key(KEY_B)
    with pytest.raises(ArtifactError, match="another state key") as info:
        load_state(blob)
    assert snapshot.key_id(KEY_A) in str(info.value) and snapshot.key_id(KEY_B) in str(info.value)
    configure_state_key(KEY_A)
    assert load_state(blob) == {"n": 1}


def test_old_unsigned_snapshots_load_only_under_the_migration_setting() -> None:
    old = _legacy(pickle.dumps({"n": 2}))
    configure_state_key(KEY_A)
    with pytest.raises(ArtifactError, match="FOREXD_STATE_UNSIGNED"):
        load_state(old)
    configure_state_key(KEY_A, accept_unsigned=True)
    assert load_state(old) == {"n": 2}
    with pytest.raises(ArtifactError):  # a corrupt old one is still refused
        load_state(old[:-1])
    assert dump_state({"n": 2})[:8] == snapshot.SNAPSHOT_MAGIC  # written back signed


def test_an_explicit_key_overrides_the_process_key_and_short_keys_are_refused() -> None:
    configure_state_key(KEY_A)
    blob = dump_state({"n": 4}, key=KEY_B)
    assert load_state(blob, key=KEY_B) == {"n": 4}
    with pytest.raises(ArtifactError):
        load_state(blob)
    with pytest.raises(ValueError):
        configure_state_key(b"short")


def test_a_signed_state_copied_into_another_series_place_is_refused() -> None:
    """Review finding: signatures covered the payload only, so whoever can write the state table
    could copy one series' signed learners into another series' row. The context is signed too."""
    blob = dump_state({"n": 1}, context=b"EURUSD/1m/learners")
    assert load_state(blob, context=b"EURUSD/1m/learners") == {"n": 1}
    for other in (b"GBPUSD/1m/learners", b"EURUSD/5m/learners", b"EURUSD/1m/drift", b""):
        with pytest.raises(ArtifactError, match="another context"):
            load_state(blob, context=other)


def test_a_forecaster_state_stored_under_another_symbol_is_refused() -> None:
    from forex_diffusion.errors import ConfigError
    from forex_diffusion.forecast.forecaster import ForecasterConfig, SymbolForecaster

    cfg = ForecasterConfig()
    state = SymbolForecaster("EURUSD", cfg).snapshot()
    assert SymbolForecaster.restore(state, cfg, symbol="EURUSD").symbol == "EURUSD"
    with pytest.raises(ConfigError, match="state stored for GBPUSD"):
        SymbolForecaster.restore(state, cfg, symbol="GBPUSD")  # copied whole into GBPUSD's place
    relabelled = {**state, "state": {**state["state"], "symbol": "GBPUSD"}}  # ... and relabelled: its
    if relabelled["state"]["series"]:  # signed parts still say EURUSD
        with pytest.raises(ArtifactError):
            SymbolForecaster.restore(relabelled, cfg, symbol="GBPUSD")
