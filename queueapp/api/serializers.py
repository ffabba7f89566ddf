"""Input and output shapes of the queue API."""

from __future__ import annotations

from rest_framework import serializers

from hq.api.fields import JSONObjectField, UTCDateTimeField
from queueapp.models import QUEUE_NAME, QUEUE_NAME_RULE, HITLRequest, Job, JobEvent


class JobSubmitIn(serializers.Serializer):
    function = serializers.CharField(max_length=200, help_text="A registered function (see /v1/queue/functions).")
    args = JSONObjectField(required=False, default=dict, help_text="Keyword arguments: a JSON object.")
    queue = serializers.RegexField(
        QUEUE_NAME,
        required=False,
        trim_whitespace=False,  # "mail\n" is refused, as in the pause route, not quietly taken as "mail"
        help_text=f"Default: the function's queue. {QUEUE_NAME_RULE}",
        error_messages={"invalid": QUEUE_NAME_RULE},
    )
    correlation_id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    idempotency_key = serializers.CharField(max_length=200, required=False, allow_null=True, default=None)
    defer_until = UTCDateTimeField(required=False, allow_null=True, default=None)
    defer_by_seconds = serializers.FloatField(
        required=False, allow_null=True, default=None, min_value=0, max_value=365 * 86400
    )
    max_tries = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1, max_value=25)
    timeout_seconds = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=7 * 86400
    )
    require_approval = serializers.BooleanField(
        required=False,
        default=False,
        source="requires_approval",
        help_text="Wait in awaiting_approval for a person's decision (a HITL request), as a flagged tool call does.",
    )
    approval_reason = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="Shown to the approver."
    )

    def validate_args(self, value: object) -> object:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


def _ms(a, b) -> int | None:  # noqa: ANN001
    return int((b - a).total_seconds() * 1000) if a and b else None


class JobOut(serializers.ModelSerializer):
    results_key = "jobs"  # the list's key in paginated responses (and in the schema)

    id = serializers.UUIDField()
    owner_id = serializers.UUIDField(allow_null=True)
    workspace_id = serializers.UUIDField()
    timeout_seconds = serializers.IntegerField(source="timeout_s")
    due_at = UTCDateTimeField()
    created_at = UTCDateTimeField()
    dispatched_at = UTCDateTimeField(allow_null=True)
    started_at = UTCDateTimeField(allow_null=True)
    first_started_at = UTCDateTimeField(allow_null=True)
    finished_at = UTCDateTimeField(allow_null=True)
    updated_at = UTCDateTimeField()
    cancel_requested_at = UTCDateTimeField(allow_null=True)
    wait_ms = serializers.SerializerMethodField(help_text="Submit (or due time) to first start.")
    run_ms = serializers.SerializerMethodField(help_text="Latest attempt's start to finish.")

    class Meta:
        model = Job
        fields = [
            "id",
            "workspace_id",
            "owner_id",
            "function",
            "args",
            "queue",
            "state",
            "correlation_id",
            "idempotency_key",
            "attempts",
            "max_tries",
            "timeout_seconds",
            "due_at",
            "result",
            "error",
            "cancel_requested_at",
            "created_at",
            "dispatched_at",
            "started_at",
            "first_started_at",
            "finished_at",
            "updated_at",
            "wait_ms",
            "run_ms",
        ]

    def get_wait_ms(self, job: Job) -> int | None:
        return _ms(max(job.created_at, job.due_at) if job.due_at else job.created_at, job.first_started_at)

    def get_run_ms(self, job: Job) -> int | None:
        return _ms(job.started_at, job.finished_at)


class JobEventOut(serializers.ModelSerializer):
    results_key = "events"

    at = UTCDateTimeField()
    actor_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = JobEvent
        fields = ["id", "kind", "from_state", "to_state", "attempt", "actor_id", "detail", "at"]


class DepthOut(serializers.Serializer):
    queue = serializers.CharField()
    waiting = serializers.IntegerField(help_text="Queued, or deferred and due.")
    deferred = serializers.IntegerField(help_text="Deferred, not yet due.")
    running = serializers.IntegerField()
    awaiting_approval = serializers.IntegerField()
    oldest_waiting_age_ms = serializers.IntegerField(allow_null=True)
    paused = serializers.BooleanField()


class FunctionOut(serializers.Serializer):
    name = serializers.CharField()
    queue = serializers.CharField()
    requires_approval = serializers.BooleanField()
    timeout_seconds = serializers.IntegerField(source="timeout_s")
    max_tries = serializers.IntegerField()
    description = serializers.CharField()


class WorkerOut(serializers.Serializer):
    id = serializers.CharField()
    hostname = serializers.CharField()
    pid = serializers.IntegerField()
    queues = serializers.ListField(child=serializers.CharField())
    concurrency = serializers.IntegerField()
    running = serializers.IntegerField(help_text="This workspace's jobs running on the worker.")
    started_at = UTCDateTimeField()
    last_heartbeat_at = UTCDateTimeField()


class QueueStateOut(serializers.Serializer):
    queue = serializers.CharField()
    paused = serializers.BooleanField()


class HITLRequestOut(serializers.ModelSerializer):
    results_key = "requests"

    id = serializers.UUIDField()
    workspace_id = serializers.UUIDField()
    job_id = serializers.UUIDField()
    requested_by = serializers.UUIDField(source="requested_by_id", allow_null=True, help_text="User id.")
    decided_by = serializers.UUIDField(source="decided_by_id", allow_null=True, help_text="User id.")
    created_at = UTCDateTimeField()
    expires_at = UTCDateTimeField()
    decided_at = UTCDateTimeField(allow_null=True)
    job_state = serializers.CharField(source="job.state", help_text="The gated job's current state.")

    class Meta:
        model = HITLRequest
        fields = [
            "id",
            "workspace_id",
            "job_id",
            "function",
            "args",
            "approved_args",
            "requested_by",
            "reason",
            "state",
            "created_at",
            "expires_at",
            "decided_by",
            "decided_at",
            "decided_via",
            "comment",
            "job_state",
        ]


class HITLRejectIn(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class HITLApproveIn(HITLRejectIn):
    args = JSONObjectField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Corrected arguments to run with (a JSON object); default: as requested.",
    )

    def validate_args(self, value: object) -> object:
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value
