"""Django's Tasks framework on HQ: `my_task.enqueue()` records an HQ job; HQ's workers run it.

`HQBackend` is a `TASKS` backend for code that runs inside HQ (plugins, HQ's own apps). A task is
an HQ job function named by its module path (`myapp.tasks.send_invoice`), registered when HQ
starts: `discover` finds the tasks of every installed app's `tasks` and `hq_plugin` modules, and
only those run (a REST submit naming any other dotted path is 400, as for any unknown function;
nothing is ever imported by name). The job's `args` carry the call (`hq_client.states`).

- `enqueue` goes through `services.job_submit_row`, the path of every submit: the job row is written
  in the caller's transaction (rolled back, no job) and pushed to ARQ after commit (the relay
  pushes whatever a failed push left). `task_enqueued` fires once the job is committed.
- The worker runs the task's function as the job's body: `task_started` fires before it,
  `task_finished` once the end of the attempt that finished the job is recorded (both in the
  worker's process).
- `get_result` reads the job, its events and (rejected) its approval request into a `TaskResult`
  (`task_result_of`) through `hq_client.django.HQTaskBackend`, which the remote backend shares:
  the README's "Django tasks" section has the table.

HQ's own options ride on the task (`hq_client.django.HQTask`, shared with the remote backend so one
task module serves both): max tries, backoff, timeout, approval (the HITL gate), correlation id,
idempotency key, workspace. `@task(max_tries=5)` passes them on both Django 6 and the backport
(both forward extra keywords to the backend's `task_class`); `hq_client.django.hq_task` is the same
decorator with them named; `.using(...)` takes them per call.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from hq_client.django.base import HQTaskBackend
from hq_client.django.compat import (
    InvalidTask,
    Task,
    TaskContext,
    TaskResult,
    TaskResultDoesNotExist,
    normalize_json,
    task_enqueued,
    task_finished,
    task_started,
)
from hq_client.django.task import option
from hq_client.results import FAILED_ATTEMPT_KINDS
from hq_client.states import task_call, task_call_problems

from hq import clock
from queueapp import enqueue, registry
from queueapp.runtime import run_sync

if TYPE_CHECKING:
    from hq.models import Workspace
    from queueapp.enqueue import NewJob
    from queueapp.models import Job

T = TypeVar("T")

#: The modules of an installed app whose tasks `discover` registers.
TASK_MODULES = ("tasks", "hq_plugin")
#: OPTIONS keys HQBackend reads.
OPTION_KEYS = frozenset({"WORKSPACE"})


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
        requires_approval=bool(option(task_, "requires_approval", False)),
        timeout=option(task_, "timeout") or defaults.timeout_s,
        max_tries=option(task_, "max_tries") or defaults.max_tries,
        retry_backoff=_first(option(task_, "retry_backoff"), defaults.retry_backoff_s),
        approval_ttl=option(task_, "approval_ttl") or defaults.approval_ttl_s,
        priority=task_.priority,  # a REST submit of the task's function gets the task's own
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


@dataclass(frozen=True, kw_only=True)
class HQTaskContext(TaskContext):
    """Django's `TaskContext` plus whose job this is. Any workspace with `queue:write` may submit a
    discovered task (as any registered function), so a task that acts on one tenant's data takes
    the context and checks `workspace_id`, as a job function checks `JobContext.workspace_id`."""

    workspace_id: uuid.UUID
    owner_id: uuid.UUID | None = None
    correlation_id: str = ""

    @classmethod
    def of(cls, result: TaskResult[Any], ctx: registry.JobContext) -> HQTaskContext:
        return cls(
            task_result=result, workspace_id=ctx.workspace_id, owner_id=ctx.owner_id, correlation_id=ctx.correlation_id
        )


def _run_sync(name: str, ctx: registry.JobContext) -> Any:
    task_ = _tasks[name]
    result = _started(task_, ctx, _attempt_events(ctx))
    args, kwargs = task_call(ctx.args)
    if task_.takes_context:
        args.insert(0, HQTaskContext.of(result, ctx))
    return _json_ready(task_.func(*args, **kwargs))


async def _run_async(name: str, ctx: registry.JobContext) -> Any:
    task_ = _tasks[name]
    result = await run_sync(_started, task_, ctx, _attempt_events(ctx))
    args, kwargs = task_call(ctx.args)
    if task_.takes_context:
        args.insert(0, HQTaskContext.of(result, ctx))
    return _json_ready(await task_.func(*args, **kwargs))


def _attempt_events(ctx: registry.JobContext) -> list[dict[str, Any]] | None:
    """The attempt events of a job whose first attempt this is: its START's, known without a read.
    None for a later attempt, whose result carries the earlier attempts' workers and errors (read)."""
    if ctx.attempt != 1:
        return None
    return [{"kind": "started", "detail": {"worker": ctx.worker_id}}]


