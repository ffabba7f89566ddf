"""Reads for the ops views, one idea a module.

- `registry`: the `Scope` a view covers, and what other apps add (summary sections, dashboard
  panels), registered from their `AppConfig.ready()`;
- `summary`: the observability summary (API and admin dashboard);
- `dashboard`: time series and the queue's chart panels;
- `gauges`: the queue's /metrics gauges;
- `workers`: the admin's workers page.

The SQL that PostgreSQL and SQLite spell differently is `hq.sqldialect`. The names below keep
`from queueapp import observability` working for callers of the single module this used to be.
"""

from hq.sqldialect import (
    FRACTIONS,
    Percentiles,
    as_percentiles,
    bucket_sql,
    cursor,
    epoch_ms,
    interpolate,
    percentiles_sql,
    sql_param,
    subquery,
)
from queueapp.observability.dashboard import (
    bucket_counts,
    bucket_percentiles,
    finished_series,
    hitl_pending_ages,
    queue_panels,
    series_start,
    time_labels,
    wait_series,
)
from queueapp.observability.gauges import queue_gauges
from queueapp.observability.registry import (
    Panel,
    PanelSource,
    Scope,
    SummarySection,
    panels,
    register_dashboard_panels,
    register_summary_section,
    sections,
)
from queueapp.observability.summary import (
    LIVE_STATES,
    OUTCOMES,
    WINDOWS,
    JobWindow,
    LiveCounts,
    hitl_summary,
    queues_summary,
    summary,
    wait_ms_sql,
)
from queueapp.observability.workers import workers_overview

__all__ = [
    "FRACTIONS",
    "LIVE_STATES",
    "OUTCOMES",
    "WINDOWS",
    "JobWindow",
    "LiveCounts",
    "Panel",
    "PanelSource",
    "Percentiles",
    "Scope",
    "SummarySection",
    "as_percentiles",
    "bucket_counts",
    "bucket_percentiles",
    "bucket_sql",
    "cursor",
    "epoch_ms",
    "finished_series",
    "hitl_pending_ages",
    "hitl_summary",
    "interpolate",
    "panels",
    "percentiles_sql",
    "queue_gauges",
    "queue_panels",
    "queues_summary",
    "register_dashboard_panels",
    "register_summary_section",
    "sections",
    "series_start",
    "sql_param",
    "subquery",
    "summary",
    "time_labels",
    "wait_ms_sql",
    "wait_series",
    "workers_overview",
]
