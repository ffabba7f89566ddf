"""Concurrency and rate limits: their rules (rates, key patterns), the admin's changes to them, and
the reaper's safety nets. The limits themselves are enforced where an attempt starts, by the START
statement (`queueapp.transitions.START_SQL`) against one `LimitGate` row per key.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Q

from hq import clock
from hq.errors import ValidationFailed
from queueapp.models import WAITING_STATES, Job, JobState, KeyLimit, LimitGate

#: A rate: N starts per [multiplier] unit, e.g. "60/min", "5/10s", "1000/day".
RATE = re.compile(r"\A\s*([0-9]{1,9})\s*/\s*([0-9]{0,6})\s*(s|sec|min|h|hour|d|day)\s*\Z")
RATE_RULE = (
    "N/period: a positive count per s, min, h or day, optionally a multiple (60/min, 5/10s), the period at most a day."
)
#: The longest period a rate may name: a day. A longer one put the turn of a job held for its rate
#: beyond what a timestamp holds (1/999999day), and broke the START batch that held it.
MAX_PERIOD_S = 86400
_UNIT_S = {"s": 1, "sec": 1, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def rate_interval(rate: str) -> float:
    """Seconds between two starts under `rate` ("60/min" -> 1.0); ValueError when malformed."""
    match = RATE.fullmatch(rate) if isinstance(rate, str) else None
    if match is None:
        raise ValueError(f"Invalid rate {rate!r}. {RATE_RULE}")
    count, mult, unit = int(match[1]), int(match[2] or 1), match[3]
    if count < 1 or mult < 1:
        raise ValueError(f"Invalid rate {rate!r}: the count and the period must be positive. {RATE_RULE}")
    if mult * _UNIT_S[unit] > MAX_PERIOD_S:
        raise ValueError(f"Invalid rate {rate!r}: the period is longer than a day. {RATE_RULE}")
    return mult * _UNIT_S[unit] / count


def like_pattern(pattern: str) -> str:
    """A key pattern (`*` any characters, all else literal) as a SQL LIKE pattern (escape `\\`)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def key_limit_clean(limit: KeyLimit) -> None:
    """Check a KeyLimit and derive its SQL forms; ValidationFailed names every field refused."""
    from queueapp.models import validate_concurrency_key

    problems: dict[str, list[str]] = {}
    try:
        validate_concurrency_key(limit.pattern, "pattern")
    except ValidationFailed as exc:
        problems.update(exc.fields)
    if limit.concurrency is not None and (isinstance(limit.concurrency, bool) or limit.concurrency < 1):
        problems["concurrency"] = ["At least 1, or empty for no concurrency limit."]
    interval = None
    if limit.rate:
        try:
            interval = rate_interval(limit.rate)
        except ValueError:
            problems["rate"] = [RATE_RULE]
    if limit.concurrency is None and not limit.rate:
        problems["concurrency"] = ["Give a concurrency, a rate or both."]
    if problems:
        raise ValidationFailed(f"Invalid limit: {', '.join(problems)}.", fields=problems)
    limit.like_pattern = like_pattern(limit.pattern)
    limit.rate_interval_s = interval


def key_limit_save(limit: KeyLimit) -> KeyLimit:
    """Validate and save a limit, then wake the jobs it may hold or have held: waiting jobs start
    against the new limit without any restart (a limit is read by every START)."""
    key_limit_clean(limit)
    limit.updated_at = clock.now()
    with transaction.atomic():
        before = (
            KeyLimit.objects.filter(pk=limit.pk).values_list("pattern", "workspace_id").first() if limit.pk else None
        )
        limit.save()
        changed = [(limit.workspace_id, limit.pattern)] + ([(before[1], before[0])] if before else [])
        release_held(changed)
    return limit


def key_limit_delete(limit: KeyLimit) -> None:
    with transaction.atomic():
        scope = (limit.workspace_id, limit.pattern)
        limit.delete()
        release_held([scope])


def release_held(limits_changed: list[tuple[Any, str]]) -> int:
    """Hand the held jobs of the changed limits back to the relay: those whose key matches a limit's
    pattern, in its workspace (every workspace for a limit without one); return how many. One
    workspace's change never touches another's held jobs."""
    match = Q()
    for workspace_id, pattern in limits_changed:
        one = Q(concurrency_key__regex=pattern_regex(pattern))
        match |= one if workspace_id is None else one & Q(workspace_id=workspace_id)
    if not match:
        return 0
    rows = Job.objects.filter(match, held_at__isnull=False, state__in=WAITING_STATES)
    count = rows.update(held_at=None, dispatched_at=None)
    if count:
        transaction.on_commit(_nudge_relay, robust=True)
    return count


