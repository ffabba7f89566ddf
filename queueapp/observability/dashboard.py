"""Time series for the ops dashboard, and the queue's own panels on it.

A series is one aggregate statement that counts (or takes percentiles of) rows per time bucket;
`bucket_counts` and `bucket_percentiles` serve any table, so other apps draw their panels with them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet

from hq import charts
from hq.sqldialect import as_percentiles, bucket_sql, cursor, percentiles_sql, sql_param, subquery
from queueapp.models import HITLRequest, HITLState, Job
from queueapp.observability import depth
from queueapp.observability.registry import Panel, Scope
from queueapp.observability.summary import OUTCOMES, wait_ms_sql


def series_start(now: datetime, step_s: int, n: int) -> datetime:
    """The start of the first of `n` buckets, aligned to `step_s` so the last one holds `now`."""
    epoch = now.timestamp()
    aligned = epoch - (epoch % step_s)
    return datetime.fromtimestamp(aligned - (n - 1) * step_s, tz=now.tzinfo)


def time_labels(start: datetime, step_s: int, n: int) -> list[str]:
    """The HH:MM label of each of `n` buckets from `start`."""
    return [(start + timedelta(seconds=i * step_s)).strftime("%H:%M") for i in range(n)]


def bucket_counts(
    rows: QuerySet[Any], *, time_field: str, split_field: str, start: datetime, step_s: int, n: int
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
    rows: QuerySet[Any],
    *,
    time_field: str,
    value_sql: str,
    fields: tuple[str, ...],
    start: datetime,
    step_s: int,
    n: int,
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
                pct, i = as_percentiles(value), int(bucket)
                out["p50"][i], out["p95"][i], out["p99"][i] = pct["p50"], pct["p95"], pct["p99"]
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
    return start, bucket_percentiles(
        rows,
        time_field="finished_at",
        value_sql=wait_ms_sql(),
        fields=("started_at", "due_at"),
        start=start,
        step_s=step_s,
        n=n,
    )


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
    filters[f"band{len(bands)}"] = Count("id", filter=Q(created_at__lte=scope.since(bands[-1][1])))
    counts = scope.filter(HITLRequest.objects.filter(state=HITLState.PENDING)).aggregate(**filters)
    labels = [label for label, _ in bands] + ["> 24 h"]
    return {label: counts[f"band{i}"] for i, label in enumerate(labels)}


# --- the queue's panels ------------------------------------------------------------------------------------


def queue_panels(scope: Scope) -> list[Panel]:
    """Jobs per minute by outcome (hour, day), wait-time percentiles, queue depth over the last hour,
    HITL pending."""
    return [
        _outcomes_panel(
            scope,
            span="hour",
            step_s=60,
            n=60,
            y_label="jobs",
            caption="One bar per minute (UTC), by the state each job ended in.",
        ),
        _outcomes_panel(
            scope,
            span="24 hours",
            step_s=900,
            n=96,
            y_label="jobs/min",
            caption="Average per minute over each 15-minute bucket (UTC).",
        ),
        _wait_panel(scope),
        *depth_panels(scope),
        _hitl_panel(scope),
    ]


def _outcomes_panel(scope: Scope, *, span: str, step_s: int, n: int, y_label: str, caption: str) -> Panel:
    """Jobs finished per minute by outcome over the last `span`; a bucket longer than a minute shows its
    average per minute."""
    start, counts = finished_series(scope, step_s=step_s, n=n)
    minutes = step_s / 60
    per_minute = {state: [round(v / minutes, 2) for v in values] for state, values in counts.items()}
    return Panel(
        f"Jobs per minute by outcome, last {span}",
        charts.bar_chart(
            title=f"Jobs finished per minute, last {span}",
            labels=time_labels(start, step_s, n),
            series=per_minute,
            y_label=y_label,
        ),
        caption,
    )


#: At most this many queues get a depth chart (the deepest now, then by name); the table lists them all.
DEPTH_CHARTS = 4


def depth_panels(scope: Scope, *, n: int = 60) -> list[Panel]:
    """One chart per queue of its jobs by depth state over the last `n` minutes, stacked, from the
    samples the `depth_sampler` side task writes each minute."""
    start = depth.minute_of(scope.now) - timedelta(seconds=depth.STEP_S * (n - 1))
    by_queue = depth.depth_series(scope, start=start, n=n)
    labels = time_labels(start, depth.STEP_S, n)
    caption = (
        "Jobs at the start of each minute (UTC), sampled by the workers' depth_sampler side task (no "
        "bars: nothing waiting or running, or no worker sampling); waiting: queued, or deferred and due; "
        "deferred: not due yet."
    )
    if not by_queue:
        empty = {state: [0] * n for state in depth.STATES}
        return [
            Panel(
                "Queue depth, last hour",
                charts.bar_chart(
                    title="Jobs per state, last hour",
                    labels=labels,
                    series=empty,
                    y_label="jobs",
                    empty="No samples this hour",
                ),
                caption,
            )
        ]
    deepest = sorted(by_queue, key=lambda q: (-sum(v[-1] for v in by_queue[q].values()), q))
    shown = deepest[:DEPTH_CHARTS]
    if len(deepest) > len(shown):
        caption += f" The {len(shown)} deepest queues of {len(deepest)}; the table below lists every queue."
    return [
        Panel(
            f"Queue depth: {queue}, last hour",
            charts.bar_chart(
                title=f"Jobs in queue {queue} per state, last hour",
                labels=labels,
                series=by_queue[queue],
                y_label="jobs",
            ),
            caption,
        )
        for queue in shown
    ]


def _wait_panel(scope: Scope) -> Panel:
    start, waits = wait_series(scope, step_s=3600, n=24)
    return Panel(
        "Wait time (due → start), last 24 hours",
        charts.line_chart(
            title="Wait time percentiles, ms", labels=time_labels(start, 3600, 24), series=waits, y_label="ms"
        ),
        "p50, p95 and p99 of the latest attempt's wait, for the jobs finished in each hour.",
    )


def _hitl_panel(scope: Scope) -> Panel:
    ages = hitl_pending_ages(scope)
    return Panel(
        "HITL requests pending, by age",
        charts.bar_chart(
            title="Pending HITL requests by age",
            labels=list(ages),
            series={"pending": list(ages.values())},
            y_label="requests",
        ),
        "Requests waiting for a human decision.",
    )
