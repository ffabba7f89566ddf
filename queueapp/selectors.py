"""Reads for the queue: what a caller (token or staff user) may see, depth, workers, HITL requests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet

from hq import clock, permissions
from hq.permissions import Principal
from hq.selectors import one_or_404
from queueapp import transport
from queueapp.models import WAITING_STATES, HITLRequest, HITLState, Job, JobState, QueuePause, Worker


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


# --- the engine's reads: what may start, what runs nowhere ------------------------------------------


def queue_pauses(*, queue: Any, workspace_id: Any) -> QuerySet[QueuePause]:
    """The pauses that hold a job of `workspace_id` in `queue`: its workspace's or a global one.

    Either argument may be an `OuterRef`, for a subquery over jobs.
    """
    return QueuePause.objects.filter(queue=queue).filter(Q(workspace__isnull=True) | Q(workspace_id=workspace_id))


def jobs_due_unpaused(*, queues: list[str] | None = None) -> QuerySet[Job]:
    """Waiting jobs that are due and whose queue is not paused: what a worker may start now."""
    paused = queue_pauses(queue=OuterRef("queue"), workspace_id=OuterRef("workspace_id"))
    rows = Job.objects.filter(state__in=WAITING_STATES, due_at__lte=clock.now()).exclude(Exists(paused))
    return rows.filter(queue__in=queues) if queues else rows


#: Why a running job runs nowhere (`jobs_running_lost`).
LOST_WORKER_DEAD = "worker lost (no heartbeat)"
LOST_NOT_IN_FLIGHT = "attempt not in flight on its live worker (start or finish lost)"


def jobs_running_lost(*, now: datetime) -> dict[UUID, str]:
    """Running jobs nobody runs, with the reason: their worker died, or their live worker lacks them.

    A worker is dead after 3 heartbeat intervals without one. A live worker reports the attempts
    in flight when it beats; an attempt that started before that look and is missing from it lost
    its task (a START whose reply never arrived, a FINISH that failed twice). At most 500 jobs of
    dead workers at a time.
    """
    live = {
        w: (seen_at, attempts)
        for w, seen_at, attempts in workers_live(now).values_list("id", "last_heartbeat_at", "attempts")
    }
    running = Job.objects.filter(state=JobState.RUNNING)
    # A job that started moments ago on a worker whose first heartbeat is in flight is not lost.
    dead = running.filter(started_at__lt=heartbeat_cutoff(now)).exclude(worker_id__in=list(live))
    lost = dict.fromkeys(dead.values_list("id", flat=True)[:500], LOST_WORKER_DEAD)
    # null: the worker does not report its attempts
    reporting = {w: (seen_at, attempts) for w, (seen_at, attempts) in live.items() if attempts is not None}
    rows = running.filter(worker_id__in=list(reporting)).values_list("id", "attempts", "worker_id", "started_at")
    for job_id, attempt, worker_id, started_at in rows:
        seen_at, in_flight = reporting[worker_id]
        if started_at is not None and started_at < seen_at and transport.arq_job_id(job_id, attempt) not in in_flight:
            lost[job_id] = LOST_NOT_IN_FLIGHT
    return lost


#: The window of the finished-state counts above the admin's job list.
FINISHED_COUNT_WINDOW = timedelta(hours=24)
LIVE_STATES = (JobState.QUEUED, JobState.DEFERRED, JobState.AWAITING_APPROVAL, JobState.RUNNING)


def job_state_counts(*, rows: QuerySet[Job], now: datetime) -> dict[str, int]:
    """Jobs per state among `rows` (already scoped to the viewer's workspaces): every job still
    waiting or running (the partial index `job_live` holds only those), and those finished in the
    last FINISHED_COUNT_WINDOW (`job_finished_at`); never a count over the whole table."""
    counts = dict.fromkeys(JobState.values, 0)
    live = rows.filter(state__in=LIVE_STATES).values("state").annotate(n=Count("id")).order_by()
    finished = (
        rows.filter(finished_at__gte=now - FINISHED_COUNT_WINDOW, finished_at__isnull=False)
        .exclude(state__in=LIVE_STATES)
        .values("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in [*live, *finished]:
        counts[row["state"]] = row["n"]
    return counts
