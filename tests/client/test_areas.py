"""Every area of the API through the client, against the live server (and a worker where a job runs)."""

from __future__ import annotations

import pytest
from hq_client import UNSET, Client, Conflict, PermissionDenied

from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def test_rooms_notes_and_stored_queries(hq, caller):
    room = hq.room_create("ops", members=[str(caller.user.pk)])
    assert room["name"] == "ops" and str(caller.user.pk) in room["member_ids"]
    assert hq.room_get(room["id"]) == room and [r["id"] for r in hq.rooms()] == [room["id"]]
    posted = hq.room_message_post(room["id"], "**deploy** done", msgtype="swp.markdown")
    assert posted["msgtype"] == "swp.markdown" and posted["author_id"] == str(caller.user.pk)
    assert [m["body"] for m in hq.room_messages(room["id"])] == ["**deploy** done"]

    note = hq.note_create("Runbook", "Restart the relay", tags=["ops"])
    hq.note_create("Lunch", "Pizza", tags=["food"])
    assert {n["title"] for n in hq.notes()} == {"Runbook", "Lunch"}
    query = hq.stored_query_create("ops notes", {"tags": ["ops"]})
    assert [q["id"] for q in hq.stored_queries()] == [query["id"]]
    results = hq.stored_query_results(query["id"])
    assert results["total"] == 1 and [n["id"] for n in results["notes"]] == [note["id"]]


def test_scheduled_tasks(hq):
    room = hq.room_create("digest")
    task = hq.scheduled_task_create(**factories.every_minute_task(room["id"], name="tick"))
    assert task["enabled"] is True and task["state"] == "active" and task["next_run_at"] is not None
    assert hq.scheduled_task_get(task["id"])["name"] == "tick"
    changed = hq.scheduled_task_update(task["id"], enabled=False, name="tock")
    assert changed["enabled"] is False and changed["name"] == "tock" and changed["schedule"] == "* * * * *"
    assert [t["id"] for t in hq.scheduled_tasks()] == [task["id"]]
    assert hq.scheduled_task_delete(task["id"]) is None
    assert list(hq.scheduled_tasks()) == []


def test_agent_schedules_through_their_whole_lifecycle(hq, caller, worker):
    schedule = hq.schedule_create(
        name="digest",
        trigger={"kind": "cron", "expr": "0 8 * * MON", "tz": "Europe/Stockholm"},
        prompt="Summarise the week.",
        deliver_to={"kind": "web_inbox"},
        description="weekly",
    )
    sid = schedule["id"]
    assert schedule["state"] == "active" and schedule["owner_user_id"] == str(caller.user.pk)
    assert hq.schedule_get(sid)["description"] == "weekly"
    assert [s["id"] for s in hq.schedules(scope="mine")] == [sid]
    assert hq.schedule_owners() == [
        {"user_id": str(caller.user.pk), "display_name": caller.user.display_name, "schedule_count": 1}
    ]

    assert hq.schedule_update(sid, name="weekly digest", description=UNSET)["ok"] is True
    assert hq.schedule_get(sid)["name"] == "weekly digest" and hq.schedule_get(sid)["description"] == "weekly"
    assert hq.schedule_pause(sid)["ok"] is True and hq.schedule_get(sid)["state"] == "paused"
    assert hq.schedule_resume(sid)["next_fire_at"] is not None

    fired = hq.schedule_fire_now(sid)
    assert hq.wait(fired["job_id"], timeout=30)["state"] == "succeeded"
    conversations = list(hq.conversations(schedule_id=sid))
    assert len(conversations) == 1
    detail = hq.conversation_get(conversations[0]["id"], limit=1)
    assert detail["limit"] == 1 and len(detail["messages"]) == 1 and detail["total"] >= 2
    roles = [m["role"] for m in hq.conversation_messages(conversations[0]["id"])]
    assert len(roles) == detail["total"] and "user" in roles and "assistant" in roles

    assert hq.schedule_archive(sid)["ok"] is True
    with pytest.raises(Conflict) as archived:
        hq.schedule_pause(sid)
    assert archived.value.state == "archived"
    assert list(hq.schedules()) == [] and [s["id"] for s in hq.schedules(include_archived=True)] == [sid]
    assert hq.schedule_erase(sid)["ok"] is True
    assert list(hq.schedules(include_archived=True)) == []


def test_hitl_approve_reject_retry_and_cancel(hq, hq_url, caller, worker):
    gated = hq.job_submit("tests.gated", {"amount": 5}, approval_reason="refund")
    assert gated["state"] == "awaiting_approval"
    [request] = hq.hitl_requests(job_id=gated["id"])
    assert request["state"] == "pending" and hq.hitl_get(request["id"])["reason"] == "refund"
    with pytest.raises(PermissionDenied) as own:
        hq.hitl_approve(request["id"])
    assert own.value.code == "self_approval"  # a colleague with hitl:approve decides
    colleague = Client(hq_url, factories.caller(ws=caller.workspace, admin=True).token)
    assert colleague.hitl_approve(request["id"], comment="ok")["state"] == "approved"
    assert hq.wait(gated["id"], timeout=30)["state"] == "succeeded"

    other = hq.job_submit("tests.gated", {"amount": 9})
    [pending] = hq.hitl_requests(job_id=other["id"], state="pending")
    assert colleague.hitl_reject(pending["id"], comment="no")["job_state"] == "rejected"
    with pytest.raises(Conflict) as decided:
        colleague.hitl_approve(pending["id"])
    assert decided.value.status == 409
    assert hq.job_retry(other["id"])["state"] == "awaiting_approval"  # a retry never skips the gate
    assert hq.job_cancel(other["id"])["state"] == "cancelled"
    colleague.close()


def test_the_queue_and_the_caller(hq, caller, worker):
    assert hq.me()["workspace_id"] == str(caller.workspace.pk) and "queue:write" in hq.me()["scopes"]
    assert "tests.count" in {f["name"] for f in hq.functions()}
    assert [w["running"] >= 0 for w in hq.workers()] == [True]

    assert hq.queue_pause("default") == {"queue": "default", "paused": True}
    job = hq.job_submit("tests.count")
    [depth] = [q for q in hq.depth() if q["queue"] == "default"]
    assert depth["paused"] is True and depth["waiting"] == 1
    assert hq.queue_resume("default") == {"queue": "default", "paused": False}
    assert hq.wait(job["id"], timeout=30)["state"] == "succeeded"

    summary = hq.observability_summary()
    assert "default" in {q.get("queue") for q in summary["queues"]} and summary["windows"]
