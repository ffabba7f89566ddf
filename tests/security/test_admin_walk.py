"""Every admin page, walked as a staff user who administers workspace B only and holds every Django
model permission: nothing of workspace A may show (rows, filter values, form choices, autocomplete
answers, deletion summaries), A's objects are "not found", and no form saves anything into A.

The tables below name, for every registered model and every inline model, the path to its
workspace; a model registered without an entry here fails the walk, so new pages get walked too.
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from delivery import services as delivery_services
from delivery.models import Delivery, DeliveryAttempt
from hq import messaging
from hq import services as hq_services
from hq.models import (
    Agent,
    Conversation,
    ConversationMessage,
    Membership,
    Note,
    PersonalAccessToken,
    Plan,
    Room,
    RoomMessage,
    StoredQuery,
    User,
    Workspace,
)
from queueapp import limits
from queueapp import services as queue_services
from queueapp.models import HITLRequest, Job, JobEvent, KeyLimit, QueuePause, Worker
from schedules import services as schedule_services
from schedules.models import Schedule, ScheduleFire
from tests import factories
from tests.security import world as world_mod

pytestmark = pytest.mark.django_db

FOREIGN, OWN = "umbra", "lumen"  # every text of workspace A carries FOREIGN, of B carries OWN

#: Registered model -> path to its workspace; None: no workspace (superusers only).
REGISTERED = {
    Group: None,
    Plan: None,
    User: "memberships__workspace",
    Workspace: "id",
    Membership: "workspace",
    PersonalAccessToken: "workspace",
    Agent: "workspace",
    Room: "workspace",
    Note: "workspace",
    StoredQuery: "workspace",
    Conversation: "workspace",
    HITLRequest: "workspace",
    Job: "workspace",
    QueuePause: "workspace",
    KeyLimit: "workspace",
    Schedule: "workspace",
    Delivery: "workspace",
}
#: Models shown only inline on another's page.
INLINE = {
    RoomMessage: "room__workspace",
    ConversationMessage: "conversation__workspace",
    JobEvent: "job__workspace",
    ScheduleFire: "schedule__workspace",
    DeliveryAttempt: "delivery__workspace",
}


@dataclass
class Tenant:
    workspace: Workspace
    boss: User
    member: User


def tenant(tag: str, *, shared: User) -> Tenant:
    """A workspace with one object of every kind, each named after `tag`; `shared` is a member too."""
    ws = factories.workspace(f"{tag}-tenant")
    Workspace.objects.filter(pk=ws.pk).update(name=f"{tag} tenant")
    boss = factories.caller(ws=ws, admin=True, email=f"{tag}.boss@example.com")
    member = factories.caller(ws=ws, email=f"{tag}.member@example.com")
    w = world_mod.build(admin=boss, member=member)
    hq_services.membership_set(user=shared, workspace=ws)
    hq_services.token_create(user=shared, workspace=ws, name=f"{tag} token of the shared user")
    Room.objects.filter(pk=w.room.pk).update(name=f"{tag} room")
    Note.objects.filter(workspace=ws).update(title=f"{tag} note")
    StoredQuery.objects.filter(workspace=ws).update(name=f"{tag} query")
    Conversation.objects.filter(pk=w.conversation.pk).update(title=f"{tag} conversation")
    Schedule.objects.filter(workspace=ws).update(name=f"{tag} schedule")
    Agent.objects.filter(workspace=ws).update(name=f"{tag} agent")
    PersonalAccessToken.objects.filter(workspace=ws, name="").update(name=f"{tag} token")
    messaging.message_post(room=w.room, author=boss.user, body=f"{tag} room message")
    ConversationMessage.objects.create(conversation=w.conversation, role="user", body=f"{tag} conversation message")
    delivery = delivery_services.delivery_create(
        workspace=ws,
        source_kind="schedule_fire",
        source_id=uuid.uuid4(),
        destination={"kind": "web_inbox"},
        header=f"{tag} delivery",
        body=f"{tag} body",
        conversation_id=w.conversation.id,
    )
    assert delivery.attempt_log.exists()
    schedule_services.schedule_fire_now(schedule=w.schedule, actor=boss.user)
    queue_services.queue_pause(queue=f"{tag}-queue", workspace=ws, actor=boss.user)
    limits.key_limit_save(KeyLimit(pattern=f"{tag}-customer:*", workspace=ws, concurrency=2))
    return Tenant(workspace=ws, boss=boss.user, member=member.user)


def rows_of(model: type[Model], path: str, workspace: Workspace, other: Workspace) -> list[Model]:
    """The model's rows in `workspace`; for users, those who are not also in `other`."""
    rows = model._default_manager.filter(**{path: workspace.pk})
    if model is User:
        rows = rows.exclude(memberships__workspace=other)
    return list(rows.distinct())


