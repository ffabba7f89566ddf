"""Every admin path that ends a membership or switches a user off goes through the services:
the member's schedules are quarantined with the reason and their approval requests expire."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.test import Client

from hq import messaging
from hq.models import Membership, PersonalAccessToken, User
from queueapp import services as queue_services
from queueapp.models import HITLRequest, Job
from schedules import services
from schedules.models import Schedule
from tests import factories

pytestmark = pytest.mark.django_db

LEFT = "Owner is no longer a member of the workspace."
DEACTIVATED = "Owner was deactivated."


class _FormFields(HTMLParser):
    """The fields a browser would submit from the page's main form (inputs, selected options, textareas)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.setdefault(name, []).append(a.get("value") or ("on" if a.get("type") == "checkbox" else ""))
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, [])
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select].append(a.get("value") or "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = [""]

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea][0] += data


def form_of(client: Client, url: str) -> dict[str, list[str]]:
    page = client.get(url)
    assert page.status_code == 200
    parser = _FormFields()
    parser.feed(page.content.decode())
    parser.data.pop("csrfmiddlewaretoken", None)
    return parser.data


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@example.com", "pw-for-tests-only"))
    return client


def task(caller, name: str = "standup") -> Schedule:
    room = messaging.room_create(workspace=caller.workspace, creator=caller.user, name="general")
    return services.schedule_create(
        workspace=caller.workspace,
        owner=caller.user,
        name=name,
        trigger={"kind": "cron", "expr": "0 9 * * MON", "tz": "Europe/Amsterdam"},
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "Standup!"}},
    )


def gated(caller) -> HITLRequest:
    job, _ = queue_services.job_submit(
        workspace=caller.workspace,
        owner=caller.user,
        submission=queue_services.Submission(function="tests.gated", args={"n": 1}),
    )
    return HITLRequest.objects.get(job=job)


def assert_departed(schedule: Schedule, hitl: HITLRequest, reason: str) -> None:
    schedule.refresh_from_db()
    assert (schedule.state, schedule.state_reason, schedule.next_fire_at) == ("quarantined", reason, None)
    hitl.refresh_from_db()
    assert hitl.state == "expired" and Job.objects.get(pk=hitl.job_id).state == "rejected"


def test_deleting_a_membership_in_the_admin(root, member):
    s, hitl = task(member), gated(member)
    m = Membership.objects.get(user=member.user)
    resp = root.post(f"/admin/hq/membership/{m.pk}/delete/", {"post": "yes"}, follow=True)
    assert resp.status_code == 200 and not Membership.objects.filter(pk=m.pk).exists()
    assert_departed(s, hitl, LEFT)
    assert not PersonalAccessToken.objects.filter(user=member.user, revoked_at__isnull=True).exists()
    listing = root.get("/admin/schedules/schedule/").content.decode()
    assert "quarantined" in listing.lower() and LEFT in listing
    assert LEFT in root.get(f"/admin/schedules/schedule/{s.pk}/change/").content.decode()


def test_deleting_memberships_with_the_bulk_action(root, member, admin):
    s, hitl = task(member), gated(member)
    admins_task = task(admin, "admin's")
    m = Membership.objects.get(user=member.user)
    resp = root.post(
        "/admin/hq/membership/", {"action": "delete_selected", "_selected_action": [str(m.pk)], "post": "yes"}
    )
    assert resp.status_code == 302 and not Membership.objects.filter(pk=m.pk).exists()
    assert_departed(s, hitl, LEFT)
    assert Schedule.objects.get(pk=admins_task.pk).state == "active"


def test_a_saved_membership_cannot_be_moved_to_another_user_or_workspace(root, member):
    m = Membership.objects.get(user=member.user)
    page = root.get(f"/admin/hq/membership/{m.pk}/change/")
    assert 'name="user"' not in page.content.decode() and 'name="workspace"' not in page.content.decode()


def test_deleting_a_member_in_the_workspace_inline(root, member, admin):
    s, hitl = task(member), gated(member)
    url = f"/admin/hq/workspace/{member.workspace.pk}/change/"
    data = form_of(root, url)
    row = next(k.removesuffix("-id") for k, v in data.items() if k.endswith("-id") and v == [str(_id(member))])
    data[f"{row}-DELETE"] = ["on"]
    resp = root.post(url, data)
    assert resp.status_code == 302, resp.content.decode()[:2000]
    assert not Membership.objects.filter(user=member.user).exists()
    assert Membership.objects.filter(user=admin.user).exists()
    assert_departed(s, hitl, LEFT)


