"""/v1/api/schedules: agent schedules, exactly as the agent schedules guide describes."""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hq.api.fields import UTCDateTimeField
from hq.api.pagination import paginate
from hq.api.permissions import principal_of
from hq.api.schema import PAGE_PARAMETERS
from hq.errors import ValidationFailed
from hq.models import User
from hq.permissions import require_admin
from schedules import services
from schedules.models import Schedule, ScheduleState
from schedules.selectors import schedule_get, schedules_on

ACTION = "run_agent"


@extend_schema_field(
    {
        "type": "object",
        "required": ["kind", "expr"],
        "properties": {
            "kind": {"type": "string", "enum": ["cron", "rrule"]},
            "expr": {"type": "string", "maxLength": 256, "example": "0 8 * * MON"},
            "tz": {"type": "string", "maxLength": 64, "example": "Europe/Stockholm"},
            "dtstart": {"type": "string", "description": "rrule only: naive ISO wall time in tz."},
        },
    }
)
class TriggerField(serializers.JSONField):
    """Validated by the schedule services (400 `invalid_trigger`); typed here for the schema."""


@extend_schema_field(
    {
        "type": "object",
        "required": ["kind"],
        "properties": {
            "kind": {
                "type": "string",
                "description": "web_inbox, slack_dm, slack_channel, teams_dm or teams_channel.",
                "example": "web_inbox",
            }
        },
        "additionalProperties": True,
    }
)
class DestinationField(serializers.JSONField):
    """Validated by delivery.destinations; typed here for the schema."""


ARG_KEYS = ("prompt", "agent_id", "deliver_to", "reset_each_fire", "delivery_locale")


