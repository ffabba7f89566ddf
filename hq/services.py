"""Writes for tenancy, users, tokens and agents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from hq import clock, tokens
from hq.errors import ValidationFailed
from hq.models import Agent, Membership, PersonalAccessToken, Plan, User, Workspace
from hq.scopes import ALL_SCOPES

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
