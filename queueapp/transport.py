"""Every line that touches ARQ or its Redis keys (ARQ is in maintenance mode upstream, arq#510).

HQ writes ARQ's job format itself from synchronous code (views, services), so a request never
needs an event loop; the worker side is a small `arq.Worker` subclass in `queueapp.worker`.
Each attempt is its own ARQ job id, `<job id>:<attempt>`, so a retry is never refused as a
duplicate, and ARQ keeps no results (`keep_result=0`): results live in PostgreSQL.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import redis
import redis.asyncio as aioredis
from arq.constants import (
    abort_jobs_ss,
    expires_extra_ms,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

from hq import clock
from hq import redis as hq_redis

#: The one ARQ function every HQ job runs through; it dispatches to the registry.
ARQ_FUNCTION = "hq.run"


@dataclass(frozen=True)
class Push:
    """One attempt to hand to ARQ, the fair-share lane it waits in (`registry.fair_lane`) and its
    priority (-100..100, higher first within the lane)."""

    job_id: UUID | str
    attempt: int
    queue: str
    due_at: datetime
    lane: str = ""
    priority: int = 0


#: A lane orders its attempts by `band * BAND + seq`: band = 100 - priority (0 for the highest),
#: seq a counter per queue taken when the attempt becomes due (its push, or its promotion from the
#: queue's delayed set). 201 bands of 2^45 stay below 2^53, so every score is an exact double.
BAND = 2**45
PRIORITY_TOP = 100


def clock_ms() -> int:
    """Now on HQ's clock (`hq.clock`), the one due times are written in, as epoch milliseconds."""
    return int(clock.now().timestamp() * 1000)


def arq_job_id(job_id: UUID | str, attempt: int) -> str:
    return f"{job_id}:{attempt}"


def queue_key(queue: str) -> str:
    """The ARQ queue (a sorted set) of an HQ queue."""
    return hq_redis.key("arq", "queue", queue)


def lane_key(queue: str, lane: str = "") -> str:
    """A lane's sorted set of waiting attempts (the prefix of all of them when `lane` is empty)."""
    return hq_redis.key("arq", "lane", queue, lane)


def lanes_key(queue: str, kind: str = "u") -> str:
    """The lanes of a queue that hold waiting attempts, scored by their earliest due time: engine
    lanes ("s") and job lanes ("u") apart, so any number of busy workspaces cannot hide a fire."""
    return hq_redis.key("arq", "lanes", queue, kind)


def lane_of_key(queue: str) -> str:
    """Hash: waiting attempt -> its lane (an entry of the queue without one was pushed by older code)."""
    return hq_redis.key("arq", "laneof", queue)


def delayed_key(queue: str) -> str:
    """Attempts with a lane that are not yet due, scored by due time; the claim moves them into
    their lanes once due (a lane holds due attempts only, ordered by priority)."""
    return hq_redis.key("arq", "delayed", queue)


def band_of_key(queue: str) -> str:
    """Hash: delayed attempt -> its band (100 - priority), until it is moved into its lane."""
    return hq_redis.key("arq", "bandof", queue)


def seq_key(queue: str) -> str:
    """A counter per queue: the order in which attempts of one priority became due."""
    return hq_redis.key("arq", "seq", queue)


def nudge_channel() -> str:
    """Pub/sub channel that wakes idle workers when work arrives (the message is the queue name)."""
    return hq_redis.key("nudge")


def _payload(job_id: UUID | str, attempt: int, enqueue_ms: int) -> bytes:
    # ARQ's job format (arq.jobs.serialize_job): try, function, args, kwargs, enqueue time.
    return pickle.dumps({"t": None, "f": ARQ_FUNCTION, "a": (str(job_id), attempt), "k": {}, "et": enqueue_ms})


#: The ARGV of a push script call: now (ms), then per attempt expiry (ms), ARQ payload, score (ms),
#: ARQ job id, lane, band.
_Argv = list[int | bytes | str]


def _script_args(item: Push, now_ms: int, shared: dict[tuple[str, str], list[str]]) -> tuple[list[str], _Argv]:
    """The KEYS and ARGV of one attempt; `shared` keeps the keys of each (queue, lane) once made."""
    arq_id = arq_job_id(item.job_id, item.attempt)
    score = max(int(item.due_at.timestamp() * 1000), 0)
    expires = max(score - now_ms, 0) + expires_extra_ms
    queue = item.queue
    lane_keys = shared.get((queue, item.lane))
    if lane_keys is None:
        lane_keys = shared[(queue, item.lane)] = [
            queue_key(queue),
            lane_key(queue, item.lane),
            lanes_key(queue, item.lane[:1] or "u"),
            lane_of_key(queue),
            delayed_key(queue),
            band_of_key(queue),
            seq_key(queue),
        ]
    keys = [job_key_prefix + arq_id, result_key_prefix + arq_id, *lane_keys]
    band = PRIORITY_TOP - item.priority
    return keys, [expires, _payload(item.job_id, item.attempt, now_ms), score, arq_id, item.lane, band]


