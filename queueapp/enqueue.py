"""Bulk enqueue for engine jobs (schedule fires): one INSERT for many jobs, one push after commit."""

from __future__ import annotations

import uuid
from collections import Counter
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


def jobs_create(specs: list[JobSpec]) -> list[uuid.UUID]:
    """Create queued jobs of registered (possibly internal) functions; push them after commit.

    Must run inside the caller's transaction, so the jobs exist exactly when the rows that caused
    them do (the outbox pattern); a failed push is the relay's. Returns the job ids.
    """
    if not specs:
        return []
    now = clock.now()
    fns = []
    for spec in specs:
        fn = registry.get_function(spec.function)
        if fn is None:
            raise ValueError(f"Unknown job function {spec.function!r}")
        fns.append(fn)
    due = [max(spec.due_at or now, now) for spec in specs]
    states = [JobState.DEFERRED if d > now else JobState.QUEUED for d in due]
    ids = [spec.id for spec in specs]
    db.bulk_insert(
        Job,
        {
            "id": ids,
            "workspace_id": [spec.workspace_id for spec in specs],
            "owner_id": [spec.owner_id for spec in specs],
            "function": [fn.name for fn in fns],
            "args": [spec.args for spec in specs],
            "queue": [fn.queue for fn in fns],
            "state": states,
            "correlation_id": [spec.correlation_id for spec in specs],
            "max_tries": [fn.max_tries for fn in fns],
            "timeout_s": [fn.timeout_s for fn in fns],
            "retry_backoff_s": [fn.retry_backoff_s for fn in fns],
            "due_at": due,
            "created_at": [now] * len(specs),
            "updated_at": [now] * len(specs),
            "dispatched_at": [now] * len(specs),
        },
    )
    n = len(ids)
    db.bulk_insert(JobEvent, {"job_id": ids, "kind": ["submitted"] * n, "to_state": states, "at": [now] * n})
    pushes = [
        transport.Push(i, 1, fn.queue, d, registry.fair_lane(fn.name, spec.workspace_id))
        for i, fn, d, spec in zip(ids, fns, due, specs, strict=True)
    ]
    transaction.on_commit(partial(_push, pushes), robust=True)
    counts = Counter((fn.queue, fn.name, state) for fn, state in zip(fns, states, strict=True))
    transaction.on_commit(partial(_count, counts))
    return ids


def _count(counts: Counter[tuple[str, str, str]]) -> None:
    for (queue, function, state), n in counts.items():
        metrics.job_transition(queue, function, state, n)


def _push(pushes: list[transport.Push]) -> None:
    try:
        transport.push(pushes)
    except redis.RedisError:
        # Rows keep dispatched_at; the relay re-pushes them once the grace period has passed.
        pass