class ScheduleIn(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(
        max_length=5000, required=False, allow_null=True, allow_blank=True, default=None
    )
    trigger = TriggerField(help_text='{"kind": "cron"|"rrule", "expr": ..., "tz": "Europe/Stockholm"}')
    prompt = serializers.CharField(max_length=20000)
    agent_id = serializers.UUIDField(required=False, allow_null=True, default=None)
    deliver_to = DestinationField(help_text='{"kind": "web_inbox"} or a Slack/Teams destination')
    reset_each_fire = serializers.BooleanField(required=False, default=False)
    delivery_locale = serializers.CharField(required=False, allow_null=True, default=None, max_length=35)


class SchedulePatch(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=5000, required=False, allow_null=True, allow_blank=True)
    trigger = TriggerField(required=False)
    args = serializers.JSONField(required=False, help_text="Merged key by key into the current args.")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {k: ["Not a field you can change; use name, description, trigger or args."] for k in unknown}
                )
        return super().to_internal_value(data)

    def validate_args(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        unknown = sorted(set(value) - set(ARG_KEYS))
        if unknown:
            raise serializers.ValidationError(f"Unknown keys: {', '.join(unknown)}. Allowed: {', '.join(ARG_KEYS)}.")
        return value


class ScheduleOut(serializers.Serializer[Schedule]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField(allow_null=True)
    owner_user_id = serializers.UUIDField(source="owner_id")
    trigger = serializers.JSONField()
    prompt = serializers.CharField(source="args.prompt")
    agent_id = serializers.CharField(source="args.agent_id", allow_null=True)
    deliver_to = serializers.JSONField(source="args.deliver_to")
    reset_each_fire = serializers.BooleanField(source="args.reset_each_fire")
    delivery_locale = serializers.CharField(source="args.delivery_locale", allow_null=True)
    args = serializers.JSONField()
    state = serializers.CharField()
    state_reason = serializers.CharField()
    next_fire_at = UTCDateTimeField(allow_null=True)
    last_fire_at = UTCDateTimeField(allow_null=True)
    last_fire_status = serializers.CharField(allow_null=True)
    fire_count = serializers.IntegerField()
    failure_count = serializers.IntegerField()
    consecutive_failure_count = serializers.IntegerField()
    last_fire_lag_ms = serializers.IntegerField(allow_null=True)
    last_run_conversation_id = serializers.UUIDField(allow_null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()

    def to_representation(self, instance: Schedule) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["last_fire_status"] = data["last_fire_status"] or None
        return data


def _bool(raw: str | None, name: str) -> bool:
    if not raw:  # absent or empty
        return False
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValidationFailed(f"{name} must be true or false.", fields={name: ["Must be true or false."]})


EXAMPLE = {
    "name": "Monday revenue digest",
    "description": "Weekly QoQ revenue summary",
    "trigger": {"kind": "cron", "expr": "0 8 * * MON", "tz": "Europe/Stockholm"},
    "prompt": "Summarise revenue changes quarter over quarter and flag anomalies.",
    "deliver_to": {"kind": "web_inbox"},
    "reset_each_fire": False,
}


class SchedulesView(APIView):
    """List your schedules (or, for admins, the workspace's), or create one."""

    required_scopes = {"GET": "schedules:read", "POST": "schedules:write"}

    @extend_schema(
        operation_id="api_schedules_list",
        parameters=[
            OpenApiParameter("scope", str, enum=["mine", "workspace"]),
            OpenApiParameter("state", str, enum=[s.value for s in ScheduleState]),
            OpenApiParameter("include_archived", bool),
            OpenApiParameter("owner_user_id", str),
            *PAGE_PARAMETERS,
        ],
        responses={
            200: inline_serializer(
                "ScheduleList",
                {
                    "schedules": ScheduleOut(many=True),
                    "total": serializers.IntegerField(),
                    "limit": serializers.IntegerField(),
                    "offset": serializers.IntegerField(),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        q = request.query_params
        principal = principal_of(request)
        scope = q.get("scope") or "mine"
        if scope not in ("mine", "workspace"):
            raise ValidationFailed("scope must be mine or workspace.", fields={"scope": ["Use mine or workspace."]})
        owner = q.get("owner_user_id")
        if scope == "workspace" or (owner and owner != str(principal.user.pk)):
            require_admin(principal)
        rows = schedules_on(principal, "agent")
        if scope == "mine" and not owner:
            rows = rows.filter(owner_id=principal.user.pk)
        if owner:
            try:
                rows = rows.filter(owner_id=serializers.UUIDField().to_internal_value(owner))
            except serializers.ValidationError as exc:
                raise ValidationFailed(
                    "owner_user_id is not a UUID.", fields={"owner_user_id": ["Not a UUID."]}
                ) from exc
        state = q.get("state")
        if state:
            if state not in ScheduleState.values:
                raise ValidationFailed(
                    f"Unknown state '{state}'.", fields={"state": [f"One of {ScheduleState.values}."]}
                )
            rows = rows.filter(state=state)
        elif not _bool(q.get("include_archived"), "include_archived"):
            rows = rows.exclude(state=ScheduleState.ARCHIVED)
        return paginate(self, request, rows.order_by("-created_at", "id"), ScheduleOut, "schedules")

    @extend_schema(
        request=ScheduleIn,
        examples=[OpenApiExample("digest", value=EXAMPLE, request_only=True)],
        responses={
            201: inline_serializer("ScheduleCreated", {"schedule": ScheduleOut()}),
            402: OpenApiResponse(description="The workspace's plan limit is reached."),
        },
    )
    def post(self, request: Request) -> Response:
        caller = principal_of(request)
        data = ScheduleIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        s = services.schedule_create(
            workspace=caller.workspace,
            owner=caller.user,
            name=v["name"],
            description=v["description"],
            trigger=v["trigger"],
            action=ACTION,
            args={k: v[k] for k in ARG_KEYS},
        )
        return Response({"schedule": ScheduleOut(s).data}, status=status.HTTP_201_CREATED)


OK = inline_serializer("Ok", {"ok": serializers.BooleanField()})
OK_NEXT = inline_serializer(
    "OkNext",
    {
        "ok": serializers.BooleanField(),
        "next_fire_at": serializers.DateTimeField(
            allow_null=True, required=False, help_text="resume; PATCH when the trigger changed."
        ),
        "fire_id": serializers.UUIDField(required=False, help_text="fire_now: the manual fire."),
        "job_id": serializers.UUIDField(required=False, help_text="fire_now: the job that runs it."),
    },
)


class ScheduleView(APIView):
    """Get, update or cancel (archive) one schedule."""

    required_scopes = {"GET": "schedules:read", "PATCH": "schedules:write", "DELETE": "schedules:write"}

    @extend_schema(responses={200: ScheduleOut})
    def get(self, request: Request, schedule_id: str) -> Response:
        s = schedule_get(principal=principal_of(request), surface="agent", schedule_id=schedule_id)
        return Response(ScheduleOut(s).data)

    @extend_schema(request=SchedulePatch, responses={200: OK_NEXT})
    def patch(self, request: Request, schedule_id: str) -> Response:
        s = schedule_get(principal=principal_of(request), surface="agent", schedule_id=schedule_id, to_change=True)
        data = SchedulePatch(data=request.data)
        data.is_valid(raise_exception=True)
        s, trigger_changed = services.schedule_update(schedule=s, merge=("args",), **data.validated_data)
        body: dict[str, Any] = {"ok": True}
        if trigger_changed:
            body["next_fire_at"] = UTCDateTimeField().to_representation(s.next_fire_at)
        return Response(body)

    @extend_schema(responses={200: OK})
    def delete(self, request: Request, schedule_id: str) -> Response:
        caller = principal_of(request)
        s = schedule_get(principal=caller, surface="agent", schedule_id=schedule_id, to_change=True)
        services.schedule_archive(schedule=s, actor=caller.user)
        return Response({"ok": True})


class ScheduleActionView(APIView):
    """pause, resume, fire_now and erase."""

    required_scopes = "schedules:write"
    verb = "pause"

    @extend_schema(request=None, responses={200: OK_NEXT})
    def post(self, request: Request, schedule_id: str) -> Response:
        caller = principal_of(request)
        s = schedule_get(principal=caller, surface="agent", schedule_id=schedule_id, to_change=True)
        if self.verb == "pause":
            services.schedule_pause(schedule=s, actor=caller.user)
            return Response({"ok": True})
        if self.verb == "resume":
            s = services.schedule_resume(schedule=s)
            return Response({"ok": True, "next_fire_at": UTCDateTimeField().to_representation(s.next_fire_at)})
        fire = services.schedule_fire_now(schedule=s, actor=caller.user)
        return Response({"ok": True, "fire_id": str(fire.pk), "job_id": str(fire.job_id)})

    @extend_schema(responses={200: OK})
    def delete(self, request: Request, schedule_id: str) -> Response:
        s = schedule_get(principal=principal_of(request), surface="agent", schedule_id=schedule_id, to_change=True)
        services.schedule_erase(schedule=s)
        return Response({"ok": True})


class OwnersView(APIView):
    """Users who have agent schedules, with a count each (admin)."""

    required_scopes = "schedules:read"

    @extend_schema(
        responses={
            200: inline_serializer(
                "Owners",
                {
                    "owners": inline_serializer(
                        "Owner",
                        {
                            "user_id": serializers.UUIDField(),
                            "display_name": serializers.CharField(),
                            "schedule_count": serializers.IntegerField(),
                        },
                        many=True,
                    )
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        caller = principal_of(request)
        require_admin(caller)
        counts = (
            schedules_on(caller, "agent")
            .exclude(state=ScheduleState.ARCHIVED)
            .values("owner_id")
            .annotate(n=Count("id"))
            .order_by()
        )
        by_id = {row["owner_id"]: row["n"] for row in counts}
        users = User.objects.filter(pk__in=by_id).order_by("display_name", "email")
        return Response(
            {"owners": [{"user_id": str(u.pk), "display_name": u.label, "schedule_count": by_id[u.pk]} for u in users]}
        )
