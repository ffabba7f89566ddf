"""The worker's database path for starting and finishing attempts.

`PgStore` runs the SQL texts of `queueapp.transitions` on an asyncio psycopg pool (the hot path);
`OrmStore` runs the same moves through the ORM executor (`transitions.allows` and
`transitions.write_move`) for SQLite (`make run` without PostgreSQL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from uuid import UUID

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections, transaction

from hq import clock
from queueapp import registry, retry, selectors, transitions
from queueapp.models import Job

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import RowFactory
    from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


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
    due_at: datetime | None = None
    #: Its retry's push keeps the job's place among priorities.
    priority: int = 0
    #: The job's creation and the times this START set (a task's result reads them).
    created_at: datetime | None = None
    first_started_at: datetime | None = None
    started_at: datetime | None = None
    #: The limit gate it started under (`queueapp.limits`), whose place its finish gives back.
    limit_scope: str | None = None


@dataclass
class Held:
    """An attempt a limit kept from starting: it stays waiting, its slot goes to the next job.

    Over a concurrency limit (`reason` "concurrency") it waits for a finish under its gate to wake
    it; over a rate ("rate") its worker pushes it again for `retry_at`.
    """

    id: UUID
    attempt: int
    function: str
    workspace_id: UUID
    queue: str
    reason: str
    retry_at: datetime | None
    #: Its push for `retry_at` keeps the job's place among priorities.
    priority: int = 0


@dataclass
class Outcome:
    """How an attempt ended: one of `transitions.FINISH_MOVES`, its event's kind, and the fields it sets."""

    move: str
    kind: str
    result: Any = None
    error: str = ""
    due_at: datetime | None = None
    dispatched_at: datetime | None = None
    detail: dict[str, Any] | None = None
    #: When the body ended (the job's `finished_at` when the move ends the job), not when the batch is written.
    ended_at: datetime = dataclasses.field(default_factory=clock.now)

    def __post_init__(self) -> None:
        if self.move not in transitions.FINISH_MOVES:
            raise ValueError(f"{self.move!r} does not end an attempt; one of {transitions.FINISH_MOVES} does")

    @property
    def finished(self) -> bool:
        return transitions.ends(self.move)


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def start(self, job_id: str, attempt: int, worker_id: str) -> Started | Held | None: ...
    async def unmark(self, job_id: str, attempt: int) -> str | None: ...
    async def woken(self, job_id: str, attempt: int) -> Woken | None: ...
    async def finish(self, job_id: str, attempt: int, outcome: Outcome) -> str | None: ...
    def finishing(self, job_id: str, attempt: int, outcome: Outcome) -> asyncio.Future[str | None]: ...

    #: Called with the held attempts a finish woke (WAKE_SQL); the worker pushes them.
    on_woken: Callable[[list[Woken]], Awaitable[None]] | None


@dataclass(frozen=True)
class Woken:
    """A held job a finish under its gate woke: marked dispatched, for its worker to push."""

    id: UUID
    #: Attempts made so far: it is pushed as the next one.
    attempts: int
    queue: str
    due_at: datetime
    function: str
    workspace_id: UUID
    priority: int = 0


def limit_params() -> dict[str, list[Any]]:
    """The registered functions' limits, as START_SQL's `lf`, `lc` and `li` arrays (read per
    batch: a few functions at most; a function without limits is not in them)."""
    fns = registry.limited_functions()
    return {
        "lf": [f.name for f in fns],
        "lc": [f.concurrency_limit for f in fns],
        "li": [f.rate_interval_s for f in fns],
    }


def for_database(alias: str = "default") -> Store:
    """Pick the store for the configured database."""
    if connections[alias].vendor == "postgresql":
        return PgStore(alias)
    return OrmStore()


