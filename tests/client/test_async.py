"""`hq_client.AsyncClient`: the same methods, awaited, against the live server and a real worker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hq_client import AsyncClient, NotFound, Timeout, submission

from queueapp.models import Job
from tests.client.conftest import FAST_RETRY
from tests.client.proxy import DroppingProxy
from tests.client.test_client import all_in_flight

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_async_client_submits_waits_pages_and_raises(hq_url, caller, worker):
    async def scenario() -> None:
        async with AsyncClient(hq_url, caller.token, retry=FAST_RETRY, page_size=2) as hq:
            me = await hq.me()
            assert me["workspace_id"] == str(caller.workspace.pk)
            job = await hq.job_submit("tests.count")
            done = await hq.wait(job["id"], timeout=30)
            assert done["state"] == "succeeded" and done["result"] == {"attempt": 1}
            events = [event["kind"] async for event in hq.job_events(job["id"])]  # 2 per page
            assert events[0] == "submitted" and events[-1] == "succeeded" and len(events) >= 3

            deferred = await hq.jobs_submit_batch(
                [submission("tests.count", {"i": i}, defer_by_seconds=3600) for i in range(5)]
            )
            listed = [j["id"] async for j in hq.jobs(state="deferred")]
            assert sorted(listed) == sorted(j["id"] for j in deferred)

            together = await asyncio.gather(*(hq.job_get(j["id"]) for j in deferred))
            assert [j["args"] for j in together] == [{"i": i} for i in range(5)]

            with pytest.raises(NotFound):
                await hq.job_get(str(uuid.uuid4()))
            with pytest.raises(Timeout):
                await hq.wait(deferred[0]["id"], timeout=0.2)

    asyncio.run(scenario())


def test_the_async_submit_many_has_its_chunks_under_way_at_once(hq_url, caller):
    hold, missed = all_in_flight(3)
    proxy = DroppingProxy(hq_url, drop_first=0, on_upstream=hold)

    async def scenario() -> list:
        async with AsyncClient(proxy.url, caller.token, retry=FAST_RETRY) as hq:
            items = [submission("tests.count", {"i": i}, defer_by_seconds=3600) for i in range(25)]
            return await hq.jobs_submit_many(items, chunk=9, concurrency=3)

    try:
        jobs = asyncio.run(scenario())
    finally:
        proxy.close()
    assert missed == []  # 9 + 9 + 7: all three in flight together
    assert [j["args"]["i"] for j in jobs] == list(range(25))
    assert Job.objects.filter(function="tests.count").count() == 25
