"""Bearer-token authentication for the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from hq import auth_failures, clock
from hq.auth_failures import client_ip, parse_rate
from hq.errors import Unauthenticated
from hq.models import PersonalAccessToken, User, Workspace
from hq.selectors import membership_role, token_find

__all__ = ["LAST_USED_RESOLUTION", "Principal", "TokenAuthentication", "client_ip", "parse_rate"]

LAST_USED_RESOLUTION = timedelta(seconds=60)


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

    Each refused credential counts against the client address in the one failure counter
    (hq.auth_failures, shared with the admin login and /metrics); past `HQ_AUTH_FAILURE_RATE`
    failures in a window, every request from that address that presents a credential gets 429
    (before any lookup) until the window ends.
    """

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[User, Principal] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        key = auth_failures.address(client_ip(request))
        wait = auth_failures.exceeded(key)
        if wait is not None:
            raise auth_failures.refusal(wait)
        try:
            return self._authenticate(header)
        except Unauthenticated:
            auth_failures.record(key)
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
