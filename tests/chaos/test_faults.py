"""Faults with real processes: Redis restarted, PostgreSQL connections killed, several schedulers.

Each test starts what it breaks (its own redis-server on a free port) and kills only PostgreSQL
backends with its own application_name.
"""

from __future__ import annotations

import signal
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count

from hq import clock, messaging
from hq import redis as hq_redis
from hq.models import Plan
from queueapp import limits
from queueapp.models import Job, JobEvent, KeyLimit, LimitGate, Worker
from schedules import services as schedule_services
from schedules import triggers
from schedules.models import Schedule, ScheduleFire
from tests.conftest import wait_for
from tests.queueapp.test_limits import RunningSampler

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


def submit(api, caller, **body):
    body.setdefault("function", "hq.echo")
    resp = api.post("/v1/queue/jobs", body, format="json", **caller.headers)
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def started_attempts(ids) -> dict[str, list[int]]:
    """The attempts whose START committed, per job (one `started` event each)."""
    out: dict[str, list[int]] = {str(i): [] for i in ids}
    for job_id, attempt in JobEvent.objects.filter(job_id__in=ids, kind="started").values_list("job_id", "attempt"):
        out[str(job_id)].append(attempt)
    return {job_id: sorted(attempts) for job_id, attempts in out.items()}


def started_once(ids) -> bool:
    return all(len(attempts) == 1 for attempts in started_attempts(ids).values())


def test_redis_restart_loses_nothing_and_doubles_nothing(api, member, procs, private_redis):
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="r")
    task = schedule_services.schedule_create(
        workspace=member.workspace,
        owner=member.user,
        name="t",
        trigger={"kind": "cron", "expr": "0 0 * * *", "tz": "UTC"},
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "x"}},
    )
    procs.env.update({"HQ_TEST_REDIS_BASE": private_redis.base, "HQ_SCHEDULER_MAX_SLEEP_S": "1"})
    procs.worker()
    before = [submit(api, member) for _ in range(10)]
    wait_for(lambda: Job.objects.filter(pk__in=before, state="succeeded").count() == 10, what="jobs before")

    # A share of keyed jobs, limited to one running, with priorities: some run before the restart,
    # some are held in PostgreSQL across it, some are submitted while Redis is down.
    limits.key_limit_save(KeyLimit(pattern="restart:*", concurrency=1))
    sampler = RunningSampler(["restart:1"]).__enter__()

    # The bodies leave Redis alone: one running as Redis stops must not fail on its own count.
    NAP = {"seconds": 0.3, "uncounted": True}

    def keyed(n: int) -> list[str]:
        return [
            submit(api, member, function="tests.sleep", args=NAP, concurrency_key="restart:1", priority=p)
            for p in range(-n, n, 2)
        ]

    keyed_jobs = keyed(4)
    private_redis.stop()
    during = [submit(api, member) for _ in range(10)]  # 202 while Redis is down
    keyed_jobs += keyed(3)
    answers = [
        api.post("/v1/queue/jobs", {"function": "hq.echo", "unique_key": "restart-u"}, format="json", **member.headers)
        for _ in range(3)
    ]
    assert [r.status_code for r in answers] == [202, 200, 200]
    unique = {r.json()["id"] for r in answers}
    assert len(unique) == 1
    assert api.get("/readyz").status_code == 503
    # A schedule slot comes due while Redis is down: the scheduler writes the fire and its job.
    Schedule.objects.filter(pk=task.pk).update(next_fire_at=clock.now() - timedelta(seconds=1))
    hq_redis.reset()
    wait_for(lambda: ScheduleFire.objects.filter(schedule=task).exists(), timeout=20, what="the fire")
    time.sleep(1.5)
    # The worker's Redis is this one too: nothing reached it (the relay's grace is long past).
    assert not Job.objects.filter(pk__in=during).exclude(state="queued").exists()

    private_redis.start()  # a new, empty Redis: a new run_id
    hq_redis.reset()
    after = [submit(api, member) for _ in range(5)]
    everything = before + during + after + keyed_jobs + list(unique)
    wait_for(
        lambda: Job.objects.filter(pk__in=everything, state="succeeded").count() == 25 + 7 + 1,
        timeout=60,
        what="every accepted job to run",
    )
    sampler.__exit__(None, None, None)
    assert sampler.most == {"restart:1": 1}
    fire = ScheduleFire.objects.get(schedule=task)
    wait_for(lambda: ScheduleFire.objects.get(pk=fire.pk).status == "succeeded", timeout=30, what="the fire to run")
    assert started_once(everything + [fire.job_id])
    assert api.get("/readyz").status_code == 200


