"""Fair share: one workspace's flood cannot hold every slot, and schedule fires keep slots of their own.

Runs a real `runworker` (jobs and scheduler) with 10 slots: a workspace may hold 5
(`HQ_WORKSPACE_SHARE` 0.5) and 4 are kept for engine jobs (`HQ_ENGINE_RESERVED_SLOTS`).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from hq import clock, messaging
from queueapp.models import Job, Worker
from schedules.models import Schedule, ScheduleFire
from tests import factories
from tests.conftest import shift_clock_before_minute, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def post(api, caller, body):
    resp = api.post("/v1/queue/jobs", body, format="json", **caller.headers)
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def test_a_flood_from_one_workspace_leaves_slots_for_others_and_for_fires(api, procs):
    flooder, other = factories.caller(), factories.caller()
    room = messaging.room_create(workspace=other.workspace, creator=other.user, name="general")
    offset = shift_clock_before_minute(procs, 25)
    try:
        procs.env.update({"HQ_WORKSPACE_SHARE": "0.5", "HQ_ENGINE_RESERVED_SLOTS": "4"})
        procs.worker("--concurrency", "10")
        wait_for(Worker.objects.exists, timeout=30, what="the worker")
        for _ in range(200):
            post(api, flooder, {"function": "hq.sleep", "args": {"seconds": 40}})
        flood = Job.objects.filter(workspace=flooder.workspace)
        wait_for(lambda: flood.filter(state="running").count() == 5, timeout=20, what="the flood's share running")

        # Another workspace's jobs start at once, beside the flood.
        ours = [post(api, other, {"function": "hq.echo", "args": {"n": n}}) for n in range(3)]
        wait_for(lambda: Job.objects.filter(pk__in=ours, state="succeeded").count() == 3, timeout=10, what="echoes")
        for job in Job.objects.filter(pk__in=ours):
            assert job.first_started_at - job.created_at < timedelta(seconds=1)

        # A schedule due at the next minute fires on its slot and its job starts within a second.
        body = factories.every_minute_task(room.id)
        created = api.post("/v1/scheduled-tasks", body, format="json", **other.headers)
        assert created.status_code == 201, created.content
        slot = Schedule.objects.get(pk=created.json()["id"]).next_fire_at
        assert (slot - clock.now()).total_seconds() > 0
        wait_for(lambda: ScheduleFire.objects.filter(status="succeeded").exists(), timeout=40, what="the fire")
        fire = ScheduleFire.objects.get()
        assert fire.slot == slot
        assert Job.objects.get(pk=fire.job_id).first_started_at - slot < timedelta(seconds=1)

        # All the while the flood held its share and no more; the rest of it still waits.
        time.sleep(0.5)
        assert flood.filter(state="running").count() == 5
        assert flood.filter(state="queued").count() == 195
    finally:
        clock.set_offset(0)
        assert offset


def test_members_sleep_briefly_and_only_on_known_queues(api, member, admin):
    resp = api.post(
        "/v1/queue/jobs", {"function": "hq.sleep", "args": {"seconds": 61}}, format="json", **member.headers
    )
    assert resp.status_code == 400
    assert list(resp.json()["error"]["fields"]) == ["args.seconds"]
    for seconds in ("10", True, -1, None):
        body = {"function": "hq.sleep", "args": {"seconds": seconds}}
        assert api.post("/v1/queue/jobs", body, format="json", **admin.headers).status_code == 400
    body = {"function": "hq.sleep", "args": {"seconds": 3600}}
    assert api.post("/v1/queue/jobs", body, format="json", **admin.headers).status_code == 202
    assert (
        api.post("/v1/queue/jobs", {**body, "args": {"seconds": 3601}}, format="json", **admin.headers).status_code
        == 400
    )

    resp = api.post(
        "/v1/queue/jobs", {"function": "hq.echo", "queue": "nobody-works-here"}, format="json", **member.headers
    )
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "unknown_queue" and list(err["fields"]) == ["queue"]
    assert Job.objects.count() == 1  # only the admin's hour-long sleep


def test_an_approver_cannot_stretch_a_members_sleep_past_their_own_limit(api, member, admin):
    body = {"function": "hq.sleep", "args": {"seconds": 5}, "require_approval": True}
    resp = api.post("/v1/queue/jobs", body, format="json", **member.headers)
    assert resp.status_code == 202, resp.content
    request_id = api.get("/v1/queue/hitl", **admin.headers).json()["requests"][0]["id"]
    approver = factories.caller(ws=member.workspace)  # a member holding hitl:approve (every scope)
    url = f"/v1/queue/hitl/{request_id}/approve"
    resp = api.post(url, {"args": {"seconds": 3600}}, format="json", **approver.headers)
    assert resp.status_code == 400 and list(resp.json()["error"]["fields"]) == ["args.seconds"]
    assert Job.objects.get().state == "awaiting_approval"
    resp = api.post(url, {"args": {"seconds": 3600}}, format="json", **admin.headers)
    assert resp.status_code == 200, resp.content
    assert Job.objects.get().args == {"seconds": 3600}