def _started(
    task_: Task[Any, Any], ctx: registry.JobContext, events: Sequence[Mapping[str, Any]] | None
) -> TaskResult[Any]:
    """Fire `task_started` (in the worker's process, on a thread) with the running job's result,
    built from what the worker's START returned; the events are read only for a later attempt."""
    fields = _attempt_fields(ctx, "running")
    result = _hq_backend(task_).task_result(task_, fields, events if events is not None else _events_read(ctx.job_id))
    _send(task_started, result)
    return result


def _attempt_fields(
    ctx: registry.JobContext, state: str, *, result: Any = None, error: str = "", finished_at: datetime | None = None
) -> dict[str, Any]:
    """The job's fields as `_job_fields` names them, from the worker's attempt and (ended) its outcome."""
    return {
        "id": ctx.job_id,
        "state": state,
        "queue": ctx.queue,
        "args": ctx.args,
        "result": result,
        "error": error,
        "created_at": ctx.enqueued_at,
        "first_started_at": ctx.first_started_at,
        "finished_at": finished_at,
        "started_at": ctx.started_at,
    }


async def _ended(name: str, end: registry.JobEnd) -> None:
    """Fire `task_finished` with the finished job's result (the worker's end hook), built from the
    attempt's start and outcome; a job that had earlier attempts reads their events.

    Receivers are sync code (they may use the ORM), so they run on a thread; the ends that arrive
    while one batch is on its thread go together in the next (`store.Batcher`), one hop for many.
    """
    from queueapp.store import Batcher

    loop = asyncio.get_running_loop()
    batcher = _finish_batchers.get(loop)
    if batcher is None:
        batcher = _finish_batchers[loop] = Batcher(_flush_finished)
    await batcher.submit((_tasks[name], end))


#: The batcher of task_finished signals on each event loop (a worker has one; tests run several).
_finish_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


async def _flush_finished(ends: list[tuple[Task[Any, Any], registry.JobEnd]]) -> list[None]:
    return await run_sync(_finished_many, ends)


def _finished_many(ends: list[tuple[Task[Any, Any], registry.JobEnd]]) -> list[None]:
    for task_, end in ends:
        try:
            _finished(task_, end)
        except Exception:  # e.g. the read of an earlier attempt's events: the others still fire
            logging.getLogger("hq.worker").exception("task_finished of job %s could not fire", end.context.job_id)
    return [None] * len(ends)


def _finished(task_: Task[Any, Any], end: registry.JobEnd) -> None:
    ctx = end.context
    events = _attempt_events(ctx)
    if events is None:
        events = _events_read(ctx.job_id)
    else:
        events.append({"kind": end.kind, "detail": end.detail})
    fields = _attempt_fields(ctx, end.state, result=end.result, error=end.error, finished_at=end.finished_at)
    _send(task_finished, _hq_backend(task_).task_result(task_, fields, events))


