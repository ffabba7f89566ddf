"""Per-token request throttling in Redis (fixed one-minute windows); fails open when Redis is away."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from hq import redis as hq_redis
from hq.api.auth import Principal, parse_rate

logger = logging.getLogger(__name__)

__all__ = ["TokenRateThrottle", "parse_rate"]


class TokenRateThrottle(BaseThrottle):
    """Allow `HQ_THROTTLE_RATE` requests per token per window."""

    def allow_request(self, request: Any, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, Principal):
            return True
        limit, window = parse_rate(settings.HQ_THROTTLE_RATE)
        now = time.time()
        bucket = int(now // window)
        name = hq_redis.key("throttle", str(principal.token.pk), str(bucket))
        try:
            pipe = hq_redis.client().pipeline()
            pipe.incr(name)
            pipe.expire(name, window + 1)
            count = pipe.execute()[0]
        except redis.RedisError:
            logger.warning("throttle skipped: Redis unavailable")
            return True
        self._wait = (bucket + 1) * window - now
        return int(count) <= limit

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
