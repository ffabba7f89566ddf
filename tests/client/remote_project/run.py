"""The remote project at work: `python -m tests.client.remote_project.run enqueue|results ...`.

`enqueue` enqueues the shared tasks (one request each, async too, and a batch through
`enqueue_many`) and prints their result ids and what `task_enqueued` saw; `results ID...` waits
until each result is finished and prints them. Output: one JSON document on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.client.remote_project.settings")

import django

django.setup()

from hq_client.django import RemoteBackend, enqueue_many  # noqa: E402
from hq_client.django.compat import InvalidTask, TaskResult, TaskResultDoesNotExist, task_enqueued  # noqa: E402

from tests.client.taskapp import tasks  # noqa: E402

enqueued: list[dict[str, Any]] = []


def _on_enqueued(sender: type, task_result: TaskResult[Any], **_: Any) -> None:
    enqueued.append({"sender": sender.__name__, "id": task_result.id, "status": str(task_result.status)})


task_enqueued.connect(_on_enqueued)


def enqueue() -> dict[str, Any]:
    added = tasks.add.enqueue(2, 3)
    shouted = asyncio.run(tasks.shout.using(priority=7).aenqueue("hi", times=2))  # Django's priority: the job's
    failing = tasks.always_fails.enqueue(7)
    refund = tasks.refund.enqueue(5)
    many = enqueue_many(tasks.add, [((i, i), {}) for i in range(30)])
    refused = []
    for change in ({"max_tries": 26}, {"run_after": datetime.now(UTC) + timedelta(minutes=1)}):
        try:
            (tasks.refund if "run_after" in change else tasks.add).using(**change)
        except InvalidTask as exc:
            refused.append(
                "max_tries" if "max_tries" in str(exc) else "approval" if "approval" in str(exc) else str(exc)
            )
    return {
        "add": added.id,
        "add_status": str(added.status),
        "add_task": added.task.module_path,
        "shout": shouted.id,
        "fails": failing.id,
        "refund": refund.id,
        "many": [r.id for r in many],
        "many_args": [r.args for r in many][:3],
        "enqueued": enqueued,
        "task_class": f"{type(tasks.add).__module__}.{type(tasks.add).__qualname__}",
        "refused": refused,
    }


def _dump(result: TaskResult[Any]) -> dict[str, Any]:
    return {
        "status": str(result.status),
        "return_value": result.return_value if str(result.status) == "SUCCESSFUL" else None,
        "errors": [{"exception_class_path": e.exception_class_path, "traceback": e.traceback} for e in result.errors],
        "worker_ids": result.worker_ids,
        "attempts": result.attempts,
        "args": result.args,
        "kwargs": result.kwargs,
        "task": result.task.module_path,
        "backend": result.backend,
        "times": [
            t.isoformat() if t else None
            for t in (result.enqueued_at, result.started_at, result.last_attempted_at, result.finished_at)
        ],
    }


def results(ids: list[str], timeout_s: float = 60) -> dict[str, Any]:
    out: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    for result_id in ids:
        result = tasks.add.get_backend().get_result(result_id)
        while not result.is_finished and time.monotonic() < deadline:
            time.sleep(0.1)
            result.refresh()
        out[result_id] = _dump(result)
    backend = tasks.add.get_backend()
    assert isinstance(backend, RemoteBackend)
    out["async"] = _dump(asyncio.run(backend.aget_result(ids[0])))
    for missing in (str(uuid.uuid4()), "not-a-job-id"):
        try:
            backend.get_result(missing)
        except TaskResultDoesNotExist:
            out.setdefault("missing", []).append("TaskResultDoesNotExist")
    return out


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    print(json.dumps(enqueue() if command == "enqueue" else results(rest)))
