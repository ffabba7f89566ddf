"""Reads for tenancy, tokens and agents."""

from __future__ import annotations

import hmac
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar
from uuid import UUID

from django.db.models import Exists, Model, OuterRef, QuerySet, Subquery

from hq import tokens
from hq.errors import NotFound
from hq.models import Agent, Membership, PersonalAccessToken, User

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

__all__ = [
    "Departure",
    "MemberRole",
    "agent_find",
    "agent_get",
    "member_departure",
    "one_or_404",
    "token_find",
]

RowT = TypeVar("RowT", bound=Model)


def one_or_404(rows: QuerySet[RowT], pk: Any, message: str, code: str | None = None) -> RowT:
    """The row of `rows` with this primary key, else 404 with `message`: `rows` is what the caller
    may read (hq.permissions), so another workspace's or another member's object is "no such"."""
    row = rows.filter(pk=pk).first()
    if row is None:
        raise NotFound(message, code=code)
    return row


def agent_find(*, workspace_id: UUID | str, agent_id: UUID | str | None = None) -> Agent | None:
    """The one agent lookup: the workspace's agent `agent_id` (enabled or not, so callers can say
    which), or without an id the workspace's enabled default; None when there is no such agent."""
    if agent_id:
        return Agent.objects.filter(workspace_id=workspace_id, pk=agent_id).first()
    return Agent.objects.filter(workspace_id=workspace_id, is_default=True, enabled=True).first()


def agent_get(
    *,
    workspace_id: UUID | str,
    agent_id: UUID | str | None,
    message: str = "No such agent.",
    code: str | None = None,
) -> Agent:
    """The workspace's agent `agent_id` (`agent_find`), else 404 with `message`."""
    agent = agent_find(workspace_id=workspace_id, agent_id=agent_id) if agent_id else None
    if agent is None:
        raise NotFound(message, code=code)
    return agent


class MemberRole(TypedDict):
    """What `token_find` reads onto a token besides its columns."""

    #: The user's role in the token's workspace; None when not a member.
    member_role: str | None


def token_find(*, clear: str) -> WithAnnotations[PersonalAccessToken, MemberRole] | None:
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


def member_departure(*, user_id: UUID | str, workspace_id: UUID | str) -> Departure | None:
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
