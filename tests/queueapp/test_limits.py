"""Concurrency keys and limits, and rate limits, enforced where attempts start (START_SQL).

The worker tests run real `runworker` subprocesses against real PostgreSQL and Redis. What they
check comes from the database (every start's timestamp, running rows sampled every few ms) and from
the job bodies themselves (a count in Redis of the bodies inside each key at once).
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import pytest

from hq import clock
from hq import redis as hq_redis
from queueapp import limits, services
from queueapp.models import Job, JobEvent, KeyLimit, LimitGate, Worker
from tests.conftest import wait_for
from tests.plugin.hq_plugin import keyed_inside, keyed_most

pytestmark = pytest.mark.django_db(transaction=True)


def submit(api, caller, **body):
    resp = api.post("/v1/queue/jobs", body, format="json", **caller.headers)
    assert resp.status_code == 202, resp.content
    return resp.json()


def keyed(api, caller, key, seconds, n, **extra):
    return [
        submit(
            api, caller, function="tests.keyed", args={"key": key, "seconds": seconds}, concurrency_key=key, **extra
        )["id"]
        for _ in range(n)
    ]


class RunningSampler:
    """Counts the running rows per concurrency key every few ms, in a thread; keeps the most seen."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.most = dict.fromkeys(keys, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RunningSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.is_set():
                with connection.cursor() as cur:
                    cur.execute(
                        "SELECT concurrency_key, count(*) FROM queueapp_job WHERE state = 'running'"
                        " AND concurrency_key = ANY(%s) GROUP BY concurrency_key",
                        [self.keys],
                    )
                    for key, n in cur.fetchall():
                        self.most[key] = max(self.most[key], n)
                self.samples += 1
                time.sleep(0.003)
        finally:
            connection.close()


def starts(ids) -> list:
    return sorted(JobEvent.objects.filter(job_id__in=ids, kind="started").values_list("at", flat=True))


def most_in_window(times, window_s: float) -> int:
    """The most starts in any half-open window [t, t + window_s) that begins at a start."""
    return max(sum(1 for u in times if t <= u < t + timedelta(seconds=window_s)) for t in times)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, problem",
    [("k" * 201, "200"), ("tab\tkey", "Control"), ("line\nbreak", "Control"), ("", "blank"), ("del\x7f", "Control")],
)
def test_a_bad_concurrency_key_is_a_400_naming_it_and_records_nothing(api, member, key, problem):
    resp = api.post("/v1/queue/jobs", {"function": "hq.echo", "concurrency_key": key}, format="json", **member.headers)
    assert resp.status_code == 400, resp.content
    fields = resp.json()["error"]["fields"]
    assert list(fields) == ["concurrency_key"] and problem in fields["concurrency_key"][0]
    batch = {"jobs": [{"function": "hq.echo"}, {"function": "hq.echo", "concurrency_key": key}]}
    resp = api.post("/v1/queue/jobs/batch", batch, format="json", **member.headers)
    assert resp.status_code == 400
    assert list(resp.json()["error"]["fields"]) == ["jobs.1.concurrency_key"]
    assert not Job.objects.exists()


