"""Builders for known jobs, HITL requests, schedules and fires at exact ages (test data, not a service)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hq.models import User, Workspace
from queueapp.models import HITLRequest, Job
from schedules.models import Schedule, ScheduleFire


def ago(now: datetime, seconds: float) -> datetime:
    return now - timedelta(seconds=seconds)


def job(
    ws: Workspace,
    now: datetime,
    *,
    state: str,
    queue: str = "default",
    function: str = "hq.echo",
    finished_ago_s: float | None = None,
    run_ms: float | None = None,
    wait_ms: float | None = None,
    due_ago_s: float = 0,
    started_ago_s: float | None = None,
    owner: User | None = None,
) -> Job:
    """A job row; for a finished one: due → start is `wait_ms`, start → finish is `run_ms`."""
    started = finished = None
    due = ago(now, due_ago_s)
    if finished_ago_s is not None:
        finished = ago(now, finished_ago_s)
        if run_ms is not None:
            started = finished - timedelta(milliseconds=run_ms)
            due = started - timedelta(milliseconds=wait_ms or 0)
    if started_ago_s is not None:
        started = ago(now, started_ago_s)
        due = started - timedelta(milliseconds=wait_ms or 0)
    return Job.objects.create(
        workspace=ws,
        owner=owner,
        function=function,
        queue=queue,
        state=state,
        created_at=min(due, now),
        due_at=due,
        started_at=started,
        first_started_at=started,
        finished_at=finished,
        attempts=1 if started else 0,
    )


def hitl(ws: Workspace, now: datetime, *, created_ago_s: float, owner: User | None = None) -> HITLRequest:
    gated = job(ws, now, state="awaiting_approval", due_ago_s=created_ago_s, owner=owner)
    return HITLRequest.objects.create(
        workspace=ws,
        job=gated,
        function=gated.function,
        requested_by=owner,
        created_at=ago(now, created_ago_s),
        expires_at=now + timedelta(hours=1),
    )


def schedule(ws: Workspace, owner: User, *, name: str, state: str = "active", failures: int = 0, reason: str = ""):
    return Schedule.objects.create(
        workspace=ws,
        owner=owner,
        name=name,
        trigger={"kind": "cron", "expr": "0 * * * *", "tz": "Europe/Stockholm"},
        action="send_message",
        args={"deliver_to": {"kind": "web_inbox"}},
        state=state,
        state_reason=reason,
        consecutive_failure_count=failures,
    )


def fire(s: Schedule, now: datetime, *, created_ago_s: float, status: str, lag_ms: int | None = None) -> ScheduleFire:
    created = ago(now, created_ago_s)
    return ScheduleFire.objects.create(
        schedule=s,
        slot=created,
        status=status,
        lag_ms=lag_ms,
        created_at=created,
        finished_at=created if status in ("succeeded", "failed", "skipped") else None,
    )
