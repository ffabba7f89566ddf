"""The schedules admin: owner filter, lifecycle actions through the services, workspace scoping."""

from __future__ import annotations

import pytest
from django.test import Client

from hq import messaging
from hq import services as hq_services
from hq.models import User
from schedules import services
from schedules.models import Schedule, ScheduleFire
from tests import factories

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/schedules/schedule/"


def task(caller, name="t"):
    room = messaging.room_create(workspace=caller.workspace, creator=caller.user, name="r")
    return services.schedule_create(
        workspace=caller.workspace,
        owner=caller.user,
        name=name,
        trigger={"kind": "cron", "expr": "30 2 * * *", "tz": "Europe/Stockholm"},
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "x"}},
    )


@pytest.fixture
def superuser_client() -> Client:
    user = User.objects.create_superuser("root@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


def test_owner_filter_lists_only_users_with_schedules(superuser_client, member):
    task(member, "mine")
    idle = factories.caller(ws=member.workspace)
    page = superuser_client.get(CHANGELIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert f"?owner={member.user.pk}" in html
    assert f"?owner={idle.user.pk}" not in html
    filtered = superuser_client.get(f"{CHANGELIST}?owner={member.user.pk}")
    assert "mine" in filtered.content.decode()


def test_actions_go_through_services(superuser_client, member):
    s = task(member)
    resp = superuser_client.post(CHANGELIST, {"action": "pause", "_selected_action": [str(s.pk)]}, follow=True)
    assert resp.status_code == 200
    s.refresh_from_db()
    assert s.state == "paused" and "Paused by" in s.state_reason
    superuser_client.post(CHANGELIST, {"action": "fire_now", "_selected_action": [str(s.pk)]})
    assert ScheduleFire.objects.filter(schedule=s, manual=True).count() == 1
    superuser_client.post(CHANGELIST, {"action": "archive", "_selected_action": [str(s.pk)]})
    s.refresh_from_db()
    assert s.state == "archived"
    resp = superuser_client.post(CHANGELIST, {"action": "resume", "_selected_action": [str(s.pk)]}, follow=True)
    assert "Cannot resume a schedule that is archived" in resp.content.decode()
    assert Schedule.objects.get(pk=s.pk).state == "archived"


def test_change_page_shows_next_fires_in_the_schedules_zone(superuser_client, member):
    s = task(member)
    page = superuser_client.get(f"{CHANGELIST}{s.pk}/change/").content.decode()
    assert page.count("02:30 CE") + page.count("03:00 CE") >= 4  # five upcoming local times (DST may move one)


def test_staff_see_only_their_workspaces_and_non_staff_are_refused(member):
    task(member, "visible-one")
    other = factories.caller()
    task(other, "hidden-one")
    staff = member.user
    staff.is_staff = True
    staff.save()
    from django.contrib.auth.models import Permission

    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_schedule", "change_schedule"]))
    client = Client()
    client.force_login(staff)
    assert client.get(CHANGELIST).status_code == 403, "a plain member administers no workspace"
    hq_services.membership_set(user=staff, workspace=member.workspace, role="admin")
    html = client.get(CHANGELIST).content.decode()
    assert "visible-one" in html and "hidden-one" not in html
    plain = factories.caller().user
    client.force_login(plain)
    assert client.get(CHANGELIST).status_code == 302  # to the admin login
