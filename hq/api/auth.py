"""Bearer-token authentication: the one token check, for the API and `/metrics`."""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from hq import auth_failures, clock, tokens
from hq.auth_failures import client_ip, parse_rate
from hq.errors import Unauthenticated
from hq.models import PersonalAccessToken, User
from hq.permissions import Principal
from hq.selectors import token_find

__all__ = [
    "LAST_USED_RESOLUTION",
    "Principal",
    "TokenAuthentication",
    "bearer_principal",
    "client_ip",
    "forget_all",
    "parse_rate",
]

LAST_USED_RESOLUTION = timedelta(seconds=60)
CACHE_MAX_ENTRIES = 10_000

# token hash -> (generation, monotonic expiry, principal); shared by the threads of a process.
_cache: dict[str, tuple[int, float, Principal]] = {}
_generation = 0


def forget_all(**_: object) -> None:
    """Drop every cached token check in this process (a token, membership, user or workspace changed).

    Again when the change commits: a request that read the old rows meanwhile may have cached them.
    """
    _forget()
    transaction.on_commit(_forget)


def _forget() -> None:
    global _generation
    _generation += 1
    _cache.clear()


def bearer_principal(header: str, request: HttpRequest) -> Principal:
    """The one token check, for the API and `/metrics`: the caller of `Authorization: Bearer hq_pat_...`.

    401 (`Unauthenticated`) for a malformed header or an unknown, expired or revoked token, or one
    whose user is inactive or no longer a member. A valid token is answered from a per-process cache
    for up to `HQ_AUTH_CACHE_S` seconds, so a request costs no database round trip for it; a change
    to any token, membership, user or workspace in this process empties the cache at once
    (`forget_all`), and other processes see a revocation within `HQ_AUTH_CACHE_S`. A cache miss is
    one query (`token_find`).

    A valid, unrevoked token is never refused by the failure throttle: only refused credentials
    are counted (hq.auth_failures, shared with the admin login), against the client address
    (`request`'s) and against the credential's leading characters; past `HQ_AUTH_FAILURE_RATE` in a
    window, refused credentials from that address or with that prefix get 429 instead of 401.
    """
    try:
        return _principal(header)
    except Unauthenticated:
        keys = [auth_failures.address(client_ip(request)), auth_failures.credential(header)]
        wait = auth_failures.exceeded(*keys)
        if wait is not None:
            raise auth_failures.refusal(wait) from None
        auth_failures.record(*keys)
        raise


def _principal(header: str) -> Principal:
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise Unauthenticated("Use 'Authorization: Bearer <token>'.", code="invalid_token")
    now = clock.now()
    digest = tokens.hash_token(parts[1])
    cached = _cache.get(digest)
    if cached is not None and cached[0] == _generation and cached[1] > time.monotonic():
        principal = cached[2]
        if principal.token.expires_at is not None and principal.token.expires_at <= now:
            raise Unauthenticated("The token has expired.", code="token_expired")
        return principal
    token = token_find(clear=parts[1])
    if token is None:
        raise Unauthenticated("The token is not valid.", code="invalid_token")
    if token.revoked_at is not None:
        raise Unauthenticated("The token has been revoked.", code="token_revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthenticated("The token has expired.", code="token_expired")
    if not token.user.is_active:
        raise Unauthenticated("The token's user is inactive.", code="invalid_token")
    role = token.member_role  # read by token_find in the same query
    if role is None:
        raise Unauthenticated("The token's user is no longer in its workspace.", code="invalid_token")
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    principal = Principal(token=token, user=token.user, workspace=token.workspace, role=role)
    if settings.HQ_AUTH_CACHE_S > 0:
        if len(_cache) >= CACHE_MAX_ENTRIES:
            _cache.clear()
        # Kept no longer than the last-used stamp stays current, so that stamp stays true too.
        ttl = min(settings.HQ_AUTH_CACHE_S, LAST_USED_RESOLUTION.total_seconds())
        _cache[digest] = (_generation, time.monotonic() + ttl, principal)
    return principal


class TokenAuthentication(BaseAuthentication):
    """Read `Authorization: Bearer hq_pat_...` through `bearer_principal`; no header, no caller."""

    def authenticate(self, request: Request) -> tuple[User, Principal] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        principal = bearer_principal(header, request)
        return principal.user, principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="hq"'