def gate_release(workspace_id: Any, scope: str) -> None:
    """An attempt that started under the gate `scope` ended (the ORM's moves, `write_move`): give
    its place back, then, once committed, wake the gate's earliest held job."""
    LimitGate.objects.filter(workspace_id=workspace_id, scope=scope, running__gt=0).update(running=F("running") - 1)

    def wake() -> None:  # a function, not a partial: a robust hook's failure is logged by its __qualname__
        wake_held(workspace_id, scope, 1)

    transaction.on_commit(wake, robust=True)


def wake_held(workspace_id: Any, scope: str, n: int) -> int:
    """Hand the gate's `n` earliest held jobs back to the relay (WAKE_SQL's ORM twin)."""
    first = (
        Job.objects.filter(workspace_id=workspace_id, limit_scope=scope, held_at__isnull=False)
        .order_by("due_at")
        .values_list("pk", flat=True)[:n]
    )
    count = Job.objects.filter(pk__in=list(first), state__in=WAITING_STATES).update(held_at=None, dispatched_at=None)
    if count:
        _nudge_relay()
    return count


def _nudge_relay() -> None:
    import redis

    from queueapp import transport

    try:
        transport.nudge("*limits*")
    except redis.RedisError:
        pass


def wake_stale_held(*, older_than_s: float) -> int:
    """The reaper's net for held jobs nothing woke: a finish whose wake never ran (its worker died
    between the two), or a limit raised in the code (a deploy: no finish wakes the new places).
    Each gate with jobs held longer than `older_than_s` hands back to the relay as many of them,
    earliest due first, as its limit now leaves free (the registered functions' limits of this
    process and the key limits, as START reads them; all of them where no concurrency limit is
    left), and at least its oldest one. Should its gate be full after all, START holds them again.

    `held_at` is not indexed, on purpose: an index on it would make every hold and wake a non-HOT
    update (an entry in each of the job table's indexes). This read goes through the waiting rows'
    partial index (`job_waiting_due`), never the finished history (EXPLAIN: 20,000 waiting among
    400,000 rows, 7 ms)."""
    cutoff = clock.now() - timedelta(seconds=older_than_s)
    if connection.vendor != "postgresql":
        return 0
    from queueapp.store import limit_params

    fns = limit_params()
    with connection.cursor() as cur:
        cur.execute(
            """
            WITH fl AS (
                SELECT * FROM unnest(%(lf)s::text[], %(lc)s::int[]) AS f(function, conc)
            ), h AS (
                SELECT j.id, j.held_at, LEAST(fl.conc, p.conc) AS conc, COALESCE(g.running, 0) AS running,
                       row_number() OVER (PARTITION BY j.workspace_id, j.limit_scope ORDER BY j.due_at, j.held_at)
                           AS rk,
                       min(j.held_at) OVER (PARTITION BY j.workspace_id, j.limit_scope) AS oldest
                  FROM queueapp_job j
                  LEFT JOIN fl ON fl.function = j.function
                  LEFT JOIN LATERAL (
                      SELECT min(k.concurrency) AS conc FROM queueapp_keylimit k
                       WHERE j.concurrency_key LIKE k.like_pattern
                         AND (k.workspace_id IS NULL OR k.workspace_id = j.workspace_id)) p
                    ON j.concurrency_key IS NOT NULL
                  LEFT JOIN queueapp_limitgate g ON g.workspace_id = j.workspace_id AND g.scope = j.limit_scope
                 WHERE j.held_at IS NOT NULL AND j.state IN ('queued', 'deferred')
            )
            UPDATE queueapp_job j SET held_at = NULL, dispatched_at = NULL
              FROM h
             WHERE j.id = h.id AND j.held_at IS NOT NULL AND j.state IN ('queued', 'deferred')
               AND h.oldest < %(cutoff)s AND (h.conc IS NULL OR h.rk <= GREATEST(h.conc - h.running, 1))
            """,
            {"cutoff": cutoff, "lf": fns["lf"], "lc": fns["lc"]},
        )
        return int(cur.rowcount)


def recount_gates() -> int:
    """Set each gate's `running` to the jobs running under it; return how many were wrong.

    The START and FINISH statements keep the counts exact; a job deleted while running (its
    workspace deleted) would not. The gates are locked first (in id order, as every START locks
    them), so the count, read by the next statement, sees every start and finish that committed
    before and none that could slip between.
    """
    if connection.vendor != "postgresql":
        return 0
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            """
            SELECT g.id FROM queueapp_limitgate g
             WHERE g.running <> 0 OR EXISTS (
                   SELECT 1 FROM queueapp_job j WHERE j.state = 'running' AND j.workspace_id = g.workspace_id
                      AND j.limit_scope = g.scope)
             ORDER BY g.id FOR NO KEY UPDATE
            """
        )
        ids = [row[0] for row in cur.fetchall()]
        if not ids:
            return 0
        cur.execute(
            """
            UPDATE queueapp_limitgate g SET running = c.n
              FROM (SELECT g2.id, (SELECT count(*) FROM queueapp_job j WHERE j.state = 'running'
                                     AND j.workspace_id = g2.workspace_id AND j.limit_scope = g2.scope) AS n
                      FROM queueapp_limitgate g2 WHERE g2.id = ANY(%s)) c
             WHERE g.id = c.id AND g.running <> c.n
            """,
            [ids],
        )
        return int(cur.rowcount)