def test_the_key_is_stored_shown_and_filtered(api, member, admin):
    one = submit(api, member, function="hq.echo", concurrency_key="customer:42")
    submit(api, member, function="hq.echo")
    assert one["concurrency_key"] == "customer:42"
    listed = api.get("/v1/queue/jobs?concurrency_key=customer:42", **member.headers).json()["jobs"]
    assert [j["id"] for j in listed] == [one["id"]]
    assert api.get(f"/v1/queue/jobs/{one['id']}", **member.headers).json()["concurrency_key"] == "customer:42"
    # Keys name other members' customers: the depth per key is the admins'.
    assert api.get("/v1/queue/depth/keys", **member.headers).status_code == 403
    depth = api.get("/v1/queue/depth/keys", **admin.headers).json()["keys"]
    assert depth == [
        {
            "concurrency_key": "customer:42",
            "waiting": 1,
            "held": 0,
            "running": 0,
            "concurrency_limit": None,
            "rate_limit": None,
        }
    ]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -1}, "concurrency"),
        ({"rate": "10/fortnight"}, "rate"),
        ({"rate": "0/min"}, "rate"),
        ({"rate": "10/0s"}, "rate"),
        ({"rate": "ten/min"}, "rate"),
        ({"rate": "1/999999day"}, "rate"),
        ({}, "concurrency"),
        ({"concurrency": 2, "pattern": "bad\nkey*"}, "pattern"),
    ],
)
def test_a_bad_limit_is_refused_naming_the_field(fields, field):
    from hq.errors import ValidationFailed

    before = KeyLimit.objects.count()
    with pytest.raises(ValidationFailed) as refused:
        limits.key_limit_save(KeyLimit(**{"pattern": "customer:*", **fields}))
    assert list(refused.value.fields) == [field]
    assert KeyLimit.objects.count() == before


def test_rates_read_as_seconds_between_starts():
    assert limits.rate_interval("60/min") == 1.0
    assert limits.rate_interval("5/10s") == 2.0
    assert limits.rate_interval("2/h") == 1800.0
    assert limits.rate_interval("1/day") == 86400.0
    assert limits.rate_interval("1/24h") == 86400.0
    for bad in ("10/fortnight", "0/s", "1/0min", "-1/s", "1.5/s", "60", "/min", "60/ min x", "1/2day", "1/999999day"):
        with pytest.raises(ValueError):
            limits.rate_interval(bad)


def test_a_limited_function_registration_refuses_bad_limits():
    from queueapp.registry import job_function

    with pytest.raises(ValueError):
        job_function("tests.bad_rate", rate_limit="10/fortnight")(lambda ctx: None)
    with pytest.raises(ValueError):
        job_function("tests.bad_limit", concurrency_limit=0)(lambda ctx: None)


# --- enforcement ------------------------------------------------------------------------------------


def test_in_process_burst_keeps_a_key_to_its_limit_and_drains(api, member, admin, burst):
    limits.key_limit_save(KeyLimit(pattern="customer:*", concurrency=2))
    ids = keyed(api, member, "customer:1", 0.1, 12) + keyed(api, member, "customer:2", 0.1, 6)
    plain = [submit(api, member, function="hq.echo")["id"] for _ in range(10)]
    burst()
    assert set(Job.objects.filter(pk__in=ids + plain).values_list("state", flat=True)) == {"succeeded"}
    assert keyed_most("customer:1") == 2 and keyed_most("customer:2") == 2
    assert set(LimitGate.objects.values_list("scope", "running")) == {("customer:1", 0), ("customer:2", 0)}
    assert not Job.objects.filter(held_at__isnull=False).exists()
    # /metrics counts the holds by function and kind of limit, never by key.
    from hq import metrics

    metrics.flush()
    scrape = api.get("/metrics", **admin.headers).content.decode()
    holds = [line for line in scrape.splitlines() if line.startswith("hq_job_holds_total{")]
    assert any('function="tests.keyed"' in line and 'limit="concurrency"' in line for line in holds), holds
    assert "customer:" not in scrape


def test_a_slot_freed_by_a_gated_job_takes_the_next_one_without_a_hold(api, member, admin, burst):
    """A job under a gate keeps its slot until its end is committed: the next job of its key,
    claimed into that slot, finds the place free instead of being held, woken and claimed again."""
    from hq import metrics

    limits.key_limit_save(KeyLimit(pattern="solo:*", concurrency=1))
    # Four keys in turn, as many as the worker's slots for users (8, 4 kept for engine jobs): each
    # claim after the first takes the next job of the key whose job just ended.
    ids = [i for _ in range(8) for k in range(4) for i in keyed(api, member, f"solo:{k}", 0, 1)]
    burst(concurrency=8)
    assert set(Job.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"succeeded"}
    metrics.flush()
    scrape = api.get("/metrics", **admin.headers).content.decode()
    holds = [line for line in scrape.splitlines() if line.startswith("hq_job_holds_total{") and "tests.keyed" in line]
    # None in practice; a slot freed out of turn may claim a key still running. Freeing the slot at
    # the body's end instead held 8 of these 32 jobs.
    assert sum(float(line.rsplit(" ", 1)[1]) for line in holds) <= 2, holds