def test_postgres_connections_killed_under_the_worker(api, member, procs):
    app_name = f"hq-chaos-{uuid.uuid4().hex[:8]}"
    procs.env.update({"HQ_DB_APPLICATION_NAME": app_name, "HQ_RELAY_GRACE_S": "1"})
    procs.worker()
    first = [submit(api, member) for _ in range(5)]
    wait_for(lambda: Job.objects.filter(pk__in=first, state="succeeded").count() == 5, what="first jobs")

    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", [app_name]
        )
        assert cur.fetchone()[0] >= 1, "the worker's backends were found and terminated"

    second = [submit(api, member) for _ in range(10)]
    wait_for(
        lambda: Job.objects.filter(pk__in=second, state="succeeded").count() == 10,
        timeout=60,
        what="the worker to reconnect and go on",
    )
    assert started_once(first + second)


@pytest.mark.parametrize("schedulers", [2, 3])
def test_several_schedulers_over_minutes_of_slots(member, procs, schedulers):
    """1,000 every-minute schedules under 2-3 schedulers while the clock moves on 30 s per phase.

    Each phase restarts the schedulers with the clock 30 s further on (HQ_CLOCK_OFFSET_S), less
    than a slot apart, so no slot is missed as downtime; every slot from the first to the last
    must then have exactly one fire row, and every fire exactly one job.
    """
    member.workspace.plan = Plan.objects.create(name=f"chaos-{schedulers}", max_schedules=5000)
    member.workspace.save()
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="r")
    trigger = {"kind": "cron", "expr": "* * * * *", "tz": "Europe/Stockholm"}
    ids = [
        schedule_services.schedule_create(
            workspace=member.workspace,
            owner=member.user,
            name="m",
            trigger=trigger,
            action="send_message",
            args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "x"}},
        ).pk
        for _ in range(1000)
    ]
    procs.env["HQ_SCHEDULER_BATCH"] = "50"
    for phase in range(1, 9):  # four minutes of slots
        offset = 30 * phase
        procs.env["HQ_CLOCK_OFFSET_S"] = str(offset)
        phase_now = clock.now() + timedelta(seconds=offset)
        running = [procs.worker("--scheduler-only") for _ in range(schedulers)]
        pids = [p.pid for p in running]
        wait_for(lambda pids=pids: Worker.objects.filter(pid__in=pids).count() == len(pids), what="schedulers up")
        wait_for(
            lambda t=phase_now: not Schedule.objects.filter(pk__in=ids, next_fire_at__lte=t).exists(),
            timeout=90,
            what=f"phase {phase}",
        )
        for p in running:
            p.send_signal(signal.SIGTERM)
        for p in running:
            assert p.wait(timeout=60) == 0
    per = ScheduleFire.objects.values("schedule_id", "slot").annotate(n=Count("id"))
    assert all(row["n"] == 1 for row in per), "no slot fired twice"
    assert not ScheduleFire.objects.filter(skipped_slots__gt=0).exists()
    by_schedule: dict = {}
    for row in per:
        by_schedule.setdefault(row["schedule_id"], []).append(row["slot"])
    assert set(by_schedule) == set(ids)
    for slots in by_schedule.values():
        slots.sort()
        assert len(slots) >= 4
        for prev, nxt in zip(slots, slots[1:], strict=False):
            assert triggers.next_fire_after(trigger, prev) == nxt, "no slot between two fires was missed"
    assert Job.objects.filter(function="schedules.fire").count() == ScheduleFire.objects.count()


