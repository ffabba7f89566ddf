"""Every line that touches ARQ or its Redis keys (ARQ is in maintenance mode upstream, arq#510).

HQ writes ARQ's job format itself from synchronous code (views, services), so a request never
needs an event loop; the worker side is a small `arq.Worker` subclass in `queueapp.worker`.
Each attempt is its own ARQ job id, `<job id>:<attempt>`, so a retry is never refused as a
duplicate, and ARQ keeps no results (`keep_result=0`): results live in PostgreSQL.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import redis
from arq.constants import (
    abort_jobs_ss,
    expires_extra_ms,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
)

from hq import redis as hq_redis

#: The one ARQ function every HQ job runs through; it dispatches to the registry.
ARQ_FUNCTION = "hq.run"


@dataclass(frozen=True)
class Push:
    """One attempt to hand to ARQ."""

    job_id: UUID | str
    attempt: int
    queue: str
    due_at: datetime


def arq_job_id(job_id: UUID | str, attempt: int) -> str:
    return f"{job_id}:{attempt}"


def queue_key(queue: str) -> str:
    """The ARQ queue (a sorted set) of an HQ queue."""
    return hq_redis.key("arq", "queue", queue)


def nudge_channel() -> str:
    """Pub/sub channel that wakes idle workers when work arrives (the message is the queue name)."""
    return hq_redis.key("nudge")


def _payload(job_id: UUID | str, attempt: int, enqueue_ms: int) -> bytes:
    # ARQ's job format (arq.jobs.serialize_job): try, function, args, kwargs, enqueue time.
    return pickle.dumps({"t": None, "f": ARQ_FUNCTION, "a": (str(job_id), attempt), "k": {}, "et": enqueue_ms})


def _script_args(item: Push, now_ms: int) -> tuple[list[str], list]:
    arq_id = arq_job_id(item.job_id, item.attempt)
    score = max(int(item.due_at.timestamp() * 1000), 0)
    expires = max(score - now_ms, 0) + expires_extra_ms
    keys = [job_key_prefix + arq_id, result_key_prefix + arq_id, queue_key(item.queue)]
    return keys, [expires, _payload(item.job_id, item.attempt, now_ms), score, arq_id]


# Many pushes in one script call: KEYS and ARGV hold 3 keys and 4 arguments per attempt.
_PUSH_MANY_LUA = """
local pushed = 0
for i = 0, #KEYS / 3 - 1 do
  local job_key, result_key, queue = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  if redis.call('exists', job_key) == 0 and redis.call('exists', result_key) == 0 then
    redis.call('psetex', job_key, ARGV[i * 4 + 1], ARGV[i * 4 + 2])
    redis.call('zadd', queue, ARGV[i * 4 + 3], ARGV[i * 4 + 4])
    pushed = pushed + 1
  end
end
return pushed
"""
PUSH_CHUNK = 500


def _script_calls(items: list[Push], now_ms: int) -> list[tuple[list[str], list]]:
    """(keys, args) of one script call per chunk of attempts."""
    calls = []
    for i in range(0, len(items), PUSH_CHUNK):
        keys: list[str] = []
        args: list = []
        for item in items[i : i + PUSH_CHUNK]:
            k, a = _script_args(item, now_ms)
            keys += k
            args += a
        calls.append((keys, args))
    return calls


def _due_queues(items: list[Push], now_ms: int) -> set[str]:
    return {i.queue for i in items if i.due_at.timestamp() * 1000 <= now_ms + 50}


def push(items: Iterable[Push], client: redis.Redis | None = None) -> int:
    """Hand attempts to ARQ; return how many were new. Raises `redis.RedisError` when Redis is away.

    Like `ArqRedis.enqueue_job`, a push is refused while ARQ still holds the job or its result.
    """
    items = list(items)
    if not items:
        return 0
    client = client or hq_redis.client()
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    script = client.register_script(_PUSH_MANY_LUA)
    calls = _script_calls(items, now_ms)
    for keys, args in calls:
        script(keys=keys, args=args, client=pipe)
    for queue in _due_queues(items, now_ms):
        pipe.publish(nudge_channel(), queue)
    return sum(int(r) for r in pipe.execute()[: len(calls)])


async def apush(items: Iterable[Push], client) -> int:  # noqa: ANN001 - redis.asyncio.Redis
    """`push` for the worker's asyncio Redis client."""
    items = list(items)
    if not items:
        return 0
    now_ms = int(time.time() * 1000)
    script = client.register_script(_PUSH_MANY_LUA)
    pushed = 0
    for keys, args in _script_calls(items, now_ms):
        pushed += int(await script(keys=keys, args=args))
    for queue in _due_queues(items, now_ms):
        await client.publish(nudge_channel(), queue)
    return pushed


