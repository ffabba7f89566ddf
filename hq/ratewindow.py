"""Fixed-window counters in Redis: the one counter behind the request throttle and failed logins.

A rate such as `1200/min` allows that many events per key in each window (the window is the
current minute, `int(now // 60)`); each window's count lives in its own Redis key that expires one
second after the window ends.

Two ways to count:

- `FixedWindow.add` / `counts`: exact, one round trip per call (failed authentications, which are
  rare and must be exact).
- `Admission.allow`: the request throttle's hot path. Each process takes permits from the shared
  count in leases: the first request of a key in a window takes one; a lease used up within a second
  takes twice as many next time, up to 1 % of the limit (at most `MAX_LEASE`). A busy token costs a
  Redis round trip every few dozen requests instead of every request, and a quiet one is counted
  exactly; once the count reaches the limit, the process refuses the key until the window ends
  without asking Redis. The price: permits leased but not used when the window ends are counted,
  so a token may be refused up to a lease early per web process (at most 1 % of its rate each).

Redis away: nothing is counted and everything is allowed (fails open), with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import cast

import redis

from hq import redis as hq_redis

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
MAX_LEASE = 64


def parse_rate(rate: str) -> tuple[int, int]:
    """Parse '1200/min' into (events, window seconds)."""
    count, _, unit = rate.partition("/")
    return int(count), _UNITS[unit.strip().lower()]


class FixedWindow:
    """Counts per key in the current window of `rate`, under `hq:<namespace>:<key...>:<window>`."""

    def __init__(self, namespace: str, rate: str) -> None:
        self.namespace = namespace
        self.limit, self.seconds = parse_rate(rate)

    def bucket(self, now: float | None = None) -> int:
        return int((time.time() if now is None else now) // self.seconds)

    def retry_after(self, bucket: int) -> float:
        """Seconds until window `bucket` ends."""
        return (bucket + 1) * self.seconds - time.time()

    def name(self, key: tuple[str, ...], bucket: int) -> str:
        return hq_redis.key(self.namespace, *key, str(bucket))

    def add(self, keys: list[tuple[str, ...]], n: int = 1, bucket: int | None = None) -> list[int]:
        """Add `n` to each key's count in the window; the new counts. Raises redis.RedisError."""
        bucket = self.bucket() if bucket is None else bucket
        pipe = hq_redis.client().pipeline(transaction=False)
        for key in keys:
            name = self.name(key, bucket)
            pipe.incrby(name, n)
            pipe.expireat(name, (bucket + 1) * self.seconds + 1)  # a second after its window ends
        return [int(c) for c in pipe.execute()[::2]]

    def counts(self, keys: list[tuple[str, ...]]) -> list[int]:
        """Each key's count in the current window. Raises redis.RedisError."""
        bucket = self.bucket()
        # redis-py types every command's result as `Awaitable[Any] | Any`, for its sync and async clients alike.
        values = cast("list[bytes | None]", hq_redis.client().mget([self.name(k, bucket) for k in keys]))
        return [int(c or 0) for c in values]


@dataclass
class _Lease:
    bucket: int
    left: int = 0  # permits held by this process, not yet used
    size: int = 1  # permits the next lease asks for
    taken_at: float = 0.0
    spent: bool = False  # the window's count has reached the limit: refuse without asking Redis


class Admission:
    """Allow at most `rate` events per key across every process, counting in leases (see module)."""

    def __init__(self, namespace: str, rate: str) -> None:
        self.window = FixedWindow(namespace, rate)
        self.max_lease = max(1, min(MAX_LEASE, self.window.limit // 100))
        self._leases: dict[tuple[str, ...], _Lease] = {}
        self._swept = -1  # the window whose first request dropped the leases of earlier ones
        self._lock = threading.Lock()

    def allow(self, key: tuple[str, ...]) -> tuple[bool, float]:
        """(allowed, seconds until the window ends) for one event of `key`."""
        bucket = self.window.bucket()
        with self._lock:
            lease = self._leases.get(key)
            if bucket != self._swept:
                # Once per window: the leases of ended windows are worth nothing.
                self._leases = {k: v for k, v in self._leases.items() if v.bucket == bucket}
                self._swept = bucket
                lease = self._leases.get(key)
            if lease is None or lease.bucket != bucket:
                lease = self._leases[key] = _Lease(bucket)
            if lease.left > 0:
                lease.left -= 1
                return True, self.window.retry_after(bucket)
            if lease.spent:
                return False, self.window.retry_after(bucket)
            now = time.monotonic()
            if lease.taken_at and now - lease.taken_at < 1.0:
                lease.size = min(self.max_lease, lease.size * 2)
            size, lease.taken_at = lease.size, now
        try:
            (count,) = self.window.add([key], size, bucket)
        except redis.RedisError:
            logger.warning("throttle skipped: Redis unavailable")
            return True, 0.0
        granted = max(0, min(size, self.window.limit - (count - size)))
        with self._lock:
            if lease.bucket == bucket:
                lease.left += max(0, granted - 1)
                lease.spent = count >= self.window.limit
        return granted > 0, self.window.retry_after(bucket)