def test_worker_killed_in_the_middle_of_many_jobs(api, member, procs, burst):
    """Each of a killed worker's jobs ends per its max_tries; none stays running; none runs twice.

    What the design promises: a body runs only for an attempt whose START committed, and at most
    once for it; a lost attempt runs again only as a new attempt, with a START of its own. It does
    not promise that a started attempt's body runs at all: a kill between the START commit and the
    body's first line loses that attempt before its body began. So the worker is killed only once
    every body has begun, and each job's body runs are counted per attempt against its START events.
    """
    from queueapp import services as queue_services
    from tests.plugin.hq_plugin import runs_by_attempt

    retried = [
        submit(api, member, function="tests.sleep", args={"seconds": 30, "first_only": True}, max_tries=2)
        for _ in range(12)
    ]
    final = [submit(api, member, function="tests.sleep", args={"seconds": 30}, max_tries=1) for _ in range(4)]
    # A share of keyed, limited, prioritised and unique jobs: two long ones of a key limited to 2
    # take its places (retried after the kill), five short ones wait held behind them, and a unique
    # key submitted three times makes one job.
    limits.key_limit_save(KeyLimit(pattern="chaos:*", concurrency=2))
    long_keyed = [
        submit(
            api,
            member,
            function="tests.sleep",
            args={"seconds": 30, "first_only": True},
            max_tries=2,
            concurrency_key="chaos:1",
            priority=100,
        )
        for _ in range(2)
    ]
    short_keyed = [
        submit(api, member, function="tests.sleep", args={"seconds": 0.2}, concurrency_key="chaos:1", priority=p)
        for p in (-100, -5, 0, 7, 50)
    ]
    unique_body = {
        "function": "tests.sleep",
        "args": {"seconds": 30, "first_only": True},
        "max_tries": 2,
        "unique_key": "chaos-u",
        "priority": -3,
    }
    answers = [api.post("/v1/queue/jobs", unique_body, format="json", **member.headers) for _ in range(3)]
    assert [(r.status_code, r.json()["duplicate"]) for r in answers] == [(202, False), (200, True), (200, True)]
    unique = [r.json()["id"] for r in answers][:1]
    assert {r.json()["id"] for r in answers} == set(unique), "one job for a unique key submitted three times"
    sampler = RunningSampler(["chaos:1"]).__enter__()
    victim = procs.worker("--without", "reaper", "--concurrency", "50")
    everything = retried + final
    keyed = long_keyed + short_keyed
    long_keyed += unique  # lost in the kill, run again, like the two long keyed ones
    wait_for(
        # Running in PostgreSQL and inside their first attempt's bodies: a batch's START commits
        # before its bodies begin, one after another, so a kill as soon as PostgreSQL says 16
        # running could lose an attempt before its body began (that job's body then ran once).
        lambda: (
            Job.objects.filter(pk__in=everything + long_keyed, state="running").count() == 19
            and all(runs_by_attempt(i).get(1) for i in everything + long_keyed)
            and Job.objects.filter(pk__in=short_keyed, held_at__isnull=False).count() == 5
        ),
        timeout=30,
        what="all 19 long jobs running their bodies, the 5 short keyed ones held",
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    def reaped_all() -> bool:
        # Each job is reaped once both its worker's heartbeat and its own start are 3 intervals
        # old; the 16 starts are spread out, so passes run until none is left running.
        queue_services.reap_pass()
        return not Job.objects.filter(pk__in=everything + long_keyed, state="running").exists()

    wait_for(reaped_all, timeout=30, what="the reaper to move all 19 jobs")
    burst()
    sampler.__exit__(None, None, None)
    # The keyed share: every job ran, each attempt started once, never more than 2 of the key running.
    assert set(Job.objects.filter(pk__in=long_keyed).values_list("state", "attempts")) == {("succeeded", 2)}
    assert set(Job.objects.filter(pk__in=short_keyed).values_list("state", "attempts")) == {("succeeded", 1)}
    keyed_started = started_attempts(keyed + unique)
    assert keyed_started == {str(i): [1, 2] for i in long_keyed} | {str(i): [1] for i in short_keyed}
    assert sampler.samples > 10 and sampler.most == {"chaos:1": 2}
    assert set(LimitGate.objects.values_list("scope", "running")) == {("chaos:1", 0)}
    assert set(Job.objects.filter(pk__in=retried).values_list("state", "attempts")) == {("succeeded", 2)}
    assert set(Job.objects.filter(pk__in=final).values_list("state", flat=True)) == {"failed"}
    started = started_attempts(everything)
    bodies = {str(i): runs_by_attempt(i) for i in everything}
    # The lost attempt and the one that succeeded, each started once and run once; no third run.
    expected = {str(i): ([1, 2], {1: 1, 2: 1}) for i in retried} | {str(i): ([1], {1: 1}) for i in final}
    seen = {i: (started[i], bodies[i]) for i in expected}
    wrong = {i: f"started {s}, body runs by attempt {b}" for i, (s, b) in seen.items() if (s, b) != expected[i]}
    assert not wrong, f"each START committed once and each started attempt's body run once: {wrong}"
