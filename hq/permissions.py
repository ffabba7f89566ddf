"""Who may read or change what: the one module the API, the admin, selectors, services and /metrics ask.

Two kinds of caller:

- a `Principal`: an API token, held by a user in one workspace with a role there (`admin` or
  `member`) and a set of scopes. Scopes narrow what a token may do, never widen a role.
- a staff `User` in the admin (the ops console): an active staff superuser covers every workspace,
  other active staff the workspaces where they are an `admin` member, and nobody else any.

The rules:

- a workspace admin reads and changes everything of their workspace; a member reads and changes
  what they own (jobs, schedules, tasks). Another workspace's object is never found (404), nor
  is another member's, except that changing another member's agent schedule is 403 `not_owner`
  (an agent schedule's owner is shown to the workspace, so hiding it would say nothing).
- HITL requests: an admin or a holder of `hitl:approve` reads the workspace's; anyone else the
  ones they asked for or that gate their jobs. Deciding takes `hitl:approve` and membership over
  the API, workspace cover in the admin, and is never the requester's (`SelfApproval`).
- the job and HITL services check again whatever a door checked (`ensure_may_change`,
  `ensure_may_decide_hitl`), so a caller that skips the view or the admin is held to the same
  rule; the schedule services trust their callers (both APIs and the admin check first).
- `/metrics` takes a workspace admin's token (or the `METRICS_TOKEN`, checked by the view).

`hq` imports none of the apps, so objects are described by the fields the rules read (`Owned`,
`Requested`), and `via` is the door's name as `queueapp.models.DecidedVia` spells it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from uuid import UUID

from django.db.models import Model, Q, QuerySet

from hq.errors import Forbidden, MissingScope
from hq.models import Membership, PersonalAccessToken, User, Workspace

ADMIN = Membership.Role.ADMIN
#: The doors a change comes through (the values of `queueapp.models.DecidedVia`).
VIA_API = "api"
VIA_ADMIN = "admin"

RowT = TypeVar("RowT", bound=Model)


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
        return self.role == ADMIN

    def has_scope(self, scope: str) -> bool:
        return scope in (self.token.scopes or [])


class Owned(Protocol):
    """An object of one workspace with an owner: a job, a schedule, a task."""

    workspace_id: Any
    owner_id: Any


class Requested(Protocol):
    """A HITL request: its workspace and who asked for the call."""

    workspace_id: Any
    requested_by_id: Any


class SelfApproval(Forbidden):
    """The requester may not decide their own request (separation of duties)."""

    code = "self_approval"
    default_message = "You asked for this call; someone else must decide it."


# --- roles in a workspace ---------------------------------------------------------------------------


def workspace_role(*, user_id: UUID | str, workspace_id: UUID | str) -> str | None:
    """The user's role in the workspace, or None when not a member."""
    return Membership.objects.filter(user_id=user_id, workspace_id=workspace_id).values_list("role", flat=True).first()


def _may_change(*, role: str | None, user_id: object, obj: Owned) -> bool:
    """The one ownership rule: an admin changes anything of the workspace, a member what they own."""
    return role == ADMIN or (role is not None and obj.owner_id == user_id)


def acts_as_admin(*, user: User | None, workspace_id: UUID | str, via: str = VIA_API) -> bool:
    """Whether `user` counts as a workspace admin for what a job's arguments may ask (a function's
    `check_args`): the system (None), an admin member, or in the admin staff who cover the workspace."""
    if user is None:
        return True
    if via == VIA_ADMIN:
        return staff_covers(user, workspace_id)
    return workspace_role(user_id=user.pk, workspace_id=workspace_id) == ADMIN


# --- API callers (a token in one workspace) -----------------------------------------------------------


def ensure_scope(principal: Principal, scope: str | None) -> None:
    """403 naming the scope the token lacks (checked before any lookup)."""
    if scope and not principal.has_scope(scope):
        raise MissingScope(scope)


def require_admin(principal: Principal) -> None:
    """Refuse a caller who is not an admin of the token's workspace."""
    if not principal.is_admin:
        raise Forbidden("Only workspace admins may do this.", code="admin_required")


def workspace_rows(principal: Principal, rows: QuerySet[RowT]) -> QuerySet[RowT]:
    """`rows` of the caller's workspace: the tenant boundary every read starts from."""
    return rows.filter(workspace_id=principal.workspace_id)


