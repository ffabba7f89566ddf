"""Reads for the ops views: the observability summary, dashboard series and /metrics gauges.

Everything here is aggregate SQL over indexed columns: no loop over job rows in Python. The
windowed numbers (5 min, 1 h, 24 h) come from one scan of the jobs that finished in the last 24 h
(plus the running ones) through `job_ws_finished`/`job_finished`; current counts come from the
partial index `job_live` over the few rows still waiting or running.

`queueapp` knows nothing of schedules: other apps add their part through the registries here
(`summary_section`, `dashboard_panels`) from their own `observability` module, which is imported
on first use, as the admin imports `admin` modules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.db import connection
from django.db.models import Count, Min, Q, QuerySet

from hq import clock, metrics
from queueapp.models import HITLRequest, HITLState, Job, JobState, QueuePause

#: The summary's windows: name and length in seconds.
WINDOWS: tuple[tuple[str, int], ...] = (("5m", 300), ("1h", 3600), ("24h", 86400))
FRACTIONS: tuple[float, ...] = (0.5, 0.95, 0.99)
LIVE_STATES: tuple[str, ...] = tuple(
    s.value for s in (JobState.QUEUED, JobState.DEFERRED, JobState.AWAITING_APPROVAL, JobState.RUNNING)
)
OUTCOMES: tuple[str, ...] = tuple(
    s.value for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED)
)


class Percentiles(TypedDict):
    p50: float | None
    p95: float | None
    p99: float | None


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


@dataclass(frozen=True)
class Scope:
    """Whose rows a view covers: some workspaces, or every one (None, superusers in the admin)."""

    workspace_ids: tuple[Any, ...] | None
    now: datetime

    @classmethod
    def of(cls, workspace_ids: Iterable[Any] | None, now: datetime | None = None) -> Scope:
        return cls(None if workspace_ids is None else tuple(workspace_ids), now or clock.now())

    def filter(self, rows: QuerySet, field: str = "workspace_id") -> QuerySet:
        return rows if self.workspace_ids is None else rows.filter(**{f"{field}__in": self.workspace_ids})

    def since(self, seconds: float) -> datetime:
        return self.now - timedelta(seconds=seconds)


# --- registries other apps fill ------------------------------------------------------------------------

SummarySection = Callable[[Scope], dict[str, Any]]
_sections: dict[str, SummarySection] = {}


@dataclass
class Panel:
    """One chart on the ops dashboard: an inline SVG and a caption."""

    title: str
    svg: str
    caption: str = ""


PanelSource = Callable[[Scope], list[Panel]]
_panels: dict[str, tuple[int, PanelSource]] = {}


def summary_section(name: str) -> Callable[[SummarySection], SummarySection]:
    """Register `fn(scope) -> dict`, shown under `name` in the observability summary."""

    def register(fn: SummarySection) -> SummarySection:
        _sections[name] = fn
        return fn

    return register


def dashboard_panels(name: str, order: int = 100) -> Callable[[PanelSource], PanelSource]:
    """Register `fn(scope) -> [Panel]` for the ops dashboard; lower `order` comes first."""

    def register(fn: PanelSource) -> PanelSource:
        _panels[name] = (order, fn)
        return fn

    return register


def sections() -> dict[str, SummarySection]:
    metrics.discover()
    return dict(sorted(_sections.items()))


def panels() -> list[PanelSource]:
    metrics.discover()
    return [fn for _, fn in sorted(_panels.values(), key=lambda p: p[0])]


# --- SQL pieces that differ between PostgreSQL and SQLite (`make run` without PostgreSQL) ---------------


def epoch_ms(later: str, earlier: str) -> str:
    """SQL for `later - earlier` in milliseconds (two timestamp columns)."""
    if connection.vendor == "postgresql":
        return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) * 1000)"
    return f"((julianday({later}) - julianday({earlier})) * 86400000.0)"


def wait_ms_sql() -> str:
    """SQL for a job's wait: start minus due, in milliseconds, never below 0 (`j` is the job)."""
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    return f"{greatest}({epoch_ms('j.started_at', 'j.due_at')}, 0)"


def percentiles_sql(expr: str, condition: str = "TRUE") -> str:
    """SQL for p50/p95/p99 of `expr` over the rows matching `condition`, in one sort."""
    fractions = ",".join(str(f) for f in FRACTIONS)
    if connection.vendor == "postgresql":
        return f"percentile_cont(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY {expr}) FILTER (WHERE {condition})"
    return f"hq_percentiles({expr}, '{fractions}') FILTER (WHERE {condition})"