@pytest.fixture
def two_tenants():
    shared = User.objects.create_user("shared.person@example.com", "pw")
    a, b = tenant(FOREIGN, shared=shared), tenant(OWN, shared=shared)
    Worker.objects.create(id=f"{FOREIGN}-host:1:x", hostname=f"{FOREIGN}-host", pid=1)
    Group.objects.create(name=f"{FOREIGN} group")
    Plan.objects.create(name=f"{FOREIGN} plan", max_schedules=5)
    staff = User.objects.create_user("b.staff@example.com", "pw", is_staff=True)
    hq_services.membership_set(user=staff, workspace=b.workspace, role=Membership.Role.ADMIN)
    staff.user_permissions.set(Permission.objects.all())  # every model permission there is
    client = Client()
    client.force_login(staff)
    return a, b, staff, client


def foreign_markers(a: Tenant, b: Tenant) -> list[str]:
    """Strings that may appear only on pages showing something of A: its tag and every row's id."""
    markers = [FOREIGN]
    for model, path in {**REGISTERED, **INLINE}.items():
        if path is not None:
            markers += [str(row.pk) for row in rows_of(model, path, a.workspace, b.workspace)]
    return [m for m in markers if len(m) >= 5]


class Walk:
    """Pages visited and every problem found (all of them, so a failure shows the whole picture)."""

    def __init__(self, client: Client, markers: list[str]) -> None:
        self.client, self.markers = client, markers
        self.visited = 0
        self.problems: list[str] = []

    def get(self, url: str, data: dict | None = None) -> tuple[int, str]:
        resp = self.client.get(url, data or {})
        self.visited += 1
        return resp.status_code, resp.content.decode() if resp.status_code != 302 else resp["Location"]

    def clean(self, text: str, where: str) -> None:
        low = text.lower()
        for marker in self.markers:
            if marker.lower() in low:
                self.problems.append(f"{where} shows {marker!r}, which belongs to workspace A")

    def expect(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def field_errors(resp) -> dict[str, str]:
    """A form page's errors by field name."""
    found = re.findall(r'<ul class="errorlist" id="id_(\w+)_error">(.*?)</ul>', resp.content.decode(), re.S)
    return {name: html.unescape(re.sub("<[^>]+>", " ", text)).strip() for name, text in found}


def room_form(room: Room, **changes: object) -> dict[str, object]:
    """The room change form as the browser posts it, with `changes`."""
    data = {
        "workspace": room.workspace_id,
        "name": room.name,
        "agent": room.agent_id or "",
        "members": [u.pk for u in room.members.all()],
        "created_at_0": "2026-01-01",
        "created_at_1": "09:00:00",
        "messages-TOTAL_FORMS": "0",
        "messages-INITIAL_FORMS": "0",
    }
    return {**data, **changes}


def filter_links(page: str) -> list[str]:
    match = re.search(r'<nav id="changelist-filter".*?</nav>', page, re.S)
    return sorted({html.unescape(h) for h in re.findall(r'href="(\?[^"]*)"', match.group(0))}) if match else []


def result_rows(page: str) -> str:
    match = re.search(r'id="result_list".*?(<tbody>.*?</tbody>)', page, re.S)
    return match.group(1) if match else ""


def _nowhere(pk: object) -> object:
    return 987654321 if isinstance(pk, int) else uuid.uuid4()


def test_every_admin_page_shows_a_staff_user_only_the_workspaces_they_administer(two_tenants):
    a, b, _staff, client = two_tenants
    assert set(admin.site._registry) == set(REGISTERED), "a model was registered: add it to REGISTERED"
    walk = Walk(client, foreign_markers(a, b))
    for model, model_admin in admin.site._registry.items():
        path = REGISTERED[model]
        info = (model._meta.app_label, model._meta.model_name)
        changelist = reverse("admin:{}_{}_changelist".format(*info))
        status, page = walk.get(changelist)
        walk.clean(page, changelist)
        if path is None:
            # Plans, groups and workers belong to no workspace: superusers only.
            walk.expect(status == 403, f"{changelist} answered {status}, not 403")
            continue
        walk.expect(status == 200, f"{changelist} answered {status}")
        for link in filter_links(page):
            walk.clean(walk.get(changelist + link)[1], changelist + link)
        for marker in walk.markers[1:4]:
            rows = result_rows(walk.get(changelist, {"q": marker})[1])
            # Row links carry the search itself along (`_changelist_filters=q%3D...`): not a leak.
            walk.clean(re.sub(f"q%3d{marker}", "", rows, flags=re.I), f"{changelist}?q={marker}")
        status, page = walk.get(changelist + "add/")
        walk.expect(status in (200, 403), f"{changelist}add/ answered {status}")
        walk.clean(page, f"{changelist}add/")
        for source in [model_admin, *(cls(model, admin.site) for cls in model_admin.inlines)]:
            label = {"app_label": source.model._meta.app_label, "model_name": source.model._meta.model_name}
            for field in source.autocomplete_fields:
                for term in ("", FOREIGN, "example"):
                    status, found = walk.get("/admin/autocomplete/", {**label, "field_name": field, "term": term})
                    walk.expect(status in (200, 403), f"autocomplete {label} {field}: {status}")
                    walk.clean(found, f"autocomplete {label} {field} {term!r}")
        for own in rows_of(model, path, b.workspace, a.workspace):
            for view in ("change", "history", "delete"):
                url = reverse(f"admin:{info[0]}_{info[1]}_{view}", args=[own.pk])
                status, page = walk.get(url)
                walk.expect(status == 200 or (status == 403 and view == "delete"), f"{url} answered {status}")
                walk.clean(page, url)
        for foreign in rows_of(model, path, a.workspace, b.workspace):
            for view in ("change", "history", "delete"):
                url = reverse(f"admin:{info[0]}_{info[1]}_{view}", args=[foreign.pk])
                status, page = walk.get(url)
                # As for an id that exists nowhere: "doesn't exist" (or 403 before any lookup).
                nowhere = walk.get(reverse(f"admin:{info[0]}_{info[1]}_{view}", args=[_nowhere(foreign.pk)]))
                walk.expect(status == nowhere[0] and status in (302, 403, 404), f"{url} answered {status}")
                walk.expect(status != 302 or page == "/admin/", f"{url} sent to {page}")
                client.get("/admin/")  # consume the "doesn't exist" messages (they name the ids asked for)
    assert not walk.problems, f"{len(walk.problems)} problems, first ones:\n" + "\n".join(walk.problems[:40])
    assert walk.visited > 150, f"the walk visited only {walk.visited} pages"


def test_no_admin_form_saves_anything_into_another_workspace(two_tenants):
    a, b, staff, client = two_tenants
    tokens_url = "/admin/hq/personalaccesstoken/add/"
    before = PersonalAccessToken.objects.count()
    refused = [
        # A's user in A: the minted token would act as them in A.
        {"user": a.boss.pk, "workspace": a.workspace.pk, "name": "stolen"},
        # A's user in B, where they are no member.
        {"user": a.boss.pk, "workspace": b.workspace.pk, "name": "stolen"},
        # A user of both, in A.
        {"user": User.objects.get(email="shared.person@example.com").pk, "workspace": a.workspace.pk, "name": "x"},
    ]
    for data in refused:
        errors = field_errors(client.post(tokens_url, data))
        assert {"user", "workspace"} & set(errors), (data, errors)
    assert PersonalAccessToken.objects.count() == before, "a token was minted outside the staff user's workspaces"
    # The same form works inside the scope (so the refusals above are about the scope).
    resp = client.post(tokens_url, {"user": b.member.pk, "workspace": b.workspace.pk, "name": "fine"})
    assert resp.status_code == 302, resp.content.decode()[:2000]
    assert PersonalAccessToken.objects.filter(user=b.member, workspace=b.workspace, name="fine").exists()

    # Making oneself an admin of A, through either memberships page.
    resp = client.post("/admin/hq/membership/add/", {"user": staff.pk, "workspace": a.workspace.pk, "role": "admin"})
    assert "workspace" in field_errors(resp)
    assert not Membership.objects.filter(user=staff, workspace=a.workspace).exists()
    # Editing A's objects directly.
    note = Note.objects.get(workspace=a.workspace)
    assert client.post(f"/admin/hq/note/{note.pk}/change/", {"title": "changed"}).status_code in (302, 404)
    assert client.post(f"/admin/hq/note/{note.pk}/delete/", {"post": "yes"}).status_code in (302, 404)
    assert Note.objects.get(pk=note.pk).title == f"{FOREIGN} note"
    # A room of B given A's agent or A's user.
    room = Room.objects.get(workspace=b.workspace)
    agent = Agent.objects.get(workspace=a.workspace)
    url = f"/admin/hq/room/{room.pk}/change/"
    resp = client.post(url, room_form(room, name="renamed", agent=agent.pk, members=[a.member.pk]))
    assert {"agent", "members"} <= set(field_errors(resp)), field_errors(resp)
    room.refresh_from_db()
    assert room.name == f"{OWN} room" and room.agent_id is None
    assert not room.members.filter(pk=a.member.pk).exists()
    own_agent = Agent.objects.get(workspace=b.workspace)
    assert client.post(url, room_form(room, name="renamed", agent=own_agent.pk)).status_code == 302
    assert Room.objects.get(pk=room.pk).agent_id == own_agent.pk, "the same form works inside the workspace"
    # Users are read-only to staff who are not superusers (a user may be in other workspaces too).
    resp = client.post(f"/admin/hq/user/{b.member.pk}/change/", {"email": "taken@example.com", "is_superuser": "on"})
    assert resp.status_code in (302, 403)
    assert User.objects.get(pk=b.member.pk).email == f"{OWN}.member@example.com"


def test_a_superuser_still_sees_and_mints_everywhere(two_tenants):
    a, b, _staff, _client = two_tenants
    root = User.objects.create_superuser("root@example.com", "pw")
    client = Client()
    client.force_login(root)
    notes = client.get("/admin/hq/note/").content.decode()
    assert f"{FOREIGN} note" in notes and f"{OWN} note" in notes
    assert client.get("/admin/hq/plan/").status_code == 200
    resp = client.post(
        "/admin/hq/personalaccesstoken/add/", {"user": a.boss.pk, "workspace": a.workspace.pk, "name": "root's"}
    )
    assert resp.status_code == 302
    # Nothing crosses workspaces, for superusers either: a token only for a member of its workspace.
    resp = client.post(
        "/admin/hq/personalaccesstoken/add/", {"user": a.boss.pk, "workspace": b.workspace.pk, "name": "cross"}
    )
    assert field_errors(resp) == {"user": f"{a.boss.email} is not a member of this workspace."}
    assert not PersonalAccessToken.objects.filter(name="cross").exists()
    room = Room.objects.get(workspace=b.workspace)
    agent = Agent.objects.get(workspace=a.workspace)
    resp = client.post(f"/admin/hq/room/{room.pk}/change/", room_form(room, agent=agent.pk, members=[a.member.pk]))
    assert field_errors(resp) == {
        "agent": f"“{agent}” belongs to another workspace.",
        "members": f"{a.member.email} is not a member of this workspace.",
    }
    assert Room.objects.get(pk=room.pk).agent_id is None
    # Moving a room to another workspace re-checks what it already holds: its members stay behind.
    resp = client.post(f"/admin/hq/room/{room.pk}/change/", room_form(room, workspace=a.workspace.pk))
    assert "members" in field_errors(resp), field_errors(resp)
    assert Room.objects.get(pk=room.pk).workspace_id == b.workspace.pk


@pytest.mark.parametrize("role", [None, "member"])
def test_staff_who_administer_no_workspace_see_nothing_and_the_dashboard_says_why(two_tenants, role):
    a, _b, _staff, _client = two_tenants
    user = User.objects.create_user("idle.staff@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    if role:
        hq_services.membership_set(user=user, workspace=a.workspace, role=role)
    client = Client()
    client.force_login(user)
    for page in ("/admin/ops/dashboard/", "/admin/ops/workers/"):
        resp = client.get(page)
        assert resp.status_code == 200, page
        text = resp.content.decode()
        assert "you administer no workspace" in text and FOREIGN not in text, page
    index = client.get("/admin/")
    assert index.status_code == 200 and FOREIGN not in index.content.decode()
    for model in REGISTERED:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert client.get(url).status_code == 403, url
    note = Note.objects.get(workspace=a.workspace)
    assert client.get(f"/admin/hq/note/{note.pk}/change/").status_code in (302, 403, 404)
