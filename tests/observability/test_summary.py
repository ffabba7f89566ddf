"""The observability summary against a fixture of known jobs, HITL requests, schedules and fires."""

from __future__ import annotations

import pytest

from hq import clock
from queueapp import observability
from queueapp.models import Job
from tests import factories
from tests.observability.helpers import fire, hitl, job, schedule

pytestmark = pytest.mark.django_db

SUMMARY = "/v1/queue/observability/summary"


@pytest.fixture
def world(admin):
    """Known rows in the admin's workspace, and noise in another workspace that must never count."""
    now = clock.now()
    ws, user = admin.workspace, admin.user
    # default / hq.echo: finished in the last 5 min, 1 h, 24 h, and older
    for wait, run in ((100, 1000), (200, 2000), (300, 3000)):
        job(ws, now, state="succeeded", finished_ago_s=60, wait_ms=wait, run_ms=run)
    job(ws, now, state="failed", finished_ago_s=1800, wait_ms=1000, run_ms=500)
    job(ws, now, state="cancelled", finished_ago_s=600)
    job(ws, now, state="succeeded", finished_ago_s=7200, wait_ms=5000, run_ms=4000)
    job(ws, now, state="succeeded", finished_ago_s=3 * 86400, wait_ms=9, run_ms=9)
    # default / hq.echo: waiting and running now
    job(ws, now, state="queued", due_ago_s=10)
    job(ws, now, state="queued", due_ago_s=40)
    job(ws, now, state="deferred", due_ago_s=-60)
    job(ws, now, state="deferred", due_ago_s=5)
    job(ws, now, state="running", started_ago_s=20, wait_ms=5000)
    hitl(ws, now, created_ago_s=120, owner=user)
    hitl(ws, now, created_ago_s=600, owner=user)
    # default / hq.noop and mail / mail.send
    job(ws, now, state="succeeded", function="hq.noop", finished_ago_s=120, wait_ms=400, run_ms=10)
    job(ws, now, state="succeeded", queue="mail", function="mail.send", finished_ago_s=600, wait_ms=50, run_ms=70)
    # schedules and fires
    s1 = schedule(ws, user, name="hourly digest")
    schedule(ws, user, name="paused one", state="paused")
    schedule(ws, user, name="broken", state="quarantined", reason="Trigger: unknown zone Mars/Base")
    schedule(ws, user, name="flaky", failures=3)
    schedule(ws, user, name="gone", state="archived", failures=2)
    fire(s1, now, created_ago_s=60, status="succeeded", lag_ms=100)
    fire(s1, now, created_ago_s=120, status="failed", lag_ms=300)
    fire(s1, now, created_ago_s=1800, status="succeeded", lag_ms=1000)
    fire(s1, now, created_ago_s=3 * 3600, status="skipped")
    fire(s1, now, created_ago_s=2 * 86400, status="succeeded", lag_ms=7)
    # another workspace
    other = factories.caller()
    for _ in range(5):
        job(other.workspace, now, state="succeeded", finished_ago_s=30, wait_ms=1, run_ms=1)
    job(other.workspace, now, state="queued", due_ago_s=3600)
    schedule(other.workspace, other.user, name="elsewhere", state="quarantined", reason="x")
    return now


def _queue(summary: dict, name: str) -> dict:
    return next(q for q in summary["queues"] if q["queue"] == name)


def _function(queue: dict, name: str) -> dict:
    return next(f for f in queue["functions"] if f["function"] == name)


def test_summary__job_windows_counts_and_percentiles(admin, world):
    summary = observability.summary(workspace_ids=[admin.workspace.pk], now=world)
    echo = _function(_queue(summary, "default"), "hq.echo")["windows"]
    assert echo["5m"] == {
        "succeeded": 3,
        "failed": 0,
        "cancelled": 0,
        "rejected": 0,
        "throughput_per_min": 0.6,
        "failure_rate": 0.0,
        # the three finished plus the running job (started 20 s ago after 5 s): 100, 200, 300, 5000
        "wait_ms": {"p50": 250.0, "p95": 4295.0, "p99": 4859.0},
        "run_ms": {"p50": 2000.0, "p95": 2900.0, "p99": 2980.0},
    }
    assert echo["1h"] == {
        "succeeded": 3,
        "failed": 1,
        "cancelled": 1,
        "rejected": 0,
        "throughput_per_min": 0.067,
        "failure_rate": 0.25,
        "wait_ms": {"p50": 300.0, "p95": 4200.0, "p99": 4840.0},
        "run_ms": {"p50": 1500.0, "p95": 2850.0, "p99": 2970.0},
    }
    assert echo["24h"]["succeeded"] == 4 and echo["24h"]["failed"] == 1 and echo["24h"]["failure_rate"] == 0.2
    assert echo["24h"]["wait_ms"]["p50"] == 650.0 and echo["24h"]["run_ms"]["p50"] == 2000.0
    assert echo["24h"]["throughput_per_min"] == round(5 / 1440, 3)