#: How long a gate stays once idle (nothing running, its rate's turn past, no job waiting under it).
GATE_IDLE_S = 300.0


def prune_gates(*, idle_s: float = GATE_IDLE_S, batch: int = 1000) -> int:
    """Delete up to `batch` idle gates (one is made per key ever used); return how many.

    Idle: nothing running under it, its rate's next turn and the latest turn it gave a held job
    (`booked_at`) `idle_s` past, and no job of its workspace waiting under its scope (a key, or a
    function's keyless jobs). Safe beside START: the DELETE takes each gate's lock and re-checks
    `running` and the turns on the latest row, so a gate a
    START is granting from is kept; a START that finds its gate deleted under it grants nothing
    and pushes its jobs again 50 ms later (as when two STARTs create one gate), when the next
    START makes the gate anew. Rate state is never lost: a gate goes only once its turn is past.
    """
    if connection.vendor != "postgresql":
        return 0
    cutoff = clock.now() - timedelta(seconds=idle_s)
    with connection.cursor() as cur:
        cur.execute(
            """
            DELETE FROM queueapp_limitgate g
             WHERE g.id IN (
                   SELECT c.id FROM queueapp_limitgate c
                    WHERE c.running = 0 AND (c.next_at IS NULL OR c.next_at < %(cutoff)s)
                      AND (c.booked_at IS NULL OR c.booked_at < %(cutoff)s)
                      AND NOT EXISTS (
                          SELECT 1 FROM queueapp_job j
                           WHERE j.workspace_id = c.workspace_id AND j.concurrency_key = c.scope
                             AND j.state IN ('queued', 'deferred'))
                      AND NOT EXISTS (
                          SELECT 1 FROM queueapp_job j
                           WHERE j.workspace_id = c.workspace_id AND j.function = c.scope
                             AND j.concurrency_key IS NULL AND j.state IN ('queued', 'deferred'))
                    ORDER BY c.id LIMIT %(batch)s)
               AND g.running = 0 AND (g.next_at IS NULL OR g.next_at < %(cutoff)s)
               AND (g.booked_at IS NULL OR g.booked_at < %(cutoff)s)
            """,
            {"cutoff": cutoff, "batch": batch},
        )
        return int(cur.rowcount)


def key_depth(*, workspace_id: Any) -> list[dict[str, Any]]:
    """Per concurrency key of the workspace's waiting or running jobs: waiting, held back by a
    limit, running, and the limit in force (the smallest matching KeyLimit's)."""
    rows = (
        Job.objects.filter(
            workspace_id=workspace_id,
            concurrency_key__isnull=False,
            state__in=[JobState.QUEUED, JobState.DEFERRED, JobState.RUNNING],
        )
        .values("concurrency_key")
        .annotate(
            waiting=Count("id", filter=Q(state__in=WAITING_STATES)),
            held=Count("id", filter=Q(state__in=WAITING_STATES, held_at__isnull=False)),
            running=Count("id", filter=Q(state=JobState.RUNNING)),
        )
        .order_by("concurrency_key")[:1000]
    )
    limits = list(KeyLimit.objects.filter(Q(workspace_id=workspace_id) | Q(workspace__isnull=True)))
    out = []
    for row in rows:
        key = row.pop("concurrency_key")
        matching = [limit for limit in limits if _matches(limit.pattern, key)]
        concurrency = [limit.concurrency for limit in matching if limit.concurrency]
        rates = [limit for limit in matching if limit.rate_interval_s]
        slowest = max(rates, key=lambda limit: limit.rate_interval_s or 0.0) if rates else None
        out.append(
            {
                "concurrency_key": key,
                **row,
                "concurrency_limit": min(concurrency) if concurrency else None,
                "rate_limit": slowest.rate if slowest else None,
            }
        )
    return out


def pattern_regex(pattern: str) -> str:
    """A key pattern as an anchored regular expression (Python's and PostgreSQL's alike)."""
    return "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


def _matches(pattern: str, key: str) -> bool:
    return re.fullmatch(pattern_regex(pattern), key, re.DOTALL) is not None
