"""The engine end to end: real PostgreSQL, real Redis, real ARQ workers (in process and as processes)."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.test import override_settings

from hq import clock
from hq import redis as hq_redis
from queueapp import services, transport
from queueapp.models import Job, JobEvent, Worker
from tests import factories
from tests.conftest import wait_for
from tests.plugin.hq_plugin import runs

pytestmark = pytest.mark.django_db(transaction=True)


def submit(api, caller, **body):
    body.setdefault("function", "hq.echo")
    resp = api.post("/v1/queue/jobs", body, format="json", **caller.headers)
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def job(job_id) -> Job:
    return Job.objects.get(pk=job_id)


def started_events(job_id) -> int:
    return JobEvent.objects.filter(job_id=job_id, kind="started").count()


def test_submit_run_succeeded_with_result(api, member, burst):
    job_id = submit(api, member, args={"hello": "world"})
    burst()
    body = api.get(f"/v1/queue/jobs/{job_id}", **member.headers).json()
    assert body["state"] == "succeeded"
    assert body["result"] == {"hello": "world"}
    assert body["attempts"] == 1 and body["wait_ms"] is not None and body["run_ms"] is not None
    kinds = [e["kind"] for e in api.get(f"/v1/queue/jobs/{job_id}/events", **member.headers).json()["events"]]
    assert kinds == ["submitted", "started", "succeeded"]


def test_an_attempt_that_ended_leaves_nothing_in_arqs_keys(api, member, burst):
    """The worker clears ARQ's queue entry, job and in-progress keys of each attempt that ended."""
    from arq.constants import in_progress_key_prefix, job_key_prefix

    ids = [submit(api, member) for _ in range(3)]
    arq_ids = [transport.arq_job_id(i, 1) for i in ids]
    r = hq_redis.client()
    assert r.zcard(transport.queue_key("default")) == 3 and r.exists(*(job_key_prefix + a for a in arq_ids)) == 3
    burst()
    assert [job(i).state for i in ids] == ["succeeded"] * 3
    assert r.zcard(transport.queue_key("default")) == 0
    assert r.exists(*(p + a for a in arq_ids for p in (job_key_prefix, in_progress_key_prefix))) == 0


def test_sync_function_uses_the_orm(api, member, burst):
    job_id = submit(api, member, function="tests.sync_echo", args={"k": 1})
    burst()
    assert job(job_id).result == {"workspace": member.workspace.slug, "args": {"k": 1}}


def test_failure_retries_then_failed(api, member, burst):
    job_id = submit(api, member, function="tests.fail", max_tries=3)
    burst()
    j = job(job_id)
    assert j.state == "failed" and j.attempts == 3 and runs(job_id) == 3
    assert "boom on attempt 3" in j.error
    kinds = list(j.events.values_list("kind", flat=True))
    assert kinds == ["submitted", "started", "retry_scheduled", "started", "retry_scheduled", "started", "failed"]


def test_flaky_succeeds_on_second_attempt(api, member, burst):
    job_id = submit(api, member, function="tests.flaky", args={"fail_times": 1})
    burst()
    j = job(job_id)
    assert j.state == "succeeded" and j.result == {"attempt": 2} and j.attempts == 2


def test_timeout_fails_the_attempt(api, member, burst):
    job_id = submit(api, member, function="tests.sleep", args={"seconds": 30}, timeout_seconds=1, max_tries=1)
    burst()
    j = job(job_id)
    assert j.state == "failed" and "Timed out after 1s" in j.error


def test_a_bodys_own_timeout_error_is_reported_as_itself(api, member, burst):
    job_id = submit(api, member, function="tests.own_timeout")
    burst()
    j = job(job_id)
    assert j.state == "failed" and "upstream did not answer in 2 s" in j.error and "Timed out after" not in j.error


def test_deferred_job_runs_after_its_time(api, member, burst):
    job_id = submit(api, member, defer_by_seconds=1.5)
    burst()
    assert job(job_id).state == "deferred" and started_events(job_id) == 0
    wait_for(lambda: job(job_id).due_at <= clock.now(), timeout=5, what="due time")
    burst()
    j = job(job_id)
    assert j.state == "succeeded" and j.first_started_at >= j.due_at


