"""The one place that writes new jobs: one statement for the rows and their events, one push.

Every way a job comes to exist goes through `jobs_insert`: a client's submit
(`services.jobs.job_submit`), a batch of submits (`services.jobs.jobs_submit_many`) and engine
jobs such as schedule fires (`jobs_create`). On PostgreSQL the job rows and their `submitted`
events are written by a single `INSERT ... SELECT FROM unnest()` statement with the events'
INSERT chained to it, so even one submit is one round trip and needs no transaction of its own;
the push to ARQ is one pipelined Redis call after commit, and a push that fails is the relay's
(the rows keep `dispatched_at`).

A caller that asks for it (`pushes_in_background`: the in-process django.tasks backend) has the
pushes of its autocommit writes handed to this process's pusher thread instead (`Pusher`): the row
is committed when the call returns, as before, and the pusher sends whatever pushes have gathered
in one pipelined call, while the caller goes on with its next write. A push the pusher never makes
(the process is killed) is the relay's, as a failed one is; at exit the pusher is flushed.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import dataclasses
import logging
import operator
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

import redis
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction

from hq import clock, db, metrics
from queueapp import registry, transport
from queueapp.models import WAITING_STATES, Job, JobEvent, JobState, UniqueWhile

logger = logging.getLogger(__name__)


@dataclass
class NewJob:
    """A job about to be written: its fields are the columns a new row sets (every other column
    takes its model default), plus `detail`, its `submitted` event's.

    It reads like a fresh `Job` (no attempt yet), so the API renders it without a query.
    """

    workspace_id: uuid.UUID
    function: str
    args: dict[str, Any]
    queue: str
    state: str
    due_at: datetime
    created_at: datetime
    max_tries: int
    timeout_s: int
    retry_backoff_s: float
    owner_id: uuid.UUID | None = None
    correlation_id: str = ""
    priority: int = 0
    idempotency_key: str | None = None
    unique_key: str | None = None
    unique_while: str = UniqueWhile.WAITING
    idempotency_hash: str = ""
    dispatched_at: datetime | None = None
    concurrency_key: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    # What a fresh row holds, as the model's defaults; here so a NewJob renders like a Job.
    attempts: ClassVar[int] = 0
    tries_base: ClassVar[int] = 0
    result: ClassVar[Any] = None
    error: ClassVar[str] = ""
    worker_id: ClassVar[str] = ""
    cancel_requested_at: ClassVar[datetime | None] = None
    started_at: ClassVar[datetime | None] = None
    first_started_at: ClassVar[datetime | None] = None
    finished_at: ClassVar[datetime | None] = None

    @property
    def updated_at(self) -> datetime:
        return self.created_at

    @property
    def pk(self) -> uuid.UUID:
        return self.id

    def as_job(self) -> Job:
        """The row as a `Job` instance, as if just read back (no query)."""
        job = Job(**{name: getattr(self, name) for name in _JOB_COLUMNS}, updated_at=self.created_at)
        job._state.adding = False
        job._state.db = "default"
        return job

    @property
    def waiting(self) -> bool:
        """Queued or deferred: pushed to ARQ once written (a gated job waits for its decision)."""
        return self.state in WAITING_STATES


#: The Job columns a NewJob sets: its fields but the event's detail.
_JOB_COLUMNS = tuple(f.name for f in dataclasses.fields(NewJob) if f.name != "detail")
_job_values = operator.attrgetter(*_JOB_COLUMNS)


def new_job(
    fn: registry.JobFunction,
    *,
    workspace_id: uuid.UUID,
    args: dict[str, Any],
    now: datetime,
    due_at: datetime | None = None,
    gated: bool = False,
    **fields: Any,
) -> NewJob:
    """A new job of `fn` with the function's defaults; `fields` overrides them (queue, max_tries...).

    Its state follows from the rest: awaiting approval when gated, deferred when due later, else
    queued; a job that will be pushed is marked dispatched now (the relay's grace starts).
    """
    due = max(due_at or now, now)
    state = JobState.AWAITING_APPROVAL if gated else JobState.DEFERRED if due > now else JobState.QUEUED
    defaults: dict[str, Any] = {
        "queue": fn.queue,
        "max_tries": fn.max_tries,
        "timeout_s": fn.timeout_s,
        "retry_backoff_s": fn.retry_backoff_s,
        "dispatched_at": None if gated else now,
        "priority": fn.priority,
    }
    defaults.update(
        {k: v for k, v in fields.items() if v is not None or k in ("idempotency_key", "owner_id", "concurrency_key")}
    )
    if due > now and not gated:
        defaults.setdefault("detail", {"due_at": due.isoformat()})
    return NewJob(
        workspace_id=workspace_id, function=fn.name, args=args, state=state, due_at=due, created_at=now, **defaults
    )


def jobs_insert(jobs: Sequence[NewJob], *, actor_id: uuid.UUID | None = None) -> None:
    """Write the jobs and their `submitted` events, then push the waiting ones after commit.

    Inside a transaction the push waits for its commit (the outbox pattern); outside one the
    statement commits by itself and the push follows at once (or goes to the pusher thread: see
    `pushes_in_background`).
    """
    if not jobs:
        return
    conn = connections[DEFAULT_DB_ALIAS]
    # Column-wise: each job's values in one C call (`attrgetter`), turned into columns by zip.
    columns = dict(zip(_JOB_COLUMNS, map(list, zip(*map(_job_values, jobs), strict=True)), strict=True))
    # A new row was last updated when it was created (the NewJob reads so: `updated_at`).
    columns["updated_at"] = columns["created_at"]
    n = len(jobs)
    events = {
        "job_id": columns["id"],
        "kind": ["submitted"] * n,
        "to_state": columns["state"],
        "actor_id": [actor_id] * n,
        "detail": [j.detail for j in jobs],
        "at": columns["created_at"],
    }
    if conn.vendor == "postgresql":
        job_sql, job_params = db.insert_sql(Job, columns)
        event_sql, event_params = db.insert_sql(JobEvent, events)
        db.execute_binary(f"WITH new_jobs AS ({job_sql} RETURNING 1) {event_sql}", [*job_params, *event_params])
    else:
        with transaction.atomic():
            db.bulk_insert(Job, columns)
            db.bulk_insert(JobEvent, events)
    pushes = [
        transport.Push(j.id, 1, j.queue, j.due_at, registry.fair_lane(j.function, j.workspace_id), j.priority)
        for j in jobs
        if j.waiting
    ]
    counts = Counter((j.queue, j.function, j.state) for j in jobs)
    background = _BACKGROUND.get()
    if not conn.in_atomic_block and conn.get_autocommit():  # committed already: hand on now
        if pushes:
            try:
                (PUSHER.submit if background else push)(pushes)
            except Exception:  # as on_commit(robust=True) would: the job is written; the relay pushes it
                logger.exception("push of %d job(s) failed; the relay will push them", len(pushes))
        _count(counts)
        return
    if conn.in_atomic_block and not conn.savepoint_ids:
        _AfterCommit.of_transaction().add(pushes, counts, background)
        return
    if pushes:
        transaction.on_commit(partial(PUSHER.submit if background else push, pushes), robust=True)
    transaction.on_commit(partial(_count, counts))


#: Set (`pushes_in_background`) while a caller's writes hand their pushes to the pusher thread.
_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("hq_pushes_in_background", default=False)


@contextlib.contextmanager
def pushes_in_background() -> Iterator[None]:
    """Within this block, the pushes of jobs written go to this process's pusher thread once
    committed (`Pusher`), instead of being sent before the call that wrote them returns.

    For callers that write one job per call in autocommit, many times (the in-process django.tasks
    backend's `enqueue`): each call still returns with its job committed, and its Redis round
    trip leaves the caller's path; the pusher sends the pushes gathered meanwhile in one call.
    """
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


class Pusher:
    """This process's pusher thread: it hands to ARQ the pushes given to it (`submit`), each round
    all those that gathered while the round before was under way, in one pipelined Redis call.

    Durability is the database's: a job is committed before its push is given here. A round that
    fails is `push`'s failure (the jobs are marked undispatched, for the relay's next pass); a
    round never made (the process was killed) leaves the rows marked dispatched when written, which
    the relay pushes again once `HQ_RELAY_GRACE_S` has passed. At exit, `flush` waits for what is
    left (at most FLUSH_AT_EXIT_S). A forked child starts empty: its parent pushes what it held.
    """

    #: Seconds the interpreter's exit waits for pushes not yet made.
    FLUSH_AT_EXIT_S = 5.0

    def __init__(self) -> None:
        self.forked()

    def forked(self) -> None:
        """Start afresh (in a forked child, whose copy of the lock may be held by no thread of its own)."""
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[transport.Push] = []
        self._busy = False  # a round is under way
        self._thread: threading.Thread | None = None

    def submit(self, pushes: list[transport.Push]) -> None:
        """Hand on committed jobs' pushes; the pusher makes them soon, with whatever else gathers."""
        with self._cond:
            self._pending += pushes
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hq-pusher", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Pushes handed on that no round has taken yet."""
        return len(self._pending)

    def flush(self, timeout_s: float = FLUSH_AT_EXIT_S) -> bool:
        """Wait until every push handed on has been made (or has failed); False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._busy = False
                    self._cond.notify_all()  # flush() waiters: all done
                    self._cond.wait()
                batch, self._pending = self._pending, []
                self._busy = True
            try:
                push(batch)  # a Redis failure marks them undispatched, for the relay
            except Exception:
                logger.exception("pusher: push of %d job(s) failed; the relay will push them", len(batch))
            finally:
                own = connections[DEFAULT_DB_ALIAS]  # opened only by a failed push's update
                if own.connection is not None:
                    own.close()


#: The process's pusher (`pushes_in_background`).
PUSHER = Pusher()
atexit.register(PUSHER.flush)
os.register_at_fork(after_in_child=PUSHER.forked)


def pushes_flush(timeout_s: float = Pusher.FLUSH_AT_EXIT_S) -> bool:
    """Wait until the pusher has made every push handed to it (tests, a script about to read Redis)."""
    return PUSHER.flush(timeout_s)


class _AfterCommit:
    """The pushes and counts of every job a transaction writes outside any savepoint, handed on in
    one pipelined push and one count once it commits (N enqueues in one transaction: one Redis call).

    Such writes leave only with the whole transaction (a savepoint's rollback cannot take them), so
    one commit hook serves them all; writes inside a savepoint keep a hook each, which Django drops
    when that savepoint rolls back. A transaction is known by its list of commit hooks, which Django
    replaces on commit and on rollback.
    """

    def __init__(self, hooks: list[Any]) -> None:
        self.hooks = hooks
        self.pushes: list[transport.Push] = []
        self.counts: Counter[tuple[str, str, str]] = Counter()
        #: The pushes leave through the pusher only when every write asked for it.
        self.background = True

    @classmethod
    def of_transaction(cls) -> _AfterCommit:
        """The current transaction's, made (and its commit hook registered) by its first write."""
        current: _AfterCommit | None = getattr(connection, "_hq_after_commit", None)
        if current is None or current.hooks is not connection.run_on_commit:
            current = cls(connection.run_on_commit)
            connection._hq_after_commit = current  # type: ignore[attr-defined]
            transaction.on_commit(current.run, robust=True)
        return current

    def add(
        self,
        pushes: list[transport.Push],
        counts: Counter[tuple[str, str, str]],
        background: bool,
    ) -> None:
        self.pushes += pushes
        self.counts.update(counts)
        self.background = self.background and background

    def run(self) -> None:
        if getattr(connection, "_hq_after_commit", None) is self:
            connection._hq_after_commit = None  # type: ignore[attr-defined]
        if self.pushes:
            (PUSHER.submit if self.background else push)(self.pushes)
        _count(self.counts)


@dataclass
class JobSpec:
    """One engine job to create; `id` may be preset so other rows can point at it first."""

    workspace_id: uuid.UUID
    function: str
    args: dict[str, Any]
    owner_id: uuid.UUID | None = None
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
    jobs = []
    for spec in specs:
        fn = registry.get_function(spec.function)
        if fn is None:
            raise ValueError(f"Unknown job function {spec.function!r}")
        jobs.append(
            new_job(
                fn,
                workspace_id=spec.workspace_id,
                args=spec.args,
                now=now,
                due_at=spec.due_at,
                owner_id=spec.owner_id,
                correlation_id=spec.correlation_id,
                id=spec.id,
                detail={},
            )
        )
    jobs_insert(jobs)
    return [j.id for j in jobs]


def _count(counts: Counter[tuple[str, str, str]]) -> None:
    for (queue, function, state), n in counts.items():
        metrics.job_transition(queue, function, state, n)


def push(pushes: list[transport.Push]) -> None:
    """Hand new attempts to ARQ; when Redis is away, mark them undispatched for the relay's next pass."""
    try:
        transport.push(pushes)
    except redis.RedisError as exc:
        logger.warning("push of %d job(s) failed (%s); the relay will push them", len(pushes), exc)
        try:
            Job.objects.filter(pk__in=[p.job_id for p in pushes], state__in=WAITING_STATES).update(dispatched_at=None)
        except DatabaseError:
            pass  # they keep dispatched_at: the relay re-pushes them after its grace period
