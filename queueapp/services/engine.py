"""The engine's writes, beside the worker's own start and finish: the outbox relay, worker
heartbeats, the reaper, and pausing queues (what may start).

Its reads, what is due and what runs nowhere, are in `queueapp.selectors`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from hq import clock
from hq.models import User, Workspace
from queueapp import limits, registry, retry, selectors, transport
from queueapp.models import WAITING_STATES, Job, JobState, QueuePause, Worker, validate_queue_name
from queueapp.services.jobs import job_transition

logger = logging.getLogger(__name__)


#: The order in which the relay pushes what Redis lacks: the highest priority first, then the
#: earliest due, so that a backlog pushed in batches reaches the workers' lanes in the order they
#: start it (index `job_unpushed`). Jobs re-pushed as a safety net go oldest push first (their
#: place in a lane is their band's, whatever the order of their pushes).
PUSH_ORDER = ("-priority", "due_at")


def relay_pass(*, everything: bool = False, old_pushes: bool = True, batch: int = 500) -> int:
    """Push due waiting jobs that Redis may not hold; return how many were picked.

    Jobs never pushed (or handed back) are all pushed, batch by batch. Jobs pushed longer ago than
    `HQ_RELAY_GRACE_S` are a safety net for a Redis that lost them without restarting (a flush, an
    eviction) and for a worker that claimed one and died before starting it (a claim older than
    the grace is dropped: `transport.push(reclaim_before=...)`). They go one batch per pass, the
    oldest push first, so that a backlog older than the grace costs a bounded amount per pass
    instead of all of it every pass (`old_pushes=False` skips them: the relay side task checks
    them once per interval). `everything` pushes every waiting job (Redis reported a new run_id:
    it may have lost all it held). The conditional start keeps a job single however often it is
    pushed.
    """
    now = clock.now()
    due = selectors.jobs_due_unpaused()
    cutoff = now - timedelta(seconds=settings.HQ_RELAY_GRACE_S)
    if everything:
        return _relay_all(due.filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now)), now, batch, cutoff)
    pushed = _relay_batches(due.filter(dispatched_at__isnull=True), now, batch, rounds=None, order=PUSH_ORDER)
    if not old_pushes:
        return pushed
    # A job held by a concurrency limit waits for a finish to wake it, not for this net (the
    # reaper's `limits.wake_stale_held` is the net for a lost wake).
    old = due.filter(dispatched_at__lt=cutoff, held_at__isnull=True)
    return pushed + _relay_batches(old, now, batch, rounds=1, order=("dispatched_at",), reclaim_before=cutoff)


def _relay_all(rows: QuerySet[Job], now: datetime, batch: int, reclaim_before: datetime) -> int:
    """Push every row of `rows` in batches (`PUSH_ORDER`, then id), each batch after the last one's
    key; stamp dispatched only those Redis did not hold (`transport.push_new`). A burst worker's
    first pass over a backlog Redis holds whole writes nothing (it rewrote every waiting row, a
    third of the row versions of `make bench`'s drain); after a Redis restart every push is new."""
    pushed = 0
    after = Q()
    while True:
        with transaction.atomic():
            picked = list(
                rows.filter(after)
                .select_for_update(skip_locked=True, no_key=True)
                .order_by(*PUSH_ORDER, "id")
                .values_list("id", "attempts", "queue", "due_at", "function", "workspace_id", "priority")[:batch]
            )
            if not picked:
                return pushed
            pushes = [transport.Push(i, a + 1, q, d, registry.fair_lane(f, w), p) for i, a, q, d, f, w, p in picked]
            new = transport.push_new(pushes, reclaim_before=reclaim_before)
            stamp = [p.job_id for p, is_new in zip(pushes, new, strict=True) if is_new]
            if stamp:
                Job.objects.filter(pk__in=stamp).update(dispatched_at=now)
            pushed += len(picked)
        if len(picked) < batch:
            return pushed
        job_id, _, _, due_at, _, _, priority = picked[-1]
        after = (
            Q(priority__lt=priority)
            | Q(priority=priority, due_at__gt=due_at)
            | Q(priority=priority, due_at=due_at, id__gt=job_id)
        )


def _relay_batches(
    rows: QuerySet[Job],
    now: datetime,
    batch: int,
    rounds: int | None,
    order: tuple[str, ...],
    reclaim_before: datetime | None = None,
) -> int:
    """Push `rows` in batches (at most `rounds` of them), `order` first, and stamp them dispatched;
    return how many (the indexes `job_unpushed` and `job_pushed_waiting` serve the two orders)."""
    pushed = 0
    while rounds is None or rounds > 0:
        with transaction.atomic():
            picked = list(
                rows.select_for_update(skip_locked=True, no_key=True)
                .order_by(*order)
                .values_list("id", "attempts", "queue", "due_at", "function", "workspace_id", "priority")[:batch]
            )
            if not picked:
                return pushed
            pushes = [transport.Push(i, a + 1, q, d, registry.fair_lane(f, w), p) for i, a, q, d, f, w, p in picked]
            transport.push(pushes, reclaim_before=reclaim_before)
            Job.objects.filter(pk__in=[p[0] for p in picked]).update(dispatched_at=now)
            pushed += len(picked)
        if len(picked) < batch:
            return pushed
        rounds = None if rounds is None else rounds - 1
    return pushed


def worker_heartbeat(
    *,
    worker_id: str,
    hostname: str,
    pid: int,
    queues: list[str],
    concurrency: int,
    running: int,
    jobs_done: int,
    attempts: list[str] | None = None,
    seen_at: datetime | None = None,
) -> None:
    """Record that a worker is alive and, when given, which attempts it had in flight at `seen_at`.

    `seen_at` is when the worker looked at its tasks (before this write): an attempt started
    before it and missing from `attempts` is not running anywhere.
    """
    now = seen_at or clock.now()
    fields = {"last_heartbeat_at": now, "running": running, "jobs_done": jobs_done, "attempts": attempts}
    updated = Worker.objects.filter(pk=worker_id).update(stopped_at=None, **fields)
    if not updated:
        Worker.objects.create(
            id=worker_id, hostname=hostname, pid=pid, queues=queues, concurrency=concurrency, started_at=now, **fields
        )


def worker_stopped(*, worker_id: str) -> None:
    Worker.objects.filter(pk=worker_id).update(stopped_at=clock.now(), running=0)


def workers_mark_dead(*, now: datetime) -> int:
    """Mark stopped the workers silent for three heartbeat intervals; return how many."""
    silent = Worker.objects.filter(stopped_at__isnull=True, last_heartbeat_at__lt=selectors.heartbeat_cutoff(now))
    return silent.update(stopped_at=now)


#: How often a process's reaper recounts the limit gates and prunes idle ones (`limits.recount_gates`,
#: `limits.prune_gates`), seconds.
RECOUNT_INTERVAL_S = 60.0
_next_recount = 0.0


def reap_pass() -> int:
    """Move the running jobs that nobody runs (`selectors.jobs_running_lost`) where the retry
    policy sends a lost attempt: the next attempt at once, `failed`, or `cancelled` when a cancel
    was asked for. Marks dead workers stopped first."""
    now = clock.now()
    workers_mark_dead(now=now)
    global _next_recount
    if time.monotonic() >= _next_recount:
        _next_recount = time.monotonic() + RECOUNT_INTERVAL_S
        limits.recount_gates()
        limits.prune_gates()
    limits.wake_stale_held(older_than_s=settings.HQ_RELAY_GRACE_S)
    reaped = 0
    for job_id, reason in selectors.jobs_running_lost(now=now).items():
        with transaction.atomic():
            job = (
                Job.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(pk=job_id, state=JobState.RUNNING)
                .first()
            )
            if job is None:
                continue
            nxt = retry.after_attempt(
                cause=retry.Cause.LOST,
                attempt=job.attempts,
                tries_base=job.tries_base,
                max_tries=job.max_tries,
                backoff_base_s=job.retry_backoff_s,
                cancel_requested=job.cancel_requested_at is not None,
            )
            why = "its worker stopped" if reason == selectors.LOST_WORKER_DEAD else "its worker no longer runs it"
            error = f"Attempt {job.attempts} lost: {why}."
            fields: dict[str, Any]
            if nxt.delay_s is not None:
                fields = {"due_at": now + timedelta(seconds=nxt.delay_s), "dispatched_at": None, "error": error}
            elif nxt.move == "cancel_running":
                fields = {"finished_at": now}
            else:
                fields = {"finished_at": now, "error": error}
            detail = {"worker": job.worker_id, "reason": reason}
            if job_transition(job=job, move=nxt.move, kind=nxt.kind, detail=detail, worker_id="", **fields) is not None:
                reaped += 1
                transaction.on_commit(_forgetting(job.pk, job.attempts, job.queue), robust=True)
    return reaped


def _forgetting(job_id: UUID, attempt: int, queue: str) -> Callable[[], None]:
    """`_forget` of this attempt as a commit hook: a function, not a partial, because a robust hook
    that fails is logged by its __qualname__, which a partial lacks (the log call itself raised)."""

    def forget() -> None:
        _forget(job_id, attempt, queue)

    return forget


def _forget(job_id: UUID, attempt: int, queue: str) -> None:
    try:
        transport.forget(job_id, attempt, queue)
    except redis.RedisError as exc:
        logger.warning("could not drop dead attempt %s:%s from Redis (%s)", job_id, attempt, exc)


def queue_pause(*, queue: str, workspace: Workspace | None, actor: User | None) -> QueuePause:
    """Pause a queue for one workspace (or all, when None): jobs are accepted, none start."""
    validate_queue_name(queue)
    pause, _ = QueuePause.objects.get_or_create(queue=queue, workspace=workspace, defaults={"paused_by": actor})
    return pause


def queue_resume(*, queue: str, workspace: Workspace | None) -> bool:
    """Resume a queue; the relay pushes what waited. Returns False when it was not paused."""
    validate_queue_name(queue)
    deleted, _ = QueuePause.objects.filter(queue=queue, workspace=workspace).delete()
    if deleted:
        now = clock.now()
        jobs = Job.objects.filter(queue=queue, state__in=WAITING_STATES)
        if workspace is not None:
            jobs = jobs.filter(workspace=workspace)
        jobs.filter(due_at__lte=now).update(dispatched_at=None)
        transaction.on_commit(lambda: _nudge(queue), robust=True)
    return bool(deleted)


def _nudge(queue: str) -> None:
    try:
        transport.nudge(queue)
    except redis.RedisError:
        pass
