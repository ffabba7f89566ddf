"""The shared synchronous Redis client and HQ's key names.

Every key and pub/sub channel HQ owns starts with `HQ_REDIS_PREFIX`; timeouts are short so a
Redis outage costs a request milliseconds, never a hang.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def client() -> redis.Redis:
    """Return the process-wide client (a connection pool underneath)."""
    timeout = settings.HQ_REDIS_TIMEOUT_S
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )


def key(*parts: str) -> str:
    """Return a prefixed key or channel name."""
    return settings.HQ_REDIS_PREFIX + ":".join(parts)


def reset() -> None:
    """Drop the cached client (tests that change REDIS_URL, forked processes)."""
    client.cache_clear()


def ping() -> bool:
    """Return True when Redis answers."""
    try:
        return bool(client().ping())
    except redis.RedisError:
        return False
