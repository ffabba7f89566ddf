"""The worker's coarse time limits (`worker.Deadlines`) and how `_execute` reads their cancel."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from queueapp import registry
from queueapp.store import Started
from queueapp.worker import Deadlines, Runtime


def started(function: str, timeout_s: float) -> Started:
    return Started(
        id=uuid.uuid4(),
        function=function,
        args={},
        timeout_s=timeout_s,  # type: ignore[arg-type]  # a fraction of a second keeps the test short
        max_tries=1,
        tries_base=0,
        retry_backoff_s=0.0,
        workspace_id=uuid.uuid4(),
        owner_id=None,
        correlation_id="",
        queue="default",
    )


@pytest.fixture
def slow_body(monkeypatch):
    """A job function whose body awaits a moment of clean-up after its cancel, as real bodies do."""

    async def body(ctx: registry.JobContext) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.02)

    monkeypatch.setitem(registry._functions, "tests.deadline_body", registry.JobFunction("tests.deadline_body", body))
    return "tests.deadline_body"


def test_a_limit_fires_once_and_an_ended_attempt_leaves_no_timer():
    async def main() -> None:
        deadlines = Deadlines()
        done = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        await done
        # Ended before its limit: its step and timer are gone.
        task = asyncio.current_task()
        assert task is not None
        step = deadlines.arm(task, 3600)
        assert deadlines.disarm(step, task) is False
        assert deadlines._due == {}
        # Past its limit: cancelled, and disarm says so.
        sleeper = asyncio.get_running_loop().create_task(asyncio.sleep(30))
        step = deadlines.arm(sleeper, 0.01)
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        assert deadlines.disarm(step, sleeper) is True
        assert deadlines._due == {} and deadlines._fired == set()

    asyncio.run(main())


def test_the_limit_alone_is_a_timeout(slow_body):
    runtime = Runtime(store=None, queues=["default"], concurrency=1)  # type: ignore[arg-type]

    async def main():
        return await runtime._execute(started(slow_body, 0.05), 1)

    outcome = asyncio.run(main())
    assert (outcome.move, outcome.error) == ("fail", "Timed out after 0.05s.")
    assert outcome.detail and outcome.detail["exception"] == "builtins.TimeoutError"


def test_an_abort_beside_the_limit_is_passed_on_not_taken_for_a_timeout(slow_body):
    """The limit fires, and while the body cleans up an abort cancels it too: the abort must reach
    run_attempt (which records the job cancelled), not be swallowed as a retryable timeout."""
    runtime = Runtime(store=None, queues=["default"], concurrency=1)  # type: ignore[arg-type]

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(runtime._execute(started(slow_body, 0.05), 1))
        await asyncio.sleep(0.06)  # the limit has fired; the body is in its clean-up
        task.cancel()  # the abort
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
