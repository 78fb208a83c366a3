"""A command that runs out of memory (``train --width 4096 --blocks 64``: 2.2 billion
parameters; ``--window 10000`` on a long file: a 10 GiB array) ended in a traceback (numpy's
``_ArrayMemoryError``, torch's ``RuntimeError: … can't allocate memory``; found by an
adversarial hunt). It is one line saying what did not fit and what to make smaller, exit 71
(EX_OSERR). Other runtime errors are bugs and keep their traceback. The allocations are
stood in for (a test may not take the machine's memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import forex_diffusion.offline as offline
from streams.cli import EXIT_OSERR, app

runner = CliRunner()


def _raises(exc: BaseException) -> object:
    def run(*args: object, **kwargs: object) -> None:
        raise exc

    return run


def _ticks(tmp: Path) -> Path:
    src = tmp / "t.csv"
    src.write_text("timestamp,symbol,bid,ask\n2014-05-01T00:00:01Z,EURUSD,1.1,1.1002\n")
    return src


def _numpy_memory_error() -> BaseException:
    try:
        np.empty((2**57,), dtype=np.float64)  # 1 EiB: refused at once
    except MemoryError as exc:
        return exc
    raise AssertionError("numpy allocated 1 EiB")


@pytest.mark.parametrize(
    "exc",
    [
        _numpy_memory_error(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate memory: you tried to allocate 9500000000 bytes."
        ),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
    ids=["numpy", "torch_cpu", "torch_cuda"],
)
def test_out_of_memory_is_one_line_and_71(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exc: BaseException) -> None:
    monkeypatch.setattr(offline, "aggregate_ticks_file", _raises(exc))
    res = runner.invoke(app, ["candles", str(_ticks(tmp_path)), "-o", str(tmp_path / "out.csv")])
    assert res.exit_code == EXIT_OSERR, (res.exit_code, res.stderr, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: out of memory (") and "smaller" in lines[0]
    assert "Traceback" not in res.stderr


def test_another_runtime_error_is_still_a_bug(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(offline, "aggregate_ticks_file", _raises(RuntimeError("a bug")))
    res = runner.invoke(app, ["candles", str(_ticks(tmp_path)), "-o", str(tmp_path / "out.csv")])
    assert isinstance(res.exception, RuntimeError) and str(res.exception) == "a bug"