def start_workers(procs, n: int, concurrency: int = 8) -> dict[int, object]:
    """`n` runworker processes (jobs and side tasks); {pid: process} once all have beaten. Of 8
    slots, 4 are kept for engine jobs (`HQ_ENGINE_RESERVED_SLOTS`): 4 run these tests' jobs."""
    started = {p.pid: p for p in (procs.worker("--concurrency", str(concurrency)) for _ in range(n))}
    wait_for(lambda: Worker.objects.filter(stopped_at__isnull=True).count() == n, timeout=30, what="the workers")
    return started


def test_three_workers_never_run_three_of_a_key_limited_to_two_even_through_a_kill(api, member, procs):
    limits.key_limit_save(KeyLimit(pattern="customer:*", concurrency=2))
    workers = start_workers(procs, 3)
    keys = ["customer:1", "customer:2"]
    with RunningSampler(keys) as sampler:
        ids = keyed(api, member, "customer:1", 0.3, 24) + keyed(api, member, "customer:2", 0.3, 10)
        # Plain jobs beside them, with tries to spare for an attempt the kill loses.
        plain = [submit(api, member, function="tests.count")["id"] for _ in range(20)]
        client = hq_redis.client()

        def victim_pid() -> int | None:
            # A worker inside the body of one of customer:1's jobs.
            pids = {int(pid) for pid in client.hvals(keyed_inside("customer:1"))}
            return next(iter(pids & set(workers)), None)

        pid = wait_for(victim_pid, timeout=30, what="a body of customer:1 running")
        workers[pid].send_signal(signal.SIGKILL)
        workers[pid].wait(timeout=10)
        # The killed bodies never leave the count themselves: take them out (their rows stay
        # running, holding their places, until the reaper requeues them).
        for key in keys:
            for arq_id, holder in client.hgetall(keyed_inside(key)).items():
                if int(holder) == pid:
                    client.hdel(keyed_inside(key), arq_id)
        everything = Job.objects.filter(pk__in=ids + plain)
        try:
            wait_for(lambda: everything.filter(state="succeeded").count() == len(ids) + len(plain), timeout=60)
        except AssertionError:
            left = everything.exclude(state="succeeded").values_list(
                "concurrency_key", "state", "attempts", "held_at", "dispatched_at", "limit_scope"
            )
            gates = LimitGate.objects.values_list("scope", "running")
            for proc in workers.values():
                if proc.poll() is None:
                    proc.terminate()
            logs = {p: proc.communicate(timeout=20)[0].decode(errors="replace")[-3000:] for p, proc in workers.items()}
            raise AssertionError(f"not all succeeded: {list(left)}; gates {list(gates)}; logs {logs}") from None
    assert sampler.samples > 100
    assert sampler.most == {"customer:1": 2, "customer:2": 2}
    assert keyed_most("customer:1") == 2 and keyed_most("customer:2") == 2
    # The kill lost an attempt that the reaper gave back (a second attempt ran it).
    assert Job.objects.filter(pk__in=ids, attempts=2).exists()
    assert set(LimitGate.objects.values_list("scope", "running")) == {("customer:1", 0), ("customer:2", 0)}
    # Each attempt started once: one start per job, and one more for each attempt the kill lost.
    started = JobEvent.objects.filter(job_id__in=ids, kind="started").count()
    assert started == len(ids) + Job.objects.filter(pk__in=ids, attempts=2).count()


