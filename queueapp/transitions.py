"""The job state machine: the table of allowed moves, and how each of its executors writes one.

Three executors run these moves, and each takes its source states from `MOVES`:

- the ORM, `write_move` below, which `queueapp.services.jobs.job_transition` calls for requests,
  the admin and the side tasks;
- the worker's psycopg path on PostgreSQL (`queueapp.store.PgStore`), which runs `START_SQL`,
  `UNMARK_SQL` and `FINISH_SQL`, texts generated from `MOVES` at import, because the ORM costs
  about 5 ms of worker CPU per job (through sync_to_async on 2 cores: 0.15x bare ARQ's throughput,
  against about 0.5x with one psycopg statement per move);
- the worker's path on SQLite (`queueapp.store.OrmStore`, `make run` without PostgreSQL), which
  checks with `allows` and writes with `write_move`.

Every move is a conditional UPDATE on the current state plus a JobEvent row.
`tests/queueapp/test_transitions.py` runs one sequence of moves through all three and compares
the rows and events they leave, field by field.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from queueapp.models import FINISHED_STATES, WAITING_STATES, Job, JobEvent, JobState


class Move(NamedTuple):
    #: The states the move leaves from.
    sources: tuple[str, ...]
    #: The state it moves to.
    target: str
    #: Sources it leaves only once the job's `due_at` has come (a deferred submit, a retry's backoff).
    when_due: tuple[str, ...] = ()


MOVES: dict[str, Move] = {
    # worker
    "start": Move(("queued", "deferred"), "running", when_due=("deferred",)),
    "succeed": Move(("running",), "succeeded"),
    "fail": Move(("running",), "failed"),
    "retry_later": Move(("running",), "deferred"),
    "cancel_running": Move(("running",), "cancelled"),
    # a lost or interrupted attempt (dead worker, shutdown) with tries left
    "requeue": Move(("running",), "queued"),
    # clients, admin
    "cancel": Move(("queued", "deferred", "awaiting_approval"), "cancelled"),
    # a running job stays running; its worker is asked to abort it
    "request_cancel": Move(("running",), "running"),
    "retry": Move(("failed", "cancelled", "rejected"), "queued"),
    "retry_gated": Move(("failed", "cancelled", "rejected"), "awaiting_approval"),
    "approve": Move(("awaiting_approval",), "queued"),
    "reject": Move(("awaiting_approval",), "rejected"),
}

#: The moves that end a running attempt: the worker's batched finish runs any of them.
FINISH_MOVES = ("succeed", "fail", "retry_later", "cancel_running", "requeue")


def _one_source(moves: Iterable[str]) -> str:
    sources = {MOVES[move].sources for move in moves}
    if len(sources) != 1 or len(next(iter(sources))) != 1:
        raise AssertionError(f"the moves {sorted(moves)} must share one source state, not {sorted(sources)}")
    return next(iter(sources))[0]


#: The one state an attempt ends from; `FINISH_SQL` names it for every row of a batch.
FINISH_SOURCE = _one_source(FINISH_MOVES)

_STATES = {state.value for state in JobState}
for _name, _move in MOVES.items():
    # The SQL below writes states as literals: only the model's own names may reach it.
    if not {*_move.sources, _move.target, *_move.when_due} <= _STATES or not set(_move.when_due) <= set(_move.sources):
        raise AssertionError(f"move {_name!r} names a state that is not a JobState or not a source: {_move}")
if set(MOVES["start"].sources) != set(WAITING_STATES):
    raise AssertionError("a start leaves from the waiting states (models.WAITING_STATES) and from no other")


def allows(move: str, state: str, due_at: datetime | None, now: datetime) -> bool:
    """May a job in `state`, due at `due_at`, make `move` at `now`?"""
    spec = MOVES[move]
    if state not in spec.sources:
        return False
    return state not in spec.when_due or (due_at is not None and due_at <= now)


def ends(move: str) -> bool:
    """Does `move` finish the job (its target is a finished state, so `finished_at` is set)?"""
    return MOVES[move].target in FINISHED_STATES


def write_move(
    *,
    job_id: UUID | str,
    move: str,
    source: str,
    attempt: int,
    kind: str,
    now: datetime,
    fields: dict[str, Any],
    actor_id: UUID | None = None,
    detail: dict[str, Any] | None = None,
    attempts_before: int | None = None,
) -> bool:
    """Write one move with the ORM: an UPDATE conditional on the row still being in `source`
    (and, when given, having made `attempts_before` attempts), then its JobEvent. The ORM
    executor's one write; returns False, writing nothing, when the row had moved meanwhile.

    :param attempt: the attempt the event is recorded under.
    """
    spec = MOVES[move]
    if source not in spec.sources:
        raise ValueError(f"{move!r} does not leave from {source!r}")
    rows = Job.objects.filter(pk=job_id, state=source)
    if attempts_before is not None:
        rows = rows.filter(attempts=attempts_before)
    if not rows.update(state=spec.target, **{"updated_at": now, **fields}):
        return False
    JobEvent.objects.create(
        job_id=job_id,
        kind=kind,
        from_state=source,
        to_state=spec.target,
        attempt=attempt,
        actor_id=actor_id,
        detail=detail or {},
        at=now,
    )
    return True


# --- the worker's SQL on PostgreSQL, generated from MOVES ---------------------------------------


def _sql_allows(move: str, alias: str) -> str:
    """`allows` as a SQL condition on the row `alias` of queueapp_job (with `%(now)s` bound)."""
    spec = MOVES[move]
    terms = [
        f"({alias}.state = {_literal(state)} AND {alias}.due_at <= %(now)s)"
        if state in spec.when_due
        else f"{alias}.state = {_literal(state)}"
        for state in spec.sources
    ]
    return terms[0] if len(terms) == 1 else f"({' OR '.join(terms)})"


def _sql_in(column: str, states: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(_literal(state) for state in states)})"


def _literal(state: str) -> str:
    """A state as a SQL literal: safe, as every state in MOVES is a JobState name (checked above)."""
    return "'" + state + "'"


_START = MOVES["start"]

# Start attempts, in one statement for a batch of deliveries: only from queued, or deferred and
# due; never in a paused queue; only for the attempt number ARQ delivered. `cur` locks the rows in
# id order (so two batches cannot deadlock) and reports the state each moved from; the UPDATE
# joins `cur` alone (joining `req` again made PostgreSQL rescan `cur` once per row).
START_SQL = f"""
WITH req AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS r(id, attempt)
), cur AS (
    SELECT j.id, j.state, req.attempt FROM queueapp_job j JOIN req ON req.id = j.id
     ORDER BY j.id FOR NO KEY UPDATE OF j
), moved AS (
    UPDATE queueapp_job j
       SET state = '{_START.target}', attempts = j.attempts + 1, started_at = %(now)s,
           first_started_at = COALESCE(j.first_started_at, %(now)s), worker_id = %(worker)s,
           updated_at = %(now)s
      FROM cur
     WHERE j.id = cur.id AND j.attempts = cur.attempt - 1
       AND {_sql_allows("start", "j")}
       AND NOT EXISTS (
           SELECT 1 FROM queueapp_queuepause p
            WHERE p.queue = j.queue AND (p.workspace_id IS NULL OR p.workspace_id = j.workspace_id))
 RETURNING j.id, cur.state AS from_state, cur.attempt, j.function, j.args, j.timeout_s, j.max_tries,
           j.tries_base, j.retry_backoff_s, j.workspace_id, j.owner_id, j.correlation_id, j.queue, j.due_at,
           j.created_at, j.first_started_at, j.started_at, j.priority
), ev AS (
    INSERT INTO queueapp_jobevent (job_id, kind, from_state, to_state, attempt, detail, at)
    SELECT id, 'started', from_state, '{_START.target}', attempt, %(detail)s, %(now)s FROM moved
)
SELECT * FROM moved
"""

# A delivery that may not start yet (paused queue, not yet due) gives the row back to the relay.
UNMARK_SQL = f"""
UPDATE queueapp_job SET dispatched_at = NULL
 WHERE id = %(id)s AND attempts = %(attempt)s - 1 AND {_sql_in("state", _START.sources)}