def bucket_sql(column: str, step_s: int) -> str:
    """SQL for the index of the `step_s` bucket holding `column`, counted from the first `%s` param."""
    if connection.vendor == "postgresql":
        return f"FLOOR(EXTRACT(EPOCH FROM ({column} - %s)) / {int(step_s)})::int"
    return f"CAST((julianday({column}) - julianday(%s)) * 86400.0 / {int(step_s)} AS INTEGER)"


def sql_param(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


class _SQLitePercentiles:
    """percentile_cont for SQLite: linear interpolation, like PostgreSQL's."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fractions = ""

    def step(self, value: float | None, fractions: str) -> None:
        self.fractions = fractions
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> str | None:
        if not self.values:
            return None
        return json.dumps([interpolate(sorted(self.values), float(f)) for f in self.fractions.split(",")])


def interpolate(ordered: list[float], fraction: float) -> float:
    """The `fraction` percentile of sorted values, interpolated as percentile_cont does."""
    pos = fraction * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def cursor():  # noqa: ANN201 - a DB-API cursor
    """A cursor on the default database; SQLite gets the percentile aggregate first."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        connection.connection.create_aggregate("hq_percentiles", 2, _SQLitePercentiles)
    return connection.cursor()


def as_percentiles(value: Any) -> Percentiles:
    """Turn a percentile array (PostgreSQL) or JSON text (SQLite) into {p50, p95, p99}, rounded ms."""
    if isinstance(value, str):
        value = json.loads(value)
    values = list(value) if value else [None] * len(FRACTIONS)
    return {
        "p50": _round(values[0]),
        "p95": _round(values[1]),
        "p99": _round(values[2]),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def subquery(rows: QuerySet, *fields: str) -> tuple[str, tuple[Any, ...]]:
    """SQL and params of `rows` as a plain SELECT of `fields` (no ordering), to aggregate over."""
    sql, params = rows.order_by().values(*fields).query.sql_with_params()
    return sql, tuple(params)


# --- jobs --------------------------------------------------------------------------------------------------


def _job_windows(scope: Scope) -> dict[tuple[str, str | None], JobWindow]:
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
    out: dict[tuple[str, str | None], JobWindow] = {}
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
    counts = {state: int(row[f"{state}_{name}"] or 0) for state in OUTCOMES}
    ran = counts["succeeded"] + counts["failed"]
    return {
        **counts,
        "throughput_per_min": round(ran / (seconds / 60), 3),
        "failure_rate": round(counts["failed"] / ran, 4) if ran else None,
        "wait_ms": as_percentiles(row[f"wait_{name}"]),
        "run_ms": as_percentiles(row[f"run_{name}"]),
    }


def _empty_windows() -> dict[str, JobWindow]:
    empty: Percentiles = {"p50": None, "p95": None, "p99": None}
    return {
        name: {
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
            "rejected": 0,
            "throughput_per_min": 0.0,
            "failure_rate": None,
            "wait_ms": dict(empty),
            "run_ms": dict(empty),
        }
        for name, _ in WINDOWS
    }


def _live_counts(scope: Scope) -> list[dict[str, Any]]:
    """Per (queue, function): jobs in each waiting or running state, and the oldest waiting due time."""
    waiting = Q(state=JobState.QUEUED) | Q(state=JobState.DEFERRED, due_at__lte=scope.now)
    return list(
        scope.filter(Job.objects.filter(state__in=LIVE_STATES))
        .values("queue", "function")
        .annotate(
            queued=Count("id", filter=Q(state=JobState.QUEUED)),
            deferred=Count("id", filter=Q(state=JobState.DEFERRED)),
            awaiting_approval=Count("id", filter=Q(state=JobState.AWAITING_APPROVAL)),
            running=Count("id", filter=Q(state=JobState.RUNNING)),
            waiting=Count("id", filter=waiting),
            oldest_waiting_due=Min("due_at", filter=waiting),
        )
        .order_by()
    )


def _paused_queues(scope: Scope) -> set[str]:
    pauses = QueuePause.objects.all()
    if scope.workspace_ids is not None:
        pauses = pauses.filter(Q(workspace__isnull=True) | Q(workspace_id__in=scope.workspace_ids))
    return set(pauses.values_list("queue", flat=True))


def _age_ms(now: datetime, then: datetime | None) -> int | None:
    return None if then is None else max(int((now - then).total_seconds() * 1000), 0)


def queues_summary(scope: Scope) -> list[dict[str, Any]]:
    """Per queue, and per function within it: current counts, oldest waiting age and the windows."""
    windows = _job_windows(scope)
    live = _live_counts(scope)
    paused = _paused_queues(scope)
    names = sorted({q for q, _ in windows} | {r["queue"] for r in live} | paused)
    queues: dict[str, dict[str, Any]] = {
        name: {
            "queue": name,
            "paused": name in paused,
            "states": _zero_live(),
            "waiting": 0,
            "oldest_waiting_age_ms": None,
            "windows": windows.get((name, None)) or _empty_windows(),
            "functions": {},
        }
        for name in names
    }
    for row in live:
        entry = _function(queues[row["queue"]], row["function"], windows)
        oldest = row["oldest_waiting_due"]
        entry["states"] = {s: row[s] for s in LIVE_STATES}
        entry["waiting"] = row["waiting"]
        entry["oldest_waiting_age_ms"] = _age_ms(scope.now, oldest)
        queue = queues[row["queue"]]
        for s in LIVE_STATES:
            queue["states"][s] += row[s]
        queue["waiting"] += row["waiting"]
        if oldest is not None:
            age = _age_ms(scope.now, oldest)
            queue["oldest_waiting_age_ms"] = max(queue["oldest_waiting_age_ms"] or 0, age)
    for queue, function in windows:
        if function is not None:
            _function(queues[queue], function, windows)
    out = []
    for queue in queues.values():
        queue["functions"] = [queue["functions"][f] for f in sorted(queue["functions"])]
        out.append(queue)
    return out


def _zero_live() -> LiveCounts:
    return {"queued": 0, "deferred": 0, "awaiting_approval": 0, "running": 0}


def _function(queue: dict[str, Any], function: str, windows: dict) -> dict[str, Any]:
    return queue["functions"].setdefault(
        function,
        {
            "function": function,
            "states": _zero_live(),
            "waiting": 0,
            "oldest_waiting_age_ms": None,
            "windows": windows.get((queue["queue"], function)) or _empty_windows(),
        },
    )


def hitl_summary(scope: Scope) -> dict[str, Any]:
    """Pending HITL requests and the age of the oldest."""
    row = scope.filter(HITLRequest.objects.filter(state=HITLState.PENDING)).aggregate(
        pending=Count("id"), oldest=Min("created_at")
    )
    return {"pending": row["pending"], "oldest_pending_age_ms": _age_ms(scope.now, row["oldest"])}


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


# --- series for the dashboard ------------------------------------------------------------------------------


def bucket_counts(
    rows: QuerySet, *, time_field: str, split_field: str, start: datetime, step_s: int, n: int
) -> dict[str, list[int]]:
    """Rows per `step_s` bucket from `start` (n buckets), split by the values of `split_field`."""
    inner, inner_params = subquery(rows.filter(**{f"{time_field}__gte": start}), time_field, split_field)
    sql = (
        f"SELECT {bucket_sql('j.' + time_field, step_s)} AS b, j.{split_field} AS k, COUNT(*) "
        f"FROM ({inner}) j GROUP BY 1, 2"
    )
    out: dict[str, list[int]] = {}
    with cursor() as cur:
        cur.execute(sql, (sql_param(start), *inner_params))
        for bucket, key, count in cur.fetchall():
            if bucket is not None and 0 <= bucket < n:
                out.setdefault(key, [0] * n)[int(bucket)] = int(count)
    return out


def bucket_percentiles(
    rows: QuerySet, *, time_field: str, value_sql: str, fields: tuple[str, ...], start: datetime, step_s: int, n: int
) -> dict[str, list[float | None]]:
    """p50/p95/p99 of `value_sql` (over the columns `fields`, as `j.<field>`) per bucket."""
    inner, inner_params = subquery(rows.filter(**{f"{time_field}__gte": start}), time_field, *fields)
    sql = (
        f"SELECT {bucket_sql('j.' + time_field, step_s)} AS b, {percentiles_sql(value_sql)} FROM ({inner}) j GROUP BY 1"
    )
    out: dict[str, list[float | None]] = {"p50": [None] * n, "p95": [None] * n, "p99": [None] * n}
    with cursor() as cur:
        cur.execute(sql, (sql_param(start), *inner_params))
        for bucket, value in cur.fetchall():
            if bucket is not None and 0 <= bucket < n:
                for key, pct in as_percentiles(value).items():
                    out[key][int(bucket)] = pct
    return out


def finished_series(scope: Scope, *, step_s: int, n: int) -> tuple[datetime, dict[str, list[int]]]:
    """Jobs finished per bucket by outcome, over the `n * step_s` seconds up to now."""
    start = series_start(scope.now, step_s, n)
    rows = scope.filter(Job.objects.filter(state__in=OUTCOMES))
    counts = bucket_counts(rows, time_field="finished_at", split_field="state", start=start, step_s=step_s, n=n)
    return start, {state: counts.get(state, [0] * n) for state in OUTCOMES}


def wait_series(scope: Scope, *, step_s: int, n: int) -> tuple[datetime, dict[str, list[float | None]]]:
    """Wait-time percentiles (ms) of the jobs that finished in each bucket (by `finished_at`, which is
    indexed; `started_at` is not, to keep the worker's hot path to the indexes it has)."""
    start = series_start(scope.now, step_s, n)
    rows = scope.filter(Job.objects.filter(started_at__isnull=False, state__in=OUTCOMES))
    value = wait_ms_sql()
    return start, bucket_percentiles(
        rows,
        time_field="finished_at",
        value_sql=value,
        fields=("started_at", "due_at"),
        start=start,
        step_s=step_s,
        n=n,
    )


def series_start(now: datetime, step_s: int, n: int) -> datetime:
    """The start of the first of `n` buckets, aligned to `step_s` so the last one holds `now`."""
    epoch = now.timestamp()
    aligned = epoch - (epoch % step_s)
    return datetime.fromtimestamp(aligned - (n - 1) * step_s, tz=now.tzinfo)


def hitl_pending_ages(scope: Scope) -> dict[str, int]:
    """Pending HITL requests by age band."""
    bands = (("< 1 h", 3600), ("1–4 h", 4 * 3600), ("4–12 h", 12 * 3600), ("12–24 h", 24 * 3600))
    filters, lower = {}, None
    for i, (_, upper) in enumerate(bands):
        q = Q(created_at__gt=scope.since(upper))
        if lower is not None:
            q &= Q(created_at__lte=scope.since(lower))
        filters[f"band{i}"] = Count("id", filter=q)
        lower = upper
    filters[f"band{len(bands)}"] = Count("id", filter=Q(created_at__lte=scope.since(lower)))
    counts = scope.filter(HITLRequest.objects.filter(state=HITLState.PENDING)).aggregate(**filters)
    labels = [label for label, _ in bands] + ["> 24 h"]
    return {label: counts[f"band{i}"] for i, label in enumerate(labels)}


# --- workers -------------------------------------------------------------------------------------------------


def workers_overview(*, workspace_ids: Iterable[Any] | None, running_limit: int = 200) -> list[dict[str, Any]]:
    """Live workers with their heartbeat age and the jobs (of these workspaces) running on them."""
    from queueapp.selectors import workers_live

    scope = Scope.of(workspace_ids)
    workers = list(workers_live().order_by("hostname", "pid"))
    running = (
        scope.filter(Job.objects.filter(state=JobState.RUNNING, worker_id__in=[w.id for w in workers]))
        .order_by("started_at")
        .values("id", "function", "queue", "worker_id", "started_at", "workspace_id")[:running_limit]
    )
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for job in running:
        job["running_for_ms"] = _age_ms(scope.now, job["started_at"])
        by_worker.setdefault(job["worker_id"], []).append(job)
    return [
        {
            "worker": w,
            "heartbeat_age_ms": _age_ms(scope.now, w.last_heartbeat_at),
            "running": w.running if scope.workspace_ids is None else len(by_worker.get(w.id, [])),
            "jobs": by_worker.get(w.id, []),
        }
        for w in workers
    ]


# --- /metrics gauges -----------------------------------------------------------------------------------------


@metrics.gauge_source("queue")
def queue_gauges() -> list[metrics.Gauge]:
    """Queue depth by queue and state, oldest waiting age, live workers and HITL pending."""
    scope = Scope.of(None)
    depth = metrics.Gauge("hq_queue_jobs", "Jobs waiting or running, by queue and state.", ("queue", "state"))
    oldest = metrics.Gauge("hq_queue_oldest_waiting_age_seconds", "Age of the oldest job waiting to start.", ("queue",))
    totals: dict[str, dict[str, Any]] = {}
    for row in _live_counts(scope):
        queue = totals.setdefault(row["queue"], {**_zero_live(), "oldest": None})
        for s in LIVE_STATES:
            queue[s] += row[s]
        due = row["oldest_waiting_due"]
        if due is not None and (queue["oldest"] is None or due < queue["oldest"]):
            queue["oldest"] = due
    for name, queue in sorted(totals.items()):
        for s in LIVE_STATES:
            depth.samples.append(((name, str(s)), float(queue[s])))
        if queue["oldest"] is not None:
            oldest.samples.append(((name,), max((scope.now - queue["oldest"]).total_seconds(), 0.0)))
    from queueapp.selectors import workers_live

    live = list(workers_live().values_list("id", "last_heartbeat_at", "running"))
    workers = metrics.Gauge("hq_workers_live", "Workers whose heartbeat is recent.", (), [((), float(len(live)))])
    age = metrics.Gauge(
        "hq_worker_heartbeat_age_seconds", "Seconds since each live worker's last heartbeat.", ("worker",)
    )
    running = metrics.Gauge("hq_worker_running_jobs", "Jobs running on each live worker.", ("worker",))
    for worker_id, beat, n in live:
        age.samples.append(((worker_id,), max((scope.now - beat).total_seconds(), 0.0)))
        running.samples.append(((worker_id,), float(n)))
    hitl = hitl_summary(scope)
    pending = metrics.Gauge("hq_hitl_pending", "HITL requests waiting for a decision.", (), [((), hitl["pending"])])
    hitl_age = metrics.Gauge(
        "hq_hitl_oldest_pending_age_seconds",
        "Age of the oldest pending HITL request.",
        (),
        [((), (hitl["oldest_pending_age_ms"] or 0) / 1000)],
    )
    return [depth, oldest, workers, age, running, pending, hitl_age]


# --- dashboard panels --------------------------------------------------------------------------------------


def time_labels(start: datetime, step_s: int, n: int) -> list[str]:
    return [(start + timedelta(seconds=i * step_s)).strftime("%H:%M") for i in range(n)]


@dashboard_panels("queue", order=10)
def queue_panels(scope: Scope) -> list[Panel]:
    """Jobs per minute by outcome (hour, day), wait-time percentiles, queue depth, HITL pending."""
    from hq import charts

    panels = []
    start, hour = finished_series(scope, step_s=60, n=60)
    panels.append(
        Panel(
            "Jobs per minute by outcome, last hour",
            charts.bar_chart(
                title="Jobs finished per minute, last hour",
                labels=time_labels(start, 60, 60),
                series=hour,
                y_label="jobs",
            ),
            "One bar per minute (UTC), by the state each job ended in.",
        )
    )
    start, day = finished_series(scope, step_s=900, n=96)
    per_minute = {state: [round(v / 15, 2) for v in values] for state, values in day.items()}
    panels.append(
        Panel(
            "Jobs per minute by outcome, last 24 hours",
            charts.bar_chart(
                title="Jobs finished per minute, last 24 hours",
                labels=time_labels(start, 900, 96),
                series=per_minute,
                y_label="jobs/min",
            ),
            "Average per minute over each 15-minute bucket (UTC).",
        )
    )
    start, waits = wait_series(scope, step_s=3600, n=24)
    panels.append(
        Panel(
            "Wait time (due → start), last 24 hours",
            charts.line_chart(
                title="Wait time percentiles, ms", labels=time_labels(start, 3600, 24), series=waits, y_label="ms"
            ),
            "p50, p95 and p99 of the latest attempt's wait, for the jobs finished in each hour.",
        )
    )
    by_queue: dict[str, dict[str, int]] = {}
    for row in _live_counts(scope):  # not queues_summary: the depth needs no 24 h windows
        queue = by_queue.setdefault(row["queue"], {"waiting": 0, "deferred": 0, "running": 0, "awaiting_approval": 0})
        queue["waiting"] += row["waiting"]
        queue["deferred"] += row["deferred"] - (row["waiting"] - row["queued"])  # deferred and not yet due
        queue["running"] += row["running"]
        queue["awaiting_approval"] += row["awaiting_approval"]
    names = sorted(by_queue)
    depth = {
        state: [by_queue[q][state] for q in names] for state in ("waiting", "deferred", "running", "awaiting_approval")
    }
    panels.append(
        Panel(
            "Queue depth now",
            charts.bar_chart(title="Jobs per queue by state", labels=names, series=depth, y_label="jobs"),
            "Waiting: queued, or deferred and due; deferred: not due yet.",
        )
    )
    ages = hitl_pending_ages(scope)
    panels.append(
        Panel(
            "HITL requests pending, by age",
            charts.bar_chart(
                title="Pending HITL requests by age",
                labels=list(ages),
                series={"pending": list(ages.values())},
                y_label="requests",
            ),
            "Requests waiting for a human decision.",
        )
    )
    return panels
