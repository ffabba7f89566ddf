"""Failed authentications, counted in Redis: one counter for every way in.

API tokens, the admin login and `/metrics` all record a refused credential here and check here
before they look one up. A failure is counted under one or more keys, each a kind and an
identifier: the client's address (`address(...)`), and for the admin login also the username
(`username(...)`). Once any key has `HQ_AUTH_FAILURE_RATE` failures in the current fixed window,
`exceeded` answers how long until the window ends and the caller refuses with 429.

Redis away: nothing is counted and nothing is refused (fails open, like the request throttle),
with a warning in the log.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import redis
from django.conf import settings
from rest_framework.settings import api_settings

from hq import redis as hq_redis
from hq.errors import Throttled

logger = logging.getLogger(__name__)

#: (kind, identifier): what a failure is counted against.
Key = tuple[str, str]

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """Parse '1200/min' into (requests, window seconds)."""
    count, _, unit = rate.partition("/")
    return int(count), _UNITS[unit.strip().lower()]


def client_ip(request: Any) -> str:
    """The caller's address: REMOTE_ADDR, or the entry `NUM_PROXIES` trusted proxies appended to
    X-Forwarded-For when that DRF setting is set (never a client-supplied header otherwise)."""
    remote = request.META.get("REMOTE_ADDR") or "unknown"
    proxies = api_settings.NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    return remote


def address(ip: str) -> Key:
    """Failures from one client address (every way in shares it)."""
    return ("address", ip)


def address_of(request: Any) -> Key:
    return address(client_ip(request))


def credential(presented: str) -> Key:
    """Failures of credentials that start alike (a token's first characters after the scheme): a
    client retrying one bad token is throttled wherever it runs from. Stored hashed."""
    secret = presented.split()[-1] if presented.split() else ""
    return ("credential", hashlib.sha256(secret[:16].encode("utf-8", "surrogatepass")).hexdigest()[:32])


def username(name: str) -> Key:
    """Failures for one admin login name, from any address; case and surrounding spaces ignored.
    Stored hashed: Redis never holds the names people typed."""
    return ("username", hashlib.sha256(name.strip().lower().encode()).hexdigest()[:32])


def _window() -> tuple[int, int, int]:
    """(limit, window seconds, current bucket) from HQ_AUTH_FAILURE_RATE."""
    limit, seconds = parse_rate(settings.HQ_AUTH_FAILURE_RATE)
    return limit, seconds, int(time.time() // seconds)


def _name(key: Key, bucket: int) -> str:
    return hq_redis.key("authfail", key[0], key[1], str(bucket))


def exceeded(*keys: Key) -> int | None:
    """Seconds until the window ends if any key has reached the limit; None when the caller may try."""
    limit, seconds, bucket = _window()
    try:
        counts = hq_redis.client().mget([_name(k, bucket) for k in keys])
    except redis.RedisError:
        logger.warning("auth failure throttle skipped: Redis unavailable")
        return None
    if all(int(count or 0) < limit for count in counts):
        return None
    return max(1, int((bucket + 1) * seconds - time.time()) + 1)


def record(*keys: Key) -> None:
    """Count one failed authentication against each key."""
    _, seconds, bucket = _window()
    try:
        pipe = hq_redis.client().pipeline()
        for key in keys:
            name = _name(key, bucket)
            pipe.incr(name)
            pipe.expire(name, seconds + 1)
        pipe.execute()
    except redis.RedisError:
        logger.warning("auth failure not counted: Redis unavailable")


def refusal(retry_after_s: int) -> Throttled:
    """The 429 an API caller gets while throttled (`auth_throttled`, with `retry_after_s`)."""
    return Throttled(
        "Too many failed authentications from this address; try again later.",
        code="auth_throttled",
        detail={"retry_after_s": retry_after_s},
    )