# Many pushes in one script call: KEYS hold 9 keys and ARGV (after now) 6 arguments per attempt; it
# answers 1 for each attempt it pushed, 0 for one ARQ still held.
# ARQ's queue keeps every attempt, scored by due time (ARQ's own bookkeeping and dedupe). The lane
# is HQ's fair-share and priority index: a due attempt goes straight into its lane, scored by its
# band and the queue's counter (`BAND`); one not yet due waits in the queue's delayed set, with its
# band aside, until the claim moves it (`_CLAIM_FAIR_LUA`).
_PUSH_MANY_LUA = """
local now, pushed = tonumber(ARGV[1]), {}
for i = 0, #KEYS / 9 - 1 do
  local k, a = i * 9, 1 + i * 6
  pushed[i + 1] = 0
  if redis.call('exists', KEYS[k + 1]) == 0 and redis.call('exists', KEYS[k + 2]) == 0 then
    redis.call('psetex', KEYS[k + 1], ARGV[a + 1], ARGV[a + 2])
    redis.call('zadd', KEYS[k + 3], ARGV[a + 3], ARGV[a + 4])
    if ARGV[a + 5] ~= '' then
      redis.call('hset', KEYS[k + 6], ARGV[a + 4], ARGV[a + 5])
      if tonumber(ARGV[a + 3]) <= now then
        local score = tonumber(ARGV[a + 6]) * BAND + redis.call('incr', KEYS[k + 9])
        redis.call('zadd', KEYS[k + 4], score, ARGV[a + 4])
        redis.call('zadd', KEYS[k + 5], 'LT', score, ARGV[a + 5])
      else
        redis.call('zadd', KEYS[k + 7], ARGV[a + 3], ARGV[a + 4])
        redis.call('hset', KEYS[k + 8], ARGV[a + 4], ARGV[a + 6])
      end
    end
    pushed[i + 1] = 1
  end
end
return pushed
""".replace("BAND", str(BAND))
PUSH_CHUNK = 500
_PUSH_MANY_SHA = hashlib.sha1(_PUSH_MANY_LUA.encode()).hexdigest()


def _script_calls(items: list[Push], now_ms: int) -> list[tuple[list[str], _Argv]]:
    """(keys, args) of one script call per chunk of attempts."""
    calls: list[tuple[list[str], _Argv]] = []
    shared: dict[tuple[str, str], list[str]] = {}
    for i in range(0, len(items), PUSH_CHUNK):
        keys: list[str] = []
        args: _Argv = [now_ms]
        for item in items[i : i + PUSH_CHUNK]:
            k, a = _script_args(item, now_ms, shared)
            keys += k
            args += a
        calls.append((keys, args))
    return calls


def _due_queues(items: list[Push], now_ms: int) -> set[str]:
    return {i.queue for i in items if i.due_at.timestamp() * 1000 <= now_ms + 50}


# Drop the job and in-progress keys of attempts claimed before ARGV[1] (ms): the claim script
# stamps its time in the in-progress key ('1', as ARQ writes, counts as long ago).
_RECLAIM_LUA = """
local dropped = 0
for i = 1, #KEYS, 2 do
  local claimed = tonumber(redis.call('get', KEYS[i]) or '')
  if claimed and claimed < tonumber(ARGV[1]) then
    redis.call('del', KEYS[i], KEYS[i + 1])
    dropped = dropped + 1
  end
end
return dropped
"""


def push(items: Iterable[Push], client: redis.Redis | None = None, *, reclaim_before: datetime | None = None) -> int:
    """Hand attempts to ARQ; return how many were new. Raises `redis.RedisError` when Redis is away.

    `push_new` says which.

    Like `ArqRedis.enqueue_job`, a push is refused while ARQ still holds the job or its result.
    `reclaim_before` first drops the keys of each attempt a worker claimed before that time: for
    a row still waiting long after its claim, whose worker died before starting it (the claim's
    in-progress key would keep every other worker off it for a week). An attempt claimed since
    is left to its worker, which starts it within milliseconds; should both start it anyway,
    START is conditional and one is refused.
    """
    return sum(push_new(items, client, reclaim_before=reclaim_before))


