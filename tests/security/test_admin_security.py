"""The admin: staff only, CSRF on every state change, escaping, workspace scoping for non-superusers."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from delivery import services as delivery_services
from delivery.models import Delivery
from hq import messaging
from hq import services as hq_services
from hq.models import Conversation, PersonalAccessToken, Room, User
from queueapp import services as queue_services
from queueapp.models import HITLRequest, Job
from schedules import services as schedule_services
from schedules.models import Schedule
from tests import factories
from tests.security import world as world_mod

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/",
    "/admin/queueapp/job/",
    "/admin/queueapp/hitlrequest/",
    "/admin/schedules/schedule/",
    "/admin/delivery/delivery/",
    "/admin/hq/personalaccesstoken/",
    "/admin/hq/room/",
    "/admin/ops/dashboard/",
    "/admin/ops/workers/",
]
SCRIPT = '<script>alert("hq")</script>'
NAME = f"Robert'); DROP TABLE schedules_schedule;-- {SCRIPT}"


def user(*, staff: bool = True, superuser: bool = False, active: bool = True) -> User:
    return User.objects.create_user(
        f"u{uuid.uuid4().hex[:8]}@example.com",
        "pw-for-tests-only",
        is_staff=staff,
        is_superuser=superuser,
        is_active=active,
    )


def logged_in(u: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(u)
    return client


def _to_login(resp) -> bool:
    return resp.status_code == 302 and resp["Location"].startswith("/admin/login/")


# --- staff only ------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_and_non_staff_are_sent_to_login(page):
    assert _to_login(Client().get(page)), page
    member = factories.caller()
    non_staff = logged_in(member.user)
    assert _to_login(non_staff.get(page)), page
    ex_staff = user(active=False)
    assert _to_login(logged_in(ex_staff).get(page)), page


def test_a_token_is_no_admin_login():
    member = factories.caller(admin=True)
    assert _to_login(Client().get("/admin/", HTTP_AUTHORIZATION=f"Bearer {member.token}"))


# --- CSRF ----------------------------------------------------------------------------------------------


def _csrf(client: Client, page: str) -> str:
    assert client.get(page).status_code == 200
    return client.cookies["csrftoken"].value


def test_every_admin_action_needs_the_csrf_token():
    w = world_mod.build()
    root = user(superuser=True)
    client = logged_in(root, csrf=True)
    token = PersonalAccessToken.objects.filter(user=w.admin.user).first()
    posts = [
        ("/admin/queueapp/job/", {"action": "cancel_selected", "_selected_action": [str(w.job.pk)], "post": "yes"}),
        ("/admin/queueapp/job/", {"action": "retry_selected", "_selected_action": [str(w.job.pk)], "post": "yes"}),
        (f"/admin/queueapp/hitlrequest/{w.hitl.pk}/approve/", {"comment": "ok"}),
        (f"/admin/queueapp/hitlrequest/{w.hitl.pk}/reject/", {"comment": "no"}),
        (
            "/admin/queueapp/hitlrequest/",
            {"action": "approve_selected", "_selected_action": [str(w.hitl.pk)], "post": "yes", "comment": ""},
        ),
        ("/admin/schedules/schedule/", {"action": "pause", "_selected_action": [str(w.schedule.pk)], "post": "yes"}),
        ("/admin/schedules/schedule/", {"action": "archive", "_selected_action": [str(w.task.pk)], "post": "yes"}),
        ("/admin/hq/personalaccesstoken/", {"action": "revoke", "_selected_action": [str(token.pk)]}),
        (
            "/admin/hq/personalaccesstoken/add/",
            {"user": str(w.admin.user.pk), "workspace": str(w.admin.workspace.pk), "name": "x"},
        ),
        (f"/admin/hq/room/{w.room.pk}/delete/", {"post": "yes"}),
        ("/admin/logout/", {}),
    ]
    state = _snapshot()
    for url, data in posts:
        resp = client.post(url, data)
        assert resp.status_code == 403, (url, resp.status_code)
        assert b"CSRF" in resp.content, url
    assert _snapshot() == state, "a POST without the CSRF token changed something"
    assert client.get("/admin/").status_code == 200, "still logged in: logout needs the token too"

    # With the token, the same POSTs go through (spot checks).
    csrf = _csrf(client, "/admin/schedules/schedule/")
    resp = client.post(
        "/admin/schedules/schedule/",
        {"action": "pause", "_selected_action": [str(w.schedule.pk)], "post": "yes", "csrfmiddlewaretoken": csrf},
    )
    assert resp.status_code == 302
    assert Schedule.objects.get(pk=w.schedule.pk).state == "paused"
    resp = client.post(
        f"/admin/queueapp/hitlrequest/{w.hitl.pk}/approve/", {"comment": "ok", "csrfmiddlewaretoken": csrf}
    )
    assert resp.status_code == 302
    assert HITLRequest.objects.get(pk=w.hitl.pk).state == "approved"


def test_login_form_needs_the_csrf_token():
    user(superuser=True)
    client = Client(enforce_csrf_checks=True)
    resp = client.post("/admin/login/", {"username": "nobody@example.com", "password": "x"})
    assert resp.status_code == 403


def _snapshot() -> tuple:
    return (
        tuple(Job.objects.order_by("id").values_list("state", flat=True)),
        tuple(HITLRequest.objects.order_by("id").values_list("state", flat=True)),
        tuple(Schedule.objects.order_by("id").values_list("state", flat=True)),
        tuple(PersonalAccessToken.objects.order_by("id").values_list("revoked_at", flat=True)),
        PersonalAccessToken.objects.count(),
        Room.objects.count(),
    )


# --- escaping --------------------------------------------------------------------------------------------


def test_sql_and_html_in_names_are_escaped_everywhere_they_show():
    admin = factories.caller(admin=True)
    ws = admin.workspace
    owner = factories.caller(ws=ws)
    owner.user.display_name = SCRIPT
    owner.user.save()
    room = messaging.room_create(workspace=ws, creator=owner.user, name=NAME)
    messaging.message_post(room=room, author=owner.user, body=SCRIPT)
    schedule = schedule_services.schedule_create(
        workspace=ws,
        owner=owner.user,
        name=NAME,
        description=SCRIPT,
        trigger=world_mod.CRON,
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": SCRIPT}},
    )
    job, _ = queue_services.job_submit(
        workspace=ws,
        owner=owner.user,
        submission=queue_services.Submission(
            function="tests.gated", args={"html": SCRIPT}, correlation_id=SCRIPT, approval_reason=SCRIPT
        ),
    )
    hitl = HITLRequest.objects.get(job=job)
    conversation = Conversation.objects.create(workspace=ws, owner=owner.user, title=SCRIPT)
    delivery = delivery_services.delivery_create(
        workspace=ws,
        source_kind="schedule_fire",
        source_id=uuid.uuid4(),
        destination={"kind": "web_inbox"},
        header=NAME,
        body=SCRIPT,
        conversation_id=conversation.id,
    )
    client = logged_in(user(superuser=True))
    pages = [
        "/admin/schedules/schedule/",
        f"/admin/schedules/schedule/?owner={owner.user.pk}",
        f"/admin/schedules/schedule/{schedule.pk}/change/",
        "/admin/hq/room/",
        f"/admin/hq/room/{room.pk}/change/",
        "/admin/queueapp/job/",
        f"/admin/queueapp/job/{job.pk}/change/",
        "/admin/queueapp/hitlrequest/",
        f"/admin/queueapp/hitlrequest/{hitl.pk}/change/",
        f"/admin/queueapp/hitlrequest/{hitl.pk}/approve/",
        "/admin/delivery/delivery/",
        f"/admin/delivery/delivery/{delivery.pk}/change/",
        f"/admin/hq/conversation/{conversation.pk}/change/",
        "/admin/hq/user/",
        "/admin/ops/dashboard/",
        "/admin/ops/workers/",
    ]
    shown = 0
    for page in pages:
        resp = client.get(page)
        assert resp.status_code == 200, page
        html = resp.content.decode()
        assert SCRIPT not in html, f"raw <script> on {page}"
        shown += "&lt;script&gt;" in html
    assert shown >= 10, "the names should show (escaped) on most of these pages"
    assert Schedule.objects.filter(pk=schedule.pk, name=NAME).exists()


# --- workspace scoping -------------------------------------------------------------------------------------


def _objects(caller: factories.Caller) -> dict[str, str]:
    w = world_mod.build(admin=caller)
    conversation = Conversation.objects.create(workspace=caller.workspace, owner=caller.user, title="c")
    delivery = delivery_services.delivery_create(
        workspace=caller.workspace,
        source_kind="schedule_fire",
        source_id=uuid.uuid4(),
        destination={"kind": "web_inbox"},
        header="h",
        body="b",
        conversation_id=conversation.id,
    )
    return {
        "queueapp/job": str(w.job.pk),
        "queueapp/hitlrequest": str(w.hitl.pk),
        "schedules/schedule": str(w.schedule.pk),
        "delivery/delivery": str(delivery.pk),
    }


def test_staff_see_only_the_workspaces_they_administer():
    mine = _objects(factories.caller(admin=True))
    theirs = _objects(factories.caller(admin=True))
    ws = Job.objects.get(pk=mine["queueapp/job"]).workspace
    staff = user()
    hq_services.membership_set(user=staff, workspace=ws, role="admin")
    # A plain membership of the other workspace shows nothing of it (the admin role is what counts).
    hq_services.membership_set(user=staff, workspace=Job.objects.get(pk=theirs["queueapp/job"]).workspace)
    # The schedules pages use Django's model permissions (the queue and delivery pages need none).
    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_schedule", "change_schedule"]))
    client = logged_in(staff)
    for model, pk in mine.items():
        listing = client.get(f"/admin/{model}/")
        assert listing.status_code == 200, model
        html = listing.content.decode()
        assert pk in html, f"{model}: own workspace's row missing"
        assert theirs[model] not in html, f"{model}: another workspace's row listed"
        searched = client.get(f"/admin/{model}/", {"q": theirs[model]})
        assert f"{theirs[model]}/change/" not in searched.content.decode(), f"{model}: found by search"
        assert client.get(f"/admin/{model}/{pk}/change/").status_code == 200, model
        other = client.get(f"/admin/{model}/{theirs[model]}/change/")
        # Django's answer for a row the queryset does not hold: back to the index, "doesn't exist".
        assert other.status_code in (302, 404), f"{model}: another workspace's page answered {other.status_code}"
        if other.status_code == 302:
            assert other["Location"] == "/admin/", other["Location"]
            client.get("/admin/")  # consume the message
    # Deciding or acting on another workspace's rows is refused too.
    hitl = theirs["queueapp/hitlrequest"]
    assert client.post(f"/admin/queueapp/hitlrequest/{hitl}/approve/", {"comment": ""}).status_code == 404
    client.post(
        "/admin/queueapp/job/",
        {"action": "cancel_selected", "_selected_action": [theirs["queueapp/job"]], "post": "yes"},
    )
    client.post(
        "/admin/schedules/schedule/",
        {"action": "pause", "_selected_action": [theirs["schedules/schedule"]], "post": "yes"},
    )
    assert HITLRequest.objects.get(pk=hitl).state == "pending"
    assert Job.objects.get(pk=theirs["queueapp/job"]).state == "queued"
    assert Schedule.objects.get(pk=theirs["schedules/schedule"]).state == "active"
    assert Delivery.objects.filter(pk=theirs["delivery/delivery"]).exists()


def test_a_superuser_sees_every_workspace():
    a = _objects(factories.caller(admin=True))
    b = _objects(factories.caller(admin=True))
    client = logged_in(user(superuser=True))
    for model in a:
        html = client.get(f"/admin/{model}/").content.decode()
        assert a[model] in html and b[model] in html, model


def test_nul_in_an_admin_search_is_400_not_500():
    client = logged_in(user(superuser=True))
    for page in ("/admin/queueapp/job/", "/admin/schedules/schedule/", "/admin/hq/room/"):
        assert client.get(page, {"q": "a\x00b"}).status_code == 400, page
