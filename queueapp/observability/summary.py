"""The observability summary: per queue and function, current counts and the 5 min / 1 h / 24 h windows.

Everything here is aggregate SQL over indexed columns: no loop over job rows in Python. The
windowed numbers come from one scan of the jobs that finished in the last 24 h (plus the running
ones) through `job_ws_finished`/`job_finished`; current counts come from the partial index
`job_live` over the few rows still waiting or running.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, TypedDict, get_args, overload

from django.db import connection
from django.db.models import Count, Min, Q

from hq.sqldialect import Percentiles, as_percentiles, cursor, epoch_ms, greatest, percentiles_sql, sql_param, subquery
from queueapp.models import HITLRequest, HITLState, Job, JobState, QueuePause
from queueapp.observability.registry import Scope, sections

#: The summary's windows: name and length in seconds.
WINDOWS: tuple[tuple[str, int], ...] = (("5m", 300), ("1h", 3600), ("24h", 86400))
#: The states a job waits or runs in (`JobState` values), spelled as the keys of `LiveCounts`.
LiveState = Literal["queued", "deferred", "awaiting_approval", "running"]
LIVE_STATES: tuple[LiveState, ...] = get_args(LiveState)
OUTCOMES: tuple[str, ...] = tuple(
    s.value for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED)
)


class JobWindow(TypedDict):
    succeeded: int
    failed: int
    cancelled: int
    rejected: int
    throughput_per_min: float
    failure_rate: float | None
    wait_ms: Percentiles
    run_ms: Percentiles


class LiveCounts(TypedDict):
    queued: int
    deferred: int
    awaiting_approval: int
    running: int


#: A `JobWindow` per window name (`WINDOWS`).
Windows = dict[str, JobWindow]


class PriorityCounts(TypedDict):
    """Jobs waiting to start by priority: above 0, 0 (the default), below 0."""

    high: int
    normal: int
    low: int


class FunctionSummary(TypedDict):
    function: str
    states: LiveCounts
    waiting: int
    waiting_by_priority: PriorityCounts
    oldest_waiting_age_ms: int | None
    windows: Windows


class QueueSummary(TypedDict):
    queue: str
    paused: bool
    states: LiveCounts
    waiting: int
    waiting_by_priority: PriorityCounts
    oldest_waiting_age_ms: int | None
    windows: Windows
    functions: list[FunctionSummary]


def wait_ms_sql() -> str:
    """SQL for a job's wait: start minus due, in milliseconds, never below 0 (`j` is the job)."""
    return greatest(epoch_ms("j.started_at", "j.due_at"), "0")


@overload
def age_ms(now: datetime, then: datetime) -> int: ...
@overload
def age_ms(now: datetime, then: datetime | None) -> int | None: ...
def age_ms(now: datetime, then: datetime | None) -> int | None:
    """Milliseconds from `then` to `now`, never below 0 (None when there is no `then`)."""
    return None if then is None else max(int((now - then).total_seconds() * 1000), 0)


# --- current counts ------------------------------------------------------------------------------------


def live_counts(scope: Scope, by: tuple[str, ...] = ("queue", "function")) -> list[dict[str, Any]]:
    """Per value of the `by` columns (queue and function): jobs in each waiting or running state,
    those waiting (queued, or deferred and due), and the oldest waiting due time."""
    waiting = Q(state=JobState.QUEUED) | Q(state=JobState.DEFERRED, due_at__lte=scope.now)
    return list(
        scope.filter(Job.objects.filter(state__in=LIVE_STATES))
        .values(*by)
        .annotate(
            queued=Count("id", filter=Q(state=JobState.QUEUED)),
            deferred=Count("id", filter=Q(state=JobState.DEFERRED)),
            awaiting_approval=Count("id", filter=Q(state=JobState.AWAITING_APPROVAL)),
            running=Count("id", filter=Q(state=JobState.RUNNING)),
            waiting=Count("id", filter=waiting),
            waiting_high=Count("id", filter=waiting & Q(priority__gt=0)),
            waiting_low=Count("id", filter=waiting & Q(priority__lt=0)),
            oldest_waiting_due=Min("due_at", filter=waiting),
        )
        .order_by()
    )