def test_swapping_the_user_of_an_inline_row_is_refused(root, member, admin):
    s = task(member)
    stranger = User.objects.create_user(email="stranger@example.com")
    url = f"/admin/hq/workspace/{member.workspace.pk}/change/"
    data = form_of(root, url)
    row = next(k.removesuffix("-id") for k, v in data.items() if k.endswith("-id") and v == [str(_id(member))])
    data[f"{row}-user"] = [str(stranger.pk)]
    page = root.post(url, data)
    assert page.status_code == 200 and "cannot be swapped" in page.content.decode()
    assert Membership.objects.filter(user=member.user).exists() and not stranger.memberships.exists()
    assert Schedule.objects.get(pk=s.pk).state == "active"


def _id(caller) -> object:
    return Membership.objects.get(user=caller.user, workspace=caller.workspace).pk


def test_unticking_active_on_the_user_page(root, member):
    s, hitl = task(member), gated(member)
    url = f"/admin/hq/user/{member.user.pk}/change/"
    data = form_of(root, url)
    assert data.pop("is_active") == ["on"]
    resp = root.post(url, data)
    assert resp.status_code == 302, resp.content.decode()[:2000]
    assert not User.objects.get(pk=member.user.pk).is_active
    assert_departed(s, hitl, DEACTIVATED)
    # Ticking it again reactivates the user; their schedules stay quarantined until resumed.
    data["is_active"] = ["on"]
    assert root.post(url, data).status_code == 302
    assert User.objects.get(pk=member.user.pk).is_active
    assert Schedule.objects.get(pk=s.pk).state == "quarantined"


def test_deactivate_action_confirms_first(root, member, admin):
    s, hitl = task(member), gated(member)
    picked = {"action": "deactivate_selected", "_selected_action": [str(member.user.pk)]}
    confirm = root.post("/admin/hq/user/", picked)
    html = confirm.content.decode()
    assert confirm.status_code == 200 and "Yes, deactivate" in html and member.user.email in html
    assert member.workspace.slug in html
    assert User.objects.get(pk=member.user.pk).is_active, "nothing changes before the confirmation"
    done = root.post("/admin/hq/user/", {**picked, "post": "yes"}, follow=True)
    assert "Deactivated 1 user(s)" in done.content.decode()
    assert not User.objects.get(pk=member.user.pk).is_active
    assert_departed(s, hitl, DEACTIVATED)
    assert User.objects.get(pk=admin.user.pk).is_active


def test_deactivating_yourself_is_refused(root):
    me = User.objects.get(email="root@example.com")
    picked = {"action": "deactivate_selected", "_selected_action": [str(me.pk)], "post": "yes"}
    page = root.post("/admin/hq/user/", picked, follow=True)
    assert "You cannot deactivate yourself." in page.content.decode()
    assert User.objects.get(pk=me.pk).is_active


def test_deleting_a_user_expires_their_requests_first(root, member):
    task(member)
    hitl = gated(member)
    resp = root.post(f"/admin/hq/user/{member.user.pk}/delete/", {"post": "yes"})
    assert resp.status_code == 302 and not User.objects.filter(pk=member.user.pk).exists()
    assert not Schedule.objects.exists()
    hitl.refresh_from_db()
    assert (hitl.state, hitl.comment) == ("expired", "The requester was deleted.")
    assert Job.objects.get(pk=hitl.job_id).state == "rejected", "an orphaned gated job can never be approved"


def test_deleting_users_with_the_bulk_action(root, member):
    other = factories.caller(ws=member.workspace)
    hitls = [gated(member), gated(other)]
    picked = [str(member.user.pk), str(other.user.pk)]
    resp = root.post("/admin/hq/user/", {"action": "delete_selected", "_selected_action": picked, "post": "yes"})
    assert resp.status_code == 302 and not User.objects.filter(pk__in=picked).exists()
    assert {HITLRequest.objects.get(pk=h.pk).state for h in hitls} == {"expired"}