def _send(signal: Any, result: TaskResult[Any]) -> None:
    """Fire a task signal in the worker; a receiver's error is logged, never the task's failure."""
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

#: The events a task result reads: each attempt's start, and each failed attempt's end.
_ATTEMPT_KINDS = ("started", *sorted(FAILED_ATTEMPT_KINDS))


def task_result_of(
    job: Job | NewJob, task_: Task[Any, Any], events: Sequence[Mapping[str, Any]] | None = None
) -> TaskResult[Any]:
    """The TaskResult a job reads as (README, "Django tasks"), on the task's backend: one read of its
    events unless given (as `{"kind", "detail"}`), and of its latest approval request when rejected."""
    from queueapp.models import HITLRequest, JobState

    if events is None:
        events = _events_read(job.pk)
    approval = None
    if job.state == JobState.REJECTED:
        approval = (
            HITLRequest.objects.filter(job_id=job.pk)
            .order_by("-created_at")
            .values("state", "expires_at", "comment")
            .first()
        )
    return _hq_backend(task_).task_result(task_, _job_fields(job), events, approval)


def _events_read(job_id: uuid.UUID) -> list[dict[str, Any]]:
    """The job's attempt events, oldest first, as `{"kind", "detail"}`."""
    from queueapp.models import JobEvent

    rows = JobEvent.objects.filter(job_id=job_id, kind__in=_ATTEMPT_KINDS).order_by("at", "id")
    return [{"kind": kind, "detail": detail} for kind, detail in rows.values_list("kind", "detail")]


def _hq_backend(task_: Task[Any, Any]) -> HQTaskBackend:
    backend = task_.get_backend()
    if not isinstance(backend, HQTaskBackend):
        raise InvalidTask(f"Task {task_.module_path!r} runs on {type(backend).__name__}, not an HQ task backend.")
    return backend


def _job_fields(job: Job | NewJob) -> dict[str, Any]:
    """The fields of a job a TaskResult reads, as the REST API names them."""
    return {
        "id": job.pk,
        "state": job.state,
        "queue": job.queue,
        "args": job.args,
        "result": job.result,
        "error": job.error,
        "created_at": job.created_at,
        "first_started_at": job.first_started_at,
        "finished_at": job.finished_at,
        "started_at": job.started_at,
    }


# --- the backend ---------------------------------------------------------------------------------------


class HQBackend(HQTaskBackend):
    """Run Django tasks as HQ jobs (README, "Django tasks").

    OPTIONS: `WORKSPACE`, the slug or id of the workspace whose jobs the tasks become (a task's
    own `workspace` wins). QUEUES: the HQ queues tasks may name (default `["default"]`).
    """

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.workspace_ref = str(self.options.get("WORKSPACE") or "")
        self._workspaces: dict[str, Workspace] = {}

    # --- the contract -------------------------------------------------------------------------------

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
        options = self.job_options(task)
        submission = services.Submission(
            function=task.module_path,
            args=self.job_args(task, args, kwargs),
            queue=options["queue"],
            correlation_id=options["correlation_id"],
            idempotency_key=options["idempotency_key"],
            defer_until=task.run_after if task.run_after is not None and task.run_after > clock.now() else None,
            max_tries=options["max_tries"],
            timeout_seconds=options["timeout_seconds"],
            retry_backoff_s=option(task, "retry_backoff"),
            requires_approval=options["require_approval"],
            priority=options["priority"],
        )
        try:
            with enqueue.pushes_in_background():
                job, created = services.job_submit_row(
                    workspace=self._workspace(task), owner=None, submission=submission
                )
        except ValidationFailed as exc:
            raise InvalidTask(exc.message) from exc
        if not created:  # an idempotency key's replay: the first job, as it is now
            return task_result_of(job, task)
        result = self.task_result(task, _job_fields(job), [])  # a new job: no events to read
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

        ref = option(task, "workspace") or self.workspace_ref
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
    "discover",
    "registered_task",
    "task_result_of",
]
