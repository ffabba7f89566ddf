"""Job functions the tests run on real workers."""

from __future__ import annotations

import asyncio

from hq import redis as hq_redis
from queueapp.registry import JobContext, job_function


def runs_by_attempt(job_id: object) -> dict[int, int]:
    """How many times each attempt's body started (counted in Redis by the body itself)."""
    counts = hq_redis.client().hgetall(hq_redis.key("test-runs", str(job_id)))
    return {int(attempt): int(n) for attempt, n in counts.items()}


def runs(job_id: object) -> int:
    """How many times a job body started, over all its attempts."""
    return sum(runs_by_attempt(job_id).values())


def _count(ctx: JobContext) -> None:
    hq_redis.client().hincrby(hq_redis.key("test-runs", str(ctx.job_id)), str(ctx.attempt), 1)


@job_function("tests.count", max_tries=3, retry_backoff=0)
async def count(ctx: JobContext) -> dict:
    """Count the run and return the attempt number."""
    _count(ctx)
    return {"attempt": ctx.attempt}


@job_function("tests.fail", max_tries=3, retry_backoff=0)
async def fail(ctx: JobContext) -> None:
    """Always fail."""
    _count(ctx)
    raise ValueError(f"boom on attempt {ctx.attempt}")


@job_function("tests.flaky", max_tries=3, retry_backoff=0)
async def flaky(ctx: JobContext) -> dict:
    """Fail the first `fail_times` attempts, then succeed."""
    _count(ctx)
    if ctx.attempt <= int(ctx.args.get("fail_times", 1)):
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@job_function("tests.sleep", max_tries=1, retry_backoff=0, timeout=60)
async def sleep(ctx: JobContext) -> dict:
    """Sleep `seconds` on the first attempt only (`first_only`), else always. `uncounted` skips the
    count in Redis (for a test that stops Redis under running bodies)."""
    if not ctx.args.get("uncounted"):
        _count(ctx)
    if not ctx.args.get("first_only") or ctx.attempt == 1:
        await asyncio.sleep(float(ctx.args.get("seconds", 1)))
    return {"attempt": ctx.attempt}


@job_function("tests.own_timeout", max_tries=1, timeout=60)
async def own_timeout(ctx: JobContext) -> None:
    """Fail at once with the body's own TimeoutError (an upstream call that gave up), not the job's."""
    _count(ctx)
    raise TimeoutError("upstream did not answer in 2 s")


@job_function("tests.sync_echo", max_tries=1)
def sync_echo(ctx: JobContext) -> dict:
    """A synchronous body (runs in a thread) that may use the ORM."""
    from hq.models import Workspace

    _count(ctx)
    return {"workspace": Workspace.objects.get(pk=ctx.workspace_id).slug, "args": ctx.args}


@job_function("tests.cancelled_then_fails", max_tries=3, retry_backoff=0)
def cancelled_then_fails(ctx: JobContext) -> None:
    """Someone cancels the job while it runs, but the abort never reaches this body (Redis was away
    when the cancel was recorded: `job_cancel` leaves just `cancel_requested_at`); then it fails."""
    from hq import clock
    from queueapp.models import Job

    _count(ctx)
    Job.objects.filter(pk=ctx.job_id).update(cancel_requested_at=clock.now())
    raise RuntimeError("failed on its own")


@job_function("tests.urgent", priority=60, max_tries=1)
async def urgent(ctx: JobContext) -> dict:
    """Registered with priority 60: its jobs' default."""
    return dict(ctx.args)


@job_function("tests.internal", internal=True)
async def internal(ctx: JobContext) -> None:
    """An engine-only function: hidden and refused on submit."""


@job_function("tests.gated", requires_approval=True, max_tries=1, approval_ttl=3600)
async def gated(ctx: JobContext) -> dict:
    """A tool call that waits for a person: count the run and return the arguments it ran with."""
    _count(ctx)
    return {"args": ctx.args}


@job_function("tests.gated_short", requires_approval=True, max_tries=1, approval_ttl=1)
async def gated_short(ctx: JobContext) -> dict:
    """A tool call whose approval expires after one second."""
    _count(ctx)
    return {"args": ctx.args}


# --- a plugin schedule action -----------------------------------------------------------------

from rest_framework import serializers  # noqa: E402

from schedules.actions import ActionResult, schedule_action  # noqa: E402


class TallyArgs(serializers.Serializer):
    counter = serializers.SlugField(max_length=50)
    step = serializers.IntegerField(min_value=1, max_value=100, default=1)


@schedule_action("tests.tally", args_schema=TallyArgs)
def tally(schedule, fire, args) -> ActionResult:  # noqa: ANN001
    """Add `step` to a named counter (in Redis) each time the schedule fires."""
    total = hq_redis.client().incrby(hq_redis.key("tally", args["counter"]), args["step"])
    return ActionResult(detail=f"{args['counter']} = {total}")


@job_function("tests.bad_result", max_tries=3, retry_backoff=0)
async def bad_result(ctx: JobContext) -> set:
    """Return something that is not JSON (a set)."""
    _count(ctx)
    return {1, 2}


@job_function("tests.type_error", max_tries=2, retry_backoff=0)
async def type_error(ctx: JobContext) -> None:
    """Raise the TypeError json raises, from the body itself: an ordinary failure, retried."""
    _count(ctx)
    raise TypeError("Object of type set is not JSON serializable")


# A body that counts, per concurrency key, the bodies inside it at once: each holds a field of a
# hash (its attempt -> its worker's pid) while it runs, and the most fields ever seen is kept.
_ENTER_LUA = """
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
local n = redis.call('hlen', KEYS[1])
if n > tonumber(redis.call('get', KEYS[2]) or '0') then redis.call('set', KEYS[2], n) end
return n
"""


def keyed_inside(key: str) -> str:
    return hq_redis.key("test-keyed", key)


def keyed_most(key: str) -> int:
    """The most bodies of jobs with this key seen running at once."""
    return int(hq_redis.client().get(hq_redis.key("test-keyed-most", key)) or 0)


@job_function("tests.keyed", max_tries=3, retry_backoff=0, timeout=60)
async def keyed(ctx: JobContext) -> dict:
    """Sleep `seconds` inside the count of bodies running for the job's concurrency key (`key` arg)."""
    import os

    key = str(ctx.args["key"])
    client = hq_redis.client()
    arq_id = f"{ctx.job_id}:{ctx.attempt}"
    client.eval(_ENTER_LUA, 2, keyed_inside(key), hq_redis.key("test-keyed-most", key), arq_id, os.getpid())
    try:
        await asyncio.sleep(float(ctx.args.get("seconds", 0.2)))
    finally:
        client.hdel(keyed_inside(key), arq_id)
    return {"attempt": ctx.attempt}


@job_function("tests.rated", max_tries=1, rate_limit="4/2s")
async def rated(ctx: JobContext) -> None:
    """Do nothing, at most 4 starts per 2 seconds (its keyless jobs share one gate)."""


@job_function("tests.one_at_a_time", max_tries=1, concurrency_limit=1, timeout=60)
async def one_at_a_time(ctx: JobContext) -> None:
    """Sleep `seconds`; one job per key (its keyless jobs: one at all) at once."""
    await asyncio.sleep(float(ctx.args.get("seconds", 0.2)))


@job_function("tests.three_at_a_time", max_tries=1, concurrency_limit=3, timeout=60)
async def three_at_a_time(ctx: JobContext) -> None:
    """Sleep `seconds`; three jobs per key (its keyless jobs: three at all) at once."""
    await asyncio.sleep(float(ctx.args.get("seconds", 0.2)))