def zero_live() -> LiveCounts:
    return {"queued": 0, "deferred": 0, "awaiting_approval": 0, "running": 0}


def zero_priorities() -> PriorityCounts:
    return {"high": 0, "normal": 0, "low": 0}


def hitl_summary(scope: Scope) -> dict[str, Any]:
    """Pending HITL requests and the age of the oldest."""
    row = scope.filter(HITLRequest.objects.filter(state=HITLState.PENDING)).aggregate(
        pending=Count("id"), oldest=Min("created_at")
    )
    return {"pending": row["pending"], "oldest_pending_age_ms": age_ms(scope.now, row["oldest"])}


def _paused_queues(scope: Scope) -> set[str]:
    pauses = QueuePause.objects.all()
    if scope.workspace_ids is not None:
        pauses = pauses.filter(Q(workspace__isnull=True) | Q(workspace_id__in=scope.workspace_ids))
    return set(pauses.values_list("queue", flat=True))


# --- windows ---------------------------------------------------------------------------------------------


def _job_windows(scope: Scope) -> dict[tuple[str, str | None], Windows]:
    """Per (queue, function) and per (queue, None): finished counts and wait/run percentiles per window.

    One pass over the jobs that finished in the last 24 h or are running. Wait is the latest
    attempt's start minus its due time (submit, defer or retry time); run is start to finish of
    succeeded and failed attempts.
    """
    rows = Job.objects.filter(Q(finished_at__gte=scope.since(86400)) | Q(state=JobState.RUNNING))
    inner, inner_params = subquery(
        scope.filter(rows), "queue", "function", "state", "due_at", "started_at", "finished_at"
    )
    wait = wait_ms_sql()
    run = epoch_ms("j.finished_at", "j.started_at")
    columns, params = [], []
    for name, seconds in WINDOWS:
        since = sql_param(scope.since(seconds))
        for state in OUTCOMES:
            columns.append(f"COUNT(*) FILTER (WHERE j.finished_at >= %s AND j.state = '{state}') AS {state}_{name}")
            params.append(since)
        columns.append(f"{percentiles_sql(wait, 'j.started_at >= %s')} AS wait_{name}")
        params.append(since)
        ran = "j.finished_at >= %s AND j.state IN ('succeeded', 'failed') AND j.started_at IS NOT NULL"
        columns.append(f"{percentiles_sql(run, ran)} AS run_{name}")
        params.append(since)
    select = ", ".join(columns)
    if connection.vendor == "postgresql":
        queries = [
            f'SELECT j.queue, j."function", GROUPING(j."function") AS is_total, {select} FROM ({inner}) j '
            f'GROUP BY GROUPING SETS ((j.queue, j."function"), (j.queue))'
        ]
    else:
        queries = [
            f'SELECT j.queue, j."function", 0 AS is_total, {select} FROM ({inner}) j GROUP BY j.queue, j."function"',
            f"SELECT j.queue, NULL, 1 AS is_total, {select} FROM ({inner}) j GROUP BY j.queue",
        ]
    out: dict[tuple[str, str | None], Windows] = {}
    with cursor() as cur:
        for sql in queries:
            cur.execute(sql, (*params, *inner_params))
            names = [c[0] for c in cur.description]
            for raw in cur.fetchall():
                row = dict(zip(names, raw, strict=True))
                key = (row["queue"], None if row["is_total"] else row["function"])
                out[key] = {name: _window(row, name, seconds) for name, seconds in WINDOWS}
    return out


