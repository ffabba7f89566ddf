"""GET /metrics: who may scrape, the text format (parsed with prometheus-client's parser), counters
that add up across processes through Redis, gauges from PostgreSQL, and failing open without Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from delivery import services as delivery_services
from hq import clock, metrics, services
from hq import redis as hq_redis
from hq.models import PersonalAccessToken
from tests import factories
from tests.observability.helpers import hitl, job, schedule

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_LABELS = {
    "queue",
    "function",
    "state",
    "limit",
    "destination",
    "outcome",
    "route",
    "method",
    "status",
    "worker",
    "le",
}


def scrape(client, **headers) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a successful scrape."""
    resp = client.get("/metrics", **headers)
    assert resp.status_code == 200, resp.content
    assert resp["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(resp.content.decode()):
        for s in family.samples:
            assert set(s.labels) <= ALLOWED_LABELS, f"{s.name} has labels {set(s.labels)}: no workspace or user labels"
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = "scrape-secret-1"
    return {"HTTP_AUTHORIZATION": "Bearer scrape-secret-1"}


def test_metrics__refused_without_the_metrics_token_or_an_admin_pat(client, member, admin, token):
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong-secret"},
        {"HTTP_AUTHORIZATION": "Basic c2NyYXBlOnNlY3JldA=="},
        member.headers,  # a member's token is not an admin's
    ):
        resp = client.get("/metrics", **headers)
        assert resp.status_code == 401, headers
        assert resp.json()["error"]["code"] == "unauthenticated"
        assert resp["WWW-Authenticate"] == 'Bearer realm="hq"'
    assert client.get("/metrics", **token).status_code == 200
    assert client.get("/metrics", **admin.headers).status_code == 200
    # The API's own token check, cache included: revoked through the service, refused at once.
    for pat in PersonalAccessToken.objects.filter(user=admin.user):
        services.token_revoke(token=pat)
    assert client.get("/metrics", **admin.headers).status_code == 401


def test_metrics__counters_and_histograms_from_the_recording_api(client, token):
    metrics.job_started("default", "hq.echo", wait_s=0.02)
    metrics.job_finished("default", "hq.echo", "succeeded", run_s=0.3)
    metrics.job_finished("default", "hq.echo", "succeeded", run_s=2.0)
    metrics.job_finished("default", "hq.echo", "failed", run_s=0.001)
    metrics.job_transition("default", "hq.echo", "queued")
    metrics.worker_heartbeat()
    metrics.scheduler_iteration(3)
    metrics.scheduler_iteration(0)
    metrics.schedule_fire_lag(0.75)
    s = scrape(client, **token)
    echo = {"queue": "default", "function": "hq.echo"}
    assert sample(s, "hq_job_transitions_total", **echo, state="running") == 1
    assert sample(s, "hq_job_transitions_total", **echo, state="succeeded") == 2
    assert sample(s, "hq_job_transitions_total", **echo, state="failed") == 1
    assert sample(s, "hq_job_transitions_total", **echo, state="queued") == 1
    assert sample(s, "hq_job_wait_seconds_count", **echo) == 1
    assert sample(s, "hq_job_wait_seconds_bucket", **echo, le="0.01") == 0
    assert sample(s, "hq_job_wait_seconds_bucket", **echo, le="0.025") == 1
    ok = {**echo, "state": "succeeded"}
    assert sample(s, "hq_job_run_seconds_count", **ok) == 2
    assert sample(s, "hq_job_run_seconds_sum", **ok) == pytest.approx(2.3)
    assert sample(s, "hq_job_run_seconds_bucket", **ok, le="0.25") == 0
    assert sample(s, "hq_job_run_seconds_bucket", **ok, le="0.5") == 1
    assert sample(s, "hq_job_run_seconds_bucket", **ok, le="2.5") == 2
    assert sample(s, "hq_job_run_seconds_bucket", **ok, le="+Inf") == 2
    assert sample(s, "hq_worker_heartbeats_total") == 1
    assert sample(s, "hq_scheduler_iterations_total") == 2
    assert sample(s, "hq_scheduler_fires_total") == 3
    assert sample(s, "hq_schedule_fire_lag_seconds_bucket", le="1.0") == 1
    assert sample(s, "hq_metrics_store_up") == 1


