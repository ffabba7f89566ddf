"""A member who leaves or is deactivated: their schedules are quarantined and fire nothing, their
approval requests expire, and a fire re-checks the owner before it runs anything.

End to end against real PostgreSQL and Redis with a real worker; Slack is the loopback server.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from delivery.models import Delivery
from hq import clock, messaging
from hq import services as hq_services
from hq.models import ConversationMessage, Membership, RoomMessage, User
from queueapp.models import HITLRequest, Job, JobEvent
from schedules import services, triggers
from schedules.models import Schedule, ScheduleFire
from tests import factories
from tests.conftest import wait_for
from tests.loopback import Reply
from tests.plugin.hq_plugin import runs

pytestmark = pytest.mark.django_db(transaction=True)

LEFT = "Owner is no longer a member of the workspace."
DEACTIVATED = "Owner was deactivated."


def agent_schedule(api, caller) -> str:
    """An every-minute agent schedule delivering to a Slack channel, created through the API."""
    body = {
        "name": "Channel digest",
        "trigger": {"kind": "cron", "expr": "* * * * *", "tz": "UTC"},
        "prompt": "Summarise the channel.",
        "deliver_to": {"kind": "slack_channel", "channel_id": "C0CHAN"},
    }
    resp = api.post("/v1/api/schedules", body, format="json", **caller.headers)
    assert resp.status_code == 201, resp.content
    return resp.json()["schedule"]["id"]


def scheduled_task(api, caller) -> str:
    """An every-minute send_message task in a room of the caller, created through the API."""
    room = messaging.room_create(workspace=caller.workspace, creator=caller.user, name="general")
    body = factories.every_minute_task(room.id, name="Standup reminder", text="Standup!")
    resp = api.post("/v1/scheduled-tasks", body, format="json", **caller.headers)
    assert resp.status_code == 201, resp.content
    return resp.json()["id"]


def make_due(*ids: str) -> None:
    """Put every still-active schedule among `ids` on its latest slot at or before now: due at once."""
    now = clock.now()
    for s in Schedule.objects.filter(pk__in=ids, state="active"):
        slot, _ = triggers.latest_fire_at_or_before(s.trigger, before=now, not_before=now - timedelta(hours=1))
        Schedule.objects.filter(pk=s.pk).update(next_fire_at=slot)


def gated(api, caller) -> HITLRequest:
    resp = api.post("/v1/queue/jobs", {"function": "tests.gated", "args": {"n": 1}}, format="json", **caller.headers)
    assert resp.status_code == 202, resp.content
    return HITLRequest.objects.get(job_id=resp.json()["id"])


def nothing_was_delivered(slack) -> None:
    assert slack.requests == [], "no Slack call"
    assert not RoomMessage.objects.exists(), "no room message"
    assert not Delivery.objects.exists() and not ConversationMessage.objects.exists(), "no agent run"


def test_removed_member__schedules_quarantined_shown_and_never_fired(api, member, admin, burst, slack):
    task, agent = scheduled_task(api, member), agent_schedule(api, member)
    hitl = gated(api, member)
    membership = Membership.objects.get(user=member.user, workspace=member.workspace)

    assert hq_services.membership_end(membership=membership, actor=admin.user) is True

    assert api.get("/v1/api/schedules", **member.headers).status_code == 401
    got_task = api.get(f"/v1/scheduled-tasks/{task}", **admin.headers).json()
    assert (got_task["state"], got_task["state_reason"], got_task["enabled"]) == ("quarantined", LEFT, False)
    assert got_task["next_run_at"] is None
    got_agent = api.get(f"/v1/api/schedules/{agent}", **admin.headers).json()
    assert (got_agent["state"], got_agent["state_reason"], got_agent["next_fire_at"]) == ("quarantined", LEFT, None)
    listed = api.get("/v1/api/schedules?scope=workspace&state=quarantined", **admin.headers).json()
    assert [s["id"] for s in listed["schedules"]] == [agent]

    # Their pending approval request expired the way expiry does: the job ends rejected, never runs.
    hitl.refresh_from_db()
    assert (hitl.state, hitl.decided_via) == ("expired", "system")
    assert hitl.comment == "The requester is no longer a member of the workspace."
    job = Job.objects.get(pk=hitl.job_id)
    assert job.state == "rejected" and "no longer a member" in job.error
    assert JobEvent.objects.filter(job=job, kind="approval_expired").exists()

    # A due slot fires nothing: the scheduler has nothing active to claim, the worker runs nothing.
    make_due(task, agent)
    assert services.scheduler_pass() == 0
    burst()
    assert not ScheduleFire.objects.exists() and runs(job.pk) == 0
    nothing_was_delivered(slack)

    # An admin cannot fire it, resume it or edit it while its owner is away.
    fire_now = api.post(f"/v1/api/schedules/{agent}/fire_now", **admin.headers)
    assert fire_now.status_code == 409 and fire_now.json()["error"]["detail"]["state"] == "quarantined"
    resume = api.post(f"/v1/api/schedules/{agent}/resume", **admin.headers)
    assert resume.status_code == 409, resume.content
    error = resume.json()["error"]
    assert error["code"] == "owner_departed" and error["detail"] == {"state": "quarantined", "reason": LEFT}
    patch = api.patch(f"/v1/api/schedules/{agent}", {"name": "Renamed"}, format="json", **admin.headers)
    assert patch.status_code == 409 and patch.json()["error"]["code"] == "owner_departed"
    enable = api.patch(f"/v1/scheduled-tasks/{task}", {"enabled": True}, format="json", **admin.headers)
    assert enable.status_code == 409 and enable.json()["error"]["code"] == "owner_departed"
    assert Schedule.objects.get(pk=agent).name == "Channel digest"
    assert set(Schedule.objects.values_list("state", flat=True)) == {"quarantined"}

    # Re-adding the member resumes nothing by itself; their old token stays revoked.
    hq_services.membership_set(user=member.user, workspace=member.workspace)
    assert api.get("/v1/api/schedules", **member.headers).status_code == 401
    assert set(Schedule.objects.values_list("state", flat=True)) == {"quarantined"}
    resumed = api.post(f"/v1/api/schedules/{agent}/resume", **admin.headers)
    assert resumed.status_code == 200 and resumed.json()["next_fire_at"] is not None
    enabled = api.patch(f"/v1/scheduled-tasks/{task}", {"enabled": True}, format="json", **admin.headers)
    assert enabled.status_code == 200 and enabled.json()["state"] == "active"
    assert Schedule.objects.get(pk=agent).state_reason == ""


def test_membership_removed_behind_the_services_back_is_caught_at_fire_time(api, member, admin, burst, slack):
    task, agent = scheduled_task(api, member), agent_schedule(api, member)
    Membership.objects.filter(user=member.user, workspace=member.workspace).delete()  # a raw delete: no hooks

    fire_now = api.post(f"/v1/api/schedules/{agent}/fire_now", **admin.headers)
    assert fire_now.status_code == 409 and fire_now.json()["error"]["code"] == "owner_departed"
    assert fire_now.json()["error"]["detail"] == {"state": "active", "reason": LEFT}
    assert not ScheduleFire.objects.exists()

    make_due(task, agent)
    assert services.scheduler_pass() == 2  # the scheduler does not look; the fire does
    burst()
    for sid in (task, agent):
        s = Schedule.objects.get(pk=sid)
        assert (s.state, s.state_reason, s.next_fire_at) == ("quarantined", LEFT, None)
        fire = ScheduleFire.objects.get(schedule_id=sid)
        assert (fire.status, fire.error) == ("skipped", f"Quarantined: {LEFT}")
        assert Job.objects.get(pk=fire.job_id).state == "succeeded", "the fire job ran and chose to skip"
    nothing_was_delivered(slack)
    got = api.get(f"/v1/scheduled-tasks/{task}", **admin.headers).json()
    assert (got["state"], got["state_reason"], got["last_run_status"]) == ("quarantined", LEFT, None)


def test_deactivated_user_behind_the_services_back_is_caught_at_fire_time(api, member, admin, burst, slack):
    task, agent = scheduled_task(api, member), agent_schedule(api, member)
    hitl = gated(api, member)
    approver = factories.caller(ws=member.workspace, scopes=["queue:read", "hitl:approve"])
    User.objects.filter(pk=member.user.pk).update(is_active=False)  # a raw update: no hooks

    assert api.get("/v1/api/schedules", **member.headers).status_code == 401
    fire_now = api.post(f"/v1/api/schedules/{agent}/fire_now", **admin.headers)
    assert fire_now.status_code == 409 and fire_now.json()["error"]["detail"]["reason"] == DEACTIVATED

    # Approving the request of a deactivated requester expires it instead: the job never runs.
    approve = api.post(f"/v1/queue/hitl/{hitl.pk}/approve", **approver.headers)
    assert approve.status_code == 409 and approve.json()["error"]["detail"]["state"] == "expired"
    got = api.get(f"/v1/queue/hitl/{hitl.pk}", **approver.headers).json()
    assert (got["state"], got["job_state"], got["comment"]) == ("expired", "rejected", "The requester was deactivated.")

    make_due(task, agent)
    assert services.scheduler_pass() == 2
    burst()
    assert set(Schedule.objects.values_list("state", "state_reason")) == {("quarantined", DEACTIVATED)}
    assert set(ScheduleFire.objects.values_list("status", flat=True)) == {"skipped"}
    assert runs(hitl.job_id) == 0
    nothing_was_delivered(slack)


def test_deactivation_quarantines_every_workspace_and_expires_every_request(api, member, burst, slack):
    elsewhere = factories.caller(email=member.user.email)  # the same person in a second workspace
    here_task, here_agent = scheduled_task(api, member), agent_schedule(api, member)
    there_agent = agent_schedule(api, elsewhere)
    requests = [gated(api, member), gated(api, elsewhere)]
    bystander = factories.caller(ws=member.workspace)
    theirs = agent_schedule(api, bystander)

    hq_services.user_deactivate(user=member.user)

    assert not User.objects.get(pk=member.user.pk).is_active
    for caller in (member, elsewhere):
        assert api.get("/v1/api/schedules", **caller.headers).status_code == 401
    for sid in (here_task, here_agent, there_agent):
        s = Schedule.objects.get(pk=sid)
        assert (s.state, s.state_reason) == ("quarantined", DEACTIVATED)
    assert Schedule.objects.get(pk=theirs).state == "active", "other members' schedules are untouched"
    for hitl in requests:
        hitl.refresh_from_db()
        assert hitl.state == "expired" and Job.objects.get(pk=hitl.job_id).state == "rejected"

    make_due(here_task, here_agent, there_agent)
    Schedule.objects.filter(pk=theirs).update(state="paused", next_fire_at=None)  # keep Slack quiet
    assert services.scheduler_pass() == 0
    burst()
    nothing_was_delivered(slack)

    # Reactivating resumes nothing by itself; an admin or the owner resumes, and then it fires.
    User.objects.filter(pk=member.user.pk).update(is_active=True)
    assert Schedule.objects.get(pk=here_agent).state == "quarantined"
    assert services.schedule_resume(schedule=Schedule.objects.get(pk=here_agent)).state == "active"


def test_leaving_one_workspace_leaves_the_other_alone(api, member):
    elsewhere = factories.caller(email=member.user.email)
    here, there = agent_schedule(api, member), agent_schedule(api, elsewhere)
    here_request, there_request = gated(api, member), gated(api, elsewhere)

    membership = Membership.objects.get(user=member.user, workspace=member.workspace)
    assert hq_services.membership_end(membership=membership) is True

    assert Schedule.objects.get(pk=here).state == "quarantined"
    assert Schedule.objects.get(pk=there).state == "active"
    assert HITLRequest.objects.get(pk=here_request.pk).state == "expired"
    assert HITLRequest.objects.get(pk=there_request.pk).state == "pending"
    assert api.get("/v1/api/schedules", **member.headers).status_code == 401
    assert api.get("/v1/api/schedules", **elsewhere.headers).status_code == 200
    assert hq_services.membership_end(membership=membership) is False  # already ended: a no-op


def test_a_pending_fire_is_dropped_when_its_owner_leaves(api, member, burst, slack):
    agent = agent_schedule(api, member)
    make_due(agent)
    assert services.scheduler_pass() == 1
    fire = ScheduleFire.objects.get()

    hq_services.membership_end(membership=Membership.objects.get(user=member.user, workspace=member.workspace))

    fire.refresh_from_db()
    assert (fire.status, fire.error) == ("skipped", f"Quarantined: {LEFT}")
    assert Job.objects.get(pk=fire.job_id).state == "cancelled"
    burst()
    nothing_was_delivered(slack)


def test_owner_leaving_between_the_agent_run_and_a_delivery_retry_gets_nothing_delivered(api, member, burst, slack):
    slack.script(Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "1"}))
    agent = agent_schedule(api, member)
    assert api.post(f"/v1/api/schedules/{agent}/fire_now", **member.headers).status_code == 200
    burst()
    fire = ScheduleFire.objects.get()
    delivery = Delivery.objects.get(source_id=fire.pk)
    assert fire.status == "running" and delivery.status == "pending" and delivery.attempts == 1

    hq_services.membership_end(membership=Membership.objects.get(user=member.user, workspace=member.workspace))
    wait_for(lambda: clock.now() >= delivery.next_attempt_at, timeout=5, what="Retry-After")
    burst()

    assert slack.paths() == ["/api/chat.postMessage"], "only the first, rate-limited attempt reached Slack"
    delivery.refresh_from_db()
    fire.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 1, f"Not delivered: {LEFT}")
    assert fire.status == "skipped" and fire.error == f"Quarantined: {LEFT} Nothing was delivered."
    s = Schedule.objects.get(pk=agent)
    assert (s.state, s.state_reason, s.last_fire_status) == ("quarantined", LEFT, "skipped")
