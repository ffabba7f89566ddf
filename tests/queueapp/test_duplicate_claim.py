"""An attempt delivered twice to one worker: the relay's reclaim of an old push (3678e46) drops the
in-progress key of an attempt a live worker has claimed and not yet started, and pushes it again,
so the same worker may claim it a second time while the first delivery is about to start it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from arq.constants import in_progress_key_prefix

from hq import clock
from hq import redis as hq_redis
from queueapp import services, transport
from queueapp.models import Job
from queueapp.runtime import run_sync
from tests.plugin.hq_plugin import runs
from tests.queueapp.worker_parts import one_worker

pytestmark = pytest.mark.django_db(transaction=True)


def submit(api, caller, **body):
    resp = api.post("/v1/queue/jobs", body, format="json", **caller.headers)
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def test_an_attempt_claimed_twice_by_one_worker_stays_in_flight_and_frees_its_slot_once(api, member):
    """While its body runs, the attempt is in the worker's heartbeat (else the reaper takes it for
    lost and runs the job again), and once it ends every slot of the worker is free again."""
    job_id = submit(api, member, function="tests.sleep", args={"seconds": 4})
    arq_id = transport.arq_job_id(job_id, 1)
    # Pushed longer ago than the relay's grace: its next check of old pushes reclaims it.
    Job.objects.filter(pk=job_id).update(dispatched_at=clock.now() - timedelta(hours=1))

    with one_worker(concurrency=20) as (loop, st, runtime, w):
        loop.run_until_complete(w.claim_fairly())  # the first delivery; its START is not yet sent
        assert list(w.tasks) == [arq_id]
        # The relay's pass of old pushes, between this worker's claim and its START.
        assert services.relay_pass() == 1, "the row was still waiting: reclaimed and pushed again"
        loop.run_until_complete(w.claim_fairly())  # the same attempt, claimed again by the same worker
        held = hq_redis.client().exists(in_progress_key_prefix + arq_id)
        assert held == 1 and hq_redis.client().zscore(transport.queue_key("default"), arq_id), "claimed again"

        async def body_running_alone() -> None:
            main = asyncio.ensure_future(w.main())
            for _ in range(100):  # the body has begun
                await asyncio.sleep(0.05)
                if runs(job_id) == 1:
                    break
            await asyncio.sleep(1.0)  # the refused delivery has ended, and a poll dropped its task
            state = await run_sync(lambda: Job.objects.get(pk=job_id).state)
            in_flight = runtime.heartbeat()["attempts"]
            assert state == "running"
            assert arq_id in in_flight, f"its body is running here, yet the heartbeat lists {in_flight}"
            for _ in range(200):
                await asyncio.sleep(0.05)
                if await run_sync(lambda: Job.objects.get(pk=job_id).state) == "succeeded":
                    break
            await asyncio.sleep(0.3)
            runtime.stopping.set()
            w.wake.set()
            await main

        loop.run_until_complete(body_running_alone())
        loop.run_until_complete(w.close())  # awaits its tasks: every attempt's end is accounted for
        assert runs(job_id) == 1
        assert (w.job_counter, dict(w.lane_running), w.ending) == (0, {}, 0), "every slot is free again"