def test_metrics__http_requests_by_route_pattern_never_the_raw_path(client, api, admin, token):
    job_id = uuid.uuid4()
    assert api.get(f"/v1/queue/jobs/{job_id}", **admin.headers).status_code == 404
    assert api.get("/v1/queue/depth", **admin.headers).status_code == 200
    assert api.get("/v1/queue/depth", **admin.headers).status_code == 200
    assert api.get("/v1/no/such/route", **admin.headers).status_code == 404
    s = scrape(client, **token)
    assert sample(s, "hq_http_requests_total", route="/v1/queue/depth", method="GET", status="200") == 2
    assert sample(s, "hq_http_requests_total", route="/v1/queue/jobs/<job_id>", method="GET", status="404") == 1
    assert sample(s, "hq_http_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert sample(s, "hq_http_request_duration_seconds_count", route="/v1/queue/depth", method="GET") == 2
    routes = {dict(labels).get("route", "") for _, labels in s}
    assert not any(str(job_id) in r for r in routes)


def test_metrics__delivery_attempts_by_destination_and_outcome(client, admin, token):
    delivery_services.delivery_create(
        workspace=admin.workspace,
        source_kind="schedule_fire",
        source_id=uuid.uuid4(),
        destination={"kind": "web_inbox"},
        header="h",
        body="b",
        conversation_id=uuid.uuid4(),
    )
    s = scrape(client, **token)
    assert sample(s, "hq_delivery_attempts_total", destination="web_inbox", outcome="delivered") == 1


def test_metrics__gauges_from_the_database(client, admin, token):
    now = clock.now()
    job(admin.workspace, now, state="queued", due_ago_s=30)
    job(admin.workspace, now, state="queued", due_ago_s=5)
    job(admin.workspace, now, state="running", queue="mail", started_ago_s=3)
    other = factories.caller()
    job(other.workspace, now, state="queued", due_ago_s=1)
    hitl(admin.workspace, now, created_ago_s=90, owner=admin.user)
    schedule(admin.workspace, admin.user, name="a")
    schedule(admin.workspace, admin.user, name="b", state="quarantined", reason="r")
    from queueapp import services

    services.worker_heartbeat(
        worker_id="host-a:1:abc", hostname="host-a", pid=1, queues=["default"], concurrency=5, running=2, jobs_done=9
    )
    s = scrape(client, **token)
    assert sample(s, "hq_queue_jobs", queue="default", state="queued") == 3  # every workspace, no workspace label
    assert sample(s, "hq_queue_jobs", queue="default", state="awaiting_approval") == 1
    assert sample(s, "hq_queue_jobs", queue="mail", state="running") == 1
    assert 30 <= sample(s, "hq_queue_oldest_waiting_age_seconds", queue="default") < 60
    assert sample(s, "hq_workers_live") == 1
    assert sample(s, "hq_worker_running_jobs", worker="host-a:1:abc") == 2
    assert 0 <= sample(s, "hq_worker_heartbeat_age_seconds", worker="host-a:1:abc") < 5
    assert sample(s, "hq_hitl_pending") == 1
    assert 90 <= sample(s, "hq_hitl_oldest_pending_age_seconds") < 120
    assert sample(s, "hq_schedules", state="active") == 1
    assert sample(s, "hq_schedules", state="quarantined") == 1
    assert sample(s, "hq_schedules", state="archived") == 0


def test_metrics__processes_add_up_through_redis(client, token):
    """Another process (a worker, on any machine) records; this one scrapes the sum."""
    metrics.job_finished("default", "hq.echo", "succeeded", run_s=0.1)
    code = (
        "import django; django.setup()\n"
        "from hq import metrics\n"
        "for _ in range(3): metrics.job_finished('default', 'hq.echo', 'succeeded', 0.1)\n"
    )  # flushed at exit
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "hq.test_settings"}
    env.setdefault("PYTEST_XDIST_WORKER", "gw0")
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=60)
    s = scrape(client, **token)
    ok = {"queue": "default", "function": "hq.echo", "state": "succeeded"}
    assert sample(s, "hq_job_transitions_total", **ok) == 4
    assert sample(s, "hq_job_run_seconds_count", **ok) == 4


def test_metrics__fail_open_when_redis_is_down(client, settings, token, closed_port):
    good = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/1"
    hq_redis.reset()
    try:
        metrics.job_finished("down", "hq.echo", "succeeded", 0.2)  # never raises
        metrics.flush()  # nor does a flush that cannot reach Redis
        s = scrape(client, **token)  # the scrape still answers, gauges included
        assert sample(s, "hq_metrics_store_up") == 0
        assert sample(s, "hq_workers_live") == 0
    finally:
        settings.REDIS_URL = good
        hq_redis.reset()
    s = scrape(client, **token)  # the buffered increments arrive once Redis is back
    assert sample(s, "hq_job_transitions_total", queue="down", function="hq.echo", state="succeeded") == 1
