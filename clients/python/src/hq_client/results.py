"""How a finished (or unfinished) HQ job reads as a Django task's result, without Django.

Both django.tasks backends build their `TaskResult`s from these (`hq_client.django.HQTaskBackend`:
HQ's in-process `HQBackend` and the remote `RemoteBackend`), so these classes' paths are what a
user sees in `TaskError.exception_class_path` whichever backend ran the task; the status table
itself is `hq_client.states`. A task that did not run to its end is FAILED with an error whose class says
why: cancelled, rejected at its approval gate, or its approval expired.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


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


#: Events of an attempt that ended in failure (retried later, or the job's last).
FAILED_ATTEMPT_KINDS: frozenset[str] = frozenset({"retry_scheduled", "failed"})


@dataclass(frozen=True)
class AttemptError:
    """One error of a task's result: the exception's class path and its traceback (or what HQ knows)."""

    exception_class_path: str
    traceback: str


def _path(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def attempt_error(detail: Mapping[str, Any] | None) -> AttemptError:
    """The error a failed attempt's event records: the task's exception and traceback when the worker
    caught one, else why the attempt was lost (its worker died, its timeout passed)."""
    detail = detail or {}
    if "exception" in detail:
        return AttemptError(str(detail["exception"]), str(detail.get("traceback", "")))
    reason = detail.get("error") or detail.get("reason") or "The attempt failed."
    return AttemptError(_path(TaskAttemptFailed), str(reason))


def task_errors(
    job: Mapping[str, Any], events: Iterable[Mapping[str, Any]], approval: Mapping[str, Any] | None = None
) -> list[AttemptError]:
    """A task result's errors: one per failed attempt, oldest first, then why a job that ended
    without running to its end (cancelled, rejected, expired) did.

    :param approval: the job's latest HITL request (read for a rejected job: rejected or expired).
    """
    errors = [attempt_error(e.get("detail")) for e in events if e.get("kind") in FAILED_ATTEMPT_KINDS]
    state = job.get("state")
    if state == "cancelled":
        errors.append(AttemptError(_path(TaskCancelled), f"Cancelled: {job.get('error') or 'the job was cancelled.'}"))
    elif state == "rejected":
        if approval is not None and approval.get("state") == "expired":
            errors.append(
                AttemptError(
                    _path(TaskApprovalExpired), f"Expired: nobody approved it by {approval.get('expires_at')}."
                )
            )
        else:
            comment = f" ({approval['comment']})" if approval is not None and approval.get("comment") else ""
            errors.append(AttemptError(_path(TaskRejected), f"Rejected at its approval gate{comment}."))
    return errors


def task_worker_ids(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """The worker of each attempt that started, in order (a task result's `worker_ids`)."""
    return [str((e.get("detail") or {}).get("worker", "")) for e in events if e.get("kind") == "started"]
