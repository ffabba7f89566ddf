"""The in-process backend's pushes leave from the pusher thread (queueapp.enqueue.Pusher): the job
is committed when `enqueue()` returns, the push follows off the caller's path, a push Redis refuses
is the relay's, and a process that exits makes the pushes it still holds first."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import override_settings
from hq_client.django.compat import task_enqueued

from hq import redis as hq_redis
from queueapp import enqueue, services, transport
from queueapp.models import Job
from tests.conftest import ROOT
from tests.plugin import tasks

# Every test here runs on a redis-server of its own: CLIENT PAUSE holds the whole server's writes,
# those of the other xdist worker's tests too.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_redis")]


@contextmanager
def redis_writes_paused() -> Iterator[None]:
    """Redis holds every write command until the block ends (reads still answer); HQ's client waits
    up to 10 s for an answer instead of HQ_REDIS_TIMEOUT_S, so a held push is delayed, not failed.
    The test plugin's `task_enqueued` receiver, which records in Redis, is off meanwhile."""
    admin = redis.Redis.from_url(settings.REDIS_URL)  # no breaker: it must unpause whatever happens
    with override_settings(HQ_REDIS_TIMEOUT_S=10.0), enqueued_receiver_off():
        hq_redis.reset()
        admin.execute_command("CLIENT", "PAUSE", "8000", "WRITE")
        try:
            yield
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
            assert enqueue.pushes_flush()
    hq_redis.reset()


@contextmanager
def enqueued_receiver_off() -> Iterator[None]:
    """The test plugin's `task_enqueued` receiver records in Redis, on the caller's path: off here."""
    task_enqueued.disconnect(tasks._on_enqueued)
    try:
        yield
    finally:
        task_enqueued.connect(tasks._on_enqueued)


def _committed(job_id: object) -> bool:
    """Is the job's row visible to another session (committed)?"""
    s = connection.settings_dict
    with psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"], dbname=s["NAME"]) as c:
        return c.execute("SELECT count(*) FROM queueapp_job WHERE id = %s", [job_id]).fetchone() == (1,)


def _queued_ids() -> set[str]:
    entries = hq_redis.client().zrange(transport.queue_key("default"), 0, -1)
    return {entry.decode().split(":")[0] for entry in entries}


def test_enqueue_in_autocommit__returns_committed_before_its_push_which_the_pusher_makes(tasks_admin):
    with redis_writes_paused():
        result = tasks.add.enqueue(1, 2)
        # Returned while Redis holds every write: the push was not on enqueue's path...
        assert _committed(result.id)
        assert transport.queue_length("default") == 0
    # ... and the pusher made it once Redis took writes again.
    assert _queued_ids() == {str(result.id)}
    assert Job.objects.get(pk=result.id).dispatched_at is not None


def test_many_enqueues__each_pushed_once(tasks_admin):
    with redis_writes_paused():
        ids = {str(tasks.add.enqueue(i, i).id) for i in range(20)}
    assert _queued_ids() == ids


def test_redis_down__the_pusher_leaves_the_job_to_the_relay(tasks_admin, burst):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"), enqueued_receiver_off():
        hq_redis.reset()
        result = tasks.add.enqueue(2, 3)
        assert enqueue.pushes_flush()
    hq_redis.reset()
    assert Job.objects.get(pk=result.id).dispatched_at is None, "a failed push marks the job undispatched"
    assert transport.queue_length("default") == 0
    assert services.relay_pass() == 1
    assert _queued_ids() == {str(result.id)}
    burst()
    assert Job.objects.get(pk=result.id).state == "succeeded"


def test_a_plain_submit_still_pushes_before_returning(member):
    """Only callers that ask for it (the in-process backend) push in the background; a view's submit does not."""
    with redis_writes_paused():
        # A view waits for its push: answered only once Redis takes writes again, which this thread
        # cannot allow while it waits. So submit through the service from a thread of its own.
        import threading

        done = threading.Event()
        job_ids: list[str] = []

        def submit() -> None:
            job, _ = services.job_submit(
                workspace=member.workspace,
                owner=member.user,
                submission=services.Submission(function="hq.echo", args={}),
            )
            job_ids.append(str(job.pk))
            connection.close()
            done.set()

        threading.Thread(target=submit).start()
        assert not done.wait(1.0), "a plain submit returned before its push was made"
    assert done.wait(10.0)
    assert _queued_ids() == set(job_ids)


EXIT_RIGHT_AFTER_ENQUEUE = """
import time
import django
django.setup()
from hq import redis as hq_redis
from hq_client.django.compat import task_enqueued
from queueapp import enqueue, transport
from tests.plugin import tasks
task_enqueued.disconnect(tasks._on_enqueued)  # it records in Redis, on the caller's path
hq_redis.client().execute_command("CLIENT", "PAUSE", "1500", "WRITE")
first = tasks.add.enqueue(4, 5)
while enqueue.PUSHER.pending:  # the pusher's first round took it, and waits for Redis
    time.sleep(0.01)
second = tasks.add.enqueue(6, 7)  # left for the next round, not yet sent when this script ends
print(first.id, second.id, transport.queue_length("default"))
"""


def test_a_process_that_exits_right_after_enqueue__makes_its_push_first(tasks_admin, worker_env, private_redis):
    env = {
        **worker_env,
        "HQ_TASKS_WORKSPACE": tasks_admin.workspace.slug,
        "HQ_REDIS_TIMEOUT_S": "10",
        "HQ_TEST_REDIS_BASE": private_redis.base,
    }
    out = subprocess.run(
        [sys.executable, "-c", EXIT_RIGHT_AFTER_ENQUEUE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    first, second, queued_at_return = out.stdout.split()
    assert queued_at_return == "0", "enqueue returned while Redis held the push"
    assert _queued_ids() == {first, second}, "the exit waited for the pusher's rounds"
    assert Job.objects.filter(pk__in=[first, second], dispatched_at__isnull=False).count() == 2
