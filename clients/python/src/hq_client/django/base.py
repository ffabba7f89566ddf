"""`HQTaskBackend`: what HQ's two django.tasks backends share, so a task reads the same through either.

`queueapp.tasks_backend.HQBackend` (inside HQ, over the ORM) and `hq_client.django.RemoteBackend`
(a remote project, over HTTP) both subclass it. It holds the contract flags, the task class
(`HQTask`) and its validation, how a call becomes a job's `args`, which of a task's options a job
takes, and how a job, its events and its latest approval request read as a `TaskResult`. Each
backend feeds it the same shapes: a job as the REST API shows it (`hq_client.types.Job`, with
datetimes as values or ISO text), events as `{"kind", "detail"}` and a HITL request as
`{"state", "expires_at", "comment"}`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from hq_client.django.compat import BaseTaskBackend, Task, TaskError, TaskResult, TaskResultStatus, normalize_json
from hq_client.django.task import HQTask, option, validate_options
from hq_client.results import task_errors, task_worker_ids
from hq_client.states import task_call, task_job_args, task_status
from hq_client.types import parse_datetime

T = TypeVar("T")


def _when(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(value) if value else None


class HQTaskBackend(BaseTaskBackend):
    """The part of a django.tasks backend on HQ that does not depend on how it reaches HQ."""

    task_class = HQTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    # A task's priority (Django's -100..100, the range of HQ's) is its job's (`job_options`).
    supports_priority = True

    def validate_task(self, task: Task[Any, Any]) -> None:
        """Django's checks, then HQ's options (`HQTask`); InvalidTask says what is wrong."""
        super().validate_task(task)
        validate_options(task)

    # --- enqueue: the job of a call -------------------------------------------------------------------

    @staticmethod
    def job_args(task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The job `args` that carry `task(*args, **kwargs)`; TypeError when they are not JSON (as Django's)."""
        try:
            return task_job_args(normalize_json(list(args)), normalize_json(dict(kwargs)))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"The arguments of {task.module_path} must be JSON: {exc}") from exc

    @staticmethod
    def job_options(task: Task[Any, Any]) -> dict[str, Any]:
        """HQ's options of `task` as a submit's fields (the REST API's names; None leaves HQ's default)."""
        return {
            "queue": task.queue_name,
            "max_tries": option(task, "max_tries"),
            "timeout_seconds": option(task, "timeout"),
            "require_approval": bool(option(task, "requires_approval", False)),
            "correlation_id": option(task, "correlation_id") or "",
            "idempotency_key": option(task, "idempotency_key"),
            "priority": task.priority,
        }

    # --- results --------------------------------------------------------------------------------------

    def task_result(
        self,
        task: Task[Any, T],
        job: Mapping[str, Any],
        events: Iterable[Mapping[str, Any]] = (),
        approval: Mapping[str, Any] | None = None,
    ) -> TaskResult[T]:
        """The TaskResult a job reads as (README, "Django tasks"): status, call, timestamps, one error
        per failed attempt (then why a job that did not run to its end did), the attempts' workers.

        :param approval: the job's latest HITL request, read for a rejected job.
        """
        events = list(events)
        args, kwargs = task_call(job["args"] if isinstance(job["args"], dict) else {})
        result: TaskResult[T] = TaskResult(
            task=self._as_enqueued(task, str(job["queue"])),
            id=str(job["id"]),
            status=TaskResultStatus(task_status(job["state"])),
            enqueued_at=_when(job["created_at"]),
            started_at=_when(job["first_started_at"]),
            finished_at=_when(job["finished_at"]),
            last_attempted_at=_when(job["started_at"]),
            args=[],
            kwargs={},
            backend=self.alias,
            errors=[
                TaskError(exception_class_path=e.exception_class_path, traceback=e.traceback)
                for e in task_errors(job, events, approval)
            ],
            worker_ids=task_worker_ids(events),
        )
        # The call as the job holds it, JSON already (normalised when it was enqueued, or read back
        # as JSON): TaskResult's own normalising would walk it again through ABC checks, per value,
        # a third of a result's cost (`enqueue_many` makes 1,000 a batch).
        object.__setattr__(result, "args", args)
        object.__setattr__(result, "kwargs", kwargs)
        if job["state"] == "succeeded":
            object.__setattr__(result, "_return_value", job["result"])
        return result

    def _as_enqueued(self, task: Task[Any, T], queue: str) -> Task[Any, T]:
        """The task as its job was enqueued: on this backend, and on the job's queue when it has it."""
        changes: dict[str, Any] = {}
        if task.backend != self.alias:
            changes["backend"] = self.alias
        if queue != task.queue_name and queue in self.queues:
            changes["queue_name"] = queue
        return dataclasses.replace(task, **changes) if changes else task
