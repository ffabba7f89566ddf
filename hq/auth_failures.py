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

import redis
from django.conf import settings
from django.http import HttpRequest
from rest_framework.settings import api_settings

from hq.errors import Throttled
from hq.ratewindow import FixedWindow, parse_rate

logger = logging.getLogger(__name__)

__all__ = [
    "address",
    "address_of",
    "client_ip",
    "credential",
    "exceeded",
    "parse_rate",
    "record",
    "refusal",
    "username",
]

#: (kind, identifier): what a failure is counted against.
Key = tuple[str, str]


def client_ip(request: HttpRequest) -> str:
    """The caller's address: REMOTE_ADDR, or the entry `NUM_PROXIES` trusted proxies appended to
    X-Forwarded-For when that DRF setting is set (never a client-supplied header otherwise)."""
    remote: str = request.META.get("REMOTE_ADDR") or "unknown"
    proxies = api_settings.NUM_PROXIES
    forwarded: str | None = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    return remote


def address(ip: str) -> Key:
    """Failures from one client address (every way in shares it)."""
    return ("address", ip)


def address_of(request: HttpRequest) -> Key:
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


def _window() -> FixedWindow:
    return FixedWindow("authfail", settings.HQ_AUTH_FAILURE_RATE)


def exceeded(*keys: Key) -> int | None:
    """Seconds until the window ends if any key has reached the limit; None when the caller may try."""
    window = _window()
    bucket = window.bucket()
    try:
        counts = window.counts(list(keys))
    except redis.RedisError:
        logger.warning("auth failure throttle skipped: Redis unavailable")
        return None
    if all(count < window.limit for count in counts):
        return None
    return max(1, int(window.retry_after(bucket)) + 1)


def record(*keys: Key) -> None:
    """Count one failed authentication against each key."""
    try:
        _window().add(list(keys))
    except redis.RedisError:
        logger.warning("auth failure not counted: Redis unavailable")


def refusal(retry_after_s: int) -> Throttled:
    """The 429 an API caller gets while throttled (`auth_throttled`, with `retry_after_s`)."""
    return Throttled(
        "Too many failed authentications from this address; try again later.",
        code="auth_throttled",
        detail={"retry_after_s": retry_after_s},
    )
