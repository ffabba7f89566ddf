"""/v1/scheduled-tasks: crontab + timezone tasks that post messages, engage an AI, run a notes query."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hq.api.fields import JSONObjectField, UTCDateTimeField
from hq.api.pagination import paginate
from hq.api.permissions import principal_of
from hq.errors import ValidationFailed
from schedules import actions, services
from schedules.models import Schedule, ScheduleState
from schedules.selectors import schedule_get, schedules_visible


class TaskIn(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    schedule = serializers.CharField(max_length=256, help_text='5-field crontab, e.g. "0 9 * * MON".')
    timezone = serializers.CharField(max_length=64, help_text='IANA zone, e.g. "Europe/Amsterdam".')
    action = serializers.CharField(max_length=64, help_text="send_message | trigger_ai | run_query | a plugin action")
    args = JSONObjectField(default=dict, help_text="The action's arguments (see the README for each action).")
    enabled = serializers.BooleanField(default=True)


class TaskPatch(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    schedule = serializers.CharField(max_length=256, required=False)
    timezone = serializers.CharField(max_length=64, required=False)
    args = JSONObjectField(required=False)
    enabled = serializers.BooleanField(required=False)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and "action" in data:
            raise serializers.ValidationError({"action": ["The action of a task cannot change; create a new task."]})
        return super().to_internal_value(data)


class TaskOut(serializers.Serializer[Schedule]):
    results_key = "tasks"  # the list's key in paginated responses (and in the schema)

    id = serializers.UUIDField()
    owner_id = serializers.UUIDField()
    name = serializers.CharField()
    schedule = serializers.CharField(source="trigger.expr")
    timezone = serializers.CharField(source="trigger.tz")
    action = serializers.CharField()
    args = serializers.JSONField()
    enabled = serializers.SerializerMethodField()
    state = serializers.CharField()
    state_reason = serializers.CharField()
    next_run_at = UTCDateTimeField(source="next_fire_at", allow_null=True)
    last_run_at = UTCDateTimeField(source="last_fire_at", allow_null=True)
    last_run_status = serializers.CharField(source="last_fire_status", allow_null=True)
    run_count = serializers.IntegerField(source="fire_count")
    failure_count = serializers.IntegerField()
    consecutive_failure_count = serializers.IntegerField()
    last_run_lag_ms = serializers.IntegerField(source="last_fire_lag_ms", allow_null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()

    def get_enabled(self, s: Schedule) -> bool:
        return s.state == ScheduleState.ACTIVE

    def to_representation(self, instance: Schedule) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["last_run_status"] = data["last_run_status"] or None
        return data


EXAMPLE = {
    "name": "Weekly status update",
    "schedule": "0 9 * * MON",
    "timezone": "Europe/Amsterdam",
    "action": "send_message",
    "args": {"room_id": "<ROOM_ID>", "content": {"msgtype": "swp.text", "body": "Monday status check"}},
    "enabled": True,
}


# The engine names a task's trigger parts; this API's body calls them `schedule` and `timezone`.
_TRIGGER_FIELDS = {
    "trigger": "schedule",
    "trigger.expr": "schedule",
    "trigger.kind": "schedule",
    "trigger.tz": "timezone",
}


@contextmanager
def _task_fields() -> Iterator[None]:
    """Report trigger errors under the body's own field names."""
    try:
        yield
    except ValidationFailed as exc:
        renamed: dict[str, Any] = {}
        for name, problems in exc.fields.items():
            renamed.setdefault(_TRIGGER_FIELDS.get(name, name), []).extend(problems)
        exc.fields = renamed
        raise


def _check_action(name: str) -> None:
    action = actions.get(name)
    if action is None or action.surface != "tasks":
        known = ", ".join(actions.names("tasks"))
        hint = " Agent runs live on /v1/api/schedules." if action is not None else ""
        raise ValidationFailed(
            f"Unknown task action '{name}'. Known: {known}.{hint}",
            fields={"action": [f"Must be one of: {known}."]},
            code="unknown_action",
        )


class TasksView(APIView):
    """List or create scheduled tasks."""

    required_scopes = {"GET": "scheduled_tasks:read", "POST": "scheduled_tasks:write"}

    @extend_schema(responses={200: TaskOut(many=True)})
    def get(self, request: Request) -> Response:
        return paginate(
            self,
            request,
            schedules_visible(principal_of(request), "tasks").order_by("-created_at", "id"),
            TaskOut,
            "tasks",
        )

    @extend_schema(
        request=TaskIn,
        responses={201: TaskOut, 402: OpenApiResponse(description="The workspace's plan limit is reached.")},
        examples=[OpenApiExample("send_message", value=EXAMPLE, request_only=True)],
    )
    def post(self, request: Request) -> Response:
        caller = principal_of(request)
        data = TaskIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        _check_action(v["action"])
        with _task_fields():
            task = services.schedule_create(
                workspace=caller.workspace,
                owner=caller.user,
                name=v["name"],
                trigger={"kind": "cron", "expr": v["schedule"], "tz": v["timezone"]},
                action=v["action"],
                args=v["args"],
                active=v["enabled"],
            )
        return Response(TaskOut(task).data, status=status.HTTP_201_CREATED)


class TaskView(APIView):
    """Read, change or delete one scheduled task."""

    required_scopes = {
        "GET": "scheduled_tasks:read",
        "PATCH": "scheduled_tasks:write",
        "DELETE": "scheduled_tasks:write",
    }

    @extend_schema(responses={200: TaskOut})
    def get(self, request: Request, task_id: str) -> Response:
        task = schedule_get(principal=principal_of(request), surface="tasks", schedule_id=task_id)
        return Response(TaskOut(task).data)

    @extend_schema(request=TaskPatch, responses={200: TaskOut})
    def patch(self, request: Request, task_id: str) -> Response:
        caller = principal_of(request)
        task = schedule_get(principal=caller, surface="tasks", schedule_id=task_id)
        data = TaskPatch(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        changes: dict[str, Any] = {}
        if "name" in v:
            changes["name"] = v["name"]
        trigger = {key: v[name] for name, key in (("schedule", "expr"), ("timezone", "tz")) if name in v}
        if trigger:
            changes["trigger"], changes["merge"] = {"kind": "cron", **trigger}, ("trigger",)
        if "args" in v:
            changes["args"] = v["args"]  # a task's args are replaced whole
        with _task_fields():
            task = services.task_update(schedule=task, actor=caller.user, enabled=v.get("enabled"), **changes)
        return Response(TaskOut(task).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, task_id: str) -> Response:
        task = schedule_get(principal=principal_of(request), surface="tasks", schedule_id=task_id)
        services.schedule_delete(schedule=task)
        return Response(status=status.HTTP_204_NO_CONTENT)
