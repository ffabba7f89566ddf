"""Django's Tasks framework on HQ: `my_task.enqueue()` records an HQ job; HQ's workers run it.

`HQBackend` is a `TASKS` backend for code that runs inside HQ (plugins, HQ's own apps). A task is
an HQ job function named by its module path (`myapp.tasks.send_invoice`), registered when HQ
starts: `discover` finds the tasks of every installed app's `tasks` and `hq_plugin` modules, and
only those run (a REST submit naming any other dotted path is 400, as for any unknown function;
nothing is ever imported by name). The job's `args` carry the call (`hq_client.states`).

- `enqueue` goes through `services.job_submit`, the path of every submit: the job row is written
  in the caller's transaction (rolled back, no job) and pushed to ARQ after commit (the relay
  pushes whatever a failed push left). `task_enqueued` fires once the job is committed.
- The worker runs the task's function as the job's body: `task_started` fires before it,
  `task_finished` once the end of the attempt that finished the job is recorded (both in the
  worker's process).
- `get_result` reads the job and its events into a `TaskResult` (`task_result_of`); the
  README's "Django tasks" section has the table.

HQ's own options ride on the task (`HQTask`): max tries, backoff, timeout, approval (the HITL
gate), correlation id, idempotency key, workspace. `@task(max_tries=5)` passes them on both Django
6 and the backport (both forward extra keywords to the backend's `task_class`); `hq_task` is the
same decorator with them named; `.using(...)` takes them per call.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from hq_client.states import task_call, task_call_problems, task_job_args, task_status

from hq import clock
from queueapp import registry
from queueapp.runtime import run_sync
from queueapp.tasks_compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task,
    task_enqueued,
    task_finished,
    task_started,
)

if TYPE_CHECKING:
    from hq.models import Workspace
    from queueapp.models import Job, JobEvent

T = TypeVar("T")

#: The modules of an installed app whose tasks `discover` registers.
TASK_MODULES = ("tasks", "hq_plugin")
#: OPTIONS keys HQBackend reads.
OPTION_KEYS = frozenset({"WORKSPACE"})
MAX_TRIES = 25
MAX_TEXT = 200


# --- why a task that did not run is FAILED -------------------------------------------------------


class TaskNotRun(Exception):
    """The task's job ended without running it to the end."""


class TaskCancelled(TaskNotRun):
    """The job was cancelled (before it started, or while it ran)."""


class TaskRejected(TaskNotRun):
    """A person rejected the job at its approval gate (HITL)."""


class TaskApprovalExpired(TaskRejected):
    """Nobody decided the job's approval request before it expired."""


class TaskAttemptFailed(Exception):
    """An attempt failed without an exception of the task's own (its worker was lost, say)."""


# --- the task class --------------------------------------------------------------------------------


if TYPE_CHECKING:
    _TaskBase = Task[Any, Any]  # generic in the backport's annotations
else:
    _TaskBase = Task  # Django 6's is not subscriptable


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HQTask(_TaskBase):
    """A Django task with HQ's own options; `None` leaves the default (HQ's or the registered task's).

    :param max_tries: attempts per run before the job fails (1 to 25; HQ's default 3).
    :param retry_backoff: base seconds of the exponential backoff between attempts (default 2).
    :param timeout: per-attempt limit in seconds (default 300).
    :param requires_approval: every call waits for a person's approval (HITL) before it runs.
    :param approval_ttl: seconds an approval request stays open (default a day).
    :param correlation_id: groups related jobs (`/v1/queue/correlation/{id}`).
    :param idempotency_key: one job per key in the workspace for `HQ_IDEMPOTENCY_WINDOW_S`: an
        enqueue with a key already used returns the first job's result (set it with `.using()`).
    :param workspace: the job's workspace (slug or id) instead of the backend's WORKSPACE.
    """

    max_tries: int | None = None
    retry_backoff: float | None = None
    timeout: int | None = None
    requires_approval: bool = False
    approval_ttl: int | None = None
    correlation_id: str = ""
    idempotency_key: str | None = None
    workspace: str | None = None

    def using(
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: datetime | None = None,
        backend: str | None = None,
        max_tries: int | None = None,
        retry_backoff: float | None = None,
        timeout: int | None = None,
        requires_approval: bool | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        workspace: str | None = None,
    ) -> HQTask:
        """A copy with other defaults: Django's (priority, queue, run_after, backend) and HQ's."""
        given: dict[str, Any] = {
            "priority": priority,
            "queue_name": queue_name,
            "run_after": run_after,
            "backend": backend,
            "max_tries": max_tries,
            "retry_backoff": retry_backoff,
            "timeout": timeout,
            "requires_approval": requires_approval,
            "correlation_id": correlation_id,
            "idempotency_key": idempotency_key,
            "workspace": workspace,
        }
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})


