"""The admin's workers page: live workers, their heartbeat age and the jobs running on them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypedDict
from uuid import UUID

from queueapp.models import Job, JobState
from queueapp.observability.registry import Scope
from queueapp.observability.summary import age_ms
from queueapp.selectors import workers_live


class RunningJob(TypedDict):
    """A job running on a worker, as the workers page lists it."""

    id: UUID
    function: str
    queue: str
    worker_id: str
    started_at: datetime | None
    workspace_id: UUID
    running_for_ms: int | None


def workers_overview(*, workspace_ids: Iterable[Any] | None, running_limit: int = 200) -> list[dict[str, Any]]:
    """Live workers with their heartbeat age and the jobs (of these workspaces) running on them."""
    scope = Scope.of(workspace_ids)
    workers = list(workers_live().order_by("hostname", "pid"))
    running = (
        scope.filter(Job.objects.filter(state=JobState.RUNNING, worker_id__in=[w.id for w in workers]))
        .order_by("started_at")
        .values("id", "function", "queue", "worker_id", "started_at", "workspace_id")[:running_limit]
    )
    by_worker: dict[str, list[RunningJob]] = {}
    for job in running:
        by_worker.setdefault(job["worker_id"], []).append(
            {**job, "running_for_ms": age_ms(scope.now, job["started_at"])}
        )
    return [
        {
            "worker": w,
            "heartbeat_age_ms": age_ms(scope.now, w.last_heartbeat_at),
            "running": w.running if scope.workspace_ids is None else len(by_worker.get(w.id, [])),
            "jobs": by_worker.get(w.id, []),
        }
        for w in workers
    ]
