"""The worker's database path for starting and finishing attempts.

`PgStore` runs the SQL texts of `queueapp.transitions` on an asyncio psycopg pool (the hot path);
`OrmStore` runs the same moves through the ORM for SQLite (`make run` without PostgreSQL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections, transaction

from hq import clock
from queueapp import transitions


@dataclass
class Started:
    """What a worker needs to run a started attempt."""

    id: UUID
    function: str
    args: dict[str, Any]
    timeout_s: int
    max_tries: int
    tries_base: int
    retry_backoff_s: float
    workspace_id: UUID
    owner_id: UUID | None
    correlation_id: str
    queue: str


@dataclass
class Outcome:
    """How an attempt ended: a move name from `transitions.MOVES` and its fields."""

    move: str
    kind: str
    result: Any = None
    error: str = ""
    due_at: datetime | None = None
    dispatched_at: datetime | None = None
    detail: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.move in ("succeed", "fail", "cancel_running")


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def start(self, job_id: str, attempt: int, worker_id: str) -> Started | None: ...
    async def unmark(self, job_id: str, attempt: int) -> str | None: ...
    async def finish(self, job_id: str, attempt: int, outcome: Outcome) -> bool: ...


def for_database(alias: str = "default") -> Store:
    """Pick the store for the configured database."""
    if connections[alias].vendor == "postgresql":
        return PgStore(alias)
    return OrmStore()


class PgStore:
    """Start and finish attempts with one psycopg statement each, from an asyncio pool."""

    def __init__(self, alias: str = "default", max_size: int = 8) -> None:
        self.alias = alias
        self.max_size = max_size
        self.pool = None

    async def open(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        params = connections[self.alias].get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("server_side_binding", None)
        params.pop("prepare_threshold", None)
        params["autocommit"] = True
        self.pool = AsyncConnectionPool(kwargs=params, min_size=2, max_size=self.max_size, open=False)
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def start(self, job_id: str, attempt: int, worker_id: str) -> Started | None:
        from psycopg.rows import dict_row
        from psycopg.types.json import Jsonb

        params = {
            "id": job_id,
            "attempt": attempt,
            "worker": worker_id,
            "now": clock.now(),
            "detail": Jsonb({"worker": worker_id}),
        }
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(transitions.START_SQL, params)
            row = await cur.fetchone()
        if row is None:
            return None
        row.pop("from_state", None)
        row.pop("due_at", None)
        return Started(**row)

    async def unmark(self, job_id: str, attempt: int) -> str | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(transitions.UNMARK_SQL, {"id": job_id, "attempt": attempt})
            row = await cur.fetchone()
        return row[0] if row else None

    async def finish(self, job_id: str, attempt: int, outcome: Outcome) -> bool:
        from psycopg.types.json import Jsonb

        now = clock.now()
        params = {
            "id": job_id,
            "attempt": attempt,
            "to": transitions.MOVES[outcome.move].target,
            "kind": outcome.kind,
            "result": Jsonb(outcome.result) if outcome.result is not None else None,
            "error": outcome.error,
            "finished_at": now if outcome.finished else None,
            "due_at": outcome.due_at,
            "dispatched_at": outcome.dispatched_at,
            "detail": Jsonb(outcome.detail or {}),
            "now": now,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(transitions.FINISH_SQL, params)
            return await cur.fetchone() is not None


class OrmStore:
    """The same moves through the ORM, for SQLite."""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def start(self, job_id: str, attempt: int, worker_id: str) -> Started | None:
        return await sync_to_async(_orm_start, thread_sensitive=True)(job_id, attempt, worker_id)

    async def unmark(self, job_id: str, attempt: int) -> str | None:
        return await sync_to_async(_orm_unmark, thread_sensitive=True)(job_id, attempt)

    async def finish(self, job_id: str, attempt: int, outcome: Outcome) -> bool:
        return await sync_to_async(_orm_finish, thread_sensitive=True)(job_id, attempt, outcome)


def _orm_start(job_id: str, attempt: int, worker_id: str) -> Started | None:
    from django.db.models import Q

    from queueapp.models import Job, JobEvent, QueuePause

    close_old_connections()
    now = clock.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, attempts=attempt - 1).first()
        if job is None or not (job.state == "queued" or (job.state == "deferred" and job.due_at <= now)):
            return None
        paused = QueuePause.objects.filter(queue=job.queue).filter(
            Q(workspace__isnull=True) | Q(workspace_id=job.workspace_id)
        )
        if paused.exists():
            return None
        source = job.state
        updated = Job.objects.filter(pk=job.pk, state=source, attempts=attempt - 1).update(
            state="running",
            attempts=attempt,
            started_at=now,
            worker_id=worker_id,
            updated_at=now,
            first_started_at=job.first_started_at or now,
        )
        if not updated:
            return None
        JobEvent.objects.create(
            job_id=job.pk,
            kind="started",
            from_state=source,
            to_state="running",
            attempt=attempt,
            detail={"worker": worker_id},
            at=now,
        )
    return Started(
        id=job.id,
        function=job.function,
        args=job.args,
        timeout_s=job.timeout_s,
        max_tries=job.max_tries,
        tries_base=job.tries_base,
        retry_backoff_s=job.retry_backoff_s,
        workspace_id=job.workspace_id,
        owner_id=job.owner_id,
        correlation_id=job.correlation_id,
        queue=job.queue,
    )


def _orm_unmark(job_id: str, attempt: int) -> str | None:
    from queueapp.models import Job

    close_old_connections()
    job = Job.objects.filter(pk=job_id, attempts=attempt - 1, state__in=("queued", "deferred")).first()
    if job is None:
        return None
    Job.objects.filter(pk=job.pk, state=job.state).update(dispatched_at=None)
    return job.state


def _orm_finish(job_id: str, attempt: int, outcome: Outcome) -> bool:
    from queueapp.models import Job, JobEvent

    close_old_connections()
    now = clock.now()
    target = transitions.MOVES[outcome.move].target
    fields: dict[str, Any] = {
        "state": target,
        "result": outcome.result,
        "error": outcome.error,
        "worker_id": "",
        "updated_at": now,
        "finished_at": now if outcome.finished else None,
        "dispatched_at": outcome.dispatched_at,
    }
    if outcome.due_at is not None:
        fields["due_at"] = outcome.due_at
    with transaction.atomic():
        moved = Job.objects.filter(pk=job_id, state="running", attempts=attempt).update(**fields)
        if moved:
            JobEvent.objects.create(
                job_id=job_id,
                kind=outcome.kind,
                from_state="running",
                to_state=target,
                attempt=attempt,
                detail=json.loads(json.dumps(outcome.detail or {})),
                at=now,
            )
    return bool(moved)