class Batcher(Generic[ItemT, ResultT]):
    """Coalesce concurrent calls into one database round trip.

    The first call flushes at once; calls that arrive while a flush is in flight wait for the next
    one, so an idle worker adds no latency and a busy one writes many rows per statement.
    `flush` answers a batch of items with one result per item, in order. `submit` waits for its
    item's result; `add` does not (its failures are logged), and `idle` waits until all are flushed.
    """

    def __init__(self, flush: Callable[[list[ItemT]], Awaitable[list[ResultT]]], max_size: int = 500) -> None:
        self.flush = flush
        self.max_size = max_size
        self.pending: list[tuple[ItemT, asyncio.Future[ResultT] | None]] = []
        self.running = False
        self._idle: asyncio.Event | None = None

    async def submit(self, item: ItemT) -> ResultT:
        return await self.future(item)

    def future(self, item: ItemT) -> asyncio.Future[ResultT]:
        """Queue `item`; the future answers it. Cancelling the future does not take the item out."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue(item, future)
        return future

    def add(self, item: ItemT) -> None:
        """Queue `item` for the next flush without waiting for it."""
        self._queue(item, None)

    async def idle(self) -> None:
        """Return once every item queued so far has been flushed (or failed)."""
        if self.running and self._idle is not None:
            await self._idle.wait()

    def _queue(self, item: ItemT, future: asyncio.Future[ResultT] | None) -> None:
        self.pending.append((item, future))
        if not self.running:
            self.running = True
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[: self.max_size], self.pending[self.max_size :]
                try:
                    results = await self.flush([item for item, _ in batch])
                except Exception as exc:  # every caller of the batch gets the error
                    unawaited = 0
                    for _, future in batch:
                        if future is None:
                            unawaited += 1
                        elif not future.done():
                            future.set_exception(exc)
                    if unawaited:
                        logger.warning("%s failed for %d item(s) nobody waits for: %s", self.flush, unawaited, exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future is not None and not future.done():
                        future.set_result(result)
        finally:
            self.running = False
            if self._idle is not None:
                self._idle.set()


#: The worker's connections prepare each statement once and run it with one plan made for any
#: table size. Planning a START batch of 96 took 0.9 ms beside its 2.3 ms of execution (EXPLAIN ANALYZE). A
#: generic plan made on the statistics of an empty table once joined START batches to a sequential
#: scan of 27,000 rows (110-190 ms per batch in rss_soak, seen with auto_explain), so these
#: connections rule sequential scans out: every statement they run finds its rows by key
#: (`tests/queueapp/test_store_plans.py` checks their plans on an empty table).
PLAN_SETTINGS = (("plan_cache_mode", "force_generic_plan"), ("enable_seqscan", "off"))


class PgStore:
    """Start and finish attempts with batched psycopg statements from an asyncio pool."""

    def __init__(self, alias: str = "default", max_size: int | None = None) -> None:
        from django.conf import settings
        from psycopg_pool import AsyncConnectionPool

        self.alias = alias
        self.max_size = max(1, max_size or settings.HQ_WORKER_DB_POOL_MAX)
        self.timeout_s = settings.HQ_DB_POOL_TIMEOUT_S
        params = connections[alias].get_connection_params()
        for key in ("cursor_factory", "context", "server_side_binding", "prepare_threshold"):
            params.pop(key, None)
        params["autocommit"] = True
        # Prepared unless HQ_DB_PREPARE_THRESHOLD=none (a pooler that cannot carry them), and then
        # from the first run (`PLAN_SETTINGS`).
        self.prepared = connections[alias].settings_dict.get("OPTIONS", {}).get("prepare_threshold") is not None
        params["prepare_threshold"] = 0 if self.prepared else None
        # At most `HQ_WORKER_DB_POOL_MAX` connections (one kept open); the batchers rarely need more
        # than two, since each flush carries every start or finish that arrived meanwhile. A dropped
        # connection is found by `_fetch`, which retries once on a fresh one. Made closed, so that
        # it connects in `open`, on the worker's event loop.
        self.pool: AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]] = AsyncConnectionPool(
            kwargs=params,
            min_size=1,
            max_size=self.max_size,
            timeout=self.timeout_s,
            reconnect_timeout=5.0,  # as the web's pool (hq.settings): back within seconds of PostgreSQL
            name="hq-worker",
            open=False,
            configure=self._configure if self.prepared else None,
        )
        self.worker_id = ""
        self._starts = Batcher(self._start_many)
        self._finishes: Batcher[tuple[str, int, Outcome], str | None] = Batcher(self._finish_many)
        self._woken: Batcher[tuple[str, int], Woken | None] = Batcher(self._woken_many)
        #: Attempts running under a limit gate -> (workspace, gate), for the wake their finish sends.
        self._gated: dict[tuple[str, int], tuple[UUID, str, bool]] = {}
        self.on_woken: Callable[[list[Woken]], Awaitable[None]] | None = None

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    @staticmethod
    async def _configure(conn: AsyncConnection[Any]) -> None:
        for name, value in PLAN_SETTINGS:
            await conn.execute("SELECT set_config(%s, %s, false)", (name, value))

    async def close(self) -> None:
        # Batches in flight are written first (an end whose waiter was cancelled twice, say).
        await self._starts.idle()
        await self._finishes.idle()
        await self.pool.close()  # a pool never opened is closed already: nothing to do

    async def start(self, job_id: str, attempt: int, worker_id: str) -> Started | Held | None:
        self.worker_id = worker_id
        return await self._starts.submit((job_id, attempt))

    async def _start_many(self, items: list[tuple[str, int]]) -> list[Started | Held | None]:
        from psycopg.rows import dict_row
        from psycopg.types.json import Jsonb

        params = {
            "ids": _array(job_id for job_id, _ in items),
            "attempts": _array(attempt for _, attempt in items),
            "worker": self.worker_id,
            "now": clock.now(),
            "detail": Jsonb({"worker": self.worker_id}),
            **limit_params(),
        }
        rows = await self._fetch(transitions.START_SQL, params, dict_row)
        started: dict[tuple[str, int], Started | Held] = {}
        for row in rows:
            key = (str(row["id"]), row["attempt"])
            if row["hold"] is not None:
                started[key] = Held(
                    row["id"],
                    row["attempt"],
                    row["function"],
                    row["workspace_id"],
                    row["queue"],
                    row["hold"],
                    row["retry_at"],
                    row["priority"],
                )
                continue
            keyed = row.pop("keyed")
            for column in ("from_state", "attempt", "hold", "retry_at"):
                del row[column]
            started[key] = Started(**row)
            if row["limit_scope"] is not None:
                self._gated[key] = (row["workspace_id"], row["limit_scope"], keyed)
        # One START row feeds one body: should the same attempt be delivered twice into one batch
        # (the relay reclaimed it while this worker held it), the second delivery gets None.
        return [started.pop((job_id, attempt), None) for job_id, attempt in items]

    async def unmark(self, job_id: str, attempt: int) -> str | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(transitions.UNMARK_SQL, {"id": job_id, "attempt": attempt})
            row = await cur.fetchone()
        state: str | None = row[0] if row else None
        return state

    async def woken(self, job_id: str, attempt: int) -> Woken | None:
        """The attempt, held by a concurrency limit, when a finish has woken it since (WOKEN_SQL,
        batched with the other holds of the moment)."""
        return await self._woken.submit((job_id, attempt))

    async def _woken_many(self, items: list[tuple[str, int]]) -> list[Woken | None]:
        params = {"ids": _array(job_id for job_id, _ in items), "attempts": _array(a for _, a in items)}
        found = {str(row[0]): Woken(*row) for row in await self._fetch(transitions.WOKEN_SQL, params)}
        return [found.get(job_id) for job_id, _ in items]

    async def finish(self, job_id: str, attempt: int, outcome: Outcome) -> str | None:
        """Record the attempt's end; return the move recorded (`outcome.move`, or `cancel_running`
        when a cancel was asked for meanwhile: `transitions.finish_move`), None when the attempt
        was no longer running."""
        return await self._finishes.submit((job_id, attempt, outcome))

    def finishing(self, job_id: str, attempt: int, outcome: Outcome) -> asyncio.Future[str | None]:
        """`finish` as a future that is written with its batch whoever waits for it."""
        return self._finishes.future((job_id, attempt, outcome))

    async def _finish_many(self, items: list[tuple[str, int, Outcome]]) -> list[str | None]:
        from psycopg.types.json import Jsonb

        now = clock.now()
        params = {
            "ids": _array(job_id for job_id, _, _ in items),
            "attempts": _array(attempt for _, attempt, _ in items),
            "tos": _array(transitions.MOVES[o.move].target for _, _, o in items),
            "kinds": _array(o.kind for _, _, o in items),
            "results": [Jsonb(o.result) if o.result is not None else None for _, _, o in items],
            "errors": [o.error for _, _, o in items],
            "ended": [o.ended_at for _, _, o in items],
            "dues": [o.due_at for _, _, o in items],
            "dispatched": [o.dispatched_at for _, _, o in items],
            "details": [Jsonb(o.detail or {}) for _, _, o in items],
            "now": now,
        }
        moved = {str(row[0]): row[1] for row in await self._fetch(transitions.FINISH_SQL, params)}
        freed: Counter[tuple[UUID, str, bool]] = Counter()
        for job_id, attempt, _ in items:
            gate = self._gated.pop((job_id, attempt), None)
            if gate is not None and job_id in moved:
                freed[gate] += 1
        if freed:
            await self._wake(freed)
        return [_recorded_move(o.move, moved[job_id]) if job_id in moved else None for job_id, _, o in items]

    async def _wake(self, freed: Counter[tuple[UUID, str, bool]]) -> None:
        """Wake as many held jobs of each gate as its finishes freed places (WAKE_SQL), for the
        worker to push. A wake that fails is the reaper's (`limits.wake_stale_held`)."""
        import psycopg

        gates = list(freed)
        params = {
            "ws": _array(ws for ws, _, _ in gates),
            "scopes": [scope for _, scope, _ in gates],
            "n": _array(freed[g] for g in gates),
            "keyed": [keyed for _, _, keyed in gates],
        }
        try:
            rows = await self._fetch(transitions.WAKE_SQL, params)
        except psycopg.Error as exc:
            logger.warning("could not wake the jobs held under %d gate(s): %s", len(gates), exc)
            return
        if rows and self.on_woken is not None:
            await self.on_woken([Woken(*row) for row in rows])

    async def _fetch(self, sql: str, params: dict[str, Any], row_factory: RowFactory[Any] | None = None) -> list[Any]:
        """Run one statement; once more on a fresh connection when the server dropped ours.

        A terminated backend (failover, pg_terminate_backend, restart) breaks the pooled connection
        only when it is next used; the pool discards it, and the statement is safe to repeat because
        every move is conditional on the row's current state and attempt.
        """
        import psycopg

        for attempt in (1, 2):
            try:
                async with self.pool.connection() as conn:
                    cur = conn.cursor(row_factory=row_factory) if row_factory else conn.cursor()
                    await cur.execute(sql, params)
                    return await cur.fetchall()
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
        return []


