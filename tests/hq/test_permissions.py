"""hq.permissions, role by action: one table says who may do what, and the module answers each cell.

API callers are tokens in workspace A (and one admin of workspace B); staff are users in the admin.
The objects are the owner's: a job, an agent schedule and a HITL request the owner asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from hq import permissions, scopes
from hq import services as hq_services
from hq.errors import Forbidden, MissingScope
from hq.models import User
from hq.permissions import Principal
from hq.selectors import token_find
from queueapp import services as queue_services
from queueapp.models import HITLRequest, Job
from schedules import services as schedule_services
from schedules.models import Schedule
from tests import factories

pytestmark = pytest.mark.django_db

API_ROLES = ("admin", "owner", "member", "approver", "outsider")
STAFF_ROLES = ("superuser", "staff_admin", "staff_member", "staff_outsider", "admin_not_staff", "inactive_superuser")
WITHOUT_APPROVE = [s for s in scopes.ALL_SCOPES if s != "hitl:approve"]


@dataclass
class World:
    principals: dict[str, Principal]
    users: dict[str, User]
    job: Job
    hitl: HITLRequest
    schedule: Schedule


def _principal(caller: factories.Caller) -> Principal:
    token = token_find(clear=caller.token)
    assert token is not None and token.member_role is not None
    return Principal(token=token, user=token.user, workspace=token.workspace, role=token.member_role)


def _staff(email: str, *, superuser: bool = False, active: bool = True, staff: bool = True) -> User:
    return User.objects.create_user(email, "pw-" + email, is_staff=staff, is_superuser=superuser, is_active=active)


@pytest.fixture
def world() -> World:
    admin = factories.caller(admin=True)
    ws = admin.workspace
    callers = {
        "admin": admin,
        # The owner holds every scope except hitl:approve (so their own requests are theirs to read).
        "owner": factories.caller(ws=ws, scopes=WITHOUT_APPROVE),
        "member": factories.caller(ws=ws, scopes=WITHOUT_APPROVE),
        "approver": factories.caller(ws=ws),
        "outsider": factories.caller(admin=True),
    }
    owner = callers["owner"].user
    job, _ = queue_services.job_submit(
        workspace=ws, owner=owner, submission=queue_services.Submission(function="hq.echo", args={})
    )
    gated, _ = queue_services.job_submit(
        workspace=ws, owner=owner, submission=queue_services.Submission(function="tests.gated", args={"to": "ops"})
    )
    schedule = schedule_services.schedule_create(
        workspace=ws,
        owner=owner,
        name="digest",
        trigger={"kind": "cron", "expr": "0 9 * * *", "tz": "UTC"},
        action="run_agent",
        args={
            "prompt": "Go.",
            "agent_id": None,
            "deliver_to": {"kind": "web_inbox"},
            "reset_each_fire": False,
            "delivery_locale": None,
        },
    )
    users = {role: c.user for role, c in callers.items()}
    users["superuser"] = _staff("root@example.com", superuser=True)
    users["staff_admin"] = _staff("ops-admin@example.com")
    hq_services.membership_set(user=users["staff_admin"], workspace=ws, role="admin")
    users["staff_member"] = _staff("ops-member@example.com")
    hq_services.membership_set(user=users["staff_member"], workspace=ws, role="member")
    users["staff_outsider"] = _staff("ops-elsewhere@example.com")
    hq_services.membership_set(user=users["staff_outsider"], workspace=callers["outsider"].workspace, role="admin")
    users["admin_not_staff"] = factories.caller(ws=ws, admin=True).user
    users["inactive_superuser"] = _staff("gone@example.com", superuser=True, active=False)
    return World(
        principals={role: _principal(c) for role, c in callers.items()},
        users=users,
        job=job,
        hitl=HITLRequest.objects.get(job=gated),
        schedule=schedule,
    )


def _allowed(check: Callable[[Any, World], Any], caller: Any, world: World) -> bool:
    """Whether `check` lets `caller` through: no refusal (403) raised and no False answered."""
    try:
        return check(caller, world) is not False
    except (Forbidden, MissingScope):
        return False


# --- API callers: (action, check, who may) -------------------------------------------------------------


def _reads(rows: Any, obj: Any) -> bool:
    return rows.filter(pk=obj.pk).exists()


API_TABLE: list[tuple[str, Callable[[Principal, World], Any], set[str]]] = [
    (
        "read the owner's job",
        lambda p, w: _reads(permissions.owned_rows(p, Job.objects.all()), w.job),
        {"admin", "owner"},
    ),
    (
        "read the owner's schedule",
        lambda p, w: _reads(permissions.owned_rows(p, Schedule.objects.all()), w.schedule),
        {"admin", "owner"},
    ),
    (
        "read the owner's HITL request",
        lambda p, w: _reads(permissions.hitl_rows(p, HITLRequest.objects.all()), w.hitl),
        {"admin", "owner", "approver"},
    ),
    (
        "change the owner's schedule",
        lambda p, w: permissions.ensure_may_change(p, w.schedule, what="schedule"),
        {"admin", "owner"},
    ),
    # An admin-only route acts on the caller's own workspace: another workspace's admin passes here
    # and sees only their own rows.
    ("use an admin-only route", lambda p, w: permissions.require_admin(p), {"admin", "outsider"}),
    ("scrape /metrics", lambda p, w: permissions.may_scrape_metrics(p), {"admin", "outsider"}),
    (
        "hold hitl:approve",
        lambda p, w: permissions.ensure_scope(p, "hitl:approve"),
        {"admin", "approver", "outsider"},
    ),
]


@pytest.mark.parametrize(("action", "check", "expected"), API_TABLE, ids=[row[0] for row in API_TABLE])
def test_permissions__api_caller_by_action(world, action, check, expected):
    observed = {role for role in API_ROLES if _allowed(check, world.principals[role], world)}
    assert observed == expected, action


# --- users, as the services and the admin see them ---------------------------------------------------


USER_TABLE: list[tuple[str, Callable[[User, World], Any], set[str]]] = [
    (
        "cancel or retry the owner's job over the API",
        lambda u, w: permissions.ensure_may_change(u, w.job, what="job", via="api"),
        {"admin", "owner", "staff_admin", "admin_not_staff"},
    ),
    (
        "cancel or retry the owner's job in the admin",
        lambda u, w: permissions.ensure_may_change(u, w.job, what="job", via="admin"),
        {"superuser", "staff_admin"},
    ),
    (
        # The scope is the view's check; the service asks for membership and refuses the requester.
        "decide the owner's HITL request over the API",
        lambda u, w: permissions.ensure_may_decide_hitl(actor=u, request=w.hitl, via="api"),
        {"admin", "member", "approver", "staff_admin", "staff_member", "admin_not_staff"},
    ),
    (
        "decide the owner's HITL request in the admin",
        lambda u, w: permissions.ensure_may_decide_hitl(actor=u, request=w.hitl, via="admin"),
        {"superuser", "staff_admin"},
    ),
    (
        "give admin-only job arguments over the API",
        lambda u, w: permissions.acts_as_admin(user=u, workspace_id=w.job.workspace_id),
        {"admin", "staff_admin", "admin_not_staff"},
    ),
    (
        "give admin-only job arguments in the admin",
        lambda u, w: permissions.acts_as_admin(user=u, workspace_id=w.job.workspace_id, via="admin"),
        {"superuser", "staff_admin"},
    ),
    (
        "use the admin at all",
        lambda u, w: permissions.staff_admitted(u),
        {"superuser", "staff_admin", "staff_member", "staff_outsider"},
    ),
    (
        "see the workspace in the admin",
        lambda u, w: permissions.staff_covers(u, w.job.workspace_id),
        {"superuser", "staff_admin"},
    ),
    (
        "manage users, workspaces and plans in the admin",
        lambda u, w: permissions.staff_covers_all(u),
        {"superuser"},
    ),
]
USER_ROLES = (*API_ROLES, *STAFF_ROLES)


@pytest.mark.parametrize(("action", "check", "expected"), USER_TABLE, ids=[row[0] for row in USER_TABLE])
def test_permissions__user_by_action(world, action, check, expected):
    observed = {role for role in USER_ROLES if _allowed(check, world.users[role], world)}
    assert observed == expected, action


@pytest.mark.parametrize("via", ["api", "admin"])
def test_permissions__the_system_may_operate_jobs_and_give_any_arguments(world, via):
    permissions.ensure_may_change(None, world.job, what="job", via=via)
    assert permissions.acts_as_admin(user=None, workspace_id=world.job.workspace_id, via=via)


def test_permissions__the_requester_is_refused_with_self_approval(world):
    with pytest.raises(permissions.SelfApproval):
        permissions.ensure_may_decide_hitl(actor=world.users["owner"], request=world.hitl, via="api")


def test_permissions__staff_workspace_ids(world):
    ws = world.job.workspace_id
    assert permissions.staff_workspace_ids(user=world.users["superuser"]) is None
    assert permissions.staff_workspace_ids(user=world.users["staff_admin"]) == [ws]
    for role in ("staff_member", "admin_not_staff", "inactive_superuser"):
        assert permissions.staff_workspace_ids(user=world.users[role]) == [], role
    assert ws not in permissions.staff_workspace_ids(user=world.users["staff_outsider"])
