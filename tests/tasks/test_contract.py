"""The django.tasks backend contract, as Django's own tests/tasks suite checks it, against HQBackend.

Each test is HQ's own, after a behaviour Django's suite covers for a backend that keeps results
(enqueue, results, validation, using(), checks); the rest of this directory runs them on a worker.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from hq_client.django import HQTask
from hq_client.django.compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    task,
    task_backends,
)

from hq import clock
from queueapp import services
from queueapp.models import Job
from queueapp.tasks_backend import HQBackend
from tests import factories
from tests.plugin import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@task
def undiscovered(x: int) -> int:
    """A valid task, but defined outside any installed app's tasks module: never run."""
    return x


def module_level_no_context(key: str) -> str:
    return key


def test_backend__flags_and_task_class(tasks_admin):
    backend = task_backends["default"]
    assert isinstance(backend, HQBackend)
    assert (backend.supports_defer, backend.supports_async_task, backend.supports_get_result) == (True, True, True)
    assert backend.supports_priority is True
    assert isinstance(tasks.add, HQTask) and tasks.add.get_backend() is backend
    assert backend.queues == {"default"}


def test_enqueue__returns_a_ready_result_as_recorded(tasks_admin):
    result = tasks.echo.enqueue((1, 2), flag=True)
    assert result.status == TaskResultStatus.READY and not result.is_finished
    assert (result.args, result.kwargs) == ([[1, 2]], {"flag": True})
    assert (result.started_at, result.finished_at, result.last_attempted_at) == (None, None, None)
    assert (result.errors, result.worker_ids, result.attempts) == ([], [], 0)
    assert result.backend == "default" and result.task is tasks.echo
    job = Job.objects.get(pk=result.id)
    assert result.enqueued_at == job.created_at and job.workspace_id == tasks_admin.workspace.pk
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    fetched = tasks.echo.get_result(result.id)
    assert (fetched.id, fetched.status, fetched.args, fetched.kwargs) == (
        result.id,
        result.status,
        [[1, 2]],
        {"flag": True},
    )


def test_enqueue__the_tasks_priority_is_the_jobs(tasks_admin):
    assert Job.objects.get(pk=tasks.echo.using(priority=42).enqueue(1).id).priority == 42
    assert Job.objects.get(pk=tasks.echo.using(priority=-100).enqueue(1).id).priority == -100
    assert Job.objects.get(pk=tasks.echo.enqueue(2).id).priority == 0  # Django's default
    assert Job.objects.get(pk=tasks.urgent.enqueue(1).id).priority == 30  # the task's declared priority
    assert Job.objects.get(pk=tasks.urgent.using(priority=0).enqueue(1).id).priority == 0
    # A REST submit of the task's function (any discovered task may be submitted) takes the task's priority.
    rest, _ = services.job_submit(
        workspace=tasks_admin.workspace,
        owner=None,
        submission=services.Submission(function=tasks.urgent.module_path, args={"args": [1], "kwargs": {}}),
    )
    assert rest.priority == 30


def test_enqueue__arguments_that_are_not_json_raise_and_record_nothing(tasks_admin):
    with pytest.raises(TypeError):
        tasks.echo.enqueue(object())
    with pytest.raises(TypeError):
        tasks.echo.enqueue(when=datetime(2026, 1, 1))
    assert not Job.objects.exists()


def test_enqueue__a_task_not_discovered_at_start_up_is_refused(tasks_admin):
    with pytest.raises(InvalidTask, match="not discovered"):
        undiscovered.enqueue(1)
    impostor = dataclasses.replace(tasks.add, func=module_level_no_context)
    with pytest.raises(InvalidTask, match="not discovered"):
        impostor.enqueue("x")
    assert not Job.objects.exists()


def test_get_result__unknown_ids_and_other_jobs_do_not_exist(tasks_admin):
    plain, _ = services.job_submit(
        workspace=tasks_admin.workspace,
        owner=tasks_admin.user,
        submission=services.Submission(function="tests.count", args={}),
    )
    backend = task_backends["default"]
    for missing in ("not-a-uuid", "00000000-0000-4000-8000-000000000000", str(plain.pk), ""):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(missing)


