"""`HQTask`: a Django task with HQ's own options, the one task class of both HQ task backends.

A task module is shared: HQ imports it as an installed or plugin app (its tasks become HQ job
functions, with these options) and a remote project imports it to enqueue. Both decorate with
`@task(max_tries=5, timeout=60, ...)`: Django 6.1's `@task` (and the backport's) hand the extra
keywords to the backend's `task_class`, which is `HQTask` on both `queueapp.tasks_backend.HQBackend`
and `hq_client.django.RemoteBackend`. `hq_task` is the same decorator with the options named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hq_client.django.compat import InvalidTask, Task, task

if TYPE_CHECKING:
    _TaskBase = Task[Any, Any]  # generic in the backport's annotations
else:
    _TaskBase = Task  # Django 6's is not subscriptable at run time

#: The most attempts a job may have (HQ's API refuses more).
MAX_TRIES = 25
#: The longest correlation id or idempotency key.
MAX_TEXT = 200
#: The longest base of the backoff between attempts, in seconds.
MAX_BACKOFF_S = 3600


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HQTask(_TaskBase):
    """A Django task with HQ's options; `None` leaves the default (HQ's or the registered task's).

    :param max_tries: attempts per run before the job fails (1 to 25; HQ's default 3).
    :param retry_backoff: base seconds of the exponential backoff between attempts (default 2;
        a remote enqueue leaves it to HQ's registration of the task, which has it).
    :param timeout: per-attempt limit in seconds (default 300).
    :param requires_approval: every call waits for a person's approval (HITL) before it runs.
    :param approval_ttl: seconds an approval request stays open (default a day; applied by HQ's
        registration of the task).
    :param correlation_id: groups related jobs (`/v1/queue/correlation/{id}`).
    :param idempotency_key: one job per key in the workspace for `HQ_IDEMPOTENCY_WINDOW_S`: an
        enqueue with a key already used returns the first job's result (set it with `.using()`).
    :param workspace: the job's workspace (slug or id) instead of HQBackend's WORKSPACE; read by
        HQ's in-process backend only (a remote job's workspace is its token's).
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
        """A copy with other defaults: Django's (priority, queue, run_after, backend) and HQ's;
        the backend validates it (Django's `__post_init__`)."""
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


def option(task_: Task[Any, Any], name: str, default: Any = None) -> Any:
    """An HQ option of a task (a plain `Task` has none: the default)."""
    return getattr(task_, name, default)


def validate_options(task_: Task[Any, Any]) -> None:
    """HQ's options of a task are usable (both backends' `validate_task`); InvalidTask says which is not."""
    max_tries = option(task_, "max_tries")
    if max_tries is not None and not (isinstance(max_tries, int) and 1 <= max_tries <= MAX_TRIES):
        raise InvalidTask(f"max_tries must be a whole number from 1 to {MAX_TRIES}.")
    for name in ("timeout", "approval_ttl"):
        value = option(task_, name)
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise InvalidTask(f"{name} must be a whole number of seconds, at least 1.")
    backoff = option(task_, "retry_backoff")
    if backoff is not None and not (isinstance(backoff, int | float) and 0 <= backoff <= MAX_BACKOFF_S):
        raise InvalidTask(f"retry_backoff must be from 0 to {MAX_BACKOFF_S} seconds.")
    for name in ("correlation_id", "idempotency_key"):
        value = option(task_, name)
        if value is not None and not (isinstance(value, str) and len(value) <= MAX_TEXT):
            raise InvalidTask(f"{name} must be text of at most {MAX_TEXT} characters.")
    if option(task_, "requires_approval", False) and task_.run_after is not None:
        raise InvalidTask("A task that waits for approval cannot also have run_after: it runs once approved.")


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
