"""The /v1/scheduled-tasks surface, with rooms and notes set up through the API."""

from __future__ import annotations

import pytest

from hq.models import Plan
from schedules.models import Schedule, ScheduleFire
from tests import factories

pytestmark = pytest.mark.django_db


def make_room(api, caller, name="general", members=()):
    resp = api.post("/v1/rooms", {"name": name, "members": [str(m) for m in members]}, format="json", **caller.headers)
    assert resp.status_code == 201, resp.content
    return resp.json()["id"]


def task_body(room_id, **over):
    body = {
        "name": "Weekly status update",
        "schedule": "0 9 * * MON",
        "timezone": "Europe/Amsterdam",
        "action": "send_message",
        "args": {"room_id": room_id, "content": {"msgtype": "swp.text", "body": "Monday status check"}},
        "enabled": True,
    }
    body.update(over)
    return body


def create(api, caller, body):
    return api.post("/v1/scheduled-tasks", body, format="json", **caller.headers)


def test_create__201_with_next_run(api, member):
    room = make_room(api, member)
    resp = create(api, member, task_body(room))
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["state"] == "active" and body["enabled"] is True
    assert body["schedule"] == "0 9 * * MON" and body["timezone"] == "Europe/Amsterdam"
    assert body["next_run_at"].endswith("Z") and body["last_run_status"] is None and body["run_count"] == 0
    s = Schedule.objects.get(pk=body["id"])
    assert s.trigger == {"kind": "cron", "expr": "0 9 * * MON", "tz": "Europe/Amsterdam"}
    # 09:00 Amsterdam on a Monday is 07:00 or 08:00 UTC depending on DST.
    assert s.next_fire_at.weekday() == 0 and s.next_fire_at.hour in (7, 8)
    got = api.get(f"/v1/scheduled-tasks/{body['id']}", **member.headers)
    assert got.status_code == 200 and got.json()["id"] == body["id"]


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"schedule": "0 9 * * MON *"}, "schedule"),
        ({"schedule": "@reboot"}, "schedule"),
        ({"schedule": "0 0 31 4 *"}, "schedule"),
        ({"schedule": "x" * 10000}, "schedule"),
        ({"timezone": "UTC+3"}, "timezone"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"action": "run_agent"}, "action"),
        ({"action": "nope"}, "action"),
        (
            {
                "args": {
                    "room_id": "00000000-0000-4000-8000-000000000000",
                    "content": {"msgtype": "swp.text", "body": "x"},
                }
            },
            "args.room_id",
        ),
        ({"args": {"content": {"msgtype": "swp.text", "body": "x"}}}, "args.room_id"),
        ({"args": []}, "args"),
        ({"name": ""}, "name"),
    ],
)
def test_create__bad_input_is_400_and_writes_nothing(api, member, over, field):
    room = make_room(api, member)
    resp = create(api, member, task_body(room, **over))
    assert resp.status_code == 400, resp.content
    assert field in resp.json()["error"]["fields"], resp.json()
    assert not Schedule.objects.exists()


def test_create__room_of_another_member_or_workspace_refused(api, member):
    other = factories.caller(ws=member.workspace)
    their_room = make_room(api, other)
    assert create(api, member, task_body(their_room)).status_code == 400
    stranger_room = make_room(api, factories.caller())
    assert create(api, member, task_body(stranger_room)).status_code == 400


def test_plan_limit_is_402(api, member):
    plan = Plan.objects.create(name="tiny", max_schedules=2)
    member.workspace.plan = plan
    member.workspace.save()
    room = make_room(api, member)
    assert create(api, member, task_body(room)).status_code == 201
    assert create(api, member, task_body(room)).status_code == 201
    resp = create(api, member, task_body(room))
    assert resp.status_code == 402
    assert resp.json()["error"]["detail"] == {"limit": 2, "current": 2}
    assert Schedule.objects.count() == 2


