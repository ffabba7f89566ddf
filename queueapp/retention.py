"""Retention: delete finished jobs (with their events and HITL requests) and other apps' history
older than `HQ_RETENTION_DAYS`, in batches, without long locks.

Each batch is its own short transaction: select up to `HQ_RETENTION_BATCH` ids with
`FOR UPDATE SKIP LOCKED` (a row someone is retrying right now is left for the next pass), delete
them, commit. One pass at a time runs across all machines under a PostgreSQL advisory lock
(`pg_try_advisory_lock`: a second worker skips its pass instead of waiting); SQLite just runs.
Apps add their tables with `register_pruner` from their `AppConfig.ready()`.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model, QuerySet

from hq import clock
from queueapp.models import FINISHED_STATES, HITLRequest, Job, JobEvent

logger = logging.getLogger("hq.retention")

#: The advisory lock key: the first 8 bytes of sha256("hq.retention") as a signed bigint.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"hq.retention").digest()[:8], "big", signed=True)

Pruner = Callable[..., dict[str, int]]
_pruners: dict[str, Pruner] = {}


def register_pruner(name: str, pruner: Pruner) -> None:
    """Have every retention pass call `pruner(*, cutoff, batch, dry_run) -> {kind: rows}`."""
    _pruners[name] = pruner


def pruners() -> dict[str, Pruner]:
    return dict(_pruners)


@dataclass
class PruneReport:
    """What a pass deleted (or would delete, with `dry_run`), by kind of row."""

    cutoff: datetime
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    #: Another process held the lock: this pass did nothing.
    skipped: bool = False


@contextmanager
def _pass_lock() -> Iterator[bool]:
    """Yield True when this process may prune now (always on SQLite)."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        got: bool = cur.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def prune(
    *,
    older_than_days: float | None = None,
    batch: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneReport:
    """Run every pruner once; return the counts."""
    days = settings.HQ_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = (now or clock.now()) - timedelta(days=days)
    batch = batch or settings.HQ_RETENTION_BATCH
    report = PruneReport(cutoff=cutoff, dry_run=dry_run)
    with _pass_lock() as got:
        if not got:
            report.skipped = True
            return report
        for _name, fn in sorted(pruners().items()):
            for kind, n in fn(cutoff=cutoff, batch=batch, dry_run=dry_run).items():
                report.counts[kind] = report.counts.get(kind, 0) + n
    if not dry_run and any(report.counts.values()):
        logger.info("retention: deleted %s older than %s", report.counts, cutoff.isoformat())
    return report


def delete_in_batches(rows: QuerySet[Model], *, order_by: str, batch: int) -> Counter[str]:
    """Delete `rows` `batch` at a time, each batch in its own short transaction; counts by model label.

    Django's delete cascades to dependent tables (a job's events and HITL requests) with one
    DELETE ... WHERE fk IN (...) each, since none of them has signals or further dependants.
    """
    totals: Counter[str] = Counter()
    model = rows.model
    while True:
        with transaction.atomic():
            ids = list(rows.order_by(order_by).select_for_update(skip_locked=True).values_list("pk", flat=True)[:batch])
            if not ids:
                break
            _, per_model = model._default_manager.filter(pk__in=ids).only("pk").delete()
        totals.update(per_model)
        if len(ids) < batch:
            break
    return totals


def prune_jobs(*, cutoff: datetime, batch: int, dry_run: bool) -> dict[str, Any]:
    """Finished jobs (succeeded, failed, cancelled, rejected) that finished before `cutoff`."""
    old = Job.objects.filter(state__in=FINISHED_STATES, finished_at__lt=cutoff)
    if dry_run:
        return {
            "jobs": old.count(),
            "job_events": JobEvent.objects.filter(job__in=old).count(),
            "hitl_requests": HITLRequest.objects.filter(job__in=old).count(),
        }
    deleted = delete_in_batches(old, order_by="finished_at", batch=batch)
    return {
        "jobs": deleted.get(Job._meta.label, 0),
        "job_events": deleted.get(JobEvent._meta.label, 0),
        "hitl_requests": deleted.get(HITLRequest._meta.label, 0),
    }
