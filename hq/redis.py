"""The shared synchronous Redis client and HQ's key names.

Every key and pub/sub channel HQ owns starts with `HQ_REDIS_PREFIX`. Redis is never allowed to
hold up a request for long: every command has a short timeout (`HQ_REDIS_TIMEOUT_S`, connecting
included), and once Redis has failed to answer, whether refused, reset or silent (a stopped
process still accepts connections, then says nothing), the process skips it for
`HQ_REDIS_BACKOFF_S` (`Breaker`): calls fail at once with `redis.ConnectionError`, which every
caller already treats as "Redis is away" (pushes are left to the relay, throttles fail open).
After the pause one call tries again; until it answers, the others keep failing fast.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings

if TYPE_CHECKING:
    # What the mixin is mixed into (`_with_breaker`), so its super() calls are checked. redis-py
    # leaves those methods unannotated: hence the `no-untyped-call` ignores on them.
    _ConnectionBase = redis.connection.AbstractConnection
else:
    _ConnectionBase = object


class Breaker:
    """Remembers that Redis failed, so the calls after it do not each wait for a timeout."""

    def __init__(self, backoff_s: float) -> None:
        self.backoff_s = backoff_s
        self.lock = threading.Lock()
        self.failed_at: float | None = None  # monotonic time of the last failure; None: healthy
        self.retry_at = 0.0  # before it, calls are refused
        self.error = ""

    def allow(self) -> bool:
        """May a call go to Redis now? While paused, only the first call after the pause does."""
        if self.failed_at is None:
            return True
        with self.lock:
            now = time.monotonic()
            if self.failed_at is None:
                return True
            if now < self.retry_at:
                return False
            # This call probes; the others fail fast until it has answered (or timed out).
            self.retry_at = now + self.backoff_s
            return True

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            now = time.monotonic()
            self.failed_at, self.retry_at = now, now + self.backoff_s
            self.error = f"{exc.__class__.__name__}: {exc}"

    def succeeded(self) -> None:
        if self.failed_at is not None:
            with self.lock:
                self.failed_at, self.error = None, ""

    @property
    def paused(self) -> bool:
        return self.failed_at is not None and time.monotonic() < self.retry_at


_FAILURES = (redis.ConnectionError, redis.TimeoutError)


class _BreakerConnection(_ConnectionBase):
    """Mixed into redis-py's connection class: reports every failure and answer to the breaker."""

    def __init__(self, *args: Any, breaker: Breaker, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.breaker = breaker

    def connect(self) -> None:
        try:
            super().connect()  # type: ignore[no-untyped-call]
        except _FAILURES as exc:
            self.breaker.failed(exc)
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().send_packed_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except _FAILURES as exc:
            self.breaker.failed(exc)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[no-untyped-call]
        except _FAILURES as exc:
            self.breaker.failed(exc)
            raise
        except redis.ResponseError:
            self.breaker.succeeded()  # Redis answered, with an error of the command's own
            raise
        self.breaker.succeeded()
        return response


class _BreakerPool(redis.ConnectionPool):
    """Refuses to hand out a connection while the breaker pauses Redis."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        breaker: Breaker = self.connection_kwargs["breaker"]
        if not breaker.allow():
            raise redis.ConnectionError(f"Redis skipped: it failed moments ago ({breaker.error})")
        return super().get_connection(*args, **kwargs)


@functools.cache
def _with_breaker(connection_class: type) -> type:
    return type(f"Breaker{connection_class.__name__}", (_BreakerConnection, connection_class), {})


@functools.cache
def client() -> redis.Redis:
    """Return the process-wide client (a connection pool underneath)."""
    timeout = settings.HQ_REDIS_TIMEOUT_S
    pool = _BreakerPool.from_url(
        settings.REDIS_URL,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    pool.connection_class = _with_breaker(pool.connection_class)
    pool.connection_kwargs["breaker"] = Breaker(settings.HQ_REDIS_BACKOFF_S)
    return redis.Redis(connection_pool=pool)


def breaker() -> Breaker:
    """The breaker of the process-wide client."""
    breaker: Breaker = client().connection_pool.connection_kwargs["breaker"]
    return breaker


def key(*parts: str) -> str:
    """Return a prefixed key or channel name."""
    prefix: str = settings.HQ_REDIS_PREFIX
    return prefix + ":".join(parts)


def reset() -> None:
    """Drop the cached client (tests that change REDIS_URL, forked processes)."""
    client.cache_clear()


def ping() -> bool:
    """Return True when Redis answers."""
    return check() is None


def check() -> str | None:
    """None when Redis answers a PING; else why not: "no answer within 0.5 s" or "unreachable"."""
    try:
        client().ping()
        return None
    except redis.TimeoutError:
        return f"no answer within {settings.HQ_REDIS_TIMEOUT_S:g} s"
    except redis.RedisError as exc:
        if "TimeoutError" in str(exc):  # skipped by the breaker after a timeout
            return f"no answer within {settings.HQ_REDIS_TIMEOUT_S:g} s"
        return "unreachable"
