"""Writes for tenancy, users, tokens and agents, and what happens when a member leaves."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils.text import slugify

from hq import clock, tokens
from hq.errors import ValidationFailed
from hq.models import Agent, Membership, PersonalAccessToken, Plan, User, Workspace
from hq.scopes import ALL_SCOPES
from hq.selectors import Departure

logger = logging.getLogger("hq.members")

DEFAULT_PLAN_NAME = "default"


def plan_default() -> Plan:
    """Return the default plan, creating it with `HQ_DEFAULT_MAX_SCHEDULES` when missing."""
    plan, _ = Plan.objects.get_or_create(
        name=DEFAULT_PLAN_NAME, defaults={"max_schedules": settings.HQ_DEFAULT_MAX_SCHEDULES}
    )
    return plan


@transaction.atomic
def workspace_get_or_create(*, slug_or_name: str) -> tuple[Workspace, bool]:
    """Return the workspace with this slug, creating it (default plan, default agent) when missing."""
    slug = slugify(slug_or_name)[:100]
    if not slug:
        raise ValidationFailed("A workspace needs a name.", fields={"workspace": ["Must not be empty."]})
    workspace = Workspace.objects.filter(slug=slug).first()
    if workspace:
        return workspace, False
    workspace = Workspace.objects.create(
        name=slug_or_name, slug=slug, plan=plan_default(), locale=settings.HQ_DEFAULT_LOCALE
    )
    agent_create_default(workspace=workspace)
    return workspace, True


def agent_create_default(*, workspace: Workspace) -> Agent:
    """Create the enabled built-in default agent every new workspace starts with."""
    return Agent.objects.create(
        workspace=workspace, name="HQ built-in", backend=Agent.Backend.BUILTIN, enabled=True, is_default=True
    )


def user_get_or_create(*, email: str, display_name: str = "") -> tuple[User, bool]:
    """Return the user with this email, creating one without a usable password when missing."""
    email = email.strip().lower()
    user = User.objects.filter(email=email).first()
    if user:
        return user, False
    return User.objects.create_user(email=email, display_name=display_name or email.split("@")[0]), True


def membership_set(*, user: User, workspace: Workspace, role: str | None = None) -> Membership:
    """Make the user a member of the workspace; change the role only when one is given."""
    membership, created = Membership.objects.get_or_create(
        user=user, workspace=workspace, defaults={"role": role or Membership.Role.MEMBER}
    )
    if not created and role and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


# --- members leaving ------------------------------------------------------------------------------


class DepartureHook(Protocol):
    """Stop what a departed user left running: `workspace_id` None means every workspace."""

    def __call__(self, *, user: User, workspace_id: UUID | None, departure: Departure) -> object: ...


_departure_hooks: list[DepartureHook] = []


def on_member_departure(hook: DepartureHook) -> DepartureHook:
    """Register a hook that every departure (membership ended, user deactivated or deleted) runs.

    `hq` knows nothing of schedules or jobs: `schedules` and `queueapp` register theirs in
    `AppConfig.ready()`. Hooks run inside the departure's transaction, so a hook that fails undoes
    the departure; they must be idempotent (deactivating an inactive user runs them again).
    """
    if hook not in _departure_hooks:
        _departure_hooks.append(hook)
    return hook


def _departed(*, user: User, workspace_id: UUID | None, departure: Departure) -> None:
    for hook in list(_departure_hooks):
        hook(user=user, workspace_id=workspace_id, departure=departure)


@transaction.atomic
def membership_end(*, membership: Membership, actor: User | None = None) -> bool:
    """Remove a user from a workspace; returns False when the membership was already gone.

    Their tokens for that workspace are revoked (re-adding them does not bring those back), and
    every departure hook runs: their schedules there are quarantined, their pending approval
    requests expire.
    """
    row = Membership.objects.select_for_update().select_related("user").filter(pk=membership.pk).first()
    if row is None:
        return False
    row.delete()
    PersonalAccessToken.objects.filter(
        user_id=row.user_id, workspace_id=row.workspace_id, revoked_at__isnull=True
    ).update(revoked_at=clock.now())
    _departed(user=row.user, workspace_id=row.workspace_id, departure=Departure.LEFT)
    logger.info("%s left workspace %s (removed by %s)", row.user.email, row.workspace_id, actor or "the system")
    return True


@transaction.atomic
def user_set_time_zone(*, user: User, time_zone: str) -> User:
    """Set the user's own time zone (an IANA name, or "" for UTC only); a bad name raises ValidationFailed."""
    user.time_zone = time_zone.strip()
    try:
        user.clean_fields(exclude=[f.name for f in User._meta.fields if f.name != "time_zone"])
    except DjangoValidationError as exc:
        raise ValidationFailed("Invalid time zone.", fields=exc.message_dict) from exc
    user.save(update_fields=["time_zone"])
    return user


