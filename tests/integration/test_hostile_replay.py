"""Issue 13: a tick file with hostile rows gives the same candles and the same refusals
through ``forexd replay`` into a worker as through ``forexd candles``.

Every row of the catalogue (``tests/hostile_ticks.py``) is mixed into 3,000 real OANDA
ticks. Offline, the file gives the candles of the clean ticks and one reject per hostile row.
Through the broker, the rows the reader cannot parse are refused by ``forexd replay``
(``--rejects``), the others are published with their file line (``--tick-ids``) and
dead-lettered by the worker: together, the same lines with the same reasons.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import count_candles, make_engine
from forex_diffusion.wire import decode_candle

from ..hostile_ticks import HOSTILE, REAL, TFS, clean_rows, mix, write
from .kafka_io import create_topics, read_all

pytestmark = pytest.mark.broker
TOPICS = ("ticks", "candles", "deadletter", "forecasts", "drift", "models", "retrain.requests")


def _key(c: Candle) -> tuple[str, str, int]:
    return (c.symbol, c.timeframe, c.open_ms)


def _line(raw: str) -> int:
    """The file line of a dead-lettered tick, from its ``tick_id`` (``<file>:<line>``)."""
    m = re.search(r'"tick_id":"[^":]*:(\d+)"', raw)
    assert m, raw[:300]
    return int(m.group(1))


def test_hostile_file_through_replay_and_worker_equals_forexd_candles(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    tmp_path: Path,
    wait_until: Any,
) -> None:
    # the real ticks up to the last full hour: the worker's idle timer then closes the last
    # bars within seconds of quiet (the offline run closes them at the end of the file)
    hour = 3_600_000
    clean = clean_rows([r for r in REAL if r[0] < REAL[-1][0] // hour * hour])
    step = len(clean) // (len(HOSTILE) + 1)
    # every hostile row has real ticks after it: a held far-future tick is refused by the
    # next one in the stream as in the file (no end-of-input hold to compare)
    rows, lines = mix(clean, [((i + 1) * step, HOSTILE[k]) for i, k in enumerate(sorted(HOSTILE))])
    path = write(tmp_path / "hostile_eurusd.csv", rows)
    offline = aggregate_ticks_file(path, timeframes=TFS)
    want_refused = sorted((r.line, r.reason.value) for r in offline.rejects)
    assert [ln for ln, _ in want_refused] == lines  # one refusal per hostile row, none else

    env = dict(worker_env, FOREXD_SYMBOLS="EURUSD", FOREXD_TIMEFRAMES=",".join(TFS))
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    rej = tmp_path / "replay_rejects.csv"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "replay",
            str(path),
            "--speed",
            "max",
            "--tick-ids",
            "--rejects",
            str(rej),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    by_replay = [(int(r.line), str(r.reason)) for r in pd.read_csv(rej).itertuples()]
    w = spawn_worker(env, role="ticks")

    msgs = read_all(
        kafka_bootstrap,
        f"{prefix}fx.candles",
        expect=len(offline.candles),
        timeout_s=180,
        distinct=lambda m: _key(decode_candle(m.value, key=m.key)),
    )
    got = {_key(c): c for c in (decode_candle(m.value, key=m.key) for m in msgs)}
    assert sorted(got.values(), key=_key) == sorted(offline.candles, key=_key), w.log()[-3000:]
    db = make_engine(f"sqlite:///{Path(env['FOREXD_DATA_DIR']) / 'forexd.db'}")
    wait_until(
        lambda: count_candles(db) == len(offline.candles),
        60,
        what="the DB to hold every candle",
        progress=lambda: count_candles(db),
    )

    dead = read_all(kafka_bootstrap, f"{prefix}fx.deadletter", expect=len(lines) - len(by_replay), timeout_s=60)
    by_worker = [(_line(d["raw"]), d["reason"]) for d in (json.loads(m.value) for m in dead)]
    assert len(by_worker) == len(set(by_worker)), "a record dead-lettered twice"
    assert sorted(by_replay + by_worker) == want_refused
    assert w.alive()
