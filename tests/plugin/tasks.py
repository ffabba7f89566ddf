"""Django tasks the tests run on real workers: discovered at start-up because this plugin app is installed.

Each body counts its runs in Redis (`tests.plugin.hq_plugin.runs`); a receiver of every task signal
records which process fired it, so tests can tell the caller's signals from the worker's.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from django.dispatch import receiver
from hq_client.django import hq_task
from hq_client.django.compat import TaskContext, task, task_enqueued, task_finished, task_started

from hq import redis as hq_redis


def _count(key: str) -> int:
    return int(hq_redis.client().hincrby(hq_redis.key("task-runs"), key, 1))


def task_runs(key: str) -> int:
    """How many times a task body started for `key`."""
    return int(hq_redis.client().hget(hq_redis.key("task-runs"), key) or 0)


@task
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@task()
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return what it was called with (tuples come back as lists)."""
    return {"args": args, "kwargs": kwargs}


@task(priority=30)
def urgent(n: int) -> int:
    """Declared with priority 30: its jobs' priority, and its function's default for a REST submit."""
    return n


@task(max_tries=3, retry_backoff=0)
def count(key: str) -> int:
    """Count a run under `key`; return the count."""
    return _count(key)


@task
async def async_count(key: str) -> dict[str, Any]:
    """An async task: count, yield to the loop, and say so."""
    n = _count(key)
    await asyncio.sleep(0)
    return {"key": key, "runs": n, "async": True}


@task(takes_context=True, max_tries=2, retry_backoff=0)
def with_context(context: TaskContext, key: str) -> dict[str, Any]:
    """Fail the first attempt, then return what the context says."""
    _count(key)
    if context.attempt == 1:
        raise RuntimeError("first attempt fails")
    result = context.task_result
    return {
        "attempt": context.attempt,
        "id": result.id,
        "status": str(result.status),
        "worker_ids": len(result.worker_ids),
        "errors": [e.exception_class_path for e in result.errors],
        "workspace_id": str(context.workspace_id),
    }


@hq_task(max_tries=2, retry_backoff=0)
def always_fails(key: str) -> None:
    """Raise a ValueError on every attempt."""
    _count(key)
    raise ValueError(f"{key} is broken")


@hq_task(max_tries=1)
def fails_outright(key: str) -> None:
    """Raise a KeyError on its one attempt."""
    _count(key)
    raise KeyError(key)


@hq_task(requires_approval=True, max_tries=1)
def gated_transfer(amount: int) -> dict[str, int]:
    """A transfer that waits for a person's approval."""
    _count(f"transfer-{amount}")
    return {"transferred": amount}


@task(max_tries=2, retry_backoff=0, timeout=60)
async def slow(key: str, seconds: float) -> int:
    """Sleep `seconds` on the first attempt only, then count."""
    n = _count(key)
    if n == 1:
        await asyncio.sleep(seconds)
    return n


@task
def bytes_back() -> Any:
    """Return bytes, which Django's JSON normalisation turns into text."""
    return b"caf\xc3\xa9"


# --- which process fires which signal ---------------------------------------------------------------


def signals_seen() -> list[dict[str, Any]]:
    """Every task signal fired so far, oldest first: {signal, id, status, pid, attempts}."""
    raw = hq_redis.client().lrange(hq_redis.key("task-signals"), 0, -1)
    return [json.loads(item) for item in raw]


def _record(name: str, task_result: Any) -> None:
    entry = {
        "signal": name,
        "id": task_result.id,
        "status": str(task_result.status),
        "pid": os.getpid(),
        "attempts": task_result.attempts,
        "errors": len(task_result.errors),
        # The whole result, to compare with what get_result reads from the database afterwards.
        "result": _result_fields(task_result),
    }
    hq_redis.client().rpush(hq_redis.key("task-signals"), json.dumps(entry))


def _result_fields(task_result: Any) -> dict[str, Any]:
    """A TaskResult's fields as JSON (the return value only once it succeeded)."""
    when = ("enqueued_at", "started_at", "last_attempted_at", "finished_at")
    fields: dict[str, Any] = {name: str(getattr(task_result, name)) for name in when}
    fields.update(
        status=str(task_result.status),
        args=task_result.args,
        kwargs=task_result.kwargs,
        queue=task_result.task.queue_name,
        worker_ids=task_result.worker_ids,
        errors=[[e.exception_class_path, e.traceback] for e in task_result.errors],
    )
    if str(task_result.status) == "SUCCESSFUL":
        fields["return_value"] = task_result.return_value
    return fields


@receiver(task_enqueued)
def _on_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("enqueued", task_result)


@receiver(task_started)
def _on_started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("started", task_result)


@receiver(task_finished)
def _on_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("finished", task_result)
