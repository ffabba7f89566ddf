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

from queueapp import limits, retry
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

#: The ends without a result. On a job someone asked to cancel while the attempt ran
#: (`cancel_requested_at`), such an end is recorded as `cancel_running` instead, as the retry policy
#: decides for an attempt the reaper finds lost (`retry.after_attempt`): the body failed or was
#: interrupted before the abort reached it, and the request must not be lost to a retry. A
#: success stays a success.
CANCEL_OVERRIDES = ("retry_later", "requeue", "fail")


def finish_move(move: str, cancel_requested: bool) -> str:
    """The move an attempt's end is recorded as: `move`, or `cancel_running` when a cancel was
    asked for and `move` ends the attempt without a result (`CANCEL_OVERRIDES`)."""
    return "cancel_running" if cancel_requested and move in CANCEL_OVERRIDES else move


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
    # An attempt that ends gives back the place it held under a limit gate, as FINISH_SQL does.
    gate = rows.values_list("workspace_id", "limit_scope").first() if source == FINISH_SOURCE != spec.target else None
    if not rows.update(state=spec.target, **{"updated_at": now, **fields}):
        return False
    if gate is not None and gate[1] is not None:
        limits.gate_release(gate[0], gate[1])
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
# due; never in a paused queue; only for the attempt number ARQ delivered; never beyond a limit.
# `cur` locks the rows in id order (so two batches cannot deadlock), reports the state each moved
# from and whether it may start (`ok`, on the locked, current row). The UPDATEs join `cur` alone
# (joining `req` again made PostgreSQL rescan `cur` once per row).
#
# Limits (queueapp.limits): a job with a concurrency key, or of a function with a limit (the
# worker passes its registry's limits as `lf`/`lc`/`li`), passes through one gate, a LimitGate row
# per (workspace, key or function). The gates of a batch are locked in id order and each grants
# at once as many starts as its limits allow (`running` below `conc`; one start per `iv` seconds,
# spaced, never a burst); `running` goes back down in FINISH_SQL. The rest are `held`: over a
# concurrency limit, `held_at` marks them for the wake a finish under their gate sends
# (WAKE_SQL), changing no indexed column (a HOT update, no index entry, where its page has room); over a
# rate, the worker pushes them again for `retry_at`. A job with neither key
# nor limited function never reads a gate: its cost is an empty `gated`.
_GRANT = """GREATEST(0, LEAST(l.n, COALESCE(l.conc - g.running, l.n),
    CASE WHEN l.iv IS NULL THEN l.n WHEN g.next_at IS NULL OR g.next_at <= %(now)s THEN 1 ELSE 0 END))"""
_GRANT_NEW = "LEAST(w.n, COALESCE(w.conc, w.n), CASE WHEN w.iv IS NULL THEN w.n ELSE 1 END)"
# Turns under a rate: each job a START holds by a rate gets a turn of its own, after the latest turn
# the gate has given (`booked_at`), so that the held jobs of several batches and workers come back
# one per turn, never together. Turns are a little more than an interval apart (a tenth of it, at
# most 50 ms): a start is late by its claim's latency, and turns exactly an interval apart would
# each find `next_at` pushed just past them by the late start before.
_SPACING = "({l}.iv + LEAST({l}.iv / 10, 0.05))"
#: The gate's latest turn once `{held}` more jobs (those the rate holds) have one each.
_BOOK = """CASE WHEN {held} > 0 THEN GREATEST({next_at}, %(now)s, {old} + make_interval(secs => {sp}))
    + make_interval(secs => {sp} * ({held} - 1)) ELSE {old} END"""
