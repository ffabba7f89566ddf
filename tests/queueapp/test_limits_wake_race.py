"""A held job woken between its hold and its worker's forget: the wake's push is refused (ARQ still
holds the attempt), then the forget takes the attempt out of ARQ. Without the holder's second look
the job sat in PostgreSQL, unheld and unpushed, until the relay's grace (10 s in production).

Driven step by step on one worker's real parts (PgStore, ARQ's Redis, WAKE_SQL), in the order the
race takes."""

from __future__ import annotations

import pytest
from arq.constants import job_key_prefix

from hq import redis as hq_redis
from queueapp import limits, transport
from queueapp.models import Job, KeyLimit
from queueapp.store import Held, Outcome, Started
from tests.queueapp.worker_parts import one_worker

pytestmark = pytest.mark.django_db(transaction=True)


def submit(api, caller, **body):
    resp = api.post("/v1/queue/jobs", body, format="json", **caller.headers)
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def test_a_job_woken_before_its_holder_forgets_it_is_pushed_again(api, member):
    limits.key_limit_save(KeyLimit(pattern="race:*", concurrency=1))
    first = submit(api, member, function="hq.echo", concurrency_key="race:1")
    second = submit(api, member, function="hq.echo", concurrency_key="race:1")
    arq_id = transport.arq_job_id(second, 1)
    client = hq_redis.client()
    assert client.exists(job_key_prefix + arq_id)  # pushed on submit: ARQ holds the attempt

    with one_worker(concurrency=4) as (loop, st, runtime, w):
        started = loop.run_until_complete(st.start(first, 1, runtime.worker_id))
        assert isinstance(started, Started)
        held = loop.run_until_complete(st.start(second, 1, runtime.worker_id))
        assert isinstance(held, Held) and held.reason == "concurrency"
        # The first ends before the holder has forgotten the second: the wake clears its hold and
        # pushes it, refused, since ARQ still holds that attempt.
        ended = loop.run_until_complete(st.finish(first, 1, Outcome("succeed", "succeeded", result=None)))
        assert ended
        assert Job.objects.get(pk=second).held_at is None
        # Now the holder: out of ARQ, then (the fix) a second look that finds it woken.
        loop.run_until_complete(runtime._held(w, arq_id, held))
        loop.run_until_complete(w.finished_ids.idle())
        assert client.exists(job_key_prefix + arq_id), "woken, yet in no queue: the relay's grace would find it"
        assert client.zscore(transport.queue_key("default"), arq_id) is not None