def push_new(
    items: Iterable[Push], client: redis.Redis | None = None, *, reclaim_before: datetime | None = None
) -> list[bool]:
    """`push`, answering for each attempt whether it was new (False: ARQ still held it)."""
    items = list(items)
    if not items:
        return []
    client = client or hq_redis.client()
    now_ms = clock_ms()
    calls = _script_calls(items, now_ms)
    if reclaim_before is not None:
        ids = [arq_job_id(i.job_id, i.attempt) for i in items]
        keys = [k for i in ids for k in (in_progress_key_prefix + i, job_key_prefix + i)]
        client.eval(_RECLAIM_LUA, len(keys), *keys, str(int(reclaim_before.timestamp() * 1000)))
    for attempt in (1, 2):
        # EVALSHA straight away: a registered script in a pipeline asks SCRIPT EXISTS first, a
        # second round trip on every push. A server that lacks the script (restarted) gets it once.
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            # redis-py annotates the keys and args of EVALSHA as str; it encodes ints and bytes as for any command.
            pipe.evalsha(_PUSH_MANY_SHA, len(keys), *keys, *args)  # type: ignore[arg-type]
        for queue in _due_queues(items, now_ms):
            pipe.publish(nudge_channel(), queue)
        try:
            return [bool(int(flag)) for flags in pipe.execute()[: len(calls)] for flag in flags]
        except redis.exceptions.NoScriptError:
            if attempt == 2:
                raise
            client.script_load(_PUSH_MANY_LUA)
    raise AssertionError("unreachable")


async def apush(items: Iterable[Push], client: aioredis.Redis) -> int:
    """`push` for the worker's asyncio Redis client."""
    items = list(items)
    if not items:
        return 0
    now_ms = clock_ms()
    script = client.register_script(_PUSH_MANY_LUA)
    pushed = 0
    for keys, args in _script_calls(items, now_ms):
        pushed += sum(int(flag) for flag in await script(keys=keys, args=args))
    for queue in _due_queues(items, now_ms):
        await client.publish(nudge_channel(), queue)
    return pushed


def abort(job_id: UUID | str, attempt: int, client: redis.Redis | None = None) -> None:
    """Ask the worker running this attempt to cancel it (ARQ's `allow_abort_jobs`)."""
    client = client or hq_redis.client()
    client.zadd(abort_jobs_ss, {arq_job_id(job_id, attempt): int(time.time() * 1000)})
    client.publish(nudge_channel(), "*abort*")


# ARQ's claim (Worker.start_jobs: due, still queued, not in progress elsewhere, then mark in
# progress), made fair: up to `free` attempts taken lane by lane. A lane is one workspace's jobs
# ("u:<id>") or its engine jobs ("s:<id>", schedule fires and deliveries). First, attempts of the
# delayed set that are now due move into their lanes (in due order, so they take their seq in that
# order). Each pick goes to the eligible lane with the fewest attempts running on this worker
# (engine lanes first; among equals the lane whose head ranks first: highest priority, then due
# first); a lane at `cap` is not eligible, nor is any "u:" lane once user lanes hold `user_limit`
# slots, so engine jobs always find the slots kept for them. Within a lane the head is its
# highest-priority attempt, the earliest due among equals. Attempts pushed by older code (in ARQ's
# queue but in no lane) are taken after the lanes.
_CLAIM_FAIR_LUA = """
local now, ttl, ipfx, lpfx = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local free, cap, user_limit, user_running = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local running = {}
for i = 9, #ARGV, 2 do running[ARGV[i]] = tonumber(ARGV[i + 1]) end
for _, id in ipairs(redis.call('zrangebyscore', KEYS[5], '-inf', now, 'LIMIT', 0, 1000)) do
  local lane, band = redis.call('hget', KEYS[4], id), tonumber(redis.call('hget', KEYS[6], id) or '100')
  redis.call('zrem', KEYS[5], id)
  redis.call('hdel', KEYS[6], id)
  if lane then
    local score = band * BAND + redis.call('incr', KEYS[7])
    redis.call('zadd', lpfx .. lane, score, id)
    redis.call('zadd', string.sub(lane, 1, 2) == 's:' and KEYS[2] or KEYS[3], 'LT', score, lane)
  end
end
local lanes = redis.call('zrange', KEYS[2], 0, 255)
for _, lane in ipairs(redis.call('zrange', KEYS[3], 0, 255)) do
  lanes[#lanes + 1] = lane
end
local out, done = {}, {}
local function take(id, score, lane)
  if redis.call('zscore', KEYS[1], id) and redis.call('exists', ipfx .. id) == 0 then
    redis.call('psetex', ipfx .. id, ttl, now)
    out[#out + 1] = id
    out[#out + 1] = score
    out[#out + 1] = lane
    return true
  end
  return false
end
while free > 0 do
  local best, best_r, best_sys = nil, 0, false
  for _, lane in ipairs(lanes) do
    local r = running[lane] or 0
    local sys = string.sub(lane, 1, 2) == 's:'
    if not done[lane] and r < cap and (sys or user_running < user_limit) then
      if best == nil or (sys and not best_sys) or (sys == best_sys and r < best_r) then
        best, best_r, best_sys = lane, r, sys
      end
    end
  end
  if best == nil then break end
  local lkey, taken = lpfx .. best, false
  while not taken do
    local head = redis.call('zrange', lkey, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    redis.call('zrem', lkey, head[1])
    redis.call('hdel', KEYS[4], head[1])
    taken = take(head[1], head[2], best)
  end
  local nxt, index = redis.call('zrange', lkey, 0, 0, 'WITHSCORES'), best_sys and KEYS[2] or KEYS[3]
  if #nxt == 0 then redis.call('zrem', index, best) else redis.call('zadd', index, nxt[2], best) end
  if taken then
    running[best] = best_r + 1
    if not best_sys then user_running = user_running + 1 end
    free = free - 1
  else
    done[best] = true
  end
end
if free > 0 and user_running < user_limit then
  local ids = redis.call('zrangebyscore', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 4 * free)
  for i = 1, #ids, 2 do
    if free == 0 or user_running >= user_limit then break end
    if redis.call('hexists', KEYS[4], ids[i]) == 0 and take(ids[i], ids[i + 1], '') then
      free, user_running = free - 1, user_running + 1
    end
  end
end
return out
""".replace("BAND", str(BAND))