#: How many of a gate's jobs in the batch the rate holds: none when the concurrency limit does.
_RATE_HELD = (
    "CASE WHEN {l}.iv IS NULL OR ({l}.conc IS NOT NULL AND {running} >= {l}.conc) THEN 0 ELSE {l}.n - {grant} END"
)
_BOOK_UPD = _BOOK.format(
    held=_RATE_HELD.format(l="l", running=f"g.running + {_GRANT}", grant=_GRANT),
    next_at=f"CASE WHEN {_GRANT} > 0 THEN %(now)s + make_interval(secs => l.iv) ELSE g.next_at END",
    old="g.booked_at",
    sp=_SPACING.format(l="l"),
)
_BOOK_INS = _BOOK.format(
    held=_RATE_HELD.format(l="w", running=_GRANT_NEW, grant=_GRANT_NEW),
    next_at="%(now)s + make_interval(secs => w.iv)",
    old="NULL::timestamptz",
    sp=_SPACING.format(l="w"),
)
#: The columns START returns for an attempt it started (`store.Started`), then `hold` and `retry_at`.
START_COLUMNS = (
    "id", "from_state", "attempt", "function", "args", "timeout_s", "max_tries", "tries_base",
    "retry_backoff_s", "workspace_id", "owner_id", "correlation_id", "queue", "due_at", "created_at",
    "first_started_at", "started_at", "priority", "limit_scope", "keyed",
)  # fmt: skip
_HELD_COLUMNS = {c: f"h.{c}" for c in ("id", "attempt", "function", "workspace_id", "queue", "priority")}
START_SQL = f"""
WITH req AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS r(id, attempt)
), cur AS (
    SELECT j.id, j.state, req.attempt, j.workspace_id, j.function, j.concurrency_key, j.due_at, j.created_at,
           (j.attempts = req.attempt - 1 AND {_sql_allows("start", "j")}
            AND NOT EXISTS (
                SELECT 1 FROM queueapp_queuepause p
                 WHERE p.queue = j.queue AND (p.workspace_id IS NULL OR p.workspace_id = j.workspace_id))) AS ok
      FROM queueapp_job j JOIN req ON req.id = j.id
     ORDER BY j.id FOR NO KEY UPDATE OF j
), fl AS (
    SELECT * FROM unnest(%(lf)s::text[], %(lc)s::int[], %(li)s::float8[]) AS f(function, conc, iv)
), gated AS (
    SELECT c.id, c.attempt, c.workspace_id AS ws, COALESCE(c.concurrency_key, c.function) AS scope, c.due_at,
           c.created_at, LEAST(fl.conc, p.conc) AS conc, GREATEST(fl.iv, p.iv) AS iv
      FROM cur c LEFT JOIN fl ON fl.function = c.function
      LEFT JOIN LATERAL (
          SELECT min(k.concurrency) AS conc, max(k.rate_interval_s) AS iv FROM queueapp_keylimit k
           WHERE c.concurrency_key LIKE k.like_pattern
             AND (k.workspace_id IS NULL OR k.workspace_id = c.workspace_id)) p ON c.concurrency_key IS NOT NULL
     WHERE c.ok AND (c.concurrency_key IS NOT NULL OR fl.function IS NOT NULL)
), want AS (
    SELECT ws, scope, count(*)::int AS n, min(conc) AS conc, max(iv) AS iv FROM gated GROUP BY ws, scope
), locked AS (
    SELECT g.id, w.n, w.conc, w.iv FROM queueapp_limitgate g JOIN want w ON g.workspace_id = w.ws AND g.scope = w.scope
     ORDER BY g.id FOR NO KEY UPDATE OF g
), upd AS (
    UPDATE queueapp_limitgate g
       SET granted = {_GRANT}, running = g.running + {_GRANT},
           next_at = CASE WHEN l.iv IS NOT NULL AND {_GRANT} > 0 THEN %(now)s + make_interval(secs => l.iv)
                          ELSE g.next_at END,
           booked_at = {_BOOK_UPD}
      FROM locked l
     WHERE g.id = l.id
 RETURNING g.workspace_id AS ws, g.scope, g.granted, g.running, g.next_at, g.booked_at
), ins AS (
    INSERT INTO queueapp_limitgate (workspace_id, scope, running, granted, next_at, booked_at)
    SELECT w.ws, w.scope, {_GRANT_NEW}, {_GRANT_NEW}, %(now)s + make_interval(secs => w.iv), {_BOOK_INS}
      FROM want w
     WHERE NOT EXISTS (SELECT 1 FROM queueapp_limitgate g WHERE g.workspace_id = w.ws AND g.scope = w.scope)
     ORDER BY w.ws, w.scope
        ON CONFLICT (workspace_id, scope) DO NOTHING
 RETURNING workspace_id AS ws, scope, granted, running, next_at, booked_at
), ranked AS (
    SELECT g.id, g.attempt, g.scope, g.conc, g.iv, gr.granted, gr.running, gr.next_at, gr.booked_at,
           count(*) OVER (PARTITION BY g.ws, g.scope) AS n,
           row_number() OVER (PARTITION BY g.ws, g.scope ORDER BY g.due_at, g.created_at, g.id) AS rk
      FROM gated g LEFT JOIN (SELECT * FROM upd UNION ALL SELECT * FROM ins) gr ON gr.ws = g.ws AND gr.scope = g.scope
), moved AS (
    UPDATE queueapp_job j
       SET state = '{_START.target}', attempts = j.attempts + 1, started_at = %(now)s,
           first_started_at = COALESCE(j.first_started_at, %(now)s), worker_id = %(worker)s,
           updated_at = %(now)s, limit_scope = r.scope, held_at = NULL
      FROM cur LEFT JOIN ranked r ON r.id = cur.id
     WHERE j.id = cur.id AND cur.ok AND (r.id IS NULL OR r.rk <= r.granted)
 RETURNING j.id, cur.state AS from_state, cur.attempt, j.function, j.args, j.timeout_s, j.max_tries,
           j.tries_base, j.retry_backoff_s, j.workspace_id, j.owner_id, j.correlation_id, j.queue, j.due_at,
           j.created_at, j.first_started_at, j.started_at, j.priority, j.limit_scope,
           j.concurrency_key IS NOT NULL AS keyed
), held AS (
    UPDATE queueapp_job j
       SET limit_scope = r.scope,
           held_at = CASE WHEN r.granted IS NOT NULL AND r.conc IS NOT NULL AND r.running >= r.conc
                          THEN %(now)s END,
           dispatched_at = CASE WHEN r.granted IS NOT NULL AND r.conc IS NOT NULL AND r.running >= r.conc
                                THEN j.dispatched_at ELSE %(now)s END
      FROM ranked r
     WHERE j.id = r.id AND NOT COALESCE(r.rk <= r.granted, false)
 RETURNING j.id, r.attempt, j.function, j.workspace_id, j.queue, j.priority, j.held_at,
           CASE WHEN j.held_at IS NOT NULL THEN NULL
                WHEN r.granted IS NULL OR r.iv IS NULL THEN %(now)s + interval '50 milliseconds'
                ELSE r.booked_at - make_interval(secs => {_SPACING.format(l="r")} * (r.n - r.rk)) END
               AS retry_at
), ev AS (
    INSERT INTO queueapp_jobevent (job_id, kind, from_state, to_state, attempt, detail, at)
    SELECT id, 'started', from_state, '{_START.target}', attempt, %(detail)s, %(now)s FROM moved
)
SELECT *, NULL::text AS hold, NULL::timestamptz AS retry_at FROM moved
UNION ALL
SELECT {", ".join(_HELD_COLUMNS.get(c, "NULL") for c in START_COLUMNS)},
       CASE WHEN h.held_at IS NULL THEN 'rate' ELSE 'concurrency' END, h.retry_at
  FROM held h
"""