def test_a_held_job_starts_once_the_running_one_of_its_key_ends(api, member, procs):
    start_workers(procs, 1)
    first = submit(api, member, function="tests.one_at_a_time", args={"seconds": 1.5}, concurrency_key="k")["id"]
    wait_for(lambda: Job.objects.filter(pk=first, state="running").exists(), what="the first job running")
    second = submit(api, member, function="tests.one_at_a_time", args={"seconds": 0}, concurrency_key="k")["id"]
    # Held in PostgreSQL (not spinning through Redis) while the first runs.
    wait_for(lambda: Job.objects.filter(pk=second, held_at__isnull=False).exists(), what="the second job held")
    assert Job.objects.get(pk=first).state == "running"
    wait_for(lambda: Job.objects.filter(pk=second, state="succeeded").exists(), timeout=20, what="the second job")
    a, b = Job.objects.get(pk=first), Job.objects.get(pk=second)
    assert a.state == "succeeded" and b.first_started_at >= a.finished_at
    print(f"held job started {(b.first_started_at - a.finished_at).total_seconds() * 1000:.0f} ms after the end")
    # A keyless job of that function shares one gate named after it: one at a time too.
    loose = [submit(api, member, function="tests.one_at_a_time", args={"seconds": 0.2})["id"] for _ in range(4)]
    wait_for(lambda: Job.objects.filter(pk__in=loose, state="succeeded").count() == 4, timeout=20, what="keyless")
    spans = sorted(Job.objects.filter(pk__in=loose).values_list("started_at", "finished_at"))
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:], strict=False)), spans


def test_a_rate_spreads_starts_across_workers(api, member, procs):
    start_workers(procs, 2)
    ids = [submit(api, member, function="tests.rated")["id"] for _ in range(12)]
    wait_for(lambda: Job.objects.filter(pk__in=ids, state="succeeded").count() == 12, timeout=30, what="12 jobs")
    times = starts(ids)
    assert len(times) == 12
    # "4/2s": never more than 4 starts in any 2 s, each at least 0.5 s after the one before.
    assert most_in_window(times, 2.0) <= 4
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.5, gaps


def test_a_key_rate_from_a_limit_row(api, member, procs):
    limits.key_limit_save(KeyLimit(pattern="api:*", rate="3/s"))
    start_workers(procs, 2)
    ids = keyed(api, member, "api:github", 0, 9)
    other = keyed(api, member, "api:slack", 0, 3)
    wait_for(lambda: Job.objects.filter(pk__in=ids + other, state="succeeded").count() == 12, timeout=30, what="all")
    times = starts(ids)
    assert most_in_window(times, 1.0) <= 3
    assert min((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)) >= 1 / 3


def test_a_limit_changed_while_jobs_wait_applies_without_a_restart(api, member, admin, procs):
    limit = limits.key_limit_save(KeyLimit(pattern="tenant:*", concurrency=1))
    start_workers(procs, 1)
    ids = keyed(api, member, "tenant:9", 4, 5)
    jobs = Job.objects.filter(pk__in=ids)
    wait_for(
        lambda: jobs.filter(state="running").count() == 1 and jobs.filter(held_at__isnull=False).count() == 4,
        what="one running, four held",
    )
    limit.concurrency = 3
    limits.key_limit_save(limit)
    wait_for(lambda: jobs.filter(state="running").count() == 3, timeout=10, what="three running")
    expected = [
        {
            "concurrency_key": "tenant:9",
            "waiting": 2,
            "held": 2,
            "running": 3,
            "concurrency_limit": 3,
            "rate_limit": None,
        }
    ]
    # The two released jobs are held again once START sees them: the depth says so within seconds.
    wait_for(
        lambda: api.get("/v1/queue/depth/keys", **admin.headers).json()["keys"] == expected,
        timeout=10,
        what="the depth per key: three running, two held",
    )
    wait_for(lambda: jobs.filter(state="succeeded").count() == 5, timeout=30, what="all five")
    # Three rows ran at once (above); inside the bodies never more than the limit (a body that has
    # ended may still be `running` until its FINISH batch, so the count inside can read lower).
    assert 2 <= keyed_most("tenant:9") <= 3


