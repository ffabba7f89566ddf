"""Bulk enqueue for engine jobs (schedule fires): one INSERT for many jobs, one push after commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import redis
from django.db import transaction

from hq import clock, db, metrics
from queueapp import registry, transport
from queueapp.models import Job, JobEvent, JobState


@dataclass
class JobSpec:
    """One engine job to create; `id` may be preset so other rows can point at it first."""

    workspace_id: Any
    function: str
    args: dict[str, Any]
    owner_id: Any = None
    correlation_id: str = ""
    due_at: datetime | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def jobs_create(specs: list[JobSpec]) -> list[Job]:
    """Create queued jobs of registered (possibly internal) functions and push them after commit.

    Must run inside the caller's transaction, so the jobs exist exactly when the rows that caused
    them do (the outbox pattern); a failed push is the relay's.
    """
    if not specs:
        return []
    now = clock.now()
    jobs = []
    for spec in specs:
        fn = registry.get_function(spec.function)
        if fn is None:
            raise ValueError(f"Unknown job function {spec.function!r}")
        due = max(spec.due_at or now, now)
        jobs.append(
            Job(
                id=spec.id,
                workspace_id=spec.workspace_id,
                owner_id=spec.owner_id,
                function=fn.name,
                args=spec.args,
                queue=fn.queue,
                state=JobState.DEFERRED if due > now else JobState.QUEUED,
                correlation_id=spec.correlation_id,
                max_tries=fn.max_tries,
                timeout_s=fn.timeout_s,
                retry_backoff_s=fn.retry_backoff_s,
                due_at=due,
                created_at=now,
                updated_at=now,
                dispatched_at=now,
            )
        )
    db.bulk_insert(Job, jobs)
    db.bulk_insert(JobEvent, [JobEvent(job_id=j.id, kind="submitted", to_state=j.state, at=now) for j in jobs])
    pushes = [transport.Push(j.id, 1, j.queue, j.due_at) for j in jobs]
    transaction.on_commit(partial(_push, pushes), robust=True)
    for j in jobs:
        transaction.on_commit(partial(metrics.job_transition, j.queue, j.function, j.state))
    return jobs


def _push(pushes: list[transport.Push]) -> None:
    try:
        transport.push(pushes)
    except redis.RedisError:
        # Rows keep dispatched_at; the relay re-pushes them once the grace period has passed.
        pass