def test_patch__changes_only_what_is_sent_and_enabled_pauses(api, member):
    room = make_room(api, member)
    task = create(api, member, task_body(room)).json()
    resp = api.patch(f"/v1/scheduled-tasks/{task['id']}", {"schedule": "30 7 * * *"}, format="json", **member.headers)
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["schedule"] == "30 7 * * *" and body["timezone"] == "Europe/Amsterdam" and body["name"] == task["name"]
    assert body["next_run_at"] != task["next_run_at"]
    off = api.patch(f"/v1/scheduled-tasks/{task['id']}", {"enabled": False}, format="json", **member.headers).json()
    assert off["enabled"] is False and off["state"] == "paused" and off["next_run_at"] is None
    on = api.patch(f"/v1/scheduled-tasks/{task['id']}", {"enabled": True}, format="json", **member.headers).json()
    assert on["state"] == "active" and on["next_run_at"] is not None
    bad = api.patch(f"/v1/scheduled-tasks/{task['id']}", {"timezone": "+03:00"}, format="json", **member.headers)
    assert bad.status_code == 400
    assert list(bad.json()["error"]["fields"]) == ["timezone"] and "fixed UTC offset" in bad.json()["error"]["message"]
    assert Schedule.objects.get(pk=task["id"]).trigger["tz"] == "Europe/Amsterdam"
    assert (
        api.patch(
            f"/v1/scheduled-tasks/{task['id']}", {"action": "trigger_ai"}, format="json", **member.headers
        ).status_code
        == 400
    )


def test_delete__204_and_gone(api, member):
    room = make_room(api, member)
    task = create(api, member, task_body(room)).json()
    assert api.delete(f"/v1/scheduled-tasks/{task['id']}", **member.headers).status_code == 204
    assert not Schedule.objects.exists()
    assert api.get(f"/v1/scheduled-tasks/{task['id']}", **member.headers).status_code == 404


def test_visibility_and_scopes(api, member, admin):
    room = make_room(api, member)
    task = create(api, member, task_body(room)).json()
    other = factories.caller(ws=member.workspace)
    assert api.get(f"/v1/scheduled-tasks/{task['id']}", **other.headers).status_code == 404
    assert api.get(f"/v1/scheduled-tasks/{task['id']}", **admin.headers).status_code == 200
    assert api.get("/v1/scheduled-tasks", **other.headers).json()["total"] == 0
    assert api.get(f"/v1/scheduled-tasks/{task['id']}", **factories.caller().headers).status_code == 404
    reader = factories.caller(ws=member.workspace, scopes=["scheduled_tasks:read"])
    resp = create(api, reader, task_body(room))
    assert resp.status_code == 403 and resp.json()["error"]["detail"] == {"scope": "scheduled_tasks:write"}
    listing = api.get("/v1/scheduled-tasks", **member.headers).json()
    assert listing["total"] == 1 and listing["tasks"][0]["id"] == task["id"]


def test_rooms_and_notes_api(api, member):
    room = make_room(api, member)
    posted = api.post(f"/v1/rooms/{room}/messages", {"body": "hi"}, format="json", **member.headers)
    assert posted.status_code == 201
    msgs = api.get(f"/v1/rooms/{room}/messages", **member.headers).json()
    assert msgs["total"] == 1 and msgs["messages"][0]["body"] == "hi"
    assert api.get(f"/v1/rooms/{room}", **factories.caller(ws=member.workspace).headers).status_code == 404
    note = api.post(
        "/v1/notes", {"title": "Release", "body": "v2 shipped", "tags": ["release"]}, format="json", **member.headers
    )
    assert note.status_code == 201
    q = api.post(
        "/v1/notes/queries",
        {"name": "Releases", "filters": {"tags": ["release"], "limit": 5}},
        format="json",
        **member.headers,
    )
    assert q.status_code == 201, q.content
    results = api.get(f"/v1/notes/queries/{q.json()['id']}/results", **member.headers).json()
    assert [n["title"] for n in results["notes"]] == ["Release"]
    bad = api.post("/v1/notes/queries", {"name": "x", "filters": {"sql": "drop"}}, format="json", **member.headers)
    assert bad.status_code == 400
    assert not ScheduleFire.objects.exists()


def test_room_with_an_unknown_member_is_refused_and_not_written(api, member):
    from hq.models import Room

    stranger = factories.caller()
    resp = api.post("/v1/rooms", {"name": "r", "members": [str(stranger.user.pk)]}, format="json", **member.headers)
    assert resp.status_code == 400 and list(resp.json()["error"]["fields"]) == ["members"]
    assert not Room.objects.exists()
