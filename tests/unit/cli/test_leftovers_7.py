"""``forexd`` leftovers of the boundary hunts (7), each a failure left unfixed before:

1. ``models register CKPT --key EURUSD/1h/24`` of a checkpoint whose manifest spells its
   timeframe another way (``1H``, ``60m``: the manifest is read as written) was refused, "it
   forecasts 24 steps of 1H candles; pass a key SYMBOL/1H/24", although the key fits (the same
   checkpoint registered without ``--key`` is keyed ``EURUSD/1h/24``); and the key it advised
   was again one spelt another way.
2. A SIGTERM while ``forexd demo`` ran live (its loop's handler stopped it as Ctrl-C does)
   ended the command with exit 0, "done"; a SIGTERM before or during its cleanup ends it with
   143. Now 143 in every phase, after the cleanup (a SIGHUP: 129, as before).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import streams.demo as demo
from streams.broker import EmbeddedBroker
from streams.cli import app

from .test_cli_boundary_3 import one_line

ROOT = Path(__file__).resolve().parents[3]
MODEL_1H = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
runner = CliRunner()


def model_spelt(tmp: Path, timeframe: str) -> Path:
    """A real checkpoint (a copy of the bundled 1h, 24-step model, trained by ``forexd train``)
    whose manifest names its timeframe ``timeframe``: the manifest is not covered by the
    checkpoint's sha256, and ``Predictor.load`` reads it as written."""
    key_dir = tmp / "src"
    shutil.copytree(MODEL_1H, key_dir)
    manifest_path = next(key_dir.glob("*.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["timeframe"] = manifest["train_config"]["timeframe"] = timeframe
    manifest_path.write_text(json.dumps(manifest))
    return manifest_path.with_suffix(".pt")


def register(tmp: Path, ckpt: Path, *key: str) -> tuple[int, str, str]:
    db = f"sqlite:///{tmp / 'reg.db'}"
    res = runner.invoke(app, ["models", "register", str(ckpt), *key, "--db", db, "--model-dir", str(tmp / "m")])
    return res.exit_code, res.stdout, res.stderr


# -- 1: models register --key against a manifest's timeframe spelt another way --------------------


@pytest.mark.parametrize("spelt", ["1H", "60m"])
@pytest.mark.parametrize("key", ["EURUSD/1h/24", "EURUSD/1H/24", "*/60m/24"])
def test_register_key_fits_a_manifest_whose_timeframe_is_spelt_another_way(
    spelt: str, key: str, tmp_path: Path
) -> None:
    """Refused before ("--key EURUSD/1h/24 does not fit …: it forecasts 24 steps of 1H candles")."""
    code, out, err = register(tmp_path, model_spelt(tmp_path, spelt), "--key", key)
    assert code == 0, out + err
    assert f"for {key.split('/')[0]}/1h/24" in out


@pytest.mark.parametrize("spelt", ["1H", "60m"])
def test_register_key_of_another_timeframe_is_refused_naming_the_canonical_one(spelt: str, tmp_path: Path) -> None:
    """The refusal advised ``SYMBOL/1H/24``: the manifest's text, not the key the stream serves."""
    code, out, err = register(tmp_path, model_spelt(tmp_path, spelt), "--key", "EURUSD/4h/24")
    assert code == 2, out + err
    line = one_line(err, "--key EURUSD/4h/24 does not fit", "24 steps of 1h candles", "SYMBOL/1h/24")
    assert spelt not in line
    assert not (tmp_path / "reg.db").exists()


def test_register_without_key_and_with_the_manifests_key_agree(tmp_path: Path) -> None:
    """The key the registry gives a ``1H`` manifest (``EURUSD/1h/24``) is one ``--key`` may name."""
    ckpt = model_spelt(tmp_path, "1H")
    code, out, err = register(tmp_path, ckpt)
    assert code == 0 and "for EURUSD/1h/24" in out, out + err
    other = tmp_path / "again"
    other.mkdir()
    code, out, err = register(other, model_spelt(other, "1H"), "--key", "EURUSD/1h/24")
    assert code == 0 and "for EURUSD/1h/24" in out, out + err


# -- 2. forexd demo: a SIGTERM in the live phase --------------------------------------------


class _Broker(EmbeddedBroker):
    """The embedded broker's stand-in: a process (``sleep``) in its own group, as the broker's."""

    def start(self, timeout_s: float = 120.0) -> EmbeddedBroker:
        self.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        return self


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups")
@pytest.mark.usefixtures("ctrl_c_raises")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_in_the_demos_live_phase_ends_it_after_the_cleanup_by_that_signal(
    sig: signal.Signals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    live: list[bool] = []

    def start_worker(settings: Any, log: Any) -> subprocess.Popen[bytes]:
        procs["worker"] = subprocess.Popen(["sleep", "60"], start_new_session=True)
        return procs["worker"]

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    async def replay(settings: Any, speed: float, result: Any, stop: asyncio.Event) -> None:
        live.append(True)  # the replay starts once the worker is ready: the live phase
        os.kill(os.getpid(), sig)
        await stop.wait()

    async def watch(settings: Any, result: Any, stop: asyncio.Event, show: Any) -> None:
        await stop.wait()

    class Broker(_Broker):
        def start(self, timeout_s: float = 120.0) -> EmbeddedBroker:
            super().start(timeout_s)
            assert self.proc is not None
            procs["broker"] = self.proc
            return self

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(demo, "EmbeddedBroker", Broker)
    monkeypatch.setattr(demo, "_start_worker", start_worker)
    monkeypatch.setattr(demo, "ensure_topics", nothing)
    monkeypatch.setattr(demo, "_wait_ready", nothing)
    monkeypatch.setattr(demo, "_replay", replay)
    monkeypatch.setattr(demo, "_watch", watch)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with pytest.raises(SystemExit) as info:
            demo.run_demo(duration=120, poll_s=0.05)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    assert live == [True]
    assert info.value.code == 128 + sig
    assert procs["worker"].returncode == -signal.SIGTERM  # stopped by the cleanup, its final checkpoint
    assert procs["broker"].returncode == -signal.SIGTERM
    assert list(tmp.iterdir()) == []  # its directory removed
    assert {s: signal.getsignal(s) for s in before} == before
