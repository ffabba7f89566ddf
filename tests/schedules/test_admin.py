"""The schedules admin: owner filter, add, edit and lifecycle actions through the services, scoping."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from hq import messaging
from hq import services as hq_services
from hq.display import CLIPPED
from hq.models import Plan, User
from schedules import services, triggers
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


def act(client: Client, action: str, *schedules: Schedule, confirm: bool = True):
    """Run a changelist action on `schedules`: its first POST, or (confirm) the confirming one."""
    data = {"action": action, "_selected_action": [str(s.pk) for s in schedules]}
    return client.post(CHANGELIST, {**data, "post": "yes"} if confirm else data)


def texts(resp) -> list[str]:
    """The messages a response queued; they are consumed, so the next response starts empty."""
    out = [m.message for m in get_messages(resp.wsgi_request)]
    resp.client.cookies.pop("messages", None)
    return out


def form_errors(resp) -> dict[str, list[str]]:
    form = resp.context["adminform"].form
    return {name or "__all__": [str(e) for e in errors] for name, errors in form.errors.items()}


def test_actions_ask_first_then_change_state_through_the_services(superuser_client, member):
    s = task(member)
    for action, state in [("pause", "paused"), ("fire_now", "paused"), ("archive", "archived")]:
        page = act(superuser_client, action, s, confirm=False)
        assert page.status_code == 200
        assert page.templates[0].name == "admin/schedules/schedule/action_confirmation.html"
        assert Schedule.objects.get(pk=s.pk).state != state or action == "fire_now", "nothing before confirming"
        done = act(superuser_client, action, s)
        assert done.status_code == 302
        assert Schedule.objects.get(pk=s.pk).state == state
        verb = {"pause": "Paused", "fire_now": "Fired", "archive": "Archived"}[action]
        assert texts(done) == [f"{verb} 1 schedule(s)."]
    s.refresh_from_db()
    assert "Paused by root@example.com" not in s.state_reason and s.state_reason.startswith("Archived by")
    assert ScheduleFire.objects.get(schedule=s, manual=True).status == "skipped", "archive dropped the pending fire"
    refused = act(superuser_client, "resume", s)
    assert texts(refused) == ["t: Cannot resume a schedule that is archived."]
    assert Schedule.objects.get(pk=s.pk).state == "archived"


def test_confirmation_page_says_what_happens_to_which_schedules(superuser_client, member):
    a, b = task(member, "Standup reminder"), task(member, "Weekly digest")
    services.schedule_pause(schedule=b, actor=member.user)
    page = act(superuser_client, "archive", a, b, confirm=False)
    html = page.content.decode()
    assert "Archive 2 schedules" in html and "its pending fires are dropped" in html
    assert "Standup reminder" in html and "Weekly digest" in html and f"Paused by {member.user.label}" in html
    assert html.count('name="_selected_action"') == 2 and 'name="post" value="yes"' in html
    assert 'id="confirm-action" value="Yes, archive"' in html and "No, take me back" in html
    assert set(Schedule.objects.values_list("state", flat=True)) == {"active", "paused"}, "nothing changed yet"


def test_resume_and_erase_each_report_what_they_refused(superuser_client, member):
    paused, active, archived = task(member, "paused one"), task(member, "active one"), task(member, "old one")
    services.schedule_pause(schedule=paused, actor=member.user)
    services.schedule_archive(schedule=archived, actor=member.user)
    resumed = act(superuser_client, "resume", paused, active)
    assert texts(resumed) == ["Resumed 2 schedule(s)."]  # resuming an active one changes nothing
    assert Schedule.objects.get(pk=paused.pk).next_fire_at is not None
    erased = act(superuser_client, "erase", active, archived)
    assert texts(erased) == ["active one: Cannot erase a schedule that is active.", "Erased 1 schedule(s)."]
    assert set(Schedule.objects.values_list("name", flat=True)) == {"paused one", "active one"}


def test_no_delete_action_button_or_page(superuser_client, member):
    s = task(member)
    changelist = superuser_client.get(CHANGELIST)
    choices = [value for value, _ in changelist.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in choices
    assert {"pause", "resume", "fire_now", "archive", "erase"} <= set(choices)
    page = superuser_client.get(f"{CHANGELIST}{s.pk}/change/").content.decode()
    assert "deletelink" not in page and f"{s.pk}/delete/" not in page
    assert superuser_client.get(f"{CHANGELIST}{s.pk}/delete/").status_code == 403
    assert superuser_client.post(f"{CHANGELIST}{s.pk}/delete/", {"post": "yes"}).status_code == 403
    superuser_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [str(s.pk)], "post": "yes"})
    assert Schedule.objects.filter(pk=s.pk).exists()


def add_form(member, room, **changes) -> dict[str, object]:
    data = {
        "workspace": str(member.workspace.pk),
        "owner": str(member.user.pk),
        "name": "Standup reminder",
        "description": "",
        "action": "send_message",
        "trigger": '{"kind": "cron", "expr": "@daily", "tz": "Europe/Amsterdam"}',
        "action_args": json.dumps({"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "Standup!"}}),
    }
    return {**data, **changes}


def test_add_creates_through_the_service(superuser_client, member):
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="general")
    resp = superuser_client.post(f"{CHANGELIST}add/", add_form(member, room))
    assert resp.status_code == 302, form_errors(resp)
    s = Schedule.objects.get()
    assert (s.name, s.owner, s.action, s.state, s.description) == (
        "Standup reminder",
        member.user,
        "send_message",
        "active",
        "",
    )
    assert s.trigger == {"kind": "cron", "expr": "0 0 * * *", "tz": "Europe/Amsterdam"}, "normalised by the service"
    assert s.next_fire_at == triggers.next_fire_after(s.trigger, s.created_at)
    assert s.args["content"]["body"] == "Standup!"


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"trigger": '{"kind": "cron", "expr": "61 * * * *", "tz": "UTC"}'}, "trigger", "expr: cron minute value 61"),
        ({"trigger": '{"kind": "cron", "expr": "0 9 * * *", "tz": "Mars/Base"}'}, "trigger", "tz: unknown time zone"),
        ({"action_args": '{"room_id": "not-a-uuid"}'}, "action_args", "room_id: "),
        ({"action": "run_agent", "action_args": "{}"}, "action_args", "prompt: This field is required."),
    ],
)
def test_add_shows_the_services_refusal_on_the_form(superuser_client, member, changes, field, says):
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="general")
    resp = superuser_client.post(f"{CHANGELIST}add/", add_form(member, room, **changes))
    assert resp.status_code == 200
    errors = form_errors(resp)
    assert any(e.startswith(says) for e in errors.get(field, [])), errors
    assert not Schedule.objects.exists()


def test_add_past_the_plan_limit_is_a_form_error(superuser_client, member):
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="general")
    member.workspace.plan = Plan.objects.create(name="tiny", max_schedules=1)
    member.workspace.save()
    task(member)
    resp = superuser_client.post(f"{CHANGELIST}add/", add_form(member, room))
    assert form_errors(resp) == {"__all__": ["The plan allows 1 schedules and the workspace has 1."]}
    assert Schedule.objects.count() == 1


def test_add_for_a_deactivated_owner_is_refused(superuser_client, member):
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="general")
    User.objects.filter(pk=member.user.pk).update(is_active=False)
    resp = superuser_client.post(f"{CHANGELIST}add/", add_form(member, room))
    assert form_errors(resp) == {"__all__": ["Cannot create this schedule: Owner was deactivated."]}
    assert not Schedule.objects.exists()


def change_form(s: Schedule, **changes) -> dict[str, object]:
    data = {
        "name": s.name,
        "description": s.description or "",
        "trigger": json.dumps(s.trigger),
        "action_args": json.dumps(s.args),
    }
    return {**data, **changes}


def test_edit_updates_through_the_service(superuser_client, member):
    s = task(member)
    url = f"{CHANGELIST}{s.pk}/change/"
    page = superuser_client.get(url).content.decode()
    assert 'name="trigger"' in page and 'name="action_args"' in page and 'name="action"' not in page
    trigger = {"kind": "cron", "expr": "15 7 * * *", "tz": "America/New_York"}
    resp = superuser_client.post(url, change_form(s, name="Morning", trigger=json.dumps(trigger)))
    assert resp.status_code == 302, form_errors(resp)
    s.refresh_from_db()
    assert s.name == "Morning" and s.trigger == trigger
    assert s.next_fire_at == triggers.next_fire_after(trigger, s.updated_at), "the service recomputed it"


def test_edit_with_a_bad_cron_shows_the_error_and_changes_nothing(superuser_client, member):
    s = task(member)
    before = (s.name, s.trigger, s.next_fire_at)
    bad = '{"kind": "cron", "expr": "0 25 * * *", "tz": "Europe/Stockholm"}'
    resp = superuser_client.post(f"{CHANGELIST}{s.pk}/change/", change_form(s, name="renamed", trigger=bad))
    assert resp.status_code == 200
    assert form_errors(resp) == {"trigger": ["expr: cron hour value 25 is out of range 0-23"]}
    s.refresh_from_db()
    assert (s.name, s.trigger, s.next_fire_at) == before


def test_an_archived_schedule_cannot_be_edited(superuser_client, member):
    s = task(member)
    services.schedule_archive(schedule=s, actor=member.user)
    page = superuser_client.get(f"{CHANGELIST}{s.pk}/change/").content.decode()
    assert 'name="trigger"' not in page and 'name="name"' not in page and "hq-json" in page
    superuser_client.post(f"{CHANGELIST}{s.pk}/change/", change_form(s, name="renamed"))
    assert Schedule.objects.get(pk=s.pk).name == "t"


def test_change_page_shows_next_fires_in_utc_and_the_schedules_zone_to_the_second(superuser_client, member):
    s = task(member)
    page = superuser_client.get(f"{CHANGELIST}{s.pk}/change/").content.decode()
    upcoming = re.findall(
        r"<li>(\d{4}-\d\d-\d\d) (0[01]):30:00 UTC \((?:\d{4}-\d\d-\d\d )?(0[23]:[03]0):00 Europe/Stockholm\)</li>", page
    )
    assert len(upcoming) == 5, upcoming  # five upcoming fires: the UTC instant and the local wall time
    assert sum(local == "02:30" for _, _, local in upcoming) >= 4  # DST may move one to 03:00
    assert "at 02:30 every day, Europe/Stockholm" in page, "the cron in words, with its zone"
    assert re.search(r"next fire at.*?\d\d:\d\d:\d\d UTC \(02:30:00 Europe/Stockholm\)", page, re.S | re.I)


def test_the_list_shows_relative_next_fires_with_the_exact_instant_and_the_cron_in_words(superuser_client, member):
    s = task(member)
    page = superuser_client.get(CHANGELIST).content.decode()
    assert "<code>30 2 * * *</code>" in page and "at 02:30 every day, Europe/Stockholm" in page
    title = re.search(r'<time class="hq-when" datetime="([^"]+)" title="([^"]+)">in \d+ (?:h|min|s)</time>', page)
    assert title is not None, page
    assert title.group(1) == s.next_fire_at.isoformat()
    assert title.group(2).endswith(":30:00 UTC (02:30:00 Europe/Stockholm)")


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


def test_args_deeper_than_the_guard_render_clipped_and_survive_an_edit(superuser_client, member):
    """Stored args too deep to load on a page (hq.display): the input shows them clipped, with a note;
    saving another change leaves the stored value alone, and new args replace it."""
    from django.db import connection

    from tests.security.test_admin_json import DEPTH, deep_json

    s = task(member)
    stored = "SELECT length(args::text) FROM schedules_schedule WHERE id = %s"
    with connection.cursor() as cursor:
        cursor.execute("UPDATE schedules_schedule SET args = args || %s::jsonb WHERE id = %s", [deep_json(DEPTH), s.pk])
        cursor.execute(stored, [s.pk])
        (length,) = cursor.fetchone()
    url = f"{CHANGELIST}{s.pk}/change/"
    page = superuser_client.get(url)
    assert page.status_code == 200
    args = page.context["adminform"].form["action_args"]
    assert CLIPPED in args.value() and f"Nested {DEPTH + 1} levels deep" in args.help_text
    posted = {**change_form(s, name="renamed"), "action_args": args.value()}
    assert superuser_client.post(url, posted).status_code == 302
    with connection.cursor() as cursor:
        cursor.execute(stored, [s.pk])
        assert cursor.fetchone() == (length,)
    assert Schedule.objects.filter(pk=s.pk).values_list("name", flat=True).get() == "renamed"
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="fresh")
    fresh = {"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "replaced"}}
    assert superuser_client.post(url, {**posted, "action_args": json.dumps(fresh)}).status_code == 302
    assert Schedule.objects.get(pk=s.pk).args == fresh, "replaced whole, without loading the deep value"


def test_a_row_with_args_too_deep_to_load_can_still_be_paused_archived_and_erased(superuser_client, member):
    """The lifecycle services that do not read args leave them unloaded, so an old row whose args
    are nested deeper than Python can load is not stuck: archive, then erase, still work."""
    from django.db import connection

    from tests.security.test_admin_json import DEPTH, deep_json

    s = task(member)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE schedules_schedule SET args = args || %s::jsonb WHERE id = %s", [deep_json(DEPTH), s.pk])
    for action, verb in [("pause", "Paused"), ("archive", "Archived"), ("erase", "Erased")]:
        assert texts(act(superuser_client, action, s)) == [f"{verb} 1 schedule(s)."]
    assert not Schedule.objects.filter(pk=s.pk).exists()


def test_staff_add_only_in_their_workspaces_for_members_of_it(member):
    """The add form's choices and checks are the admin scope's: another workspace, or an owner who
    is not a member of the schedule's workspace, is a form error and nothing is created."""
    from django.contrib.auth.models import Permission

    ops = factories.caller(ws=member.workspace, admin=True).user
    ops.is_staff = True
    ops.save()
    ops.user_permissions.set(Permission.objects.filter(codename__in=["view_schedule", "add_schedule"]))
    client = Client()
    client.force_login(ops)
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="general")
    elsewhere = factories.caller()
    refused = [
        ({"workspace": str(elsewhere.workspace.pk), "owner": str(elsewhere.user.pk)}, {"workspace", "owner"}),
        ({"owner": str(elsewhere.user.pk)}, {"owner"}),
    ]
    for changes, fields in refused:
        resp = client.post(f"{CHANGELIST}add/", add_form(member, room, **changes))
        assert resp.status_code == 200 and fields <= set(form_errors(resp)), form_errors(resp)
    assert not Schedule.objects.exists()
    assert client.post(f"{CHANGELIST}add/", add_form(member, room)).status_code == 302
    assert Schedule.objects.get().owner == member.user


