"""Reads for tenancy and tokens."""

from __future__ import annotations

import hmac
from enum import StrEnum
from typing import Any

from django.db.models import Exists, OuterRef, Subquery

from hq import tokens
from hq.models import Membership, PersonalAccessToken, User


def token_find(*, clear: str) -> PersonalAccessToken | None:
    """Return the token row whose hash matches, with user and workspace loaded, or None.

    The same query reads the user's role in the token's workspace into `token.member_role` (None
    when not a member), so checking a request's token is one round trip.
    """
    if not clear.startswith(tokens.TOKEN_PREFIX) or len(clear) > 200:
        return None
    digest = tokens.hash_token(clear)
    role = Membership.objects.filter(user_id=OuterRef("user_id"), workspace_id=OuterRef("workspace_id")).values("role")
    token = (
        PersonalAccessToken.objects.select_related("user", "workspace")
        .annotate(member_role=Subquery(role[:1]))
        .filter(token_hash=digest)
        .first()
    )
    # The lookup is by an indexed hash; compare again in constant time so equality is never
    # decided by a short-circuiting string compare.
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    return token


def membership_role(*, user_id: object, workspace_id: object) -> str | None:
    """Return the user's role in the workspace, or None when not a member."""
    return Membership.objects.filter(user_id=user_id, workspace_id=workspace_id).values_list("role", flat=True).first()


class Departure(StrEnum):
    """Why a user may no longer act in a workspace."""

    #: Their membership of the workspace ended.
    LEFT = "left"
    #: Their account was deactivated (`is_active` off): every workspace at once.
    DEACTIVATED = "deactivated"
    #: Their account is being deleted.
    DELETED = "deleted"

    def reason(self, who: str) -> str:
        """The sentence shown where this departure stops something: `who` is "Owner", "The requester"..."""
        if self is Departure.LEFT:
            return f"{who} is no longer a member of the workspace."
        return f"{who} was {self.value}."


def member_departure(*, user_id: object, workspace_id: object) -> Departure | None:
    """Why the user may not act in the workspace (deactivated, not a member, gone), or None when they may."""
    row = (
        User.objects.filter(pk=user_id)
        .annotate(member=Exists(Membership.objects.filter(user_id=OuterRef("pk"), workspace_id=workspace_id)))
        .values_list("is_active", "member")
        .first()
    )
    if row is None:
        return Departure.DELETED
    is_active, member = row
    if not is_active:
        return Departure.DEACTIVATED
    return None if member else Departure.LEFT


def staff_workspace_ids(*, user: User) -> list[Any] | None:
    """Workspaces a user covers in the admin (the ops console): the one rule every admin page uses.

    None (every workspace) for an active staff superuser; for other active staff, the workspaces
    where they are an admin member; an empty list for everyone else. A plain `member` role gives
    nothing here: in the API a member sees only their own jobs and conversations, so the admin,
    which shows a workspace's rows whole, is for its admins.
    """
    if not (user.is_active and user.is_staff):
        return []
    if user.is_superuser:
        return None
    rows = Membership.objects.filter(user_id=user.pk, role=Membership.Role.ADMIN)
    return list(rows.values_list("workspace_id", flat=True))
