"""The schedule engine's parts in the worker process: the fire job and the scheduler side task."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.utils import DatabaseError

from hq import clock, metrics
from queueapp.registry import JobContext, job_function, side_task
from queueapp.runtime import SideTaskRuntime, run_sync
from schedules import engine, fires

logger = logging.getLogger("hq.scheduler")


@job_function(engine.FIRE_FUNCTION, internal=True, max_tries=2, timeout=900, retry_backoff=1.0)
def fire(ctx: JobContext) -> dict[str, Any]:
    """Run one schedule fire (engine-only)."""
    return fires.fire_job(ctx)


@side_task("scheduler")
async def scheduler(runtime: SideTaskRuntime) -> None:
    """Fire due schedules, then sleep until the earliest next fire or a change notification."""
    wake = runtime.event(engine.WAKE_MESSAGE)
    while not runtime.stopping.is_set():
        max_sleep_s = settings.HQ_SCHEDULER_MAX_SLEEP_S
        sleep_s = max_sleep_s
        try:
            fired, nxt = await run_sync(engine.scheduler_tick)
            metrics.scheduler_iteration(fired)
            if fired:
                logger.info("scheduler fired %d schedule(s)", fired)
            if nxt is not None:
                sleep_s = min(max_sleep_s, max((nxt - clock.now()).total_seconds(), 0.0))
                if not fired and sleep_s == 0.0:
                    sleep_s = 0.2  # due rows are locked by another scheduler: let it finish
        except DatabaseError as exc:
            logger.warning("scheduler: database error (%s); retrying", exc)
            sleep_s = 1.0
        await runtime.sleep(sleep_s, wake=wake)