RETURNING state
"""

# Finish attempts (any of FINISH_MOVES) in one statement for a batch: each row's `target` is the
# target of its move, and all of them leave from FINISH_SOURCE.
FINISH_SQL = f"""
WITH req AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(tos)s::text[], %(kinds)s::text[],
                         %(results)s::jsonb[], %(errors)s::text[], %(finished)s::timestamptz[],
                         %(dues)s::timestamptz[], %(dispatched)s::timestamptz[], %(details)s::jsonb[])
        AS r(id, attempt, target, kind, result, error, finished_at, due_at, dispatched_at, detail)
), moved AS (
    UPDATE queueapp_job j
       SET state = req.target, result = req.result, error = req.error, finished_at = req.finished_at,
           due_at = COALESCE(req.due_at, j.due_at), dispatched_at = req.dispatched_at, worker_id = '',
           updated_at = %(now)s
      FROM req
     WHERE j.id = req.id AND j.state = '{FINISH_SOURCE}' AND j.attempts = req.attempt
 RETURNING j.id, req.attempt, req.target, req.kind, req.detail
)
INSERT INTO queueapp_jobevent (job_id, kind, from_state, to_state, attempt, detail, at)
SELECT id, kind, '{FINISH_SOURCE}', target, attempt, detail, %(now)s FROM moved
RETURNING job_id
"""
