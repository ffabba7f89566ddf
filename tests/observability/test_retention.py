"""Retention: finished jobs (with events and HITL requests) and finished fires past the age go, in
batches, under an advisory lock; `manage.py prune [--dry-run]` runs it by hand."""

from __future__ import annotations

import io
from datetime import timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hq import clock
from queueapp import registry, retention
from queueapp.models import HITLRequest, Job, JobEvent
from schedules.models import ScheduleFire
from tests.observability.helpers import fire, hitl, job, schedule

pytestmark = pytest.mark.django_db

DAY = 86400


@pytest.fixture
def history(admin):
    """Old and young rows; returns the ids that must survive."""
    now = clock.now()
    ws = admin.workspace
    old_done = [job(ws, now, state=s, finished_ago_s=40 * DAY, wait_ms=1, run_ms=1) for s in ("succeeded", "failed")]
    old_done.append(job(ws, now, state="cancelled", finished_ago_s=31 * DAY))
    for j in old_done:
        JobEvent.objects.create(job=j, kind="submitted", to_state="queued", at=j.created_at)
        JobEvent.objects.create(job=j, kind="finished", to_state=j.state, at=j.finished_at)
    rejected = hitl(ws, now, created_ago_s=45 * DAY, owner=admin.user)
    Job.objects.filter(pk=rejected.job_id).update(state="rejected", finished_at=now - timedelta(days=44))
    young = job(ws, now, state="succeeded", finished_ago_s=29 * DAY, wait_ms=1, run_ms=1)
    JobEvent.objects.create(job=young, kind="submitted", to_state="queued")
    waiting = job(ws, now, state="deferred", due_ago_s=60 * DAY)  # old but not finished: kept
    JobEvent.objects.create(job=waiting, kind="submitted", to_state="deferred")
    s = schedule(ws, admin.user, name="nightly")
    old_fires = [
        fire(s, now, created_ago_s=40 * DAY + i, status=st, lag_ms=5)
        for i, st in enumerate(("succeeded", "failed", "skipped"))
    ]
    pending = fire(s, now, created_ago_s=40 * DAY + 60, status="pending")
    young_fire = fire(s, now, created_ago_s=2 * DAY, status="succeeded", lag_ms=5)
    return {
        "old_jobs": {j.pk for j in old_done} | {rejected.job_id},
        "kept_jobs": {young.pk, waiting.pk},
        "old_fires": {f.pk for f in old_fires},
        "kept_fires": {pending.pk, young_fire.pk},
    }


def test_prune__deletes_old_finished_rows_and_keeps_the_rest(history):
    report = retention.prune()
    assert not report.skipped and not report.dry_run
    assert report.counts == {"jobs": 4, "job_events": 6, "hitl_requests": 1, "schedule_fires": 3, "depth_samples": 0}
    assert set(Job.objects.values_list("pk", flat=True)) == history["kept_jobs"]
    assert JobEvent.objects.count() == 2 and not HITLRequest.objects.exists()
    assert set(ScheduleFire.objects.values_list("pk", flat=True)) == history["kept_fires"]
    assert retention.prune().counts == {
        "jobs": 0,
        "job_events": 0,
        "hitl_requests": 0,
        "schedule_fires": 0,
        "depth_samples": 0,
    }


def test_prune__dry_run_counts_and_deletes_nothing(history):
    before = (Job.objects.count(), JobEvent.objects.count(), ScheduleFire.objects.count())
    report = retention.prune(dry_run=True)
    assert report.counts == {"jobs": 4, "job_events": 6, "hitl_requests": 1, "schedule_fires": 3, "depth_samples": 0}
    assert (Job.objects.count(), JobEvent.objects.count(), ScheduleFire.objects.count()) == before


def test_prune__in_batches(history):
    with CaptureQueriesContext(connection) as ctx:
        report = retention.prune(batch=2)
    assert report.counts["jobs"] == 4 and report.counts["schedule_fires"] == 3
    job_deletes = [q for q in ctx.captured_queries if q["sql"].startswith('DELETE FROM "queueapp_job" WHERE')]
    assert len(job_deletes) == 2  # 2 + 2 rows
    locks = [q for q in ctx.captured_queries if "FOR UPDATE SKIP LOCKED" in q["sql"]]
    assert locks and all("LIMIT 2" in q["sql"] for q in locks)


def test_prune__retention_age_is_configurable(history, settings):
    settings.HQ_RETENTION_DAYS = 50
    assert retention.prune().counts["jobs"] == 0
    assert retention.prune(older_than_days=28).counts["jobs"] == 5  # the 29-day-old one too


def test_prune__skips_while_another_process_holds_the_lock(history):
    s = connection.settings_dict
    other = psycopg.connect(
        host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"] or "postgres", dbname=s["NAME"]
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [retention.LOCK_KEY])
        report = retention.prune()
        assert report.skipped and report.counts == {}
        assert Job.objects.filter(pk__in=history["old_jobs"]).count() == 4
    finally:
        other.execute("SELECT pg_advisory_unlock(%s)", [retention.LOCK_KEY])  # before close: a closing
        other.close()  # backend lets go of its locks only when it has exited
    assert retention.prune().counts["jobs"] == 4


def test_prune_command__dry_run_then_for_real(history):
    out = io.StringIO()
    call_command("prune", "--dry-run", stdout=out)
    text = out.getvalue()
    assert text.startswith("Would delete rows older than ")
    assert "  jobs: 4\n" in text and "  job_events: 6\n" in text and "  schedule_fires: 3\n" in text
    assert Job.objects.filter(pk__in=history["old_jobs"]).count() == 4
    out = io.StringIO()
    call_command("prune", stdout=out)
    assert out.getvalue().startswith("Deleted rows older than ") and "  jobs: 4\n" in out.getvalue()
    assert not Job.objects.filter(pk__in=history["old_jobs"]).exists()


def test_retention_is_a_worker_side_task():
    assert "retention" in registry.side_tasks()