def test_cancelled_job_never_runs(api, member, burst):
    job_id = submit(api, member, function="tests.count")
    api.post(f"/v1/queue/jobs/{job_id}/cancel", **member.headers)
    burst()
    assert job(job_id).state == "cancelled" and runs(job_id) == 0 and started_events(job_id) == 0


def test_a_cancel_whose_abort_never_arrived_wins_over_the_retry_of_a_failure(api, member, burst):
    job_id = submit(api, member, function="tests.cancelled_then_fails")
    burst()
    row = job(job_id)
    assert (row.state, row.attempts, runs(job_id)) == ("cancelled", 1, 1), "never retried"
    assert row.finished_at is not None and row.dispatched_at is None
    last = JobEvent.objects.filter(job_id=job_id).order_by("at", "id").last()
    assert (last.kind, last.from_state, last.to_state) == ("cancelled", "running", "cancelled")
    assert "failed on its own" in last.detail["error"] and "retry_in_s" not in last.detail
    assert transport.queue_length("default") == 0, "no retry pushed"


def test_retry_runs_again_with_fresh_tries(api, member, burst):
    job_id = submit(api, member, function="tests.flaky", args={"fail_times": 1}, max_tries=1)
    burst()
    assert job(job_id).state == "failed"
    assert api.post(f"/v1/queue/jobs/{job_id}/retry", **member.headers).status_code == 200
    burst()
    j = job(job_id)
    assert j.state == "succeeded" and j.attempts == 2 and j.error == ""


def test_paused_queue_accepts_but_starts_nothing_until_resumed(api, admin, burst):
    api.post("/v1/queue/queues/default/pause", **admin.headers)
    job_id = submit(api, admin, function="tests.count")
    burst()
    j = job(job_id)
    assert j.state == "queued" and runs(job_id) == 0 and j.dispatched_at is None
    other_ws = factories.caller()
    other = submit(api, other_ws, function="tests.count")
    burst()
    assert job(other).state == "succeeded", "a pause covers only the pausing workspace"
    api.post("/v1/queue/queues/default/resume", **admin.headers)
    burst()
    assert job(job_id).state == "succeeded" and runs(job_id) == 1


def test_redis_down_at_submit_then_relay_pushes(api, member, burst):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        hq_redis.reset()
        resp = api.post("/v1/queue/jobs", {"function": "tests.count"}, format="json", **member.headers)
    hq_redis.reset()
    assert resp.status_code == 202
    job_id = resp.json()["id"]
    assert job(job_id).dispatched_at is None, "a failed push leaves the job to the relay"
    assert hq_redis.client().zcard(transport.queue_key("default")) == 0
    assert services.relay_pass() == 1
    assert hq_redis.client().zcard(transport.queue_key("default")) == 1
    assert services.relay_pass() == 0, "a pushed job is not pushed again within the grace"
    burst()
    assert job(job_id).state == "succeeded" and runs(job_id) == 1


def test_redis_flushed_jobs_are_repushed_once(api, member, burst):
    ids = [submit(api, member, function="tests.count") for _ in range(5)]
    hq_redis.client().flushdb()  # Redis lost everything it held
    assert services.relay_pass(everything=True) == 5
    services.relay_pass(everything=True)  # pushing twice must not run anything twice
    burst()
    assert all(job(i).state == "succeeded" and runs(i) == 1 for i in ids)


def test_pushing_everything_stamps_only_what_redis_lacked(api, member):
    """The pass a burst worker starts with (and the relay's after a Redis restart) pushes every
    waiting job, batch after batch in push order, but rewrites only the rows Redis did not hold."""
    ids = [submit(api, member, function="tests.count", priority=p) for p in (5, 0, 0, -5, 5)]
    pushed_at = dict(Job.objects.filter(pk__in=ids).values_list("pk", "dispatched_at"))
    lost = Job.objects.get(pk=ids[2])
    transport.forget(lost.pk, 1, lost.queue)  # Redis lost this one (an eviction, say)
    assert transport.queue_length("default") == 4
    assert services.relay_pass(everything=True, batch=2) == 5, "every waiting job, over three batches"
    assert transport.queue_length("default") == 5
    now_at = dict(Job.objects.filter(pk__in=ids).values_list("pk", "dispatched_at"))
    assert [now_at[k] == pushed_at[k] for k in pushed_at] == [k != lost.pk for k in pushed_at]
    assert now_at[lost.pk] > pushed_at[lost.pk]


