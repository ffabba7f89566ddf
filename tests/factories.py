"""Builders for test data, through the same services the product uses."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hq import services
from hq.models import Membership, User, Workspace

_seq = itertools.count(1)


@dataclass
class Caller:
    """A user with a token in a workspace, and the headers to call the API as them."""

    user: User
    workspace: Workspace
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}"}


def workspace(slug: str | None = None) -> Workspace:
    return services.workspace_get_or_create(slug_or_name=slug or f"ws-{next(_seq)}")[0]


def caller(
    *,
    ws: Workspace | None = None,
    admin: bool = False,
    scopes: list[str] | None = None,
    email: str | None = None,
) -> Caller:
    """Create a member (or admin) of `ws` with a token holding `scopes` (all when None)."""
    ws = ws or workspace()
    user, _ = services.user_get_or_create(email=email or f"user{next(_seq)}@example.com")
    services.membership_set(user=user, workspace=ws, role=Membership.Role.ADMIN if admin else "member")
    issued = services.token_create(user=user, workspace=ws, scopes=scopes)
    return Caller(user=user, workspace=ws, token=issued.clear)


def every_minute_task(room_id: object, *, name: str = "every minute", text: str = "tick") -> dict:
    """The body of a scheduled task that posts `text` to a room every minute (UTC)."""
    return {
        "name": name,
        "schedule": "* * * * *",
        "timezone": "UTC",
        "action": "send_message",
        "args": {"room_id": str(room_id), "content": {"msgtype": "swp.text", "body": text}},
    }
