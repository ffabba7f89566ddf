"""Bearer-token authentication for the API."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import redis
from django.conf import settings
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.settings import api_settings

from hq import clock
from hq import redis as hq_redis
from hq.errors import Throttled, Unauthenticated
from hq.models import PersonalAccessToken, User, Workspace
from hq.selectors import membership_role, token_find

logger = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(seconds=60)
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """Parse '1200/min' into (requests, window seconds)."""
    count, _, unit = rate.partition("/")
    return int(count), _UNITS[unit.strip().lower()]


def client_ip(request: Request) -> str:
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


class AuthFailures:
    """Failed authentications per client IP in fixed windows in Redis; fails open when Redis is away."""

    def __init__(self, ip: str) -> None:
        self.limit, self.window = parse_rate(getattr(settings, "HQ_AUTH_FAILURE_RATE", "30/min"))
        now = time.time()
        bucket = int(now // self.window)
        self.retry_after_s = max(1, int((bucket + 1) * self.window - now) + 1)
        self.name = hq_redis.key("authfail", ip, str(bucket))

    def exceeded(self) -> bool:
        try:
            count = hq_redis.client().get(self.name)
        except redis.RedisError:
            logger.warning("auth failure throttle skipped: Redis unavailable")
            return False
        return int(count or 0) >= self.limit

    def record(self) -> None:
        try:
            pipe = hq_redis.client().pipeline()
            pipe.incr(self.name)
            pipe.expire(self.name, self.window + 1)
            pipe.execute()
        except redis.RedisError:
            logger.warning("auth failure not counted: Redis unavailable")

    def refuse(self) -> Throttled:
        return Throttled(
            "Too many failed authentications from this address; try again later.",
            code="auth_throttled",
            detail={"retry_after_s": self.retry_after_s},
        )


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token, its workspace and the caller's role there."""

    token: PersonalAccessToken
    user: User
    workspace: Workspace
    role: str

    @property
    def workspace_id(self) -> UUID:
        return self.workspace.id

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def has_scope(self, scope: str) -> bool:
        return scope in (self.token.scopes or [])


class TokenAuthentication(BaseAuthentication):
    """Read `Authorization: Bearer hq_pat_...`; 401 for a missing, unknown, expired or revoked token.

    Each refused credential counts against the client IP; past `HQ_AUTH_FAILURE_RATE` failures
    in a window, every request from that IP that presents a credential gets 429 (before any
    lookup) until the window ends.
    """

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[User, Principal] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        failures = AuthFailures(client_ip(request))
        if failures.exceeded():
            raise failures.refuse()
        try:
            return self._authenticate(header)
        except Unauthenticated:
            failures.record()
            raise

    def _authenticate(self, header: str) -> tuple[User, Principal]:
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword:
            raise Unauthenticated("Use 'Authorization: Bearer <token>'.", code="invalid_token")
        token = token_find(clear=parts[1])
        if token is None:
            raise Unauthenticated("The token is not valid.", code="invalid_token")
        now = clock.now()
        if token.revoked_at is not None:
            raise Unauthenticated("The token has been revoked.", code="token_revoked")
        if token.expires_at is not None and token.expires_at <= now:
            raise Unauthenticated("The token has expired.", code="token_expired")
        if not token.user.is_active:
            raise Unauthenticated("The token's user is inactive.", code="invalid_token")
        role = membership_role(user_id=token.user_id, workspace_id=token.workspace_id)
        if role is None:
            raise Unauthenticated("The token's user is no longer in its workspace.", code="invalid_token")
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, Principal(token=token, user=token.user, workspace=token.workspace, role=role)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="hq"'
