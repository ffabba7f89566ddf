"""The viewer's own time zone: a preference each staff user sets for themselves on "My time zone",
shown beside UTC wherever the console shows a time (hq.timefmt), never instead of it."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from hq import clock, timefmt
from hq import services as hq_services
from hq.models import Membership, User
from tests.observability.helpers import job, schedule

pytestmark = pytest.mark.django_db

URL = "/admin/my-time-zone/"


def staff(ws, email: str) -> User:
    user = User.objects.create_user(email=email, password="pw", is_staff=True)
    hq_services.membership_set(user=user, workspace=ws, role=Membership.Role.ADMIN)
    return user


def client_for(user: User) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_time_zone__saved_for_the_user_themselves_and_a_bad_name_is_a_form_error(member):
    ops, other = staff(member.workspace, "ops@example.com"), staff(member.workspace, "other@example.com")
    c = client_for(ops)
    assert "My time zone" in c.get("/admin/").content.decode()  # in the user links of every page
    resp = c.post(URL, {"time_zone": "Mars/Olympus_Mons"})
    assert resp.status_code == 200 and "is not an IANA time zone" in resp.content.decode()
    ops.refresh_from_db()
    assert ops.time_zone == ""
    # No other user can be named: the page sets the signed-in user's zone only.
    resp = c.post(URL, {"time_zone": "Asia/Kolkata", "user": str(other.pk)})
    assert resp.status_code == 302
    ops.refresh_from_db()
    other.refresh_from_db()
    assert (ops.time_zone, other.time_zone) == ("Asia/Kolkata", "")
    assert 'value="Asia/Kolkata"' in c.get(URL).content.decode()
    assert client_for(ops).post(URL, {"time_zone": ""}).status_code == 302  # blank: UTC only again
    ops.refresh_from_db()
    assert ops.time_zone == ""


def test_times__utc_then_the_viewers_zone_and_on_schedules_the_schedules_zone_too(member):
    now = clock.now()
    row = job(member.workspace, now, state="succeeded", finished_ago_s=60, run_ms=5, wait_ms=5)
    s = schedule(member.workspace, member.user, name="digest")  # its zone: Europe/Stockholm
    ops = staff(member.workspace, "ops@example.com")
    ops.user_permissions.set(Permission.objects.filter(codename="view_schedule"))
    hq_services.user_set_time_zone(user=ops, time_zone="Asia/Kolkata")
    kolkata = row.created_at.astimezone(ZoneInfo("Asia/Kolkata"))
    wall = kolkata.strftime(
        "%H:%M:%S" if kolkata.date() == row.created_at.astimezone(UTC).date() else "%Y-%m-%d %H:%M:%S"
    )
    expected = f"{row.created_at.astimezone(UTC).strftime(timefmt.UTC_FORMAT)} ({wall} Asia/Kolkata)"

    c = client_for(ops)
    assert expected in c.get(f"/admin/queueapp/job/{row.pk}/change/").content.decode()  # the job's page
    assert f'title="{expected}"' in c.get("/admin/queueapp/job/").content.decode()  # the list's hover text
    page = c.get(f"/admin/schedules/schedule/{s.pk}/change/").content.decode()
    assert "Europe/Stockholm; " in page and " Asia/Kolkata)" in page  # the schedule's zone, then the viewer's
    # Another viewer, with no zone of their own, sees UTC only: the preference is per user.
    plain = client_for(staff(member.workspace, "plain@example.com")).get(f"/admin/queueapp/job/{row.pk}/change/")
    assert "Asia/Kolkata" not in plain.content.decode()
    # Outside a request nobody is viewing: UTC alone.
    assert timefmt.exact(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02 03:04:05 UTC"
