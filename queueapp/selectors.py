"""Reads for the queue: what a caller (token or staff user) may see, depth, workers, HITL requests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet

from hq import clock, permissions
from hq.permissions import Principal
from hq.selectors import one_or_404
from queueapp.models import HITLRequest, HITLState, Job, JobState, QueuePause, Worker


def jobs_visible(*, principal: Principal) -> QuerySet[Job]:
    """An admin sees the workspace's jobs; a member their own (`permissions.owned_rows`)."""
    return permissions.owned_rows(principal, Job.objects.all())


def job_get(*, principal: Principal, job_id: Any) -> Job:
    """Return a job the caller may see, else 404 (also for other workspaces' jobs)."""
    return one_or_404(jobs_visible(principal=principal), job_id, "No such job.")


def queue_depth(*, workspace_id: Any) -> list[dict[str, Any]]:
    """Per-queue counts for a workspace in one aggregate query, plus the oldest waiting age."""
    now = clock.now()
    waiting = Q(state=JobState.QUEUED) | Q(state=JobState.DEFERRED, due_at__lte=now)
    rows = (
        Job.objects.filter(workspace_id=workspace_id)
        .filter(state__in=[JobState.QUEUED, JobState.DEFERRED, JobState.RUNNING, JobState.AWAITING_APPROVAL])
        .values("queue")
        .annotate(
            waiting=Count("id", filter=waiting),
            deferred=Count("id", filter=Q(state=JobState.DEFERRED, due_at__gt=now)),
            running=Count("id", filter=Q(state=JobState.RUNNING)),
            awaiting_approval=Count("id", filter=Q(state=JobState.AWAITING_APPROVAL)),
            oldest_waiting_due=Min("due_at", filter=waiting),
        )
        .order_by("queue")
    )
    paused = set(
        QueuePause.objects.filter(Q(workspace_id=workspace_id) | Q(workspace__isnull=True)).values_list(
            "queue", flat=True
        )
    )
    out = []
    seen = set()
    for row in rows:
        oldest = row.pop("oldest_waiting_due")
        row["oldest_waiting_age_ms"] = int((now - oldest).total_seconds() * 1000) if oldest else None
        row["paused"] = row["queue"] in paused
        seen.add(row["queue"])
        out.append(row)
    for queue in sorted(paused - seen):
        out.append(
            {
                "queue": queue,
                "waiting": 0,
                "deferred": 0,
                "running": 0,
                "awaiting_approval": 0,
                "oldest_waiting_age_ms": None,
                "paused": True,
            }
        )
    return out


def heartbeat_cutoff(now: datetime | None = None) -> datetime:
    """A worker whose last heartbeat is older than this (three intervals) is dead."""
    return (now or clock.now()) - timedelta(seconds=3 * settings.HQ_HEARTBEAT_INTERVAL_S)


def workers_live(now: datetime | None = None) -> QuerySet[Worker]:
    """Workers whose heartbeat is recent (within three intervals)."""
    return Worker.objects.filter(stopped_at__isnull=True, last_heartbeat_at__gte=heartbeat_cutoff(now))


def running_by_worker(*, workspace_id: Any) -> dict[str, int]:
    rows = (
        Job.objects.filter(workspace_id=workspace_id, state=JobState.RUNNING)
        .values("worker_id")
        .annotate(n=Count("id"))
    )
    return {r["worker_id"]: r["n"] for r in rows}


def hitl_visible(*, principal: Principal) -> QuerySet[HITLRequest]:
    """Requests the caller may read (`permissions.hitl_rows`), with their jobs."""
    return permissions.hitl_rows(principal, HITLRequest.objects.select_related("job"))


def hitl_get(*, principal: Principal, request_id: Any) -> HITLRequest:
    """Return a request the caller may read, else 404 (also for other workspaces')."""
    return one_or_404(hitl_visible(principal=principal), request_id, "No such HITL request.")


def hitl_next_expiry() -> datetime | None:
    """When the earliest pending request expires (the expiry task sleeps until then)."""
    return (
        HITLRequest.objects.filter(state=HITLState.PENDING).order_by("expires_at").values_list("expires_at", flat=True)
    ).first()
