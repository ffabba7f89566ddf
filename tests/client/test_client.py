"""`hq_client.Client` against a live HQ: results, every error type, pagination, wait."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from hq_client import (
    AuthError,
    Client,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PlanLimitReached,
    RateLimited,
    RetryPolicy,
    Timeout,
    Unavailable,
    ValidationError,
    parse_datetime,
    submission,
)

from hq.models import Plan
from queueapp.models import Job
from tests import factories
from tests.client.conftest import FAST_RETRY
from tests.client.gate import database_gate
from tests.client.proxy import DroppingProxy

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_submitted_job_runs_on_a_worker_and_wait_returns_it_finished(hq, worker):
    job = hq.job_submit("tests.count", {"n": 1}, correlation_id="order-7")
    assert job["state"] == "queued" and job["function"] == "tests.count" and job["args"] == {"n": 1}
    assert job["idempotency_key"].startswith("hqc-")  # the client's own key

    done = hq.wait(job["id"], timeout=30)
    assert done["id"] == job["id"] and done["state"] == "succeeded" and done["result"] == {"attempt": 1}
    assert parse_datetime(done["finished_at"]) >= parse_datetime(done["created_at"])
    assert hq.job_get(job["id"]) == done
    kinds = [event["kind"] for event in hq.job_events(job["id"])]
    assert kinds[0] == "submitted" and "started" in kinds and kinds[-1] == "succeeded"
    assert [j["id"] for j in hq.jobs_by_correlation("order-7")] == [job["id"]]


def test_a_failing_job_is_retried_then_failed_and_its_events_say_each_attempt(hq, worker):
    job = hq.job_submit("tests.fail", max_tries=2)
    done = hq.wait(job["id"], timeout=30)
    assert done["state"] == "failed" and done["attempts"] == 2 and "boom on attempt 2" in done["error"]
    failures = [e for e in hq.job_events(job["id"]) if e["kind"] in ("retry_scheduled", "failed")]
    assert [(e["kind"], e["attempt"]) for e in failures] == [("retry_scheduled", 1), ("failed", 2)]
    assert "boom on attempt 1" in failures[0]["detail"]["error"]


def test_wait_backs_off_and_raises_timeout_with_the_last_job_seen(hq_url, caller):
    proxy = DroppingProxy(hq_url, drop_first=0)
    try:
        with Client(proxy.url, caller.token) as hq:
            job = hq.job_submit("tests.count", defer_by_seconds=3600)  # no worker would start it yet
            with pytest.raises(Timeout) as raised:
                hq.wait(job["id"], timeout=1.0, poll_s=0.05, max_poll_s=2.0)
    finally:
        proxy.close()
    assert raised.value.job["id"] == job["id"] and raised.value.job["state"] == "deferred"
    polls = [path for method, path, _ in proxy.seen if method == "GET"]
    # Doubling from 0.05 s, a second holds at most 6 polls (0, .05, .15, .35, .75, 1.0); 20 without backoff.
    assert 2 <= len(polls) <= 6, polls


def test_list_methods_read_every_page(hq_url, caller):
    with Client(hq_url, caller.token, page_size=3) as hq:
        batch = [submission("tests.count", {"i": i}, defer_by_seconds=3600, correlation_id="pages") for i in range(7)]
        submitted = hq.jobs_submit_batch(batch)
        assert [j["args"] for j in submitted] == [{"i": i} for i in range(7)]
        assert all(j["state"] == "deferred" and not j["replayed"] for j in submitted)

        listed = list(hq.jobs(function="tests.count", state=("deferred", "queued")))
        assert sorted(j["id"] for j in listed) == sorted(j["id"] for j in submitted)  # 3 + 3 + 1
        assert len({j["id"] for j in hq.jobs_by_correlation("pages")}) == 7
        assert list(hq.jobs(state="running")) == []

        one = hq.jobs(function="tests.count")
        first = next(one)
        assert first["function"] == "tests.count"  # lazily: one page read so far


def test_a_batch_larger_than_hq_takes_is_sent_in_chunks_by_submit_many(hq_url, caller):
    proxy = DroppingProxy(hq_url, drop_first=0)
    try:
        with Client(proxy.url, caller.token) as hq:
            items = [submission("tests.count", {"i": i}, defer_by_seconds=3600) for i in range(25)]
            jobs = hq.jobs_submit_many(items, chunk=10)
    finally:
        proxy.close()
    assert [j["args"]["i"] for j in jobs] == list(range(25))
    assert [path for method, path, _ in proxy.seen if method == "POST"] == ["/v1/queue/jobs/batch"] * 3
    assert Job.objects.filter(function="tests.count").count() == 25


def all_in_flight(parties: int) -> tuple[Callable[[int], None], list[bool]]:
    """An `on_upstream` hook that relays no answer until `parties` requests are under way at once
    (each has reached HQ), and the list where it notes each that waited in vain."""
    barrier = threading.Barrier(parties, timeout=10)
    missed: list[bool] = []

    def hold(status: int) -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            missed.append(True)

    return hold, missed


def test_submit_many_has_its_chunks_under_way_at_once_and_returns_the_jobs_in_order(hq_url, caller):
    hold, missed = all_in_flight(3)
    proxy = DroppingProxy(hq_url, drop_first=0, on_upstream=hold)
    try:
        with Client(proxy.url, caller.token) as hq:
            items = [submission("tests.count", {"i": i}, defer_by_seconds=3600) for i in range(30)]
            jobs = hq.jobs_submit_many(items, chunk=10, concurrency=3)
    finally:
        proxy.close()
    assert missed == []  # the three requests were in flight together: sent one by one, none would be answered
    assert [j["args"]["i"] for j in jobs] == list(range(30))
    assert proxy.upstream_statuses == [202, 202, 202]
    assert sorted(r["args"]["i"] for r in Job.objects.filter(function="tests.count").values("args")) == list(range(30))


def test_a_refused_chunk_stops_submit_many_and_raises_its_error(hq, caller):
    items = [submission("tests.count", {"i": i}, defer_by_seconds=3600) for i in range(50)]
    items[15] = submission("no.such.function", {"i": 15})
    with pytest.raises(ValidationError) as refused:
        hq.jobs_submit_many(items, chunk=10, concurrency=2)
    assert list(refused.value.fields) == ["jobs.5.function"]  # the 6th of its chunk
    recorded = sorted(r["args"]["i"] for r in Job.objects.filter(function="tests.count").values("args"))
    chunks = {i // 10 for i in recorded}
    assert 0 in chunks and 1 not in chunks  # the one beside it may have been sent before the refusal came
    assert recorded == [i for c in sorted(chunks) for i in range(10 * c, 10 * c + 10)]  # whole chunks only
    with pytest.raises(ValueError):
        hq.jobs_submit_many(items, concurrency=0)


def test_each_refusal_is_its_typed_exception(hq, hq_url, caller, settings):
    with pytest.raises(NotFound) as not_found:
        hq.job_get(str(uuid.uuid4()))
    assert not_found.value.status == 404 and not_found.value.code == "not_found"

    with pytest.raises(ValidationError) as invalid:
        hq.job_submit("tests.count", max_tries=0)
    assert invalid.value.status == 400 and list(invalid.value.fields) == ["max_tries"]
    with pytest.raises(ValidationError) as unknown:
        hq.job_submit("no.such.function")
    assert "function" in unknown.value.fields

    job = hq.job_submit("tests.count", defer_by_seconds=3600)
    hq.job_cancel(job["id"])
    with pytest.raises(Conflict) as conflict:
        hq.job_cancel(job["id"])
    assert conflict.value.state == "cancelled"

    with Client(hq_url, "hq_pat_" + "x" * 40, retry=FAST_RETRY) as stranger, pytest.raises(AuthError) as unauth:
        stranger.me()
    assert unauth.value.status == 401

    reader = factories.caller(ws=caller.workspace, scopes=["queue:read"])
    with Client(hq_url, reader.token) as read_only, pytest.raises(PermissionDenied) as forbidden:
        read_only.job_submit("tests.count")
    assert forbidden.value.status == 403 and forbidden.value.scope == "queue:write"

    with pytest.raises(PayloadTooLarge):
        hq.note_create("big", "x" * (1024 * 1024 + 1))

    caller.workspace.plan = Plan.objects.create(name="none", max_schedules=0)
    caller.workspace.save(update_fields=["plan"])
    with pytest.raises(PlanLimitReached) as over:
        hq.scheduled_task_create(**factories.every_minute_task(hq.room_create("r")["id"]))
    assert over.value.limit == 0

    settings.HQ_THROTTLE_RATE = "3/hour"
    with pytest.raises(RateLimited) as limited:
        for _ in range(5):
            hq.me()
    assert limited.value.retry_after is not None and limited.value.retry_after > 0


def test_503_is_unavailable_with_retry_after_and_retried_reads_succeed_once_the_database_is_back(hq_url, caller):
    job = Client(hq_url, caller.token).job_submit("tests.count", defer_by_seconds=3600)
    with database_gate() as allow:
        allow(False)
        with Client(hq_url, caller.token, retry=RetryPolicy(tries=1)) as once, pytest.raises(Unavailable) as away:
            once.job_get(job["id"])
        assert away.value.status == 503 and away.value.dependency == "database"
        assert away.value.retry_after is not None and away.value.retry_after >= 1

        # The first answer is a 503; the proxy opens the database as it relays it; the retry reads the job.
        proxy = DroppingProxy(hq_url, drop_first=0, on_upstream=lambda status: status == 503 and allow(True))
        try:
            with Client(proxy.url, caller.token, retry=FAST_RETRY) as patient:
                assert patient.job_get(job["id"])["id"] == job["id"]
        finally:
            proxy.close()
        assert proxy.upstream_statuses == [503, 200]
