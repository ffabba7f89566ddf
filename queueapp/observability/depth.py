"""Queue depth over time: a sample per minute, its series for the dashboard, and its pruning.

Depth in the past cannot be read back from the job rows at a bounded cost (a job's row keeps only
its latest attempt's times, and the count at each minute would scan every job of the window), so
the `depth_sampler` side task of every worker writes one row per workspace, queue and state with
jobs at the start of each minute (`sample_depth`; a worker's first sample, when it starts, counts
for the minute it starts in). Workers started together write each minute once: the first to take
the minute's lock writes it, the others find it written. Samples are kept
`KEEP` (two days, or less when `HQ_RETENTION_DAYS` is shorter) and pruned by the retention pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Sum

from hq import clock
from queueapp import retention
from queueapp.models import DepthState, QueueDepthSample
from queueapp.observability.registry import Scope
from queueapp.observability.summary import live_counts

#: The states of a depth chart, bottom of the stack first.
STATES: tuple[str, ...] = tuple(DepthState.values)
#: Samples older than this are pruned.
KEEP = timedelta(days=2)
#: The seconds between samples (and the width of a depth chart's bar).
STEP_S = 60
#: The advisory lock key of a minute's sample: the first 8 bytes of sha256("hq.depth").
LOCK_KEY = int.from_bytes(hashlib.sha256(b"hq.depth").digest()[:8], "big", signed=True)


def depth_of(row: Mapping[str, Any]) -> dict[str, int]:
    """A `live_counts` row as depth states: waiting (queued, or deferred and due), deferred (not due
    yet), running and awaiting approval."""
    return {
        DepthState.WAITING.value: row["waiting"],
        DepthState.DEFERRED.value: row["deferred"] - (row["waiting"] - row["queued"]),
        DepthState.RUNNING.value: row["running"],
        DepthState.AWAITING_APPROVAL.value: row["awaiting_approval"],
    }


def minute_of(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def sample_depth(now: datetime | None = None) -> int:
    """Write this minute's depth of every workspace and queue (once, whoever asks); the rows written."""
    at = minute_of(now or clock.now())
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        if QueueDepthSample.objects.filter(at=at).exists():
            return 0
        rows = [
            QueueDepthSample(at=at, workspace_id=row["workspace_id"], queue=row["queue"], state=state, jobs=jobs)
            for row in live_counts(Scope.of(None, now), by=("workspace_id", "queue"))
            for state, jobs in depth_of(row).items()
            if jobs > 0
        ]
        QueueDepthSample.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def depth_series(scope: Scope, *, start: datetime, n: int) -> dict[str, dict[str, list[int]]]:
    """Per queue and state, the jobs sampled in each of the `n` minutes from `start` (0 where none)."""
    rows = (
        scope.filter(QueueDepthSample.objects.filter(at__gte=start, at__lt=start + timedelta(seconds=STEP_S * n)))
        .values("at", "queue", "state")
        .annotate(jobs=Sum("jobs"))
        .order_by()
    )
    out: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        i = int((row["at"] - start).total_seconds() // STEP_S)
        if 0 <= i < n and row["state"] in STATES:
            queue = out.setdefault(row["queue"], {state: [0] * n for state in STATES})
            queue[row["state"]][i] = int(row["jobs"])
    return out


def prune_depth_samples(*, cutoff: datetime, batch: int, dry_run: bool) -> dict[str, int]:
    """Samples older than `KEEP`, or than `cutoff` when that is later."""
    old = QueueDepthSample.objects.filter(at__lt=max(cutoff, clock.now() - KEEP))
    if dry_run:
        return {"depth_samples": old.count()}
    deleted = retention.delete_in_batches(old, order_by="at", batch=batch)
    return {"depth_samples": deleted.get(QueueDepthSample._meta.label, 0)}
