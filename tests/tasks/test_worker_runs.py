"""Django tasks through HQ's real worker: transactions, deferral, async, context, retries, signals."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import pytest
from django.db import transaction
from hq_client.django.compat import TaskResultStatus

from hq import clock
from queueapp.models import Job, JobEvent
from tests.plugin import tasks
from tests.plugin.tasks import signals_seen, task_runs

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_in_a_transaction_rolled_back__no_job_and_no_signal(tasks_admin):
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        assert Job.objects.filter(pk=result.id).exists()  # written in the caller's transaction
        raise RuntimeError("the caller changes its mind")
    assert not Job.objects.filter(pk=result.id).exists()
    assert not JobEvent.objects.filter(job_id=result.id).exists()
    assert signals_seen() == []


def test_enqueue_in_a_transaction_committed__runs_on_a_worker(tasks_admin, burst):
    with transaction.atomic():
        result = tasks.add.enqueue(2, b=3)
        assert signals_seen() == []  # enqueued means committed
    assert [s["signal"] for s in signals_seen()] == ["enqueued"]
    assert result.status == TaskResultStatus.READY and not result.is_finished
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert (result.attempts, len(result.worker_ids), result.errors) == (1, 1, [])
    assert result.enqueued_at <= result.started_at <= result.last_attempted_at <= result.finished_at
    job = Job.objects.get(pk=result.id)
    assert (job.function, job.args, job.state, job.result) == (
        "tests.plugin.tasks.add",
        {"args": [2], "kwargs": {"b": 3}},
        "succeeded",
        5,
    )
    assert [s["signal"] for s in signals_seen()] == ["enqueued", "started", "finished"]


def test_run_after__waits_until_due(tasks_admin, burst):
    later = clock.now() + timedelta(hours=1)
    result = tasks.add.using(run_after=later).enqueue(1, 1)
    job = Job.objects.get(pk=result.id)
    assert (job.state, job.due_at) == ("deferred", later)
    burst()
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY
    clock.set_offset(3601)
    try:
        burst()
    finally:
        clock.set_offset(0)
    done = tasks.add.get_result(result.id)
    assert (done.status, done.return_value) == (TaskResultStatus.SUCCESSFUL, 2)


def test_run_after_in_the_past__runs_at_once(tasks_admin, burst):
    result = tasks.add.using(run_after=clock.now() - timedelta(hours=2)).enqueue(1, 1)
    assert Job.objects.get(pk=result.id).state == "queued"
    burst()
    assert tasks.add.get_result(result.id).return_value == 2


def test_async_task__aenqueue_and_aget_result(tasks_admin, burst):
    result = asyncio.run(tasks.async_count.aenqueue("a1"))
    burst()
    done = asyncio.run(tasks.async_count.aget_result(result.id))
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == {"key": "a1", "runs": 1, "async": True}
    asyncio.run(result.arefresh())
    assert result.return_value == done.return_value


def test_takes_context__receives_the_result_and_attempt(tasks_admin, burst):
    result = tasks.with_context.enqueue("ctx")
    burst()
    done = tasks.with_context.get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == {
        "attempt": 2,
        "id": result.id,
        "status": "RUNNING",
        "worker_ids": 2,
        "errors": ["builtins.RuntimeError"],
        # Whose job it is, so that a task acting on a tenant's data can check it (HQTaskContext).
        "workspace_id": str(Job.objects.get(pk=result.id).workspace_id),
    }
    assert done.attempts == 2 and len(done.errors) == 1 and task_runs("ctx") == 2


def test_failing_task__retried_then_failed_with_its_tracebacks(tasks_admin, burst):
    result = tasks.always_fails.enqueue("wheel")
    burst()
    done = tasks.always_fails.get_result(result.id)
    assert done.status == TaskResultStatus.FAILED and done.is_finished
    assert task_runs("wheel") == 2 and done.attempts == 2
    assert [e.exception_class_path for e in done.errors] == ["builtins.ValueError", "builtins.ValueError"]
    assert all(e.exception_class is ValueError for e in done.errors)
    for error in done.errors:
        assert error.traceback.startswith("Traceback (most recent call last):")
        assert "in always_fails" in error.traceback and error.traceback.rstrip().endswith("ValueError: wheel is broken")
    with pytest.raises(ValueError, match="Task failed"):
        _ = done.return_value
    kinds = list(JobEvent.objects.filter(job_id=result.id).values_list("kind", flat=True))
    assert kinds == ["submitted", "started", "retry_scheduled", "started", "failed"]


def test_return_values_are_normalised_as_django_does(tasks_admin, burst):
    echoed = tasks.echo.enqueue((1, 2), "x", key=("a", None))
    text = tasks.bytes_back.enqueue()
    burst()
    assert tasks.echo.get_result(echoed.id).return_value == {"args": [[1, 2], "x"], "kwargs": {"key": ["a", None]}}
    assert tasks.bytes_back.get_result(text.id).return_value == "café"


def test_signals__enqueued_in_the_caller_started_and_finished_in_the_worker(tasks_admin, procs):
    from tests.conftest import wait_for

    first = tasks.with_context.enqueue("sig")  # fails once, then succeeds
    worker = procs.worker()
    wait_for(
        lambda: [s for s in signals_seen() if s["id"] == first.id and s["signal"] == "finished"],
        timeout=30,
        what="task_finished from the worker",
    )
    assert tasks.with_context.get_result(first.id).status == TaskResultStatus.SUCCESSFUL
    seen = [s for s in signals_seen() if s["id"] == first.id]
    assert [s["signal"] for s in seen] == ["enqueued", "started", "started", "finished"]
    assert seen[0]["pid"] == os.getpid() and seen[0]["status"] == "READY"
    assert {s["pid"] for s in seen[1:]} == {worker.pid}
    assert [(s["status"], s["attempts"], s["errors"]) for s in seen[1:]] == [
        ("RUNNING", 1, 0),
        ("RUNNING", 2, 1),
        ("SUCCESSFUL", 2, 1),
    ]


def test_signals__a_first_attempt_reads_as_get_result_does(tasks_admin, burst):
    """The worker builds a first attempt's signals from what it holds (no read of the job): they
    carry what get_result reads from the database afterwards, and the started one the same attempt."""
    from tests.plugin.tasks import _result_fields

    results = [tasks.add.enqueue(2, b=3), tasks.async_count.enqueue("s1"), tasks.fails_outright.enqueue("s2")]
    burst()
    for result in results:
        seen = {s["signal"]: s["result"] for s in signals_seen() if s["id"] == result.id}
        assert set(seen) == {"enqueued", "started", "finished"}
        done = result.task.get_result(result.id)
        assert seen["finished"] == _result_fields(done)
        assert seen["started"]["status"] == "RUNNING" and "return_value" not in seen["started"]
        for same in ("enqueued_at", "started_at", "last_attempted_at", "worker_ids", "args", "kwargs", "queue"):
            assert seen["started"][same] == seen["finished"][same], same
        assert (seen["started"]["finished_at"], seen["started"]["errors"]) == ("None", [])
    add, counted, failed = (_result_fields(r.task.get_result(r.id)) for r in results)
    assert (add["status"], add["return_value"], len(add["worker_ids"])) == ("SUCCESSFUL", 5, 1)
    assert counted["return_value"] == {"key": "s1", "runs": 1, "async": True}
    assert failed["status"] == "FAILED" and [e[0] for e in failed["errors"]] == ["builtins.KeyError"]
    assert failed["errors"][0][1].rstrip().endswith("KeyError: 's2'")


def test_worker_killed_mid_task__the_task_still_finishes_once(tasks_admin, procs, burst):
    import signal

    from queueapp import services as queue_services
    from tests.conftest import wait_for

    result = tasks.slow.enqueue("killed", 30)
    victim = procs.worker("--without", "reaper")
    wait_for(lambda: task_runs("killed") == 1, timeout=30, what="the first attempt's body to begin")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    def reaped() -> bool:
        queue_services.reap_pass()
        return Job.objects.get(pk=result.id).state != "running"

    wait_for(reaped, timeout=30, what="the reaper to hand the attempt out again")
    burst()
    done = tasks.slow.get_result(result.id)
    assert (done.status, done.return_value, done.attempts, done.errors) == (TaskResultStatus.SUCCESSFUL, 2, 2, [])
    assert task_runs("killed") == 2  # the lost attempt and the one that finished; no third run
    finished = [s for s in signals_seen() if s["id"] == result.id and s["signal"] == "finished"]
    assert len(finished) == 1 and finished[0]["pid"] == os.getpid()  # the burst worker recorded the end
