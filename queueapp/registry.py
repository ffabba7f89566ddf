"""Registries that other apps and plugins fill at start-up: job functions and worker side tasks.

`queueapp` knows nothing of schedules or delivery: they join the worker process by registering
here from their `AppConfig.ready()` (or a plugin's `hq_plugin` module).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings

from queueapp.runtime import SideTaskRuntime


@dataclass
class JobContext:
    """What a job function receives."""

    job_id: UUID
    workspace_id: UUID
    owner_id: UUID | None
    function: str
    args: dict[str, Any]
    attempt: int
    max_tries: int
    correlation_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: The job's queue, and what the attempt's START recorded (the worker knows them without a read).
    queue: str = ""
    worker_id: str = ""
    enqueued_at: datetime | None = None
    first_started_at: datetime | None = None
    started_at: datetime | None = None


@dataclass(frozen=True)
class JobEnd:
    """The attempt that finished a job, as the worker recorded it: an end hook's argument."""

    context: JobContext
    #: The job's final state (succeeded, failed, cancelled).
    state: str
    #: The attempt's event: its kind (`succeeded`, `failed`...) and detail (a failure's exception).
    kind: str
    detail: dict[str, Any] | None
    result: Any
    error: str
    finished_at: datetime


JobCallable = Callable[[JobContext], Any] | Callable[[JobContext], Awaitable[Any]]
#: Checks a submit's args before the job is recorded: (args, caller is a workspace admin) ->
#: problems by args key (empty when fine).
ArgsCheck = Callable[[dict[str, Any], bool], dict[str, str]]
#: Called by the worker once it has recorded the end of an attempt that finished the job
#: (succeeded, failed, cancelled while running), with how it ended.
EndHook = Callable[[JobEnd], Awaitable[None]]


@dataclass(frozen=True)
class JobFunction:
    """A registered function and its defaults."""

    name: str
    fn: JobCallable
    queue: str = "default"
    requires_approval: bool = False
    timeout_s: int = 300
    max_tries: int = 3
    retry_backoff_s: float = 2.0
    #: Its jobs' priority unless a submit gives one (-100..100, higher first).
    priority: int = 0
    approval_ttl_s: int = 24 * 3600
    internal: bool = False
    description: str = ""
    check_args: ArgsCheck | None = None
    on_end: EndHook | None = None
    #: At most this many of its jobs with one concurrency key (its keyless jobs: all of them) at once.
    concurrency_limit: int | None = None
    #: Seconds between starts of its jobs with one key (keyless: all of them), from `rate_limit`.
    rate_interval_s: float | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)


_functions: dict[str, JobFunction] = {}


def job_function(
    name: str,
    *,
    queue: str = "default",
    requires_approval: bool = False,
    timeout: int = 300,
    max_tries: int = 3,
    retry_backoff: float = 2.0,
    priority: int = 0,
    approval_ttl: int = 24 * 3600,
    internal: bool = False,
    check_args: ArgsCheck | None = None,
    on_end: EndHook | None = None,
    concurrency_limit: int | None = None,
    rate_limit: str | None = None,
) -> Callable[[JobCallable], JobCallable]:
    """Register a job function under `name`.

    :param requires_approval: every call waits for a human decision (HITL) before it runs.
    :param timeout: per-attempt limit in seconds.
    :param max_tries: attempts before the job ends `failed`.
    :param retry_backoff: base seconds of the exponential backoff between attempts.
    :param priority: its jobs' priority when a submit gives none, -100..100 (higher starts first).
    :param approval_ttl: seconds an approval request stays open before it expires.
    :param internal: hidden from /functions and refused on submit (engine jobs).
    :param check_args: refuses a submit's args with 400 before anything is recorded.
    :param on_end: awaited in the worker after it recorded the attempt that finished the job.
    :param concurrency_limit: at most this many of its jobs with one `concurrency_key` running at
        once across all workers; its jobs without a key share one gate named after the function.
    :param rate_limit: at most N starts per period ("60/min", "5/10s"), per key as above.
    """
    from queueapp.limits import rate_interval

    if concurrency_limit is not None and (isinstance(concurrency_limit, bool) or concurrency_limit < 1):
        raise ValueError(f"concurrency_limit of {name!r} must be a positive integer, not {concurrency_limit!r}")
    interval = rate_interval(rate_limit) if rate_limit else None

    from queueapp.models import priority_problem  # models need the app registry, loaded by now

    problem = priority_problem(priority)
    if problem:
        raise ValueError(f"Job function {name!r}: priority: {problem}")

    def register(fn: JobCallable) -> JobCallable:
        existing = _functions.get(name)
        if existing and existing.fn is not fn and getattr(existing.fn, "__qualname__", None) != fn.__qualname__:
            raise ValueError(f"Job function {name!r} is already registered.")
        _functions[name] = JobFunction(
            name=name,
            fn=fn,
            queue=queue,
            requires_approval=requires_approval,
            timeout_s=timeout,
            max_tries=max_tries,
            retry_backoff_s=retry_backoff,
            priority=priority,
            approval_ttl_s=approval_ttl,
            internal=internal,
            description=(inspect.getdoc(fn) or "").split("\n")[0],
            check_args=check_args,
            on_end=on_end,
            concurrency_limit=concurrency_limit,
            rate_interval_s=interval,
        )
        return fn

    return register


def get_function(name: str) -> JobFunction | None:
    return _functions.get(name)


def limited_functions() -> list[JobFunction]:
    """The registered functions with a concurrency or rate limit (the worker's START takes them)."""
    return [f for f in _functions.values() if f.concurrency_limit is not None or f.rate_interval_s is not None]


def fair_lane(function: str, workspace_id: UUID | str) -> str:
    """The lane a job waits in for a worker slot: its workspace's, engine jobs apart ("s:").

    Workers share their slots between lanes (`queueapp.transport.claim`), so one workspace cannot
    hold every slot, and schedule fires and deliveries keep slots of their own.
    """
    fn = _functions.get(function)
    return f"{'s' if fn is not None and fn.internal else 'u'}:{workspace_id}"


def queues_allowed() -> list[str]:
    """The queues a submit may name: `HQ_QUEUES` and every registered function's own queue."""
    return sorted({*settings.HQ_QUEUES, *(f.queue for f in _functions.values())})


def functions(*, include_internal: bool = False) -> list[JobFunction]:
    return sorted((f for f in _functions.values() if include_internal or not f.internal), key=lambda f: f.name)


#: A side task: a coroutine given the worker process's runtime, looping until `runtime.stopping`.
SideTask = Callable[[SideTaskRuntime], Coroutine[Any, Any, None]]
_side_tasks: dict[str, SideTask] = {}


def side_task(name: str) -> Callable[[SideTask], SideTask]:
    """Register a coroutine `fn(runtime)` that `runworker` runs beside the job loop (relay, scheduler...)."""

    def register(fn: SideTask) -> SideTask:
        _side_tasks[name] = fn
        return fn

    return register


def side_tasks() -> dict[str, SideTask]:
    return dict(_side_tasks)
