"""The queue's own side tasks, run by `runworker` beside the job loop: the outbox relay and the reaper."""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db.utils import DatabaseError

from queueapp import services, transport
from queueapp.registry import side_task

logger = logging.getLogger("hq.worker")


@side_task("relay")
async def relay(runtime) -> None:  # noqa: ANN001 - queueapp.worker.Runtime
    """Push jobs Redis may not hold; everything waiting when Redis reports a new run_id."""
    from queueapp.worker import run_sync

    last_run_id: str | None = None
    while not runtime.stopping.is_set():
        try:
            run_id = await run_sync(transport.server_run_id)
            everything = last_run_id is not None and run_id != last_run_id
            if everything:
                logger.warning("Redis restarted (run_id changed): re-pushing every waiting job")
            pushed = await run_sync(services.relay_pass, everything=everything)
            last_run_id = run_id
            if pushed:
                logger.info("relay pushed %d job(s)", pushed)
        except (redis.RedisError, OSError) as exc:
            logger.warning("relay: Redis unavailable (%s)", exc)
        except DatabaseError as exc:
            logger.warning("relay: database error (%s); retrying", exc)
        await runtime.sleep(settings.HQ_RELAY_INTERVAL_S, wake=runtime.relay_wake)


@side_task("reaper")
async def reaper(runtime) -> None:  # noqa: ANN001
    """Recover the running jobs of workers whose heartbeat stopped."""
    from queueapp.worker import run_sync

    while not runtime.stopping.is_set():
        try:
            reaped = await run_sync(services.reap_pass)
            if reaped:
                logger.warning("reaper recovered %d job(s) from dead workers", reaped)
        except DatabaseError as exc:
            logger.warning("reaper: database error (%s); retrying", exc)
        await runtime.sleep(settings.HQ_HEARTBEAT_INTERVAL_S)
