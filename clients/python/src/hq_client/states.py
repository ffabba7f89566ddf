"""How an HQ job's state reads as a Django Tasks result status: the one table for both backends.

The in-process backend (`queueapp.tasks_backend`) and the remote one (`hq_client.django`) both map
through `task_status`, so a task's status never depends on which door it came in by. Plain strings,
no Django import: the client distribution has no server dependencies.
"""

from __future__ import annotations

from typing import Final, Literal

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
