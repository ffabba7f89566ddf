"""The issue's proof of a rate: 60/min holds over 3 minutes, with 3 real workers and one of them
killed with SIGKILL in the middle (a replacement started).

Everything checked comes from the database: every start's event (its timestamp, job and attempt)
and every job's end. About three minutes, nearly all of it waiting on the rate.
"""

from __future__ import annotations

import collections
import signal
import threading
from datetime import timedelta

import pytest

from hq import redis as hq_redis
from queueapp import limits
from queueapp.models import Job, JobEvent, KeyLimit, LimitGate, Worker
from tests.conftest import wait_for
from tests.plugin.hq_plugin import keyed_inside

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.minutes]

KEY = "minute:1"
JOBS = 165  # ~2 min 45 s of starts at one a second, plus the attempt the kill loses


def _drain(proc, tail: collections.deque) -> None:
    """Read a worker's output as it comes (three minutes of it would fill the pipe and stall it)."""
    for line in iter(proc.stdout.readline, b""):
        tail.append(line.decode(errors="replace"))


def _worker(procs, tails: dict[int, collections.deque]):
    proc = procs.worker("--concurrency", "8")
    tails[proc.pid] = collections.deque(maxlen=40)
    threading.Thread(target=_drain, args=(proc, tails[proc.pid]), daemon=True).start()
    return proc


def test_a_rate_of_60_a_minute_holds_for_3_minutes_through_a_worker_killed(api, member, procs):
    limits.key_limit_save(KeyLimit(pattern="minute:*", rate="60/min"))
    tails: dict[int, collections.deque] = {}
    workers = {p.pid: p for p in (_worker(procs, tails) for _ in range(3))}
    wait_for(lambda: Worker.objects.filter(stopped_at__isnull=True).count() == 3, timeout=30, what="3 workers")
    body = {"function": "tests.keyed", "args": {"key": KEY, "seconds": 1.5}, "concurrency_key": KEY}
    resp = api.post("/v1/queue/jobs/batch", {"jobs": [body] * JOBS}, format="json", **member.headers)
    assert resp.status_code == 202, resp.content
    ids = [job["id"] for job in resp.json()["jobs"]]
    jobs = Job.objects.filter(pk__in=ids)

    # In the middle: kill a worker inside one of the bodies, and start another in its place.
    wait_for(lambda: jobs.filter(state="succeeded").count() >= JOBS // 2, timeout=200, what="half the jobs")
    client = hq_redis.client()
    pid = wait_for(
        lambda: next(iter({int(p) for p in client.hvals(keyed_inside(KEY))} & set(workers)), None),
        timeout=30,
        what="a body running",
    )
    workers[pid].send_signal(signal.SIGKILL)
    workers[pid].wait(timeout=10)
    replacement = _worker(procs, tails)
    workers[replacement.pid] = replacement
    try:
        wait_for(lambda: jobs.filter(state="succeeded").count() == JOBS, timeout=240, what="every job")
    except AssertionError:
        left = list(jobs.exclude(state="succeeded").values_list("state", "attempts", "dispatched_at")[:20])
        raise AssertionError(
            f"not all succeeded: {left}; gates {list(LimitGate.objects.values_list())}; "
            f"logs {[''.join(t) for t in tails.values()]}"
        ) from None

    events = list(JobEvent.objects.filter(job_id__in=ids, kind="started").values_list("job_id", "attempt", "at"))
    times = sorted(at for _, _, at in events)
    # Each attempt started once, and every job ended once (succeeded, no attempt left running).
    assert len({(job, attempt) for job, attempt, _ in events}) == len(events)
    lost = jobs.filter(attempts=2)
    assert lost.exists(), "the kill lost no attempt: the test did not kill a worker mid-job"
    assert len(events) == JOBS + lost.count()
    assert not jobs.filter(attempts__gt=2).exists()
    assert JobEvent.objects.filter(job_id__in=ids, kind="succeeded").count() == JOBS
    # Three minutes of starts, under the rate in every window of 60 s that begins at a start.
    assert times[-1] - times[0] > timedelta(seconds=150)
    most = max(sum(1 for u in times[i:] if u < t + timedelta(seconds=60)) for i, t in enumerate(times))
    assert most <= 60, most
    # Spread, never a burst at a window's edge: one start a second, so never two in a second...
    per_second = collections.Counter(int(t.timestamp()) for t in times)
    assert max(per_second.values()) <= 1, per_second.most_common(3)
    # ...and the kill cost no catch-up: at most 10 in any 10 s.
    assert max(sum(1 for u in times[i:] if u < t + timedelta(seconds=10)) for i, t in enumerate(times)) <= 10
    assert set(LimitGate.objects.values_list("scope", "running")) == {(KEY, 0)}
