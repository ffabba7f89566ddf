"""The queue's /metrics gauges, read from PostgreSQL at scrape time, for every workspace at once."""

from __future__ import annotations

from typing import Any

from hq import metrics
from queueapp.observability.registry import Scope
from queueapp.observability.summary import LIVE_STATES, hitl_summary, live_counts, zero_live
from queueapp.selectors import workers_live


def queue_gauges() -> list[metrics.Gauge]:
    """Queue depth by queue and state, oldest waiting age, live workers and HITL pending."""
    scope = Scope.of(None)
    depth = metrics.Gauge("hq_queue_jobs", "Jobs waiting or running, by queue and state.", ("queue", "state"))
    oldest = metrics.Gauge("hq_queue_oldest_waiting_age_seconds", "Age of the oldest job waiting to start.", ("queue",))
    totals: dict[str, dict[str, Any]] = {}
    for row in live_counts(scope):
        queue = totals.setdefault(row["queue"], {**zero_live(), "oldest": None})
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
