"""Schedules in the ops views: the summary section, dashboard charts, /metrics gauges and retention.

`SchedulesConfig.ready()` registers these with the registries `queueapp` and `hq.metrics` own, so
`queueapp` needs no knowledge of schedules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from hq import charts, metrics
from hq.sqldialect import as_percentiles, cursor, percentiles_sql, sql_param, subquery
from queueapp import retention
from queueapp.observability.dashboard import bucket_counts, bucket_percentiles, series_start, time_labels
from queueapp.observability.registry import Panel, Scope
from queueapp.observability.summary import WINDOWS
from schedules.models import FireStatus, Schedule, ScheduleFire, ScheduleState

FINISHED_FIRES = (FireStatus.SUCCEEDED, FireStatus.FAILED, FireStatus.SKIPPED)
LIST_LIMIT = 20


def _fires(scope: Scope) -> QuerySet[ScheduleFire]:
    return scope.filter(ScheduleFire.objects.all(), "schedule__workspace_id")


def fire_windows(scope: Scope) -> dict[str, dict[str, Any]]:
    """Per window: fires written, by status, and the fire lag (slot → job start) percentiles."""
    inner, inner_params = subquery(
        _fires(scope).filter(created_at__gte=scope.since(86400)), "created_at", "status", "lag_ms"
    )
    columns, params = [], []
    for name, seconds in WINDOWS:
        since = sql_param(scope.since(seconds))
        columns.append(f"COUNT(*) FILTER (WHERE j.created_at >= %s) AS fires_{name}")
        params.append(since)
        for status in FireStatus.values:
            columns.append(f"COUNT(*) FILTER (WHERE j.created_at >= %s AND j.status = '{status}') AS {status}_{name}")
            params.append(since)
        lag = percentiles_sql("j.lag_ms", "j.created_at >= %s AND j.lag_ms IS NOT NULL")
        columns.append(f"{lag} AS lag_{name}")
        params.append(since)
    with cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM ({inner}) j", (*params, *inner_params))
        names = [c[0] for c in cur.description]
        row = dict(zip(names, cur.fetchone(), strict=True))
    return {
        name: {
            "fires": int(row[f"fires_{name}"] or 0),
            **{status: int(row[f"{status}_{name}"] or 0) for status in FireStatus.values},
            "lag_ms": as_percentiles(row[f"lag_{name}"]),
        }
        for name, _ in WINDOWS
    }


def schedules_summary(scope: Scope) -> dict[str, Any]:
    """Schedules by state, fires and fire lag per window, and the failing and quarantined ones."""
    rows = scope.filter(Schedule.objects.all())
    states = dict(rows.order_by().values_list("state").annotate(n=Count("id")))
    failing = rows.filter(consecutive_failure_count__gt=0).exclude(state=ScheduleState.ARCHIVED)
    quarantined = rows.filter(state=ScheduleState.QUARANTINED)
    return {
        "states": {state: states.get(state, 0) for state in ScheduleState.values},
        "windows": fire_windows(scope),
        "failing_count": failing.count(),
        "failing": list(
            failing.order_by("-consecutive_failure_count", "-last_fire_at").values(
                "id", "name", "workspace_id", "state", "consecutive_failure_count", "last_fire_at"
            )[:LIST_LIMIT]
        ),
        "quarantined_count": states.get(ScheduleState.QUARANTINED, 0),
        "quarantined": list(
            quarantined.order_by("-updated_at").values("id", "name", "workspace_id", "state_reason", "updated_at")[
                :LIST_LIMIT
            ]
        ),
    }


def schedule_panels(scope: Scope) -> list[Panel]:
    """Fire lag percentiles and fires by status over the last 24 hours."""
    start = series_start(scope.now, 3600, 24)
    labels = time_labels(start, 3600, 24)
    lag = bucket_percentiles(
        _fires(scope).filter(lag_ms__isnull=False),
        time_field="created_at",
        value_sql="j.lag_ms",
        fields=("lag_ms",),
        start=start,
        step_s=3600,
        n=24,
    )
    counts = bucket_counts(_fires(scope), time_field="created_at", split_field="status", start=start, step_s=3600, n=24)
    return [
        Panel(
            "Schedule fire lag (slot → job start), last 24 hours",
            charts.line_chart(title="Fire lag percentiles, ms", labels=labels, series=lag, y_label="ms"),
            "p50, p95 and p99 of the fires written in each hour.",
        ),
        Panel(
            "Schedule fires per hour by status",
            charts.bar_chart(
                title="Fires per hour by status",
                labels=labels,
                series={s: counts.get(s, [0] * 24) for s in FireStatus.values},
                y_label="fires",
            ),
            "Pending and running fires have not finished yet.",
        ),
    ]


def schedule_gauges() -> list[metrics.Gauge]:
    """Schedules by state, and how many are failing (consecutive failures, not archived)."""
    states = dict(Schedule.objects.order_by().values_list("state").annotate(n=Count("id")))
    failing = Schedule.objects.filter(~Q(state=ScheduleState.ARCHIVED), consecutive_failure_count__gt=0).count()
    return [
        metrics.Gauge(
            "hq_schedules",
            "Schedules by state.",
            ("state",),
            [((state,), float(states.get(state, 0))) for state in ScheduleState.values],
        ),
        metrics.Gauge("hq_schedules_failing", "Schedules whose latest fires failed.", (), [((), float(failing))]),
    ]


def prune_fires(*, cutoff: datetime, batch: int, dry_run: bool) -> dict[str, int]:
    """Finished fires (succeeded, failed, skipped) written before `cutoff`; schedules keep their counters."""
    old = ScheduleFire.objects.filter(status__in=FINISHED_FIRES, created_at__lt=cutoff)
    if dry_run:
        return {"schedule_fires": old.count()}
    deleted = retention.delete_in_batches(old, order_by="created_at", batch=batch)
    return {"schedule_fires": deleted.get(ScheduleFire._meta.label, 0)}
