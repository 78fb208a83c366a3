"""Run a retrain job in a separate process, so the caller (a stream worker) keeps flowing.

The child is ``python -m retraining.runner``: it reads one JSON job spec on stdin
(``request``, ``db_url``, ``model_dir``, ``config``, ``threads``), runs
:func:`~retraining.jobs.run_retrain`, and writes the :class:`~retraining.jobs.JobOutcome`
as the last line of stdout (logs go to stderr). Its exit status is the outcome's
(0 promoted, 3 rejected, 1 failed). A child that dies (killed, out of memory, a
failpoint) yields a ``failed`` outcome naming its exit status (``process_exit: status N``);
one past its wall-clock limit is killed with its whole process group and yields ``failed``
with the reason ``timeout``. The child's stderr goes to this process's log, never into the
outcome (which is published). The next job of the key cleans up what it left
(:meth:`~retraining.registry.ModelRegistry.recover`).

:func:`run_job` blocks; :func:`run_job_async` awaits the child without blocking an
event loop (for a Faust agent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec

from forex_diffusion.errors import ConfigError, ForexDiffusionError
from forex_diffusion.quality.trigger import RetrainRequest

from .jobs import JobConfig, JobOutcome

__all__ = ["job_spec", "main", "run_job", "run_job_async"]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")


def job_spec(
    request: RetrainRequest, *, db_url: str, model_dir: str | Path, config: JobConfig | None = None, threads: int = 1
) -> dict[str, Any]:
    """The JSON spec the child reads."""
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    return {
        "request": request.to_dict(),
        "db_url": db_url,
        "model_dir": str(model_dir),
        "config": (config or JobConfig()).to_dict(),
        "threads": threads,
    }


def _command(command: Sequence[str] | None = None) -> list[str]:
    return list(command) if command is not None else [sys.executable, "-m", "retraining.runner"]


def _kill_group(pid: int) -> None:
    """SIGKILL the child's process group (it leads its own session: ``start_new_session``)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    root = str(Path(__file__).resolve().parents[1])
    out["PYTHONPATH"] = root + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    return out


def _outcome(spec: Mapping[str, Any], rc: int | None, stdout: bytes, stderr: bytes, seconds: float) -> JobOutcome:
    lines = [ln for ln in stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
    if lines and rc is not None:
        try:
            obj = json.loads(lines[-1])
            if isinstance(obj, dict):  # a child that printed 42, [1, 2] or null did not finish
                return JobOutcome.from_dict(obj)
        except (ValueError, TypeError, RecursionError, ConfigError):
            pass
    request = RetrainRequest.from_dict(spec["request"])
    horizon = int(spec["config"].get("horizon", 24)) if request.horizon is None else request.horizon
    reason = "timeout" if rc is None else f"process_exit: status {rc}"
    tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
    logger.error("retrain job process failed request=%s reason=%s stderr=%s", request.request_id, reason, tail)
    return JobOutcome(
        request_id=request.request_id,
        key=_scoped(lines) or f"{request.symbol}/{request.timeframe}/{horizon}",
        symbol=request.symbol,
        timeframe=request.timeframe,
        horizon=horizon,
        version=None,
        status="failed",
        reason=reason,
        duration_s=seconds,
        finished_at_ms=int(time.time() * 1000),
    )


def _scoped(lines: Sequence[str]) -> str | None:
    """The global key a child said it retrains (its ``{"scope": KEY}`` line), or None."""
    from forex_diffusion.storage.model_registry import ModelKey

    for line in lines:
        try:
            said = json.loads(line)
            if isinstance(said, dict) and isinstance(said.get("scope"), str):
                key = ModelKey.parse(said["scope"])
                return str(key) if key.is_symbol_set else None
        except (ValueError, RecursionError, ForexDiffusionError):
            continue
    return None


async def run_job_async(
    request: RetrainRequest,
    *,
    db_url: str,
    model_dir: str | Path,
    config: JobConfig | None = None,
    threads: int = 1,
    timeout_s: float | None = None,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
) -> JobOutcome:
    """Run one job in a child process and return its outcome, awaiting the child without
    blocking the event loop.

    ``env`` replaces the child's environment (``FOREXD_FAILPOINT`` arms a failpoint there).
    A child past ``timeout_s`` is killed with its process group and reported ``failed``
    (``timeout``); a cancelled wait (the worker stopping) kills the group too. ``command``
    replaces the child's command line (tests).
    """
    spec = job_spec(request, db_url=db_url, model_dir=model_dir, config=config, threads=threads)
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *_command(command),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(env),
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(spec).encode()), timeout_s)
        rc: int | None = proc.returncode
    except TimeoutError:
        _kill_group(proc.pid)
        try:  # the group is dead, so its pipes close; bounded in case something escaped it
            out, err = await asyncio.wait_for(proc.communicate(), 30.0)
        except TimeoutError:
            out, err = b"", b""
            await proc.wait()
        rc = None
    except BaseException:
        _kill_group(proc.pid)
        raise
    return _outcome(spec, rc, out, err, time.monotonic() - t0)


def _blocking(job: Callable[_P, Coroutine[Any, Any, JobOutcome]]) -> Callable[_P, JobOutcome]:
    def run_job(*args: _P.args, **kwargs: _P.kwargs) -> JobOutcome:
        """Run one job in a child process and return its outcome, blocking: :func:`run_job_async`,
        same arguments, in an event loop of its own (for a caller without one)."""
        return asyncio.run(job(*args, **kwargs))

    return run_job


run_job = _blocking(run_job_async)


def main() -> int:
    """Child entry point: spec on stdin, outcome JSON on the last stdout line."""
    logging.basicConfig(
        level=os.environ.get("FOREXD_LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    import torch

    from forex_diffusion.storage import make_engine

    from .jobs import run_retrain

    spec = json.loads(sys.stdin.read())
    torch.set_num_threads(int(spec.get("threads", 1)))
    request = RetrainRequest.from_dict(spec["request"])
    engine = make_engine(spec["db_url"])

    def progress(stage: str, detail: Any) -> None:
        if stage == "scope":  # at once: a child killed later is reported under the key it trained
            sys.stdout.write(json.dumps({"scope": str(detail)}) + "\n")
            sys.stdout.flush()

    try:
        outcome = run_retrain(
            request,
            engine=engine,
            model_dir=spec["model_dir"],
            config=JobConfig.from_dict(spec.get("config", {})),
            progress=progress,
        )
    finally:
        engine.dispose()
    sys.stdout.write(json.dumps(outcome.to_dict(), allow_nan=False) + "\n")
    sys.stdout.flush()
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