def _window(row: dict[str, Any], name: str, seconds: int) -> JobWindow:
    def count(state: str) -> int:
        return int(row[f"{state}_{name}"] or 0)

    succeeded, failed = count("succeeded"), count("failed")
    ran = succeeded + failed
    return {
        "succeeded": succeeded,
        "failed": failed,
        "cancelled": count("cancelled"),
        "rejected": count("rejected"),
        "throughput_per_min": round(ran / (seconds / 60), 3),
        "failure_rate": round(failed / ran, 4) if ran else None,
        "wait_ms": as_percentiles(row[f"wait_{name}"]),
        "run_ms": as_percentiles(row[f"run_{name}"]),
    }


def _empty_windows() -> Windows:
    empty: Percentiles = {"p50": None, "p95": None, "p99": None}
    return {
        name: {
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
            "rejected": 0,
            "throughput_per_min": 0.0,
            "failure_rate": None,
            "wait_ms": empty.copy(),
            "run_ms": empty.copy(),
        }
        for name, _ in WINDOWS
    }


# --- the summary -------------------------------------------------------------------------------------------


def queues_summary(scope: Scope) -> list[QueueSummary]:
    """Per queue, and per function within it: current counts, oldest waiting age and the windows."""
    windows = _job_windows(scope)
    live = live_counts(scope)
    paused = _paused_queues(scope)
    names = sorted({q for q, _ in windows} | {r["queue"] for r in live} | paused)
    queues: dict[str, QueueSummary] = {
        name: {
            "queue": name,
            "paused": name in paused,
            "states": zero_live(),
            "waiting": 0,
            "waiting_by_priority": zero_priorities(),
            "oldest_waiting_age_ms": None,
            "windows": windows.get((name, None)) or _empty_windows(),
            "functions": [],
        }
        for name in names
    }
    # queue -> function -> its entry; listed by function name in each queue's `functions` at the end.
    functions: dict[str, dict[str, FunctionSummary]] = {name: {} for name in names}
    for row in live:
        entry = _function(functions[row["queue"]], row["queue"], row["function"], windows)
        oldest = row["oldest_waiting_due"]
        queue = queues[row["queue"]]
        for s in LIVE_STATES:
            entry["states"][s] = row[s]
            queue["states"][s] += row[s]
        entry["waiting"] = row["waiting"]
        high, low = row["waiting_high"], row["waiting_low"]
        entry["waiting_by_priority"] = {"high": high, "normal": row["waiting"] - high - low, "low": low}
        totals = queue["waiting_by_priority"]
        totals["high"], totals["normal"], totals["low"] = (
            totals["high"] + high,
            totals["normal"] + row["waiting"] - high - low,
            totals["low"] + low,
        )
        entry["oldest_waiting_age_ms"] = age_ms(scope.now, oldest)
        queue["waiting"] += row["waiting"]
        if oldest is not None:
            age = age_ms(scope.now, oldest)
            queue["oldest_waiting_age_ms"] = max(queue["oldest_waiting_age_ms"] or 0, age)
    for name, function in windows:
        if function is not None:
            _function(functions[name], name, function, windows)
    for name, queue in queues.items():
        queue["functions"] = [functions[name][f] for f in sorted(functions[name])]
    return list(queues.values())


def _function(
    entries: dict[str, FunctionSummary], queue: str, function: str, windows: dict[tuple[str, str | None], Windows]
) -> FunctionSummary:
    """The entry of `function` in `queue` (`entries`), added with nothing counted when it is new."""
    return entries.setdefault(
        function,
        {
            "function": function,
            "states": zero_live(),
            "waiting": 0,
            "waiting_by_priority": zero_priorities(),
            "oldest_waiting_age_ms": None,
            "windows": windows.get((queue, function)) or _empty_windows(),
        },
    )


def summary(*, workspace_ids: Iterable[Any] | None, now: datetime | None = None) -> dict[str, Any]:
    """The observability summary of some workspaces (None: all of them, for superusers)."""
    scope = Scope.of(workspace_ids, now)
    out: dict[str, Any] = {
        "generated_at": scope.now,
        "windows": [name for name, _ in WINDOWS],
        "queues": queues_summary(scope),
        "hitl": hitl_summary(scope),
    }
    for name, section in sections().items():
        out[name] = section(scope)
    return out