# A finish under a gate frees a place: wake as many held jobs of that gate (the earliest due
# first, found through `job_key_waiting`, or `job_live` for a function's keyless jobs) for the
# worker to push (no indexed column again; should the push fail, the relay's net finds the row). Run
# after FINISH_SQL committed, in a statement of its own, so that it sees every hold committed
# before the gate's count went down (a hold after it found the place free).
WAKE_SQL = """
WITH f AS (
    SELECT * FROM unnest(%(ws)s::uuid[], %(scopes)s::text[], %(n)s::int[], %(keyed)s::bool[]) AS f(ws, scope, n, keyed)
), w AS (
    SELECT h.id FROM f CROSS JOIN LATERAL (
        SELECT j.id FROM queueapp_job j
         WHERE f.keyed AND j.workspace_id = f.ws AND j.concurrency_key = f.scope
           AND j.state IN ('queued', 'deferred') AND j.held_at IS NOT NULL
         ORDER BY j.due_at LIMIT f.n FOR NO KEY UPDATE SKIP LOCKED) h
    UNION ALL
    SELECT h.id FROM f CROSS JOIN LATERAL (
        SELECT j.id FROM queueapp_job j
         WHERE NOT f.keyed AND j.workspace_id = f.ws AND j.function = f.scope AND j.concurrency_key IS NULL
           AND j.state IN ('queued', 'deferred') AND j.held_at IS NOT NULL
         ORDER BY j.due_at LIMIT f.n FOR NO KEY UPDATE SKIP LOCKED) h
)
UPDATE queueapp_job j SET held_at = NULL
 WHERE j.id = ANY(ARRAY(SELECT id FROM w)) AND j.state IN ('queued', 'deferred')
RETURNING j.id, j.attempts, j.queue, j.due_at, j.function, j.workspace_id, j.priority
"""