def owned_rows(principal: Principal, rows: QuerySet[RowT]) -> QuerySet[RowT]:
    """What the caller may read of owned objects (jobs, schedules, tasks): an admin the workspace's,
    a member their own."""
    rows = workspace_rows(principal, rows)
    return rows if principal.is_admin else rows.filter(owner_id=principal.user.pk)


def hitl_rows(principal: Principal, rows: QuerySet[RowT]) -> QuerySet[RowT]:
    """HITL requests the caller may read: all of the workspace's for an admin or a holder of
    `hitl:approve` (who may decide them), else their own (requested by them, or on their job)."""
    rows = workspace_rows(principal, rows)
    if principal.is_admin or principal.has_scope("hitl:approve"):
        return rows
    return rows.filter(Q(requested_by_id=principal.user.pk) | Q(job__owner_id=principal.user.pk))


def may_scrape_metrics(principal: Principal) -> bool:
    """`/metrics` carries no workspace or user labels, so any workspace admin's token may scrape it."""
    return principal.is_admin


# --- either door, as the services see it -------------------------------------------------------------


def ensure_may_change(who: Principal | User | None, obj: Owned, *, what: str, via: str = VIA_API) -> None:
    """403 unless `who` may change `obj` (a job, a schedule, a task: "the {what}") through `via`.

    A token (`Principal`): its role in its own workspace. A user, as the services see them: in the
    admin, staff who cover the object's workspace (403 `admin_required`); over the API, an admin
    member of it, or the owner while still a member (403 `not_owner`). None is the system.
    """
    if who is None:
        return
    if isinstance(who, Principal):
        role = who.role if obj.workspace_id == who.workspace_id else None
        user_id = who.user.pk
    elif via == VIA_ADMIN:
        if not staff_covers(who, obj.workspace_id):
            raise Forbidden("Only superusers and staff admins of the workspace may do this.", code="admin_required")
        return
    else:
        role, user_id = workspace_role(user_id=who.pk, workspace_id=obj.workspace_id), who.pk
    if not _may_change(role=role, user_id=user_id, obj=obj):
        raise Forbidden(f"Only the {what}'s owner or an admin may change it.", code="not_owner")


def ensure_may_decide_hitl(*, actor: User, request: Requested, via: str) -> None:
    """403 unless `actor` may decide `request` through `via`; never the requester.

    Over the API the caller already holds `hitl:approve` (the view checks the scope) and must be a
    member of the request's workspace; in the admin, a superuser or a staff admin of it.
    """
    if via == VIA_ADMIN and not staff_covers(actor, request.workspace_id):
        raise Forbidden("Only superusers and staff admins of the workspace may decide.", code="admin_required")
    if via == VIA_API and workspace_role(user_id=actor.pk, workspace_id=request.workspace_id) is None:
        raise Forbidden("You are not a member of this workspace.")
    if request.requested_by_id is not None and request.requested_by_id == actor.pk:
        raise SelfApproval()


# --- staff in the admin (the ops console) --------------------------------------------------------------


def staff_admitted(user: User) -> bool:
    """Whether the user may use the admin at all (which pages then depends on `staff_workspace_ids`)."""
    return bool(user.is_active and user.is_staff)


def staff_workspace_ids(*, user: User) -> list[UUID] | None:
    """Workspaces a user covers in the admin: the one rule every admin page uses.

    None (every workspace) for an active staff superuser; for other active staff, the workspaces
    where they are an admin member; an empty list for everyone else. A plain `member` role gives
    nothing here: in the API a member sees only their own jobs and conversations, so the admin,
    which shows a workspace's rows whole, is for its admins.
    """
    if not staff_admitted(user):
        return []
    if user.is_superuser:
        return None
    rows = Membership.objects.filter(user_id=user.pk, role=ADMIN)
    return list(rows.values_list("workspace_id", flat=True))


def staff_covers_all(user: User) -> bool:
    """An active staff superuser: every workspace, and what belongs to none (users, workspaces, plans)."""
    return staff_admitted(user) and bool(user.is_superuser)


def staff_covers(user: User, workspace_id: UUID | str) -> bool:
    """Whether the user covers this workspace in the admin (`staff_workspace_ids`)."""
    ids = staff_workspace_ids(user=user)
    return ids is None or workspace_id in ids