@dataclass(frozen=True)
class Share:
    """How one worker shares its slots: at most `cap` per lane, `user_limit` for all user lanes."""

    cap: int
    user_limit: int
    running: dict[str, int]


async def claim(
    client: aioredis.Redis,
    queue: str,
    free: int,
    share: Share,
    in_progress_ttl_ms: int,
) -> list[tuple[str, int, str]]:
    """Mark up to `free` startable attempts in progress, fairly; return (arq id, score, lane)."""
    script = client.register_script(_CLAIM_FAIR_LUA)
    now_ms = clock_ms()
    user_running = sum(n for lane, n in share.running.items() if not lane.startswith("s:"))
    pairs = [v for lane, n in share.running.items() if n > 0 for v in (lane, n)]
    got = await script(
        keys=[
            queue_key(queue),
            lanes_key(queue, "s"),
            lanes_key(queue, "u"),
            lane_of_key(queue),
            delayed_key(queue),
            band_of_key(queue),
            seq_key(queue),
        ],
        args=[
            now_ms,
            in_progress_ttl_ms,
            in_progress_key_prefix,
            lane_key(queue),
            free,
            share.cap,
            share.user_limit,
            user_running,
            *pairs,
        ],
    )
    return [(_text(got[i]), int(float(got[i + 1])), _text(got[i + 2])) for i in range(0, len(got), 3)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _forget_commands(pipe: Any, queue: str, arq_ids: list[str]) -> None:
    """Queue entries first, then the keys: an entry whose in-progress key is gone is claimable."""
    pipe.zrem(queue_key(queue), *arq_ids)
    pipe.zrem(abort_jobs_ss, *arq_ids)
    pipe.delete(*(prefix + i for i in arq_ids for prefix in (job_key_prefix, in_progress_key_prefix, retry_key_prefix)))


def forget(job_id: UUID | str, attempt: int, queue: str, client: redis.Redis | None = None) -> None:
    """Drop a dead attempt from ARQ (its worker died): queue entry, job and in-progress keys."""
    pipe = (client or hq_redis.client()).pipeline(transaction=True)
    _forget_commands(pipe, queue, [arq_job_id(job_id, attempt)])
    pipe.execute()


async def aforget(client: aioredis.Redis, queue: str, arq_ids: list[str]) -> None:
    """Drop attempts that ended from ARQ, in one MULTI (what ARQ's `finish_job` does for one job)."""
    async with client.pipeline(transaction=True) as pipe:
        _forget_commands(pipe, queue, arq_ids)
        await pipe.execute()


async def startable_count(queue: str, client: aioredis.Redis, now_ms: int, limit: int = 1000) -> int:
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
    # redis-py types every command's result as `Awaitable[Any] | Any`, for its sync and async clients alike.
    info = cast("dict[str, Any]", (client or hq_redis.client()).info("server"))
    return str(info.get("run_id", ""))


def queue_length(queue: str, client: redis.Redis | None = None) -> int:
    return cast(int, (client or hq_redis.client()).zcard(queue_key(queue)))  # as in server_run_id