def test_summary__queue_totals_states_and_oldest_waiting(admin, world):
    summary = observability.summary(workspace_ids=[admin.workspace.pk], now=world)
    assert [q["queue"] for q in summary["queues"]] == ["default", "mail"]
    default = _queue(summary, "default")
    assert default["states"] == {"queued": 2, "deferred": 2, "awaiting_approval": 2, "running": 1}
    assert default["waiting"] == 3  # two queued and the deferred one that is due
    assert default["oldest_waiting_age_ms"] == 40_000
    assert default["paused"] is False
    assert default["windows"]["5m"]["succeeded"] == 4  # hq.echo's three and hq.noop's one
    assert default["windows"]["5m"]["wait_ms"]["p50"] == 300.0  # 100, 200, 300, 400, 5000
    assert [f["function"] for f in default["functions"]] == ["hq.echo", "hq.noop"]
    noop = _function(default, "hq.noop")
    assert noop["states"] == {"queued": 0, "deferred": 0, "awaiting_approval": 0, "running": 0}
    assert noop["windows"]["5m"]["run_ms"] == {"p50": 10.0, "p95": 10.0, "p99": 10.0}
    mail = _queue(summary, "mail")
    assert mail["windows"]["5m"]["succeeded"] == 0 and mail["windows"]["1h"]["succeeded"] == 1
    assert mail["oldest_waiting_age_ms"] is None


def test_summary__hitl_and_schedules(admin, world):
    summary = observability.summary(workspace_ids=[admin.workspace.pk], now=world)
    assert summary["hitl"] == {"pending": 2, "oldest_pending_age_ms": 600_000}
    sched = summary["schedules"]
    assert sched["states"] == {"active": 2, "paused": 1, "quarantined": 1, "archived": 1}
    assert sched["windows"]["5m"] == {
        "fires": 2,
        "pending": 0,
        "running": 0,
        "succeeded": 1,
        "failed": 1,
        "skipped": 0,
        "lag_ms": {"p50": 200.0, "p95": 290.0, "p99": 298.0},
    }
    assert sched["windows"]["1h"]["fires"] == 3 and sched["windows"]["1h"]["lag_ms"]["p50"] == 300.0
    assert sched["windows"]["24h"]["fires"] == 4 and sched["windows"]["24h"]["skipped"] == 1
    assert sched["failing_count"] == 1 and [s["name"] for s in sched["failing"]] == ["flaky"]
    assert sched["quarantined_count"] == 1
    assert [(s["name"], s["state_reason"]) for s in sched["quarantined"]] == [
        ("broken", "Trigger: unknown zone Mars/Base")
    ]


def test_summary__all_workspaces_for_superusers(admin, world):
    summary = observability.summary(workspace_ids=None, now=world)
    assert _function(_queue(summary, "default"), "hq.echo")["windows"]["5m"]["succeeded"] == 8
    assert _queue(summary, "default")["oldest_waiting_age_ms"] == 3_600_000
    assert summary["schedules"]["quarantined_count"] == 2


def test_summary__a_fixed_number_of_queries(admin, world, django_assert_max_num_queries):
    """Aggregates only: the number of queries does not grow with the rows."""
    with django_assert_max_num_queries(12):
        observability.summary(workspace_ids=[admin.workspace.pk], now=world)


def test_summary__paused_queue_is_listed(admin, world):
    from queueapp import services

    services.queue_pause(queue="reports", workspace=admin.workspace, actor=admin.user)
    summary = observability.summary(workspace_ids=[admin.workspace.pk], now=world)
    reports = _queue(summary, "reports")
    assert reports["paused"] is True and reports["waiting"] == 0 and reports["functions"] == []


def test_api__admin_gets_own_workspace_with_rfc3339_times(api, admin, world):
    resp = api.get(SUMMARY, **admin.headers)
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert set(body) == {"generated_at", "windows", "queues", "hitl", "schedules"}
    assert body["windows"] == ["5m", "1h", "24h"]
    assert body["generated_at"].endswith("Z") and len(body["generated_at"]) == 24
    echo = _function(_queue(body, "default"), "hq.echo")
    assert echo["windows"]["5m"]["succeeded"] == 3  # not the other workspace's five
    assert body["schedules"]["quarantined_count"] == 1
    flaky = body["schedules"]["failing"][0]
    assert isinstance(flaky["id"], str) and isinstance(flaky["workspace_id"], str)


def test_api__checks_in_order(api, member, admin, world):
    assert api.get(SUMMARY).status_code == 401
    narrow = factories.caller(ws=admin.workspace, admin=True, scopes=["queue:write"])
    resp = api.get(SUMMARY, **narrow.headers)
    assert resp.status_code == 403 and resp.json()["error"]["detail"] == {"scope": "queue:read"}
    resp = api.get(SUMMARY, **member.headers)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "admin_required"


@pytest.mark.django_db
def test_summary__waiting_jobs_by_priority(admin):
    now = clock.now()
    ws = admin.workspace
    for priority, state, due_ago_s in [(50, "queued", 1), (1, "deferred", 1), (0, "queued", 1), (-3, "queued", 1)]:
        Job.objects.filter(pk=job(ws, now, state=state, due_ago_s=due_ago_s).pk).update(priority=priority)
    for priority, state, due_ago_s in [(90, "deferred", -60), (-9, "running", 1)]:  # not waiting to start
        Job.objects.filter(pk=job(ws, now, state=state, due_ago_s=due_ago_s).pk).update(priority=priority)
    Job.objects.filter(pk=job(ws, now, state="queued", function="hq.noop").pk).update(priority=-1)
    default = _queue(observability.summary(workspace_ids=[ws.pk], now=now), "default")
    assert default["waiting_by_priority"] == {"high": 2, "normal": 1, "low": 2}
    assert _function(default, "hq.echo")["waiting_by_priority"] == {"high": 2, "normal": 1, "low": 1}
    assert _function(default, "hq.noop")["waiting_by_priority"] == {"high": 0, "normal": 0, "low": 1}