def test_relay_pushes_every_unpushed_job_but_one_batch_of_old_pushes_per_pass(api, member):
    """A backlog older than the grace (Redis holds it, the workers are behind) costs one batch per
    pass, oldest push first, not all of it every pass; a job never pushed is always pushed."""
    ids = [submit(api, member, function="tests.count") for _ in range(5)]
    long_ago = clock.now() - timedelta(seconds=3600)
    Job.objects.filter(pk__in=ids).update(dispatched_at=None)
    assert services.relay_pass(batch=2) == 5, "never pushed: all of them, batch after batch"
    for n, i in enumerate(ids):
        Job.objects.filter(pk=i).update(dispatched_at=long_ago + timedelta(seconds=n))
    assert services.relay_pass(batch=2) == 2
    assert sorted(
        str(i)
        for i in Job.objects.filter(dispatched_at__gt=long_ago + timedelta(seconds=60)).values_list("pk", flat=True)
    ) == sorted(ids[:2])
    assert services.relay_pass(batch=2) == 2
    assert services.relay_pass(batch=2) == 1
    assert services.relay_pass(batch=2) == 0, "all pushed within the grace now"
    assert services.relay_pass(everything=True, batch=2) == 5, "everything: each waiting job once, batch after batch"


def test_an_attempt_claimed_by_a_worker_that_died_before_starting_it_runs(api, member, burst):
    """A claim marks the attempt in progress for a week; a worker killed before its START commits
    leaves the row waiting. The relay's check of old pushes drops the stale claim and pushes again."""
    import asyncio

    import redis.asyncio as aioredis
    from django.conf import settings

    job_id = submit(api, member, function="tests.count")

    async def die_after_claiming() -> list[str]:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        share = transport.Share(cap=10, user_limit=10, running={})
        got = await transport.claim(client, "default", 10, share, 7 * 24 * 3600 * 1000)
        await client.aclose()
        return [arq_id for arq_id, _, _ in got]

    assert asyncio.run(die_after_claiming()) == [f"{job_id}:1"]

    async def startable() -> int:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            return await transport.startable_count("default", client, transport.clock_ms())
        finally:
            await client.aclose()

    assert asyncio.run(startable()) == 0
    Job.objects.filter(pk=job_id).update(dispatched_at=clock.now() - timedelta(hours=1))
    assert services.relay_pass() == 1
    assert asyncio.run(startable()) == 0, "a fresh claim is its worker's: it starts it within milliseconds"
    # The claim was made an hour ago (the claim script stamps its time in the in-progress key).
    from arq.constants import in_progress_key_prefix

    an_hour_ago = int((clock.now() - timedelta(hours=1)).timestamp() * 1000)
    hq_redis.client().set(in_progress_key_prefix + f"{job_id}:1", an_hour_ago, keepttl=True)
    Job.objects.filter(pk=job_id).update(dispatched_at=clock.now() - timedelta(hours=1))
    assert services.relay_pass() == 1
    assert asyncio.run(startable()) == 1, "the stale claim is dropped and the attempt can be claimed again"
    burst()
    assert (job(job_id).state, runs(job_id)) == ("succeeded", 1)


def test_one_attempt_delivered_twice_into_one_start_batch_starts_one_body(api, member):
    import asyncio

    from queueapp import store as stores

    job_id = submit(api, member, function="tests.count")

    async def start_twice() -> list:
        st = stores.for_database()
        await st.open()
        try:
            return list(await asyncio.gather(st.start(job_id, 1, "w:1"), st.start(job_id, 1, "w:1")))
        finally:
            await st.close()

    got = asyncio.run(start_twice())
    assert sorted(x is None for x in got) == [False, True], got
    assert started_events(job_id) == 1


def test_duplicate_deliveries_start_once(api, member, burst):
    job_id = submit(api, member, function="tests.count")
    j = job(job_id)
    push = transport.Push(j.id, 1, "default", clock.now())
    # ARQ refuses the same attempt id while it holds it...
    assert transport.push([push]) == 0
    # ...and once ARQ has forgotten it, PostgreSQL keeps the start single.
    burst()
    assert transport.push([push]) == 1
    burst()
    assert runs(job_id) == 1 and started_events(job_id) == 1


