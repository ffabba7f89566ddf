"""Schedules in the ops views: the summary section, dashboard charts, /metrics gauges and retention.

Imported by `hq.metrics.discover()` (every installed app's `observability` module), so `queueapp`
needs no knowledge of schedules: this module fills the registries it owns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from hq import charts, metrics
from queueapp import observability as obs
from queueapp import retention
from schedules.models import FireStatus, Schedule, ScheduleFire, ScheduleState

FINISHED_FIRES = (FireStatus.SUCCEEDED, FireStatus.FAILED, FireStatus.SKIPPED)
LIST_LIMIT = 20


def _fires(scope: obs.Scope) -> QuerySet[ScheduleFire]:
    return scope.filter(ScheduleFire.objects.all(), "schedule__workspace_id")


def fire_windows(scope: obs.Scope) -> dict[str, dict[str, Any]]:
    """Per window: fires written, by status, and the fire lag (slot → job start) percentiles."""
    inner, inner_params = obs.subquery(
        _fires(scope).filter(created_at__gte=scope.since(86400)), "created_at", "status", "lag_ms"
    )
    columns, params = [], []
    for name, seconds in obs.WINDOWS:
        since = obs.sql_param(scope.since(seconds))
        columns.append(f"COUNT(*) FILTER (WHERE j.created_at >= %s) AS fires_{name}")
        params.append(since)
        for status in FireStatus.values:
            columns.append(f"COUNT(*) FILTER (WHERE j.created_at >= %s AND j.status = '{status}') AS {status}_{name}")
            params.append(since)
        lag = obs.percentiles_sql("j.lag_ms", "j.created_at >= %s AND j.lag_ms IS NOT NULL")
        columns.append(f"{lag} AS lag_{name}")
        params.append(since)
    with obs.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM ({inner}) j", (*params, *inner_params))
        names = [c[0] for c in cur.description]
        row = dict(zip(names, cur.fetchone(), strict=True))
    return {
        name: {
            "fires": int(row[f"fires_{name}"] or 0),
            **{status: int(row[f"{status}_{name}"] or 0) for status in FireStatus.values},
            "lag_ms": obs.as_percentiles(row[f"lag_{name}"]),
        }
        for name, _ in obs.WINDOWS
    }


@obs.summary_section("schedules")
def schedules_summary(scope: obs.Scope) -> dict[str, Any]:
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


@obs.dashboard_panels("schedules", order=50)
def schedule_panels(scope: obs.Scope) -> list[obs.Panel]:
    """Fire lag percentiles and fires by status over the last 24 hours."""
    start = obs.series_start(scope.now, 3600, 24)
    labels = obs.time_labels(start, 3600, 24)
    lag = obs.bucket_percentiles(
        _fires(scope).filter(lag_ms__isnull=False),
        time_field="created_at",
        value_sql="j.lag_ms",
        fields=("lag_ms",),
        start=start,
        step_s=3600,
        n=24,
    )
    counts = obs.bucket_counts(
        _fires(scope), time_field="created_at", split_field="status", start=start, step_s=3600, n=24
    )
    return [
        obs.Panel(
            "Schedule fire lag (slot → job start), last 24 hours",
            charts.line_chart(title="Fire lag percentiles, ms", labels=labels, series=lag, y_label="ms"),
            "p50, p95 and p99 of the fires written in each hour.",
        ),
        obs.Panel(
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


@metrics.gauge_source("schedules")
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


@retention.pruner("schedule_fires")
def prune_fires(*, cutoff: datetime, batch: int, dry_run: bool) -> dict[str, int]:
    """Finished fires (succeeded, failed, skipped) written before `cutoff`; schedules keep their counters."""
    old = ScheduleFire.objects.filter(status__in=FINISHED_FIRES, created_at__lt=cutoff)
    if dry_run:
        return {"schedule_fires": old.count()}
    deleted = retention.delete_in_batches(old, order_by="created_at", batch=batch)
    return {"schedule_fires": deleted.get(ScheduleFire._meta.label, 0)}
