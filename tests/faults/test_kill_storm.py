"""F6 kill storm, short form: while bursts of ticks arrive, Faust's ``killer.py`` schedule
(shortened to 2 SIGTERMs at 1-5 s intervals, then 3 SIGKILLs at 0.1-1 s intervals) hits the
tick worker, which a supervisor loop restarts as soon as it exits. The final DB and
fx.candles equal the oracle (I1, I2, I5, I11): nothing lost, nothing counted twice.
The long form (10 + 10 signals) is in ``test_soak_group.py``."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest

from ..waiting import wait_for_workers
from .group_drivers import CheckpointWatch, Feed, Supervisor, attribute_checkpoints, spread, storm
from .harness import bad_records, hour_bursts, interleave, make_topics, settle, sqlite_url, wait_for

pytestmark = pytest.mark.broker


def first_ts(burst: list[tuple[bytes | None, bytes]]) -> int:
    return int(burst[min(200, len(burst) - 1)][1].split(b'"ts":')[1].split(b",")[0])


class _Current:
    """The log of the supervisor's current incarnation (a restarted worker is followed too)."""

    def __init__(self, sup: Any) -> None:
        self.sup = sup

    def log(self) -> str:
        return str(self.sup.lives[-1].worker.log())


def kill_storm(
    env: dict[str, str],
    spawn_worker: Any,
    bootstrap: str,
    *,
    bursts: list[Any],
    terms: int,
    kills: int,
    period_s: float,
    seed: int,
    label: str,
    after_ready: bool = False,
) -> dict[str, Any]:
    """Run one storm under a supervisor while ``bursts[1:]`` arrive every ``period_s``; the
    figures, after asserting that the final state equals the oracle."""
    rnd = random.Random(seed)
    make_topics(bootstrap, env)
    url, topic = sqlite_url(env), f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    feed = Feed(bootstrap, topic)
    feed.publish(interleave(bursts[0], bad_records(first_ts(bursts[0]))))
    watch = CheckpointWatch(url, topic, feed).start()
    sup = Supervisor(spawn_worker, env, label).start()
    try:
        wait_for_workers(watch.latest, _Current(sup), what="the first checkpoint")
        watch.phase = "storm"
        feed.start_paced(bursts[1:], period_s)
        t_storm = time.monotonic()
        sent = storm(sup, rnd, terms=terms, kills=kills, after_ready=after_ready)
        storm_s = time.monotonic() - t_storm
        published = feed.join()
        w = sup.stop()
        t_last = time.monotonic()
        watch.phase = "after the storm"
        report, converged = settle(bootstrap, env, timeout_s=150, published=published, workers=[w])
        wait_for(
            lambda: watch.covers(feed.ends),
            30,
            interval=0.2,
            what="the checkpoint covering the log",
            progress=watch.latest,
        )
        covered = (
            next(
                t
                for t, offs in watch.samples
                if t >= t_last and all(offs.get(p, -1) >= end - 1 for p, end in feed.ends.items())
            )
            - t_last
        )
    finally:
        sup.stop()
        watch.stop()
    attribute_checkpoints(sup, watch)
    lives = sup.lives
    recoveries = [life.checkpointed for life in lives[1:] if life.checkpointed is not None]
    last = lives[-1]
    victims = Counter(sig for life in lives for sig in life.signals)
    figures = {
        "signals": len(sent),
        "sent": sent,
        "victims": victims,
        "incarnations": len(lives),
        "ticks": published,
        "lost": len(report.lost),
        "duplicated_db_rows": report.db_rows - report.expected + len(report.lost),
        "recoveries": recoveries,
        "checkpointed_lives": sum(1 for life in lives if life.checkpointed is not None),
        "final_recovery": last.checkpointed,
        "converged": converged,
        "storm_s": storm_s,
        "covered": covered,
        "gaps": {p: round(g.seconds, 1) for p, g in sorted(watch.gaps.items())},
    }
    print(
        f"kill storm[{label}]: signals={len(sent)} ({sent.count('SIGTERM')} TERM, {sent.count('SIGKILL')} KILL) "
        f"in {storm_s:.1f}s incarnations={len(lives)} (checkpointed: {figures['checkpointed_lives']}) "
        f"victims {dict(sorted(victims.items()))} ticks={published} lost={figures['lost']} "
        f"duplicated_db_rows={figures['duplicated_db_rows']} topic_redeliveries={report.topic_duplicates} "
        f"restart_to_checkpoint_s {spread(recoveries)} final_restart_to_checkpoint_s="
        f"{last.checkpointed if last.checkpointed is None else round(last.checkpointed, 1)} "
        f"longest_unconsumed_s={figures['gaps']} last_restart_to_whole_log_checkpointed_s={covered:.1f} "
        f"final_converge_s={converged:.1f} {report.summary()}",
        flush=True,
    )
    logs = "\n".join(f"--- {life.worker.log_path.name}\n{life.worker.log()[-1500:]}" for life in lives[-3:])
    assert w.alive(), "the final worker exited\n" + logs
    assert not report.violations, report.summary() + "\n" + logs
    return figures


def test_kill_storm_two_sigterms_three_sigkills_under_supervisor_ends_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    # four hours: the last burst ends 5.7 s before its hour, so the idle timer closes its
    # bars soon after the final restart (the fifth hour's last tick is 24 s before the hour)
    kill_storm(
        fault_env,
        spawn_worker,
        kafka_bootstrap,
        bursts=hour_bursts(4),
        terms=2,
        kills=3,
        period_s=2.0,
        seed=6,
        label="short",
    )