def hq_task(
    function: Callable[..., Any] | None = None,
    *,
    queue_name: str = "default",
    backend: str = "default",
    takes_context: bool = False,
    max_tries: int | None = None,
    retry_backoff: float | None = None,
    timeout: int | None = None,
    requires_approval: bool = False,
    approval_ttl: int | None = None,
    correlation_id: str = "",
    workspace: str | None = None,
) -> Any:
    """Django's `@task` with HQ's options named (see `HQTask`); the same decorator underneath.

    Django 6.1's `@task(max_tries=5)` and the backport's do the same (each forwards extra keywords
    to the backend's `task_class`); this one spells them out for type checkers and readers.
    """
    options: dict[str, Any] = {
        "queue_name": queue_name,
        "backend": backend,
        "takes_context": takes_context,
        "max_tries": max_tries,
        "retry_backoff": retry_backoff,
        "timeout": timeout,
        "requires_approval": requires_approval,
        "approval_ttl": approval_ttl,
        "correlation_id": correlation_id,
        "workspace": workspace,
    }
    decorate: Any = task  # its overloads list no options beyond Django's own
    return decorate(function, **options) if function is not None else decorate(**options)


def _option(task_: Task[Any, Any], name: str, default: Any = None) -> Any:
    """An HQ option of a task (a plain `Task` has none)."""
    return getattr(task_, name, default)


# --- discovery: the tasks the worker may run -------------------------------------------------------

#: Discovered tasks by module path (the job function's name).
_tasks: dict[str, Task[Any, Any]] = {}


def discover() -> list[str]:
    """Register the HQ tasks of every installed app's `tasks` and `hq_plugin` modules.

    Run at start-up (`QueueConfig.ready`, after those modules are imported). A task counts when it
    is a module attribute there, runs on an HQBackend and its function lives in an installed app's
    package. Returns the module paths registered.
    """
    packages = [config.name for config in apps.get_app_configs()]
    found = []
    for package in packages:
        for suffix in TASK_MODULES:
            module = sys.modules.get(f"{package}.{suffix}")
            for value in vars(module).values() if module is not None else ():
                if isinstance(value, Task) and _runs_here(value) and _in_packages(value.func.__module__, packages):
                    _register(value)
                    found.append(value.module_path)
    return found


def _runs_here(task_: Task[Any, Any]) -> bool:
    return isinstance(task_.get_backend(), HQBackend)


