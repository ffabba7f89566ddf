"""The queue's own side tasks, run by `runworker` beside the job loop: the outbox relay, the reaper,
the HITL expiry, retention and the depth sampler."""

from __future__ import annotations

import logging
import random
import time

import redis
from django.conf import settings
from django.db.utils import DatabaseError

from hq import clock
from queueapp import retention as retention_pass
from queueapp import selectors, transport
from queueapp.observability import depth
from queueapp.registry import side_task
from queueapp.runtime import SideTaskRuntime, run_sync
from queueapp.services import engine, hitl

logger = logging.getLogger("hq.worker")


@side_task("relay")
async def relay(runtime: SideTaskRuntime) -> None:
    """Push jobs Redis may not hold; everything waiting when Redis reports a new run_id."""
    last_run_id: str | None = None
    next_old = 0.0
    while not runtime.stopping.is_set():
        try:
            run_id = await run_sync(transport.server_run_id)
            everything = last_run_id is not None and run_id != last_run_id
            if everything:
                logger.warning("Redis restarted (run_id changed): re-pushing every waiting job")
            # A nudge (every push sends one) wakes the relay for jobs never pushed; the safety net
            # for old pushes runs once per interval, however busy the queue is.
            old = time.monotonic() >= next_old
            if old:
                next_old = time.monotonic() + settings.HQ_RELAY_INTERVAL_S
            pushed = await run_sync(engine.relay_pass, everything=everything, old_pushes=old)
            last_run_id = run_id
            if pushed:
                logger.info("relay pushed %d job(s)", pushed)
        except (redis.RedisError, OSError) as exc:
            logger.warning("relay: Redis unavailable (%s)", exc)
        except DatabaseError as exc:
            logger.warning("relay: database error (%s); retrying", exc)
        await runtime.sleep(settings.HQ_RELAY_INTERVAL_S, wake=runtime.relay_wake)


@side_task("reaper")
async def reaper(runtime: SideTaskRuntime) -> None:
    """Recover the running jobs of workers whose heartbeat stopped."""
    while not runtime.stopping.is_set():
        try:
            reaped = await run_sync(engine.reap_pass)
            if reaped:
                logger.warning("reaper recovered %d job(s) from dead workers", reaped)
        except DatabaseError as exc:
            logger.warning("reaper: database error (%s); retrying", exc)
        await runtime.sleep(settings.HQ_HEARTBEAT_INTERVAL_S)


@side_task("hitl_expiry")
async def hitl_expiry(runtime: SideTaskRuntime) -> None:
    """Expire pending HITL requests past `expires_at` (their jobs end `rejected`), without anyone asking.

    Sleeps until the earliest pending expiry, at most the interval (a request created meanwhile
    with a shorter life waits for the next pass).
    """
    interval_s = settings.HQ_HITL_EXPIRY_INTERVAL_S
    while not runtime.stopping.is_set():
        sleep_s = interval_s
        try:
            expired = await run_sync(hitl.hitl_expire_due)
            if expired:
                logger.info("hitl expiry: %d request(s) expired", expired)
            nxt = await run_sync(selectors.hitl_next_expiry)
            if nxt is not None:
                # A floor, so rows another process holds are retried without spinning.
                sleep_s = min(interval_s, max((nxt - clock.now()).total_seconds(), 0.1))
        except DatabaseError as exc:
            logger.warning("hitl expiry: database error (%s); retrying", exc)
        await runtime.sleep(sleep_s)


@side_task("retention")
async def retention(runtime: SideTaskRuntime) -> None:
    """Prune finished jobs, events and fires past `HQ_RETENTION_DAYS`, every `HQ_RETENTION_INTERVAL_S`.

    The first pass waits a random part of a minute, so workers started together do not all try at
    once (only one would get the advisory lock anyway).
    """
    await runtime.sleep(random.uniform(5.0, 60.0))
    while not runtime.stopping.is_set():
        try:
            report = await run_sync(retention_pass.prune)
            if report.skipped:
                logger.info("retention: another process is pruning; skipped")
        except DatabaseError as exc:
            logger.warning("retention: database error (%s); retrying next pass", exc)
        await runtime.sleep(settings.HQ_RETENTION_INTERVAL_S)


@side_task("depth_sampler")
async def depth_sampler(runtime: SideTaskRuntime) -> None:
    """Write each queue's depth per workspace and state at the start of every minute (the dashboard's
    depth-over-time charts); when several workers run it, the first one writes the minute."""
    while not runtime.stopping.is_set():
        try:
            await run_sync(depth.sample_depth)
        except DatabaseError as exc:
            logger.warning("depth sampler: database error (%s); retrying next minute", exc)
        await runtime.sleep(depth.STEP_S - clock.now().timestamp() % depth.STEP_S + 0.2)
