"""`manage.py create_token`: creates what is missing, prints the token last."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from hq.models import Agent, Membership, PersonalAccessToken, User, Workspace
from hq.scopes import ALL_SCOPES
from hq.tokens import hash_token

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("create_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_create_token__creates_everything_and_prints_token_last():
    token = _run("--email", "Ops@Example.com", "--workspace", "acme", "--admin")
    assert token.startswith("hq_pat_")
    row = PersonalAccessToken.objects.get(token_hash=hash_token(token))
    assert row.user.email == "ops@example.com"
    assert row.workspace.slug == "acme"
    assert row.scopes == list(ALL_SCOPES)
    assert Membership.objects.get(user=row.user, workspace=row.workspace).role == "admin"
    assert Agent.objects.filter(workspace=row.workspace, is_default=True, enabled=True, backend="builtin").count() == 1
    assert row.workspace.plan.max_schedules == 50


def test_create_token__reuses_and_narrows_scopes():
    _run("--email", "a@example.com", "--workspace", "acme")
    token = _run(
        "--email",
        "a@example.com",
        "--workspace",
        "acme",
        "--scopes",
        "queue:read,queue:write",
        "--expires-in-days",
        "3",
    )
    assert User.objects.count() == 1 and Workspace.objects.count() == 1
    row = PersonalAccessToken.objects.get(token_hash=hash_token(token))
    assert row.scopes == ["queue:read", "queue:write"]
    assert row.expires_at is not None


def test_create_token__unknown_scope_is_command_error():
    with pytest.raises(CommandError, match="nope"):
        _run("--email", "a@example.com", "--workspace", "acme", "--scopes", "nope")
    assert not PersonalAccessToken.objects.exists()