def test_erase_takes_the_delete_permission_not_change_alone(member):
    """Erasing deletes a schedule and its history for good: staff given view and change, but not
    delete, can archive but are not offered Erase, and a forged Erase POST deletes nothing."""
    from django.contrib.auth.models import Permission

    s = task(member, "keep-me")
    staff = member.user
    staff.is_staff = True
    staff.save()
    hq_services.membership_set(user=staff, workspace=member.workspace, role="admin")
    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_schedule", "change_schedule"]))
    client = Client()
    client.force_login(staff)
    page = client.get(CHANGELIST).content.decode()
    assert 'value="archive"' in page and 'value="erase"' not in page
    act(client, "archive", s)
    act(client, "erase", s)
    assert Schedule.objects.filter(pk=s.pk, state="archived").exists(), "archived, not erased"
    staff.user_permissions.add(Permission.objects.get(codename="delete_schedule"))
    staff = User.objects.get(pk=staff.pk)  # drop the cached permissions
    client.force_login(staff)
    assert 'value="erase"' in client.get(CHANGELIST).content.decode()
    act(client, "erase", s)
    assert not Schedule.objects.filter(pk=s.pk).exists()


def test_saving_an_archived_schedule_unchanged_is_not_an_error(superuser_client, member):
    s = task(member)
    services.schedule_archive(schedule=s, actor=member.user)
    url = f"{CHANGELIST}{s.pk}/change/"
    unchanged = {k: v for k, v in change_form(s).items() if k != "action_args"}  # the page has no args input
    resp = superuser_client.post(url, unchanged)
    assert resp.status_code == 302, form_errors(resp) if resp.status_code == 200 else resp.status_code
    assert Schedule.objects.get(pk=s.pk).state == "archived"