def test_the_reapers_recount_sets_each_gate_to_its_running_rows(member):
    """The safety net under the exact counts: a gate left wrong (by hand here) is set right."""
    job, _ = services.job_submit(
        workspace=member.workspace,
        owner=member.user,
        submission=services.Submission(function="hq.echo", args={}, concurrency_key="acct:1"),
    )
    Job.objects.filter(pk=job.pk).update(state="running", limit_scope="acct:1", worker_id="w")
    LimitGate.objects.create(workspace=member.workspace, scope="acct:1", running=0)
    LimitGate.objects.create(workspace=member.workspace, scope="acct:2", running=3)
    assert limits.recount_gates() == 2
    assert set(LimitGate.objects.values_list("scope", "running")) == {("acct:1", 1), ("acct:2", 0)}
    assert limits.recount_gates() == 0


def test_an_end_through_the_orm_gives_the_place_back_and_wakes_a_held_job(member):
    """The reaper's and the admin's moves (`write_move`) release a gate as FINISH_SQL does."""
    from django.db import transaction

    from queueapp.services import job_transition

    def keyed_job():
        job, _ = services.job_submit(
            workspace=member.workspace,
            owner=member.user,
            submission=services.Submission(function="hq.echo", args={}, concurrency_key="acct:9"),
        )
        return job

    running, held = keyed_job(), keyed_job()
    Job.objects.filter(pk=running.pk).update(state="running", attempts=1, limit_scope="acct:9", worker_id="w")
    Job.objects.filter(pk=held.pk).update(held_at=clock.now(), limit_scope="acct:9")
    LimitGate.objects.create(workspace=member.workspace, scope="acct:9", running=1)
    with transaction.atomic():
        assert job_transition(job_id=running.pk, move="requeue", kind="requeued", worker_id="") is not None
    assert LimitGate.objects.get(scope="acct:9").running == 0
    woken = Job.objects.get(pk=held.pk)
    assert (woken.held_at, woken.dispatched_at) == (None, None)  # the relay's to push


def test_a_workspace_limit_change_releases_only_that_workspace_held_jobs(api, member):
    from tests import factories

    other = factories.caller()
    mine = submit(api, member, function="hq.echo", concurrency_key="customer:1", defer_by_seconds=3600)["id"]
    theirs = submit(api, other, function="hq.echo", concurrency_key="customer:1", defer_by_seconds=3600)["id"]
    held_at = clock.now()
    Job.objects.filter(pk__in=[mine, theirs]).update(held_at=held_at, dispatched_at=held_at)
    limits.key_limit_save(KeyLimit(pattern="customer:*", concurrency=1, workspace=member.workspace))
    assert Job.objects.get(pk=mine).held_at is None
    assert Job.objects.get(pk=theirs).held_at == held_at  # another workspace's change touches nothing of theirs
    limits.key_limit_save(KeyLimit(pattern="customer:*", concurrency=1))  # every workspace's limit
    assert Job.objects.get(pk=theirs).held_at is None


