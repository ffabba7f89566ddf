"""The scheduled-task actions: send_message, trigger_ai, run_query."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from hq import messaging
from hq.models import Room, RoomMessage, StoredQuery
from hq.selectors import agent_find
from schedules.actions import ActionResult, schedule_action
from schedules.models import Schedule, ScheduleFire


class _RoomArgs(serializers.Serializer[Any]):
    room_id = serializers.UUIDField()

    def validate_room_id(self, value: Any) -> Any:
        ws, owner = self.context["workspace"], self.context["owner"]
        if not ws.rooms.filter(pk=value, members__pk=owner.pk).exists():
            raise serializers.ValidationError("No such room in this workspace, or the owner is not a member of it.")
        return value


class _Content(serializers.Serializer[Any]):
    msgtype = serializers.ChoiceField(choices=RoomMessage.MsgType.values)
    body = serializers.CharField(max_length=20000)


class SendMessageArgs(_RoomArgs):
    content = _Content()


class TriggerAIArgs(_RoomArgs):
    prompt = serializers.CharField(max_length=20000)
    agent_id = serializers.UUIDField(required=False, allow_null=True)

    def validate_agent_id(self, value: Any) -> Any:
        if value:
            agent = agent_find(workspace_id=self.context["workspace"].pk, agent_id=value)
            if agent is None or not agent.enabled:
                raise serializers.ValidationError("No such enabled agent in this workspace.")
        return value


class RunQueryArgs(_RoomArgs):
    query_id = serializers.UUIDField()

    def validate_query_id(self, value: Any) -> Any:
        if not StoredQuery.objects.filter(workspace=self.context["workspace"], pk=value).exists():
            raise serializers.ValidationError("No such stored query in this workspace.")
        return value


def _room(schedule: Schedule, args: dict[str, Any]) -> Room:
    return messaging.room_for_member(
        workspace_id=schedule.workspace_id, user_id=schedule.owner_id, room_id=args["room_id"]
    )


@schedule_action("send_message", args_schema=SendMessageArgs)
def send_message(schedule: Schedule, fire: ScheduleFire, args: dict[str, Any]) -> ActionResult:
    """Post a message in a room as the schedule's bot."""
    msg = messaging.message_post(
        room=_room(schedule, args),
        body=args["content"]["body"],
        msgtype=args["content"]["msgtype"],
        kind=RoomMessage.Kind.BOT,
        author=schedule.owner,
        schedule_id=schedule.id,
    )
    return ActionResult(detail=f"message {msg.id}")


@schedule_action("trigger_ai", args_schema=TriggerAIArgs)
def trigger_ai(schedule: Schedule, fire: ScheduleFire, args: dict[str, Any]) -> ActionResult:
    """Engage the room's agent (or agent_id) with a prompt plus the room's recent messages."""
    msg = messaging.room_engage_ai(
        room=_room(schedule, args), prompt=args["prompt"], agent_id=args.get("agent_id"), schedule_id=schedule.id
    )
    return ActionResult(detail=f"agent reply {msg.id}")


@schedule_action("run_query", args_schema=RunQueryArgs)
def run_query(schedule: Schedule, fire: ScheduleFire, args: dict[str, Any]) -> ActionResult:
    """Run a stored notes query and post the results as a readable list."""
    room = _room(schedule, args)
    query = StoredQuery.objects.get(workspace_id=schedule.workspace_id, pk=args["query_id"])
    notes = messaging.notes_matching(workspace_id=schedule.workspace_id, filters=query.filters)
    msg = messaging.message_post(
        room=room,
        body=messaging.format_query_results(query, notes),
        msgtype=RoomMessage.MsgType.MARKDOWN,
        kind=RoomMessage.Kind.BOT,
        author=schedule.owner,
        schedule_id=schedule.id,
    )
    return ActionResult(detail=f"{len(notes)} note(s), message {msg.id}")
