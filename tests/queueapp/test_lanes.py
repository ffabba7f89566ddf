"""The fair claim in Redis (`transport.claim`): lanes, caps, engine slots, older pushes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import redis.asyncio as aioredis
from django.conf import settings

from hq import clock
from queueapp import transport

TTL_MS = 60_000


def push(lane: str, n: int = 1, ago_s: float = 1.0, priority: int = 0) -> list[str]:
    due = clock.now() - timedelta(seconds=ago_s)
    items = [transport.Push(uuid.uuid4(), 1, "default", due, lane, priority) for _ in range(n)]
    assert transport.push(items) == n
    return [transport.arq_job_id(i.job_id, 1) for i in items]


def claim(free: int, *, cap: int = 100, user_limit: int = 100, running: dict | None = None) -> list[tuple]:
    async def go() -> list[tuple]:
        client = aioredis.from_url(settings.REDIS_URL)
        try:
            share = transport.Share(cap=cap, user_limit=user_limit, running=running or {})
            return await transport.claim(client, "default", free, share, TTL_MS)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_lanes_take_turns_and_a_lane_at_its_cap_waits():
    a = push("u:a", 5, ago_s=10)  # the oldest work
    b = push("u:b", 2, ago_s=1)
    got = claim(4, cap=3)
    assert [lane for _, _, lane in got] == ["u:a", "u:b", "u:a", "u:b"]  # fewest running first
    assert {i for i, _, lane in got if lane == "u:a"} < set(a) and {i for i, _, lane in got if lane == "u:b"} == set(b)
    assert [lane for _, _, lane in claim(5, cap=3, running={"u:a": 2, "u:b": 2})] == ["u:a"]  # a hits 3
    assert claim(5, cap=3, running={"u:a": 3, "u:b": 2}) == []  # b is empty, a at its cap
    assert len(claim(5, cap=10, running={"u:a": 3})) == 2  # the rest of a's flood


def test_engine_lanes_go_first_and_keep_their_slots_behind_any_number_of_workspaces():
    for n in range(300):  # more busy workspaces than one read of the index covers
        push(f"u:{n}", 1, ago_s=100)
    fire = push("s:w", 1, ago_s=0.5)[0]
    got = claim(1, user_limit=0)  # every ordinary slot is taken: only an engine job may start
    assert got == [(fire, got[0][1], "s:w")]
    assert claim(1, user_limit=0) == []
    assert claim(2)[0][2].startswith("u:")


def test_an_attempt_pushed_without_a_lane_is_still_taken():
    older = push("", 1)[0]  # as an HQ without lanes pushed it
    assert [(i, lane) for i, _, lane in claim(3)] == [(older, "")]


def test_a_taken_attempt_is_not_taken_again_and_a_finished_one_is_dropped_from_its_lane():
    pushed = push("u:a", 2)
    ((taken, _, _),) = claim(1)
    (second,) = set(pushed) - {taken}
    # ARQ finished `second` elsewhere (it left ARQ's queue) before any lane read reached it.
    from hq import redis as hq_redis

    hq_redis.client().zrem(transport.queue_key("default"), second)
    assert claim(5) == []
    assert hq_redis.client().zcard(transport.lane_key("default", "u:a")) == 0


def test_a_push_reloads_its_script_on_a_redis_that_lost_it():
    """push() sends EVALSHA without asking first; a restarted Redis has no scripts, and gets it once."""
    from hq import redis as hq_redis

    hq_redis.client().script_flush()
    (pushed,) = push("u:a", 1)
    assert [i for i, _, _ in claim(1)] == [pushed]


def test_a_lane_starts_its_highest_priority_first_and_equal_priorities_in_push_order():
    low = push("u:a", 30, ago_s=100, priority=-100)  # the lowest band: the largest scores
    mid = push("u:a", 5, ago_s=50, priority=0)
    high = push("u:a", 3, ago_s=1, priority=100)
    top = push("u:a", 1, ago_s=0, priority=99)
    got = [i for i, _, _ in claim(100)]
    assert got == [*high, *top, *mid, *low]


def test_scores_stay_exact_in_every_band():
    """201 bands of 2^45 stay below 2^53: each score Redis stores is the integer band * 2^45 + seq."""
    from hq import redis as hq_redis

    ids = {p: push("u:a", 2, priority=p) for p in (-100, -1, 0, 1, 100)}
    scores = dict(hq_redis.client().zrange(transport.lane_key("default", "u:a"), 0, -1, withscores=True))
    for priority, (first, second) in ids.items():
        band = (transport.PRIORITY_TOP - priority) * transport.BAND
        a, b = scores[first.encode()], scores[second.encode()]
        assert a == int(a) and a > band and b == a + 1 < band + transport.BAND


def test_an_attempt_not_yet_due_waits_outside_its_lane_then_takes_its_place_by_priority():
    from hq import redis as hq_redis

    soon = clock.now() + timedelta(seconds=30)
    later = transport.Push(uuid.uuid4(), 1, "default", soon, "u:a", 50)
    assert transport.push([later]) == 1
    waiting = push("u:a", 3, priority=0)
    assert hq_redis.client().zcard(transport.delayed_key("default")) == 1
    assert [i for i, _, _ in claim(1)] == [waiting[0]]  # not due: never taken, whatever its priority
    clock.set_offset(clock.offset() + 31)
    try:
        got = [i for i, _, _ in claim(5)]
    finally:
        clock.set_offset(clock.offset() - 31)
    assert got == [transport.arq_job_id(later.job_id, 1), *waiting[1:]]  # due now, and ahead by priority
    assert hq_redis.client().zcard(transport.delayed_key("default")) == 0
    assert hq_redis.client().hlen(transport.band_of_key("default")) == 0


def test_fair_share_comes_before_priority_between_lanes():
    """A workspace's priority orders its own jobs; it never takes another's turn (README, "Fair share")."""
    urgent = push("u:a", 4, ago_s=1, priority=100)
    plain = push("u:b", 2, ago_s=100, priority=-50)
    got = claim(4)
    # Equal running counts: the lane whose head ranks first (the higher priority) goes first, then turns.
    assert [lane for _, _, lane in got] == ["u:a", "u:b", "u:a", "u:b"]
    assert [i for i, _, lane in got if lane == "u:b"] == plain
    assert [i for i, _, lane in got if lane == "u:a"] == urgent[:2]
