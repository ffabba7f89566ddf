"""How an HQ job's state reads as a Django Tasks result status: the one table for both backends.

The in-process backend (`queueapp.tasks_backend`) and the remote one (`hq_client.django`) both map
through `task_status` (in `hq_client.django.HQTaskBackend.task_result`), so a task's status never
depends on which door it came in by. Plain strings, no Django import: the client distribution has
no server dependencies.
"""

from __future__ import annotations

from typing import Any, Final, Literal

TaskStatus = Literal["READY", "RUNNING", "SUCCESSFUL", "FAILED"]

STATUS_BY_STATE: Final[dict[str, TaskStatus]] = {
    "queued": "READY",
    "deferred": "READY",
    "awaiting_approval": "READY",
    "running": "RUNNING",
    "succeeded": "SUCCESSFUL",
    "failed": "FAILED",
    "cancelled": "FAILED",
    "rejected": "FAILED",
}


def task_status(state: str) -> TaskStatus:
    """The Django Tasks status of an HQ job state; ValueError for a state HQ does not have."""
    try:
        return STATUS_BY_STATE[state]
    except KeyError:
        raise ValueError(f"unknown HQ job state {state!r}") from None


# --- how a task's call travels in a job's args ---------------------------------------------------
# A django.tasks task runs on HQ as the job function named by its module path
# ("myapp.tasks.send_invoice"); the job's `args` carry the call, the same from either backend:
# {"args": [...], "kwargs": {...}} and nothing else.

TASK_ARGS_KEYS: Final = ("args", "kwargs")


def task_job_args(args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The job `args` that carry a task call (the values already JSON-ready)."""
    return {"args": list(args), "kwargs": dict(kwargs)}


def task_call_problems(job_args: dict[str, Any]) -> dict[str, str]:
    """What is wrong with a task job's `args` (by key, empty when fine): exactly `args` (a list)
    and `kwargs` (an object with string keys)."""
    problems = {key: "Not a task call argument: give only args and kwargs." for key in job_args}
    for key in TASK_ARGS_KEYS:
        problems.pop(key, None)
    if not isinstance(job_args.get("args", []), list):
        problems["args"] = "Must be a JSON array of positional arguments."
    if not isinstance(job_args.get("kwargs", {}), dict):
        problems["kwargs"] = "Must be a JSON object of keyword arguments."
    return problems


def task_call(job_args: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments a task job's `args` carry (either may be left out)."""
    return list(job_args.get("args", [])), dict(job_args.get("kwargs", {}))
