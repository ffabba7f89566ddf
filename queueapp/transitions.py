"""The table of allowed job state moves, and the SQL the worker's hot path runs for them.

Two executors run these moves: the ORM (`queueapp.services.job_transition`, used by requests, the
admin and the side tasks) and the worker's psycopg path (`queueapp.store.PgStore`), which runs the
texts below because the ORM costs about 5 ms of worker CPU per job (through sync_to_async on
2 cores: 0.15x bare ARQ's throughput, against about 0.5x with one psycopg statement per move).
Every move is a conditional UPDATE on the current state plus a JobEvent row.
"""

from __future__ import annotations

from typing import NamedTuple


class Move(NamedTuple):
    sources: tuple[str, ...]
    target: str


MOVES: dict[str, Move] = {
    # worker
    "start": Move(("queued", "deferred"), "running"),
    "succeed": Move(("running",), "succeeded"),
    "fail": Move(("running",), "failed"),
    "retry_later": Move(("running",), "deferred"),
    "cancel_running": Move(("running",), "cancelled"),
    # a lost or interrupted attempt (dead worker, shutdown) with tries left
    "requeue": Move(("running",), "queued"),
    # clients, admin
    "cancel": Move(("queued", "deferred", "awaiting_approval"), "cancelled"),
    "retry": Move(("failed", "cancelled", "rejected"), "queued"),
    "retry_gated": Move(("failed", "cancelled", "rejected"), "awaiting_approval"),
    "approve": Move(("awaiting_approval",), "queued"),
    "reject": Move(("awaiting_approval",), "rejected"),
}


def tries_left(attempts: int, tries_base: int, max_tries: int) -> bool:
    """May a job that has made `attempts` attempts (`tries_base` of them before this run) try again?"""
    return attempts - tries_base < max_tries


# Start attempts, in one statement for a batch of deliveries: only from queued, or deferred and
# due; never in a paused queue; only for the attempt number ARQ delivered. `cur` locks the rows in
# id order (so two batches cannot deadlock) and reports the state each moved from.
START_SQL = """
WITH req AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS r(id, attempt)
), cur AS (
    SELECT j.id, j.state FROM queueapp_job j JOIN req ON req.id = j.id ORDER BY j.id FOR NO KEY UPDATE OF j
), moved AS (
    UPDATE queueapp_job j
       SET state = 'running', attempts = j.attempts + 1, started_at = %(now)s,
           first_started_at = COALESCE(j.first_started_at, %(now)s), worker_id = %(worker)s,
           updated_at = %(now)s
      FROM cur JOIN req ON req.id = cur.id
     WHERE j.id = cur.id AND j.attempts = req.attempt - 1
       AND (j.state = 'queued' OR (j.state = 'deferred' AND j.due_at <= %(now)s))
       AND NOT EXISTS (
           SELECT 1 FROM queueapp_queuepause p
            WHERE p.queue = j.queue AND (p.workspace_id IS NULL OR p.workspace_id = j.workspace_id))
 RETURNING j.id, cur.state AS from_state, req.attempt, j.function, j.args, j.timeout_s, j.max_tries,
           j.tries_base, j.retry_backoff_s, j.workspace_id, j.owner_id, j.correlation_id, j.queue, j.due_at
), ev AS (
    INSERT INTO queueapp_jobevent (job_id, kind, from_state, to_state, attempt, detail, at)
    SELECT id, 'started', from_state, 'running', attempt, %(detail)s, %(now)s FROM moved
)
SELECT * FROM moved
"""

# A delivery that may not start yet (paused queue, not yet due) gives the row back to the relay.
UNMARK_SQL = """
UPDATE queueapp_job SET dispatched_at = NULL
 WHERE id = %(id)s AND attempts = %(attempt)s - 1 AND state IN ('queued', 'deferred')
RETURNING state
"""

# Finish attempts (succeed, fail, retry_later, cancel_running, requeue) in one statement for a
# batch: each row's `to` is the target of its move, whose only source is `running`.
FINISH_SQL = """
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
     WHERE j.id = req.id AND j.state = 'running' AND j.attempts = req.attempt
 RETURNING j.id, req.attempt, req.target, req.kind, req.detail
)
INSERT INTO queueapp_jobevent (job_id, kind, from_state, to_state, attempt, detail, at)
SELECT id, kind, 'running', target, attempt, detail, %(now)s FROM moved
RETURNING job_id
"""