def abort(job_id: UUID | str, attempt: int, client: redis.Redis | None = None) -> None:
    """Ask the worker running this attempt to cancel it (ARQ's `allow_abort_jobs`)."""
    client = client or hq_redis.client()
    client.zadd(abort_jobs_ss, {arq_job_id(job_id, attempt): int(time.time() * 1000)})
    client.publish(nudge_channel(), "*abort*")


# ARQ's claim (Worker.start_jobs: due, still queued, not in progress elsewhere, then mark in
# progress) for many ids in one round trip instead of four per id.
_CLAIM_LUA = """
local now, ttl, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local score = redis.call('zscore', KEYS[1], id)
  if score and tonumber(score) <= now and redis.call('exists', prefix .. id) == 0 then
    redis.call('psetex', prefix .. id, ttl, '1')
    out[#out + 1] = id
    out[#out + 1] = score
  end
end
return out
"""


async def claim(client, queue: str, arq_ids: list[str], in_progress_ttl_ms: int) -> list[tuple[str, int]]:  # noqa: ANN001
    """Mark the startable ones of `arq_ids` in progress for this worker; return (id, score) pairs."""
    script = client.register_script(_CLAIM_LUA)
    now_ms = int(time.time() * 1000)
    got = await script(keys=[queue_key(queue)], args=[now_ms, in_progress_ttl_ms, in_progress_key_prefix, *arq_ids])
    return [(_text(got[i]), int(float(got[i + 1]))) for i in range(0, len(got), 2)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def forget(job_id: UUID | str, attempt: int, queue: str, client: redis.Redis | None = None) -> None:
    """Drop a dead attempt from ARQ (its worker died): queue entry, job and in-progress keys."""
    arq_id = arq_job_id(job_id, attempt)
    pipe = (client or hq_redis.client()).pipeline(transaction=False)
    pipe.zrem(queue_key(queue), arq_id)
    pipe.delete(job_key_prefix + arq_id, in_progress_key_prefix + arq_id)
    pipe.execute()


async def startable_count(queue: str, client, now_ms: int, limit: int = 1000) -> int:  # noqa: ANN001
    """Due entries of an ARQ queue that no worker holds in progress (burst mode's 'anything left?')."""
    ids = await client.zrangebyscore(queue_key(queue), "-inf", now_ms, start=0, num=limit)
    if not ids:
        return 0
    held = await client.exists(*[in_progress_key_prefix + (i.decode() if isinstance(i, bytes) else i) for i in ids])
    return len(ids) - int(held)


def nudge(queue: str, client: redis.Redis | None = None) -> None:
    """Wake workers and relays (a queue resumed, a job approved)."""
    (client or hq_redis.client()).publish(nudge_channel(), queue)


def server_run_id(client: redis.Redis | None = None) -> str:
    """Redis's `run_id`: it changes when the server restarts, which may mean it lost what it held."""
    return str((client or hq_redis.client()).info("server").get("run_id", ""))


def queue_length(queue: str, client: redis.Redis | None = None) -> int:
    return int((client or hq_redis.client()).zcard(queue_key(queue)))
