"""Issue 15: retrain jobs claim their model key in the database, so two retrain workers never
train one key at once; a claim whose owner died (or stopped renewing) is taken over; a job
whose claim was taken registers nothing. Each case runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.storage import make_engine
from retraining.claims import ClaimHeld, ClaimLost, JobClaims, default_owner
from retraining.jobs import JobConfig, run_retrain

KEY = "EURUSD/1h/24"


def test_a_live_claim_refuses_a_second_owner_and_release_frees_it(db_url: str) -> None:
    eng = make_engine(db_url)
    a, b = JobClaims(eng, owner="host-a:1:x"), JobClaims(eng, owner="host-b:2:y")
    claim = a.acquire(KEY, "r1")
    with pytest.raises(ClaimHeld, match="host-a:1:x"):
        b.acquire(KEY, "r2")
    b.acquire("EURUSD/1m/24", "r3")  # another key is free
    claim.release()
    assert a.holder(KEY) is None
    b.acquire(KEY, "r2")
    assert a.holder(KEY) is not None and a.holder(KEY)[0] == "host-b:2:y"  # type: ignore[index]
    eng.dispose()


def test_an_expired_claim_is_taken_over_and_its_first_owner_is_fenced(db_url: str) -> None:
    """Owner A stops renewing (a paused process): after its lease B takes the key; A's
    check before registering then raises ClaimLost, and A's release leaves B's claim alone."""
    eng = make_engine(db_url)
    a = JobClaims(eng, owner="host-a:1:x", lease_s=0.2)
    b = JobClaims(eng, owner="host-b:2:y", lease_s=30)
    claim_a = a.acquire(KEY, "r1")
    with pytest.raises(ClaimHeld):
        b.acquire(KEY, "r2")
    while (h := b.holder(KEY)) is not None and h[1] >= int(time.time() * 1000):
        time.sleep(0.05)  # until the lease has run out (its expiry is stored)
    b.acquire(KEY, "r2")
    with pytest.raises(ClaimLost):
        claim_a.check()
    claim_a.release()
    assert b.holder(KEY) is not None and b.holder(KEY)[0] == "host-b:2:y"  # type: ignore[index]
    eng.dispose()


def test_a_heartbeat_keeps_a_short_lease_alive(db_url: str) -> None:
    eng = make_engine(db_url)
    a = JobClaims(eng, owner="host-a:1:x", lease_s=0.4)
    b = JobClaims(eng, owner="host-b:2:y")
    with a.hold(KEY, "r1") as claim:
        first = a.holder(KEY)
        assert first is not None
        while (now := a.holder(KEY)) is not None and now[1] == first[1]:
            time.sleep(0.05)  # until the heartbeat has renewed it once
        with pytest.raises(ClaimHeld):
            b.acquire(KEY, "r2")
        claim.check()
    assert a.holder(KEY) is None  # released at the end of the block
    eng.dispose()


def test_a_dead_local_process_claim_is_free_at_once(db_url: str, tmp_path: Path) -> None:
    """A job killed on this host (SIGKILL, a failpoint) leaves its row; the next claimant
    sees its pid is gone and takes the key without waiting for the lease."""
    code = (
        "import sys\n"
        "from forex_diffusion.storage import make_engine\n"
        "from retraining.claims import JobClaims\n"
        "JobClaims(make_engine(sys.argv[1]), lease_s=3600).acquire(sys.argv[2], 'dead')\n"
    )
    subprocess.run([sys.executable, "-c", code, db_url, KEY], check=True, timeout=120)
    eng = make_engine(db_url)
    left = JobClaims(eng).holder(KEY)
    assert left is not None and left[1] > int(time.time() * 1000) + 3_000_000  # unexpired for an hour
    JobClaims(eng, owner="host-b:2:y").acquire(KEY, "r2")  # taken over, not ClaimHeld
    eng.dispose()


@pytest.mark.postgres
def test_many_claimants_racing_on_postgres_leave_exactly_one_owner_per_round(pg_url: str) -> None:
    """8 threads, each its own owner and connection, race for one key in 25 rounds: every round
    exactly one claims it; the others are refused (none waits for the others' transactions)."""
    eng = make_engine(pg_url, lock_timeout_s=5)
    claimants = [JobClaims(eng, owner=f"host-{i}:{1000 + i}:n{i}") for i in range(8)]
    winners: list[Counter[str]] = []
    lock = threading.Lock()
    for rnd in range(25):
        got: Counter[str] = Counter()
        barrier = threading.Barrier(len(claimants))

        def race(c: JobClaims, rnd: int = rnd, got: Counter[str] = got, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                c.acquire(KEY, f"r{rnd}")
            except ClaimHeld:
                return
            with lock:
                got[c.owner] += 1

        threads = [threading.Thread(target=race, args=(c,)) for c in claimants]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(got.values()) == 1, (rnd, got)
        owner = next(iter(got))
        assert claimants[0].holder(KEY) is not None and claimants[0].holder(KEY)[0] == owner  # type: ignore[index]
        next(c for c in claimants if c.owner == owner).acquire(KEY, "again").release()  # re-entrant, then freed
        winners.append(got)
    assert len(winners) == 25
    eng.dispose()


@pytest.mark.postgres
def test_run_retrain_refuses_a_key_another_worker_holds(pg_url: str, tmp_path: Path) -> None:
    """A retrain job for a key whose claim another (live) worker holds trains nothing: its
    outcome is failed/claimed, no version is registered, no staging directory is made, and
    the other worker's claim is untouched."""
    eng = make_engine(pg_url)
    other = JobClaims(eng, owner="other-host:4242:z")
    other.acquire(KEY, "theirs")
    req = RetrainRequest(
        request_id="mine-1", symbol="EURUSD", timeframe="1h", horizon=24, reason="manual", requested_at_ms=0
    )
    out = run_retrain(req, engine=eng, model_dir=tmp_path / "models", config=JobConfig())
    assert (out.status, out.reason, out.version) == ("failed", "claimed: ClaimHeld", None)
    assert not list((tmp_path / "models").rglob("*.pt"))
    assert other.holder(KEY) is not None and other.holder(KEY)[0] == "other-host:4242:z"  # type: ignore[index]
    eng.dispose()


def test_a_pid_of_another_pid_namespace_under_the_same_host_name_is_never_judged_dead(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two containers may share a host name (a compose service's ``hostname``) but not their
    PIDs: a live job of the other container was judged dead (its pid does not exist here)
    and its key taken over -- two trainers of one key. The owner names the PID namespace."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with monkeypatch.context() as m:  # the owner the other container's job names itself
        m.setattr(os, "readlink", lambda path: "pid:[1]")
        host, _pid, nonce = default_owner().rsplit(":", 2)
    assert host.startswith(socket.gethostname()[:100])
    eng = make_engine(db_url)
    JobClaims(eng, owner=f"{host}:{gone.pid}:{nonce}", lease_s=3600).acquire(KEY, "r1")
    with pytest.raises(ClaimHeld):  # the other container's job: its lease holds
        JobClaims(eng).acquire(KEY, "r2")
    JobClaims(eng).release(JobClaims(eng).acquire("EURUSD/1m/24", "r3"))
    mine = JobClaims(eng).owner.rsplit(":", 2)[0]
    JobClaims(eng, owner=f"{mine}:{gone.pid}:y", lease_s=3600).acquire("EURUSD/5m/24", "r4")
    JobClaims(eng).acquire("EURUSD/5m/24", "r5")  # a dead process of this namespace: taken over at once
    eng.dispose()


@pytest.mark.parametrize("pid", ["²", "١٢", str(10**30), "0", "4194305", "-1", "+5", " 5", ""])
def test_a_claim_whose_local_owner_names_no_readable_pid_is_a_live_holder(db_url: str, pid: str) -> None:
    """Regression: an owner ``<this host>:²:x`` raised ValueError ('²'.isdigit() is true, int()
    refuses it) and ``<this host>:10**30:x`` OverflowError from os.kill, out of ``acquire``: the
    retrain job ended with a traceback (run_retrain catches the project's errors only). An owner
    this host cannot read is a live or foreign holder: its lease holds, as another host's."""
    from retraining.claims import _local_host

    eng = make_engine(db_url)
    owner = f"{_local_host()}:{pid}:x"
    JobClaims(eng, owner=owner, lease_s=3600).acquire(KEY, "r1")
    with pytest.raises(ClaimHeld):
        JobClaims(eng).acquire(KEY, "r2")
    assert JobClaims(eng).holder(KEY) is not None and JobClaims(eng).holder(KEY)[0] == owner  # type: ignore[index]
    eng.dispose()
