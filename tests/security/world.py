"""One workspace with one object of every kind the API routes address, built through the services."""

from __future__ import annotations

from dataclasses import dataclass

from hq import messaging
from hq.models import Conversation, Room
from queueapp import services as queue_services
from queueapp.models import HITLRequest, Job
from schedules import services as schedule_services
from schedules.models import Schedule
from tests import factories

CRON = {"kind": "cron", "expr": "0 9 * * *", "tz": "Europe/Amsterdam"}


@dataclass
class World:
    """An admin and a member of one workspace, and objects the admin owns (the HITL request is the member's)."""

    admin: factories.Caller
    member: factories.Caller
    room: Room
    job: Job
    hitl: HITLRequest
    schedule: Schedule
    task: Schedule
    query_id: str
    conversation: Conversation

    def path_values(self) -> dict[str, str]:
        """Path parameter name -> the id of a real object the admin may address."""
        return {
            "room_id": str(self.room.id),
            "job_id": str(self.job.id),
            "request_id": str(self.hitl.id),
            "schedule_id": str(self.schedule.id),
            "task_id": str(self.task.id),
            "query_id": self.query_id,
            "conversation_id": str(self.conversation.id),
            "correlation_id": self.job.correlation_id,
            "queue": "default",
        }


def build(admin: factories.Caller | None = None, member: factories.Caller | None = None) -> World:
    admin = admin or factories.caller(admin=True)
    member = member or factories.caller(ws=admin.workspace)
    ws = admin.workspace
    room = messaging.room_create(workspace=ws, creator=admin.user, name="ops", member_ids=[member.user.pk])
    job, _ = queue_services.job_submit(
        workspace=ws,
        owner=admin.user,
        submission=queue_services.Submission(function="hq.echo", args={"n": 1}, correlation_id="order-42"),
    )
    gated, _ = queue_services.job_submit(
        workspace=ws,
        owner=member.user,
        submission=queue_services.Submission(function="tests.gated", args={"to": "ops"}),
    )
    schedule = schedule_services.schedule_create(
        workspace=ws,
        owner=admin.user,
        name="digest",
        trigger=CRON,
        action="run_agent",
        args={
            "prompt": "Summarise.",
            "agent_id": None,
            "deliver_to": {"kind": "web_inbox"},
            "reset_each_fire": False,
            "delivery_locale": None,
        },
    )
    task = schedule_services.schedule_create(
        workspace=ws,
        owner=admin.user,
        name="status",
        trigger=CRON,
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "Status?"}},
    )
    messaging.note_create(workspace=ws, author=admin.user, title="first", body="hello", tags=["a"])
    query = messaging.stored_query_create(workspace=ws, owner=admin.user, name="all", filters={"tags": ["a"]})
    conversation = Conversation.objects.create(workspace=ws, owner=admin.user, title="inbox", schedule_id=schedule.id)
    return World(
        admin=admin,
        member=member,
        room=room,
        job=job,
        hitl=HITLRequest.objects.get(job=gated),
        schedule=schedule,
        task=task,
        query_id=str(query.id),
        conversation=conversation,
    )