def test_two_worker_processes_race_for_jobs(api, member, procs):
    ids = [submit(api, member, function="tests.count") for _ in range(60)]
    a, b = procs.worker("--burst", "--concurrency", "10"), procs.worker("--burst", "--concurrency", "10")
    assert a.wait(timeout=120) == 0 and b.wait(timeout=120) == 0
    assert Job.objects.filter(pk__in=ids, state="succeeded").count() == 60
    assert all(runs(i) == 1 for i in ids)
    assert JobEvent.objects.filter(job_id__in=ids, kind="started").count() == 60


def test_worker_killed_mid_job_is_retried_by_another(api, member, procs, burst):
    job_id = submit(api, member, function="tests.sleep", args={"seconds": 60, "first_only": True}, max_tries=2)
    victim = procs.worker("--without", "reaper")
    wait_for(lambda: job(job_id).state == "running", timeout=30, what="the job to start")
    dead_worker = job(job_id).worker_id
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    # No heartbeat for three intervals: the reaper gives the attempt to the next worker.
    wait_for(lambda: services.reap_pass() == 1, timeout=15, what="the reaper")
    j = job(job_id)
    assert j.state == "queued" and "worker stopped" in j.error
    assert Worker.objects.get(pk=dead_worker).stopped_at is not None
    burst()
    j = job(job_id)
    assert j.state == "succeeded" and j.attempts == 2 and j.result == {"attempt": 2}
    assert list(j.events.values_list("kind", flat=True)) == [
        "submitted",
        "started",
        "worker_lost",
        "started",
        "succeeded",
    ]


def test_a_running_worker_reaps_a_dead_workers_job_by_itself(api, member, procs):
    """No reap_pass from the test: the reaper side task of another runworker finds the lost job."""
    job_id = submit(api, member, function="tests.sleep", args={"seconds": 60, "first_only": True}, max_tries=2)
    victim = procs.worker("--without", "reaper")
    wait_for(lambda: job(job_id).state == "running", timeout=30, what="the job to start")
    dead_worker = job(job_id).worker_id
    procs.worker()
    rescuer_up = Worker.objects.filter(stopped_at=None).exclude(pk=dead_worker)
    wait_for(rescuer_up.exists, timeout=30, what="the rescuer")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    wait_for(lambda: job(job_id).state == "succeeded", timeout=45, what="the rescuer to reap and rerun the job")
    j = job(job_id)
    assert (j.attempts, runs(job_id)) == (2, 2)
    kinds = ["submitted", "started", "worker_lost", "started", "succeeded"]
    assert list(j.events.values_list("kind", flat=True)) == kinds
    second = j.events.filter(kind="started").order_by("at").last()
    assert second.detail["worker"] != dead_worker
    assert Worker.objects.get(pk=dead_worker).stopped_at is not None


def test_lost_job_without_tries_left_fails(api, member, procs):
    job_id = submit(api, member, function="tests.sleep", args={"seconds": 60}, max_tries=1)
    victim = procs.worker("--without", "reaper")
    wait_for(lambda: job(job_id).state == "running", timeout=30, what="the job to start")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    wait_for(lambda: services.reap_pass() == 1, timeout=15, what="the reaper")
    assert job(job_id).state == "failed"


def test_cancel_running_job_aborts_it(api, member, procs):
    job_id = submit(api, member, function="tests.sleep", args={"seconds": 60})
    procs.worker()
    wait_for(lambda: job(job_id).state == "running", timeout=30, what="the job to start")
    resp = api.post(f"/v1/queue/jobs/{job_id}/cancel", **member.headers)
    assert resp.status_code == 200 and resp.json()["cancel_requested_at"] is not None
    wait_for(lambda: job(job_id).state == "cancelled", timeout=15, what="the abort")
    j = job(job_id)
    assert j.finished_at is not None
    assert list(j.events.values_list("kind", flat=True))[-2:] == ["cancel_requested", "cancelled"]


