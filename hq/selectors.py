"""Reads for tenancy and tokens."""

from __future__ import annotations

import hmac

from hq import tokens
from hq.models import Membership, PersonalAccessToken


def token_find(*, clear: str) -> PersonalAccessToken | None:
    """Return the token row whose hash matches, with user and workspace loaded, or None."""
    if not clear.startswith(tokens.TOKEN_PREFIX) or len(clear) > 200:
        return None
    digest = tokens.hash_token(clear)
    token = PersonalAccessToken.objects.select_related("user", "workspace").filter(token_hash=digest).first()
    # The lookup is by an indexed hash; compare again in constant time so equality is never
    # decided by a short-circuiting string compare.
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    return token


def membership_role(*, user_id: object, workspace_id: object) -> str | None:
    """Return the user's role in the workspace, or None when not a member."""
    return Membership.objects.filter(user_id=user_id, workspace_id=workspace_id).values_list("role", flat=True).first()