def _in_packages(module: str, packages: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _register(task_: Task[Any, Any]) -> None:
    """Make `task_` the job function named by its module path (`registry.job_function`)."""
    name = task_.module_path
    registered = _tasks.get(name)
    if registered is not None and registered.func is task_.func:
        return
    defaults = registry.JobFunction
    _tasks[name] = task_
    registry.job_function(
        name,
        queue=task_.queue_name,
        requires_approval=bool(_option(task_, "requires_approval", False)),
        timeout=_option(task_, "timeout") or defaults.timeout_s,
        max_tries=_option(task_, "max_tries") or defaults.max_tries,
        retry_backoff=_first(_option(task_, "retry_backoff"), defaults.retry_backoff_s),
        approval_ttl=_option(task_, "approval_ttl") or defaults.approval_ttl_s,
        check_args=_check_call,
        on_end=functools.partial(_ended, name),
    )(_body(task_))


def _first(value: T | None, default: T) -> T:
    return default if value is None else value


def registered_task(name: str) -> Task[Any, Any] | None:
    """The discovered task that job function `name` runs, if it is one."""
    return _tasks.get(name)


def _check_call(args: dict[str, Any], _admin: bool) -> dict[str, str]:
    return task_call_problems(args)


# --- the worker's side: run the task, fire the signals ------------------------------------------------


def _body(task_: Task[Any, Any]) -> registry.JobCallable:
    """The job body of a task: a coroutine for an async task, else a function (run in a thread)."""
    body: Any = functools.partial(
        _run_async if inspect.iscoroutinefunction(task_.func) else _run_sync, task_.module_path
    )
    body.__doc__ = task_.func.__doc__
    body.__qualname__ = f"django task {task_.module_path}"  # for the registry's duplicate check
    return body  # type: ignore[no-any-return]


def _run_sync(name: str, ctx: registry.JobContext) -> Any:
    task_, result = _started(name, ctx)
    args, kwargs = task_call(ctx.args)
    if task_.takes_context:
        args.insert(0, TaskContext(task_result=result))
    return _json_ready(task_.func(*args, **kwargs))


async def _run_async(name: str, ctx: registry.JobContext) -> Any:
    task_, result = await run_sync(_started, name, ctx)
    args, kwargs = task_call(ctx.args)
    if task_.takes_context:
        args.insert(0, TaskContext(task_result=result))
    return _json_ready(await task_.func(*args, **kwargs))


def _started(name: str, ctx: registry.JobContext) -> tuple[Task[Any, Any], TaskResult[Any]]:
    """Read the running job's result and fire `task_started` (in the worker's process)."""
    from queueapp.models import Job

    task_ = _tasks[name]
    result = task_result_of(Job.objects.get(pk=ctx.job_id), task_)
    _send(task_started, result)
    return task_, result


async def _ended(name: str, job_id: uuid.UUID) -> None:
    """Fire `task_finished` with the finished job's result (the worker's end hook)."""
    await run_sync(_finished, name, job_id)


def _finished(name: str, job_id: uuid.UUID) -> None:
    from queueapp.models import Job

    _send(task_finished, task_result_of(Job.objects.get(pk=job_id), _tasks[name]))


def _send(signal: Any, result: TaskResult[Any]) -> None:
    """Fire a task signal in the worker; a receiver's error is logged, never the task's failure."""
    import logging

    for receiver, response in signal.send_robust(type(result.task.get_backend()), task_result=result):
        if isinstance(response, Exception):
            logging.getLogger("hq.worker").error("a receiver of a task signal failed: %r", receiver, exc_info=response)


def _json_ready(value: Any) -> Any:
    """The return value as Django normalises it (tuples as lists, bytes as text); anything else
    is left for the worker, which fails a result that is not JSON at once."""
    try:
        return normalize_json(value)
    except (TypeError, ValueError):
        return value


# --- results -----------------------------------------------------------------------------------------

#: Events of an attempt that ended in failure (retried later, or the job's last).
_FAILED_KINDS = ("retry_scheduled", "failed")


def task_result_of(job: Job, task_: Task[Any, Any], events: list[JobEvent] | None = None) -> TaskResult[Any]:
    """The TaskResult a job reads as (README, "Django tasks"): one read of its events unless given."""
    from queueapp.models import HITLRequest, HITLState, JobEvent, JobState

    if events is None:
        events = list(JobEvent.objects.filter(job_id=job.pk, kind__in=("started", *_FAILED_KINDS)).order_by("at", "id"))
    errors = [_attempt_error(event) for event in events if event.kind in _FAILED_KINDS]
    if job.state == JobState.CANCELLED:
        errors.append(_error(TaskCancelled, f"Cancelled: {job.error or 'the job was cancelled.'}"))
    elif job.state == JobState.REJECTED:
        latest = HITLRequest.objects.filter(job_id=job.pk).order_by("-created_at").first()
        if latest is not None and latest.state == HITLState.EXPIRED:
            errors.append(_error(TaskApprovalExpired, f"Expired: nobody approved it by {latest.expires_at}."))
        else:
            comment = f" ({latest.comment})" if latest is not None and latest.comment else ""
            errors.append(_error(TaskRejected, f"Rejected at its approval gate{comment}."))
    args, kwargs = task_call(job.args)
    result: TaskResult[Any] = TaskResult(
        task=_as_enqueued(task_, job),
        id=str(job.pk),
        status=TaskResultStatus(task_status(job.state)),
        enqueued_at=job.created_at,
        started_at=job.first_started_at,
        finished_at=job.finished_at,
        last_attempted_at=job.started_at,
        args=args,
        kwargs=kwargs,
        backend=task_.backend,
        errors=errors,
        worker_ids=[str(event.detail.get("worker", "")) for event in events if event.kind == "started"],
    )
    if job.state == JobState.SUCCEEDED:
        object.__setattr__(result, "_return_value", job.result)
    return result


def _attempt_error(event: JobEvent) -> TaskError:
    detail = event.detail or {}
    if "exception" in detail:
        return TaskError(exception_class_path=str(detail["exception"]), traceback=str(detail.get("traceback", "")))
    reason = detail.get("error") or detail.get("reason") or "The attempt failed."
    return _error(TaskAttemptFailed, str(reason))


def _error(cls: type[BaseException], message: str) -> TaskError:
    return TaskError(exception_class_path=f"{cls.__module__}.{cls.__qualname__}", traceback=message)


def _as_enqueued(task_: Task[Any, Any], job: Job) -> Task[Any, Any]:
    """The task as its job was enqueued: on the job's queue when the backend has it."""
    if job.queue == task_.queue_name or job.queue not in task_.get_backend().queues:
        return task_
    return dataclasses.replace(task_, queue_name=job.queue)


# --- the backend ---------------------------------------------------------------------------------------


class HQBackend(BaseTaskBackend):
    """Run Django tasks as HQ jobs (README, "Django tasks").

    OPTIONS: `WORKSPACE`, the slug or id of the workspace whose jobs the tasks become (a task's
    own `workspace` wins). QUEUES: the HQ queues tasks may name (default `["default"]`).
    """

    task_class = HQTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    # HQ's engine has no priorities yet (another issue). When it does: map `task.priority` onto the
    # job's in `enqueue`, order the claim by it, and set this True (Django's validate_task then
    # lets priorities other than 0 through).
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.workspace_ref = str(self.options.get("WORKSPACE") or "")
        self._workspaces: dict[str, Workspace] = {}

    # --- the contract -------------------------------------------------------------------------------

    def validate_task(self, task: Task[Any, Any]) -> None:
        """Django's checks, then HQ's options (`HQTask`); InvalidTask says what is wrong."""
        super().validate_task(task)
        max_tries = _option(task, "max_tries")
        if max_tries is not None and not (isinstance(max_tries, int) and 1 <= max_tries <= MAX_TRIES):
            raise InvalidTask(f"max_tries must be a whole number from 1 to {MAX_TRIES}.")
        for name in ("timeout", "approval_ttl"):
            value = _option(task, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise InvalidTask(f"{name} must be a whole number of seconds, at least 1.")
        backoff = _option(task, "retry_backoff")
        if backoff is not None and not (isinstance(backoff, int | float) and 0 <= backoff <= 3600):
            raise InvalidTask("retry_backoff must be from 0 to 3600 seconds.")
        for name in ("correlation_id", "idempotency_key"):
            value = _option(task, name)
            if value is not None and not (isinstance(value, str) and len(value) <= MAX_TEXT):
                raise InvalidTask(f"{name} must be text of at most {MAX_TEXT} characters.")
        if _option(task, "requires_approval", False) and task.run_after is not None:
            raise InvalidTask("A task that waits for approval cannot also have run_after: it runs once approved.")

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        """Record the task's job in the caller's transaction; it is pushed to a worker after commit."""
        from hq.errors import ValidationFailed
        from queueapp import services

        self.validate_task(task)
        discovered = _tasks.get(task.module_path)
        if discovered is None or discovered.func is not task.func:
            raise InvalidTask(
                f"Task {task.module_path!r} was not discovered at start-up: define it at module level in an "
                f"installed app's {' or '.join(m + '.py' for m in TASK_MODULES)}, so that HQ's workers run it."
            )
        call = task_job_args(normalize_json(list(args)), normalize_json(dict(kwargs)))
        run_after = task.run_after if task.run_after is not None and task.run_after > clock.now() else None
        submission = services.Submission(
            function=task.module_path,
            args=call,
            queue=task.queue_name,
            correlation_id=_option(task, "correlation_id", "") or "",
            idempotency_key=_option(task, "idempotency_key"),
            defer_until=run_after,
            max_tries=_option(task, "max_tries"),
            timeout_seconds=_option(task, "timeout"),
            retry_backoff_s=_option(task, "retry_backoff"),
            requires_approval=bool(_option(task, "requires_approval", False)),
        )
        try:
            job, created = services.job_submit(workspace=self._workspace(task), owner=None, submission=submission)
        except ValidationFailed as exc:
            raise InvalidTask(exc.message) from exc
        if not created:  # an idempotency key's replay: the first job, as it is now
            return task_result_of(job, task)
        result = task_result_of(job, task, events=[])
        # Enqueued means committed: nothing fires for a job the caller's rollback took away.
        transaction.on_commit(functools.partial(task_enqueued.send, type(self), task_result=result))
        return result

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The task result of job `result_id`; TaskResultDoesNotExist unless it is a task's job."""
        from queueapp.models import Job

        try:
            job_id = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        job = Job.objects.filter(pk=job_id).first()
        task_ = _tasks.get(job.function) if job is not None else None
        if job is None or task_ is None:
            raise TaskResultDoesNotExist(result_id)
        return task_result_of(job, task_)

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        """Unknown OPTIONS, a malformed WORKSPACE, and queues no worker serves by default."""
        from django.conf import settings

        from queueapp.models import QUEUE_NAME

        where = f"TASKS[{self.alias!r}]"
        for key in sorted(set(self.options) - OPTION_KEYS):
            yield checks.Error(
                f"{where} OPTIONS has {key!r}, which HQBackend does not read.",
                hint=f"Known: {', '.join(sorted(OPTION_KEYS))}.",
                id="queueapp.E101",
            )
        if not self.workspace_ref:
            yield checks.Warning(
                f"{where} OPTIONS has no WORKSPACE: enqueueing a task that names no workspace of its own fails.",
                hint="Set HQ_TASKS_WORKSPACE (a workspace's slug or id), or give tasks workspace=.",
                id="queueapp.W101",
            )
        for queue in sorted(self.queues):
            if not QUEUE_NAME.fullmatch(queue):
                yield checks.Error(f"{where} QUEUES has {queue!r}, not an HQ queue name.", id="queueapp.E102")
            elif queue not in settings.HQ_QUEUES:
                yield checks.Warning(
                    f"{where} QUEUES has {queue!r}, which runworker does not take jobs from by default.",
                    hint="Add it to HQ_QUEUES, or run a worker with --queues naming it.",
                    id="queueapp.W102",
                )

    # --- the workspace ------------------------------------------------------------------------------

    def _workspace(self, task: Task[Any, Any]) -> Workspace:
        """The task's workspace (its own, else WORKSPACE), looked up once per process."""
        from hq.models import Workspace

        ref = _option(task, "workspace") or self.workspace_ref
        if not ref:
            raise ImproperlyConfigured(
                f"TASKS[{self.alias!r}] OPTIONS has no WORKSPACE and task {task.module_path!r} names none: "
                "set HQ_TASKS_WORKSPACE to a workspace's slug or id."
            )
        cached = self._workspaces.get(ref)
        if cached is not None:
            return cached
        lookup: dict[str, Any]
        try:
            lookup = {"pk": uuid.UUID(ref)}
        except ValueError:
            lookup = {"slug": ref}
        workspace = Workspace.objects.filter(**lookup).first()
        if workspace is None:
            raise ImproperlyConfigured(f"No workspace {ref!r} for task {task.module_path!r} (TASKS {self.alias!r}).")
        self._workspaces[ref] = workspace
        return workspace


__all__ = [
    "HQBackend",
    "HQTask",
    "TaskApprovalExpired",
    "TaskAttemptFailed",
    "TaskCancelled",
    "TaskNotRun",
    "TaskRejected",
    "discover",
    "hq_task",
    "registered_task",
    "task_result_of",
]
