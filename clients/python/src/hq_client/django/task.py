"""`RemoteTask`: a Django task with HQ's own options, for projects whose tasks run on a remote HQ.

The task module is shared: HQ imports it as a plugin app (its tasks become HQ job functions, with
these options) and the remote project imports it to enqueue. Both decorate with
`@task(max_tries=5, timeout=60, ...)`; Django 6.1's `@task` (and the backport's) hand the extra
keywords to the backend's `task_class`, here `RemoteTask`, on HQ `queueapp.tasks_backend.HQTask`,
which take the same options.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hq_client.django.compat import Task

if TYPE_CHECKING:
    _TaskBase = Task[Any, Any]  # generic in the backport's annotations
else:
    _TaskBase = Task  # Django 6's is not subscriptable at run time


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RemoteTask(_TaskBase):
    """A Django task with HQ's options; None leaves HQ's default (or the task's registration on HQ).

    :param max_tries: attempts before the job fails (sent with each enqueue).
    :param retry_backoff: base seconds between attempts (applied by HQ's registration of the task).
    :param timeout: per-attempt limit in seconds (sent as `timeout_seconds`).
    :param requires_approval: every call waits for a person's approval (HITL) before it runs.
    :param approval_ttl: seconds an approval request stays open (applied by HQ's registration).
    :param correlation_id: groups related jobs (`/v1/queue/correlation/{id}`).
    :param idempotency_key: one job per key for HQ's idempotency window (set it with `.using()`).
    :param workspace: read by HQ's in-process backend only; a remote job's workspace is the token's.
    """

    max_tries: int | None = None
    retry_backoff: float | None = None
    timeout: int | None = None
    requires_approval: bool = False
    approval_ttl: int | None = None
    correlation_id: str = ""
    idempotency_key: str | None = None
    workspace: str | None = None

    def using(  # adds HQ's options to Django's
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: datetime | None = None,
        backend: str | None = None,
        max_tries: int | None = None,
        timeout: int | None = None,
        requires_approval: bool | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> RemoteTask:
        """A copy with other defaults: Django's (priority, queue, run_after, backend) and HQ's."""
        given: dict[str, Any] = {
            "priority": priority,
            "queue_name": queue_name,
            "run_after": run_after,
            "backend": backend,
            "max_tries": max_tries,
            "timeout": timeout,
            "requires_approval": requires_approval,
            "correlation_id": correlation_id,
            "idempotency_key": idempotency_key,
        }
        changed = dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})
        changed.get_backend().validate_task(changed)
        return changed