# A job held by a concurrency limit that a finish woke before its holder took it out of ARQ: the
# wake's push was refused (ARQ still held the attempt), so the holder pushes it (`Runtime._held`).
# For a batch of such holds, in one statement.
WOKEN_SQL = """
SELECT j.id, j.attempts, j.queue, j.due_at, j.function, j.workspace_id, j.priority
  FROM queueapp_job j JOIN unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS r(id, attempt) ON j.id = r.id
 WHERE j.attempts = r.attempt - 1 AND j.state IN ('queued', 'deferred') AND j.held_at IS NULL
"""

# A delivery that may not start yet (paused queue, not yet due) gives the row back to the relay.
UNMARK_SQL = f"""
UPDATE queueapp_job SET dispatched_at = NULL
 WHERE id = %(id)s AND attempts = %(attempt)s - 1 AND {_sql_in("state", _START.sources)}
RETURNING state
"""

# Finish attempts (any of FINISH_MOVES) in one statement for a batch: each row's `target` is the
# target of its move, and all of them leave from FINISH_SOURCE. An end without a result, on a job
# whose cancel was asked for meanwhile, is its `cancel_running` instead (`finish_move`):
# `_OVERRIDE` below, read on the locked, current row. A row that started under a limit gate
# (`limit_scope`) gives its place back in the same transaction (the gates locked in id order, as
# START locks them), so a gate's count is always its running rows: the reaper's recount
# (`limits.recount_gates`) can never race an end whose place is still to be given back. It returns
# each moved job with the state it moved to.
_CANCEL = MOVES["cancel_running"]
_OVERRIDE = (
    f"(j.cancel_requested_at IS NOT NULL AND {_sql_in('req.target', (MOVES[m].target for m in CANCEL_OVERRIDES))})"
)
FINISH_SQL = f"""
WITH req AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(tos)s::text[], %(kinds)s::text[],
                         %(results)s::jsonb[], %(errors)s::text[], %(ended)s::timestamptz[],
                         %(dues)s::timestamptz[], %(dispatched)s::timestamptz[], %(details)s::jsonb[])
        AS r(id, attempt, target, kind, result, error, ended_at, due_at, dispatched_at, detail)
), moved AS (
    UPDATE queueapp_job j
       SET state = CASE WHEN {_OVERRIDE} THEN '{_CANCEL.target}' ELSE req.target END,
           result = req.result, error = req.error,
           finished_at = CASE WHEN {_OVERRIDE} OR {_sql_in("req.target", FINISHED_STATES)} THEN req.ended_at END,
           due_at = CASE WHEN {_OVERRIDE} THEN j.due_at ELSE COALESCE(req.due_at, j.due_at) END,
           dispatched_at = CASE WHEN {_OVERRIDE} THEN NULL ELSE req.dispatched_at END,
           worker_id = '', updated_at = %(now)s
      FROM req
     WHERE j.id = req.id AND j.state = '{FINISH_SOURCE}' AND j.attempts = req.attempt
 RETURNING j.id, req.attempt, j.state AS target,
           CASE WHEN j.state = req.target THEN req.kind ELSE '{retry.CANCEL_KIND}' END AS kind,
           CASE WHEN j.state = req.target THEN req.detail ELSE req.detail - 'retry_in_s' END AS detail,
           j.workspace_id, j.limit_scope
), freeing AS (
    SELECT g.id, f.n FROM queueapp_limitgate g
      JOIN (SELECT workspace_id, limit_scope, count(*)::int AS n FROM moved WHERE limit_scope IS NOT NULL
             GROUP BY workspace_id, limit_scope) f ON g.workspace_id = f.workspace_id AND g.scope = f.limit_scope
     ORDER BY g.id FOR NO KEY UPDATE OF g
), freed AS (
    UPDATE queueapp_limitgate g SET running = GREATEST(g.running - f.n, 0) FROM freeing f WHERE g.id = f.id
)
INSERT INTO queueapp_jobevent (job_id, kind, from_state, to_state, attempt, detail, at)
SELECT id, kind, '{FINISH_SOURCE}', target, attempt, detail, %(now)s FROM moved
RETURNING job_id, to_state
"""