def _messages(resp) -> list[str]:
    return [m.message for m in resp.context["messages"]]


def test_a_schedules_page_has_the_buttons_its_state_allows_each_through_the_service(superuser_client, member):
    s = task(member)
    page = f"{CHANGELIST}{s.pk}/change/"

    def buttons() -> list[str]:
        return re.findall(r'id="schedule-([a-z-]+)"', superuser_client.get(page).content.decode())

    assert buttons() == ["pause", "fire-now", "archive"]
    confirm = superuser_client.get(f"{CHANGELIST}{s.pk}/pause/").content.decode()
    assert 'id="confirm-pause"' in confirm and "stops firing until it is resumed" in confirm
    assert Schedule.objects.get(pk=s.pk).state == "active", "nothing before the confirmation"
    done = superuser_client.post(f"{CHANGELIST}{s.pk}/pause/", follow=True)
    assert _messages(done) == ["Paused: t."] and Schedule.objects.get(pk=s.pk).state == "paused"
    assert buttons() == ["resume", "fire-now", "archive"]
    done = superuser_client.post(f"{CHANGELIST}{s.pk}/fire_now/", follow=True)
    assert _messages(done) == ["Fired: t."]
    assert ScheduleFire.objects.filter(schedule=s, manual=True).count() == 1
    done = superuser_client.post(f"{CHANGELIST}{s.pk}/resume/", follow=True)
    assert _messages(done) == ["Resumed: t."] and Schedule.objects.get(pk=s.pk).state == "active"
    refused = superuser_client.post(f"{CHANGELIST}{s.pk}/erase/", follow=True)
    assert _messages(refused) == ["t: Cannot erase a schedule that is active."]
    done = superuser_client.post(f"{CHANGELIST}{s.pk}/archive/", follow=True)
    assert _messages(done) == ["Archived: t."] and Schedule.objects.get(pk=s.pk).state == "archived"
    assert buttons() == ["erase"]
    done = superuser_client.post(f"{CHANGELIST}{s.pk}/erase/", follow=True)
    assert _messages(done) == ["Erased: t."] and done.redirect_chain[-1][0] == CHANGELIST
    assert not Schedule.objects.filter(pk=s.pk).exists()


def test_schedule_buttons_need_the_change_permission_and_stay_in_scope(member):
    from django.contrib.auth.models import Permission

    s = task(member)
    viewer = User.objects.create_user("viewer@example.com", "pw", is_staff=True)
    hq_services.membership_set(user=viewer, workspace=member.workspace, role="admin")
    viewer.user_permissions.set(Permission.objects.filter(codename="view_schedule"))
    client = Client()
    client.force_login(viewer)
    assert "schedule-pause" not in client.get(f"{CHANGELIST}{s.pk}/change/").content.decode()
    assert client.post(f"{CHANGELIST}{s.pk}/pause/").status_code == 403
    other = task(factories.caller())
    viewer.user_permissions.set(Permission.objects.filter(codename__in=["view_schedule", "change_schedule"]))
    assert client.post(f"{CHANGELIST}{other.pk}/pause/").status_code == 404
    assert Schedule.objects.get(pk=s.pk).state == Schedule.objects.get(pk=other.pk).state == "active"