def _array(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of values that need no quoting: job ids, attempt numbers, state
    and event names (the SQL casts it). Written as one string, because adapting a list element by
    element was a tenth of the worker's CPU per job (py-spy, bench/RESULTS.md). Anything that would
    read differently in an array literal (a comma inside a value, quotes, braces, backslashes,
    whitespace, the word NULL) is refused: ids come from Redis, and must not pair up wrongly."""
    items = list(map(str, values))
    text = ",".join(items)
    if (
        text.count(",") != max(len(items) - 1, 0)
        or not text.isprintable()
        or any(c in text for c in '"{}\\ ')
        or "NULL" in text.upper()
        or "" in items
    ):
        raise ValueError(f"not an array of plain values: {text[:200]!r}")
    return "{" + text + "}"


def _recorded_move(move: str, state: str) -> str:
    """The move that left the job in `state`: `move`, or the cancel that took its place."""
    return move if transitions.MOVES[move].target == state else transitions.finish_move(move, True)


class OrmStore:
    """The same moves through the ORM, for SQLite (where limits are not enforced: README, "Limits")."""

    on_woken: Callable[[list[Woken]], Awaitable[None]] | None = None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def start(self, job_id: str, attempt: int, worker_id: str) -> Started | None:
        return await sync_to_async(_orm_start, thread_sensitive=True)(job_id, attempt, worker_id)

    async def unmark(self, job_id: str, attempt: int) -> str | None:
        return await sync_to_async(_orm_unmark, thread_sensitive=True)(job_id, attempt)

    async def woken(self, job_id: str, attempt: int) -> Woken | None:
        return None  # limits hold nothing here

    async def finish(self, job_id: str, attempt: int, outcome: Outcome) -> str | None:
        return await sync_to_async(_orm_finish, thread_sensitive=True)(job_id, attempt, outcome)

    def finishing(self, job_id: str, attempt: int, outcome: Outcome) -> asyncio.Future[str | None]:
        return asyncio.ensure_future(self.finish(job_id, attempt, outcome))


def _orm_start(job_id: str, attempt: int, worker_id: str) -> Started | None:
    close_old_connections()
    now = clock.now()
    with transaction.atomic():
        job = Job.objects.select_for_update(no_key=True).filter(pk=job_id, attempts=attempt - 1).first()
        if job is None or not transitions.allows("start", job.state, job.due_at, now):
            return None
        if selectors.queue_pauses(queue=job.queue, workspace_id=job.workspace_id).exists():
            return None
        moved = transitions.write_move(
            job_id=job.pk,
            move="start",
            source=job.state,
            attempt=attempt,
            kind="started",
            now=now,
            fields={
                "attempts": attempt,
                "started_at": now,
                "first_started_at": job.first_started_at or now,
                "worker_id": worker_id,
            },
            detail={"worker": worker_id},
            attempts_before=attempt - 1,
        )
    if not moved:
        return None
    job.started_at, job.first_started_at = now, job.first_started_at or now  # as the move set them
    return Started(**{f.name: getattr(job, f.name) for f in dataclasses.fields(Started)})


def _orm_unmark(job_id: str, attempt: int) -> str | None:
    close_old_connections()
    state = (
        Job.objects.filter(pk=job_id, attempts=attempt - 1, state__in=transitions.MOVES["start"].sources)
        .values_list("state", flat=True)
        .first()
    )
    if state is None:
        return None
    Job.objects.filter(pk=job_id, state=state).update(dispatched_at=None)
    return state


def _orm_finish(job_id: str, attempt: int, outcome: Outcome) -> str | None:
    close_old_connections()
    now = clock.now()
    with transaction.atomic():
        asked = (
            Job.objects.select_for_update(no_key=True)
            .filter(pk=job_id, state=transitions.FINISH_SOURCE, attempts=attempt)
            .values_list("cancel_requested_at", flat=True)
            .first()
        )
        move = transitions.finish_move(outcome.move, asked is not None)
        fields: dict[str, Any] = {
            "result": outcome.result,
            "error": outcome.error,
            "worker_id": "",
            "finished_at": outcome.ended_at if transitions.ends(move) else None,
            "dispatched_at": outcome.dispatched_at if move == outcome.move else None,
        }
        detail = json.loads(json.dumps(outcome.detail or {}))
        if move == outcome.move and outcome.due_at is not None:
            fields["due_at"] = outcome.due_at
        if move != outcome.move:
            detail.pop("retry_in_s", None)
        moved = transitions.write_move(
            job_id=job_id,
            move=move,
            source=transitions.FINISH_SOURCE,
            attempt=attempt,
            kind=outcome.kind if move == outcome.move else retry.CANCEL_KIND,
            now=now,
            fields=fields,
            detail=detail,
            attempts_before=attempt,
        )
    return move if moved else None