def test_sigterm_drains_running_jobs(api, member, procs):
    job_id = submit(api, member, function="tests.sleep", args={"seconds": 1})
    proc = procs.worker()
    wait_for(lambda: job(job_id).state == "running", timeout=30, what="the job to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    j = job(job_id)
    assert j.state == "succeeded", "a graceful stop lets a running job finish"
    assert Worker.objects.get(pk=j.events.get(kind="started").detail["worker"]).stopped_at is not None


def test_a_draining_worker_keeps_beating_so_its_jobs_are_not_reaped(api, member, procs, worker_env):
    """The grace period (20 s here) outlasts 3 heartbeat intervals (3 s): the worker must stay alive.

    The body sleeps 12 s so that it is still running through the 5 s watched below even when the
    worker's first report of it comes late on a loaded machine (with 6 s it once ended inside them).
    """
    job_id = submit(api, member, function="tests.sleep", args={"seconds": 12})
    procs.env = {**worker_env, "HQ_TEST_GRACE_S": "20"}
    proc = procs.worker("--without", "reaper")
    wait_for(lambda: _reported(job_id), timeout=30, what="the worker to report the running attempt")
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5  # past the 3 s after which a silent worker counts as dead
    while time.monotonic() < deadline:
        assert services.reap_pass() == 0
        assert job(job_id).state == "running"
        time.sleep(0.25)
    assert proc.wait(timeout=30) == 0
    j = job(job_id)
    assert (j.state, j.attempts, runs(job_id)) == ("succeeded", 1, 1)
    assert Worker.objects.get(pk=j.events.get(kind="started").detail["worker"]).stopped_at is not None


def test_idle_worker_is_woken_by_the_nudge(api, member, procs, worker_env):
    # With a 30 s poll, only the pub/sub nudge can start the job within the wait below.
    procs.env = {**worker_env, "HQ_TEST_POLL_S": "30"}
    procs.worker()
    wait_for(lambda: Worker.objects.filter(stopped_at__isnull=True).exists(), timeout=30, what="worker up")
    time.sleep(0.5)
    job_id = submit(api, member, function="tests.count")
    wait_for(lambda: job(job_id).state == "succeeded", timeout=10, what="a nudged start")


def test_plain_arq_worker_runs_what_the_view_enqueued(api, member):
    """ARQ's own worker reads the job format HQ writes from a synchronous view."""
    import asyncio

    from arq.connections import RedisSettings
    from arq.worker import Worker as ArqWorker
    from django.conf import settings

    job_id = submit(api, member)
    seen: list = []

    async def entry(ctx, hq_job_id, attempt):
        seen.append((ctx["job_id"], hq_job_id, attempt))

    async def main():
        w = ArqWorker(
            functions=[transport.ARQ_FUNCTION and _named(entry)],
            burst=True,
            poll_delay=0,
            queue_name=transport.queue_key("default"),
            handle_signals=False,
            keep_result=0,
            redis_settings=RedisSettings.from_dsn(settings.REDIS_URL),
        )
        await w.main()
        await w.close()

    asyncio.run(main())
    assert seen == [(f"{job_id}:1", job_id, 1)]


def _named(fn):
    from arq.worker import func

    return func(fn, name="hq.run")


def test_heartbeat_and_workers_route(api, admin, procs):
    procs.worker()
    w = wait_for(lambda: Worker.objects.filter(stopped_at__isnull=True).first(), timeout=30, what="heartbeat")
    first = w.last_heartbeat_at
    wait_for(lambda: Worker.objects.get(pk=w.pk).last_heartbeat_at > first, timeout=10, what="a second beat")
    body = api.get("/v1/queue/workers", **admin.headers).json()
    assert [x["id"] for x in body["workers"]] == [w.id]
    assert body["workers"][0]["queues"] == ["default"]


def _reported(job_id, attempt: int = 1) -> bool:
    """The running job's worker has beaten since and listed this attempt as in flight."""
    j = job(job_id)
    if j.state != "running":
        return False
    w = Worker.objects.get(pk=j.worker_id)
    return w.last_heartbeat_at > j.started_at and f"{job_id}:{attempt}" in (w.attempts or [])


def test_reaper_ignores_live_workers(api, member, procs):
    job_id = submit(api, member, function="tests.sleep", args={"seconds": 3})
    procs.worker()
    wait_for(lambda: _reported(job_id), timeout=30, what="the worker to report the running attempt")
    Job.objects.filter(pk=job_id).update(started_at=clock.now() - timedelta(minutes=5))
    assert services.reap_pass() == 0
    wait_for(lambda: job(job_id).state == "succeeded", timeout=15, what="the job to finish")


def test_reaper_requeues_a_running_job_its_live_worker_does_not_have(api, member, procs, burst):
    """A START that committed but whose reply was lost leaves a row `running` under a live worker
    that never runs it; the worker's heartbeat lists what it runs, so the reaper gives it back."""
    from queueapp import transport

    orphan = submit(api, member, function="tests.count")
    transport.forget(orphan, 1, "default")  # the delivery the worker consumed and dropped
    procs.worker("--without", "relay", "--without", "reaper")  # no re-push of the forgotten delivery
    wait_for(lambda: Worker.objects.filter(stopped_at=None).exists(), timeout=30, what="the worker")
    worker = Worker.objects.get(stopped_at=None)
    held = submit(api, member, function="tests.sleep", args={"seconds": 30})
    Job.objects.filter(pk=orphan).update(state="running", attempts=1, worker_id=worker.pk, started_at=clock.now())
    wait_for(lambda: _reported(held), timeout=30, what="the worker to report the held attempt")
    beat = Worker.objects.get(pk=worker.pk).last_heartbeat_at
    assert job(orphan).started_at < beat and f"{orphan}:1" not in Worker.objects.get(pk=worker.pk).attempts

    assert services.reap_pass() == 1  # the orphan only: the held job is in flight
    o = job(orphan)
    assert (o.state, o.worker_id, o.attempts) == ("queued", "", 1)
    assert o.error == "Attempt 1 lost: its worker no longer runs it."
    lost = o.events.get(kind="worker_lost")
    assert lost.detail == {
        "worker": worker.pk,
        "reason": "attempt not in flight on its live worker (start or finish lost)",
    }
    assert job(held).state == "running"
    assert services.reap_pass() == 0

    burst()
    o = job(orphan)
    assert (o.state, o.attempts) == ("succeeded", 2)
    assert runs(orphan) == 1  # the lost attempt never ran


def test_arq_is_the_version_the_worker_subclass_is_pinned_to():
    """HQWorker overrides ARQ's main loop and start_jobs: review them before moving off 0.28.0."""
    import arq

    assert arq.VERSION == "0.28.0"


def test_batch_claim_respects_concurrency(api, member, burst):
    ids = [submit(api, member, function="tests.sleep", args={"seconds": 0.2}) for _ in range(12)]
    from tests.conftest import run_burst

    run_burst(concurrency=5)
    jobs = list(Job.objects.filter(pk__in=ids))
    assert all(j.state == "succeeded" for j in jobs)
    # Never more than 5 running at once: count overlapping [started, finished] intervals.
    events = sorted([(j.started_at, 1) for j in jobs] + [(j.finished_at, -1) for j in jobs])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 5


def test_result_that_is_not_json_fails_without_retry(api, member, burst):
    job_id = submit(api, member, function="tests.bad_result")
    burst()
    j = job(job_id)
    assert j.state == "failed" and j.attempts == 1 and runs(job_id) == 1
    assert j.error.startswith("Result is not JSON")


def test_body_raising_a_json_type_error_is_retried(api, member, burst):
    job_id = submit(api, member, function="tests.type_error")
    burst()
    j = job(job_id)
    assert j.state == "failed" and j.attempts == 2 and runs(job_id) == 2
    assert "TypeError" in j.error


def test_worker_pushes_the_retry_itself(api, member, burst):
    """A failed attempt's worker hands the next attempt to ARQ; the relay is only the safety net."""
    import asyncio

    import redis.asyncio as aioredis
    from django.conf import settings

    job_id = submit(api, member)
    j = job(job_id)
    nxt = transport.Push(j.id, 2, "default", clock.now() + timedelta(minutes=5))

    async def go():
        client = aioredis.from_url(settings.REDIS_URL)
        try:
            return await transport.apush([nxt], client)
        finally:
            await client.aclose()

    assert asyncio.run(go()) == 1
    assert hq_redis.client().zscore(transport.queue_key("default"), f"{job_id}:2") is not None