def test_the_reaper_wakes_as_many_held_jobs_as_a_raised_limit_in_the_code_frees(member):
    """A deploy raised `tests.three_at_a_time`'s limit from 1 to 3 while six of its jobs were held
    and one ran: no finish wakes the two new places, the reaper's next pass fills them at once."""

    def job():
        return services.job_submit(
            workspace=member.workspace,
            owner=member.user,
            submission=services.Submission(function="tests.three_at_a_time", args={}),
        )[0]

    running, held = job(), [job() for _ in range(6)]
    scope = "tests.three_at_a_time"
    Job.objects.filter(pk=running.pk).update(state="running", attempts=1, limit_scope=scope, worker_id="w")
    long_ago = clock.now() - timedelta(minutes=5)
    Job.objects.filter(pk__in=[h.pk for h in held]).update(held_at=long_ago, dispatched_at=long_ago, limit_scope=scope)
    LimitGate.objects.create(workspace=member.workspace, scope=scope, running=1)
    assert limits.wake_stale_held(older_than_s=10) == 2
    woken = Job.objects.filter(pk__in=[h.pk for h in held], held_at__isnull=True)
    # The earliest due first, each handed to the relay (unmarked dispatched).
    assert set(woken.values_list("pk", "dispatched_at")) == {(h.pk, None) for h in held[:2]}
    # Without a free place, still the oldest one per pass (the net for a lost wake), never more.
    Job.objects.filter(pk__in=[h.pk for h in held[:2]]).update(held_at=long_ago)
    LimitGate.objects.filter(scope=scope).update(running=3)
    assert limits.wake_stale_held(older_than_s=10) == 1
    # A concurrency limit removed altogether (a key limit's rate alone now): every held job goes.
    keyed_ids = [
        services.job_submit(
            workspace=member.workspace,
            owner=member.user,
            submission=services.Submission(function="hq.echo", args={}, concurrency_key="rated:1"),
        )[0].pk
        for _ in range(4)
    ]
    Job.objects.filter(pk__in=keyed_ids).update(held_at=long_ago, limit_scope="rated:1")
    KeyLimit.objects.create(pattern="rated:*", like_pattern="rated:%", rate="1/s", rate_interval_s=1.0)
    LimitGate.objects.create(workspace=member.workspace, scope="rated:1", running=1)
    limits.wake_stale_held(older_than_s=10)
    assert not Job.objects.filter(pk__in=keyed_ids, held_at__isnull=False).exists()


def test_idle_gates_are_pruned_and_busy_ones_kept(member):
    """One gate per key ever used would grow without end: the reaper deletes the idle ones."""
    ws = member.workspace
    now = clock.now()

    def gate(scope, running=0, next_at=None):
        return LimitGate.objects.create(workspace=ws, scope=scope, running=running, next_at=next_at)

    def waiting(**submission):
        services.job_submit(workspace=ws, owner=member.user, submission=services.Submission(args={}, **submission))

    gate("idle:1")
    gate("idle:2", next_at=now - timedelta(hours=1))
    gate("busy:running", running=1)
    gate("busy:rate", next_at=now - timedelta(seconds=10))  # a rate's turn just past: its window still counts
    LimitGate.objects.create(workspace=ws, scope="busy:booked", booked_at=now + timedelta(minutes=1))
    gate("busy:waiting")
    waiting(function="hq.echo", concurrency_key="busy:waiting")
    gate("tests.one_at_a_time")
    waiting(function="tests.one_at_a_time")  # a function's keyless jobs wait under its name
    assert limits.prune_gates() == 2
    assert set(LimitGate.objects.values_list("scope", flat=True)) == {
        "busy:running",
        "busy:rate",
        "busy:booked",
        "busy:waiting",
        "tests.one_at_a_time",
    }
    assert limits.prune_gates() == 0


def test_a_rate_backlog_comes_back_one_per_turn_not_in_lumps(api, member, procs):
    """Each job a rate holds gets a turn of its own (after the gate's latest), across workers and
    START batches: it is held about once, not again at every turn it lost to the others held with it."""
    limits.key_limit_save(KeyLimit(pattern="spread:*", rate="10/s"))
    start_workers(procs, 3)
    body = {"function": "hq.echo", "concurrency_key": "spread:1"}
    resp = api.post("/v1/queue/jobs/batch", {"jobs": [body] * 60}, format="json", **member.headers)
    ids = [job["id"] for job in resp.json()["jobs"]]
    wait_for(lambda: Job.objects.filter(pk__in=ids, state="succeeded").count() == 60, timeout=60, what="60 jobs")
    times = starts(ids)
    assert len(times) == 60 and most_in_window(times, 1.0) <= 10
    time.sleep(1.5)  # the workers' last flush of their metrics
    holds = hq_redis.client().hgetall(hq_redis.key("metrics", "hq_job_holds"))
    rate_holds = sum(int(v) for k, v in holds.items() if b'"rate"' in k)
    print(f"rate holds for 60 jobs: {rate_holds}")
    # Once for its turn, now and then once more (a start before it was late by more than the margin
    # between turns). Turns counted per START batch alone held each job ~12 times (746 holds).
    assert rate_holds <= 2 * 60, holds