def user_deactivate(*, user: User, actor: User | None = None) -> User:
    """Switch a user off in every workspace: logins and tokens stop, and every departure hook runs.

    For a user who is already inactive (say, switched off by a raw update) the hooks run again,
    so calling it mops up whatever that left running.
    """
    user.is_active = False
    user.save(update_fields=["is_active"])
    _departed(user=user, workspace_id=None, departure=Departure.DEACTIVATED)
    logger.info("%s deactivated (by %s)", user.email, actor or "the system")
    return user


@transaction.atomic
def user_delete(*, user: User, actor: User | None = None) -> None:
    """Delete a user after every departure hook has run (their schedules go with them)."""
    _departed(user=user, workspace_id=None, departure=Departure.DELETED)
    email = user.email
    user.delete()
    logger.info("%s deleted (by %s)", email, actor or "the system")


def scopes_validate(scopes: list[str] | None) -> list[str]:
    """Return the scopes in canonical order, all of them when none are named."""
    if not scopes:
        return list(ALL_SCOPES)
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise ValidationFailed(
            f"Unknown scopes: {', '.join(unknown)}. Known: {', '.join(ALL_SCOPES)}.",
            fields={"scopes": [f"Unknown scope '{s}'." for s in unknown]},
        )
    return [s for s in ALL_SCOPES if s in scopes]


@dataclass(frozen=True)
class IssuedToken:
    """A token row plus its clear text, which exists only here, once."""

    token: PersonalAccessToken
    clear: str


def token_create(
    *,
    user: User,
    workspace: Workspace,
    scopes: list[str] | None = None,
    name: str = "",
    expires_at: datetime | None = None,
) -> IssuedToken:
    """Issue a personal access token; only its hash is stored."""
    clear = tokens.generate()
    token = PersonalAccessToken.objects.create(
        user=user,
        workspace=workspace,
        name=name,
        prefix=tokens.display_prefix(clear),
        token_hash=tokens.hash_token(clear),
        scopes=scopes_validate(scopes),
        expires_at=expires_at,
    )
    return IssuedToken(token=token, clear=clear)


def token_revoke(*, token: PersonalAccessToken) -> None:
    """Revoke a token; it stops working on the next request."""
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        token.save(update_fields=["revoked_at"])


@transaction.atomic
def token_provision(
    *,
    email: str,
    workspace: str,
    admin: bool = False,
    scopes: list[str] | None = None,
    expires_in_days: int | None = None,
    name: str = "",
) -> IssuedToken:
    """Create whatever is missing (user, workspace, membership) and issue a token: `create_token`."""
    scopes = scopes_validate(scopes)
    ws, _ = workspace_get_or_create(slug_or_name=workspace)
    user, _ = user_get_or_create(email=email)
    membership_set(user=user, workspace=ws, role=Membership.Role.ADMIN if admin else None)
    expires_at = clock.now() + timedelta(days=expires_in_days) if expires_in_days else None
    return token_create(user=user, workspace=ws, scopes=scopes, name=name, expires_at=expires_at)