def test_get_result__of_another_task_is_a_mismatch(tasks_admin):
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        tasks.echo.get_result(result.id)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"priority": 101}, "priority"),
        ({"priority": -101}, "priority"),
        ({"queue_name": "elsewhere"}, "Queue 'elsewhere' is not valid"),
        ({"run_after": datetime(2030, 1, 1)}, "aware"),
        ({"max_tries": 0}, "max_tries"),
        ({"max_tries": 26}, "max_tries"),
        ({"timeout": 0}, "timeout"),
        ({"retry_backoff": -1}, "retry_backoff"),
        ({"correlation_id": "x" * 201}, "correlation_id"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
    ],
)
def test_using__invalid_options_are_refused(tasks_admin, change, message):
    with pytest.raises(InvalidTask, match=message):
        tasks.add.using(**change)


def test_task__definitions_the_backend_cannot_run_are_refused(tasks_admin):
    def local(x: int) -> int:
        return x

    with pytest.raises(InvalidTask, match="module level"):
        task(local)
    with pytest.raises(InvalidTask, match="context"):
        task(takes_context=True)(module_level_no_context)
    with pytest.raises(InvalidTask, match="approval"):
        tasks.gated_transfer.using(run_after=clock.now() + timedelta(minutes=1))


def test_using__returns_a_copy_with_django_and_hq_options(tasks_admin):
    later = clock.now() + timedelta(minutes=5)
    copy = tasks.count.using(run_after=later, max_tries=7, timeout=9, retry_backoff=0.5, correlation_id="c-1")
    assert copy is not tasks.count and copy.func is tasks.count.func
    assert (copy.run_after, copy.max_tries, copy.timeout, copy.retry_backoff, copy.correlation_id) == (
        later,
        7,
        9,
        0.5,
        "c-1",
    )
    assert (tasks.count.run_after, tasks.count.max_tries, tasks.count.timeout) == (None, 3, None)
    result = copy.enqueue("opts")
    job = Job.objects.get(pk=result.id)
    assert (job.max_tries, job.timeout_s, job.retry_backoff_s, job.correlation_id, job.due_at) == (
        7,
        9,
        0.5,
        "c-1",
        later,
    )


def test_task_options__defaults_from_the_decorator(tasks_admin):
    job = Job.objects.get(pk=tasks.always_fails.enqueue("d").id)
    assert (job.max_tries, job.retry_backoff_s, job.timeout_s) == (2, 0.0, 300)


def test_idempotency_key__the_second_enqueue_returns_the_first_job(tasks_admin):
    keyed = tasks.add.using(idempotency_key="invoice-9")
    first = keyed.enqueue(1, 2)
    again = keyed.enqueue(1, 2)
    assert again.id == first.id and Job.objects.count() == 1
    from hq.errors import Conflict

    with pytest.raises(Conflict):
        keyed.enqueue(3, 4)  # the same key with another call


def test_workspace__a_task_may_name_its_own(tasks_admin):
    other = factories.workspace()
    result = tasks.add.using(workspace=other.slug).enqueue(1, 1)
    assert Job.objects.get(pk=result.id).workspace_id == other.pk
    by_id = tasks.add.using(workspace=str(other.pk)).enqueue(1, 1)
    assert Job.objects.get(pk=by_id.id).workspace_id == other.pk
    with pytest.raises(ImproperlyConfigured, match="No workspace 'nowhere'"):
        tasks.add.using(workspace="nowhere").enqueue(1, 1)


def test_workspace__missing_everywhere_is_a_configuration_error(transactional_db, settings):
    settings.TASKS = {"default": {"BACKEND": "queueapp.tasks_backend.HQBackend"}}
    with pytest.raises(ImproperlyConfigured, match="no WORKSPACE"):
        tasks.add.enqueue(1, 1)
    assert not Job.objects.exists()


def test_check__reports_options_workspace_and_queues(transactional_db, settings):
    settings.HQ_QUEUES = ["default"]
    settings.TASKS = {
        "default": {
            "BACKEND": "queueapp.tasks_backend.HQBackend",
            "QUEUES": ["default", "Bad Name", "mail"],
            "OPTIONS": {"WORKSPAC": "typo"},
        }
    }
    ids = sorted(message.id for message in task_backends["default"].check())
    assert ids == ["queueapp.E101", "queueapp.E102", "queueapp.W101", "queueapp.W102"]
    settings.TASKS = {
        "default": {"BACKEND": "queueapp.tasks_backend.HQBackend", "OPTIONS": {"WORKSPACE": "dev"}},
    }
    assert list(task_backends["default"].check()) == []
