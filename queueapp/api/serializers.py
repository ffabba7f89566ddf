"""Input and output shapes of the queue API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hq.api.fields import JSONObjectField, UTCDateTimeField, iso
from queueapp.models import (
    KEY_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    QUEUE_NAME,
    QUEUE_NAME_RULE,
    HITLRequest,
    Job,
    JobEvent,
    OnConflict,
    UniqueWhile,
    Worker,
    key_problem,
    priority_problem,
)
from queueapp.registry import JobFunction

if TYPE_CHECKING:
    from queueapp.enqueue import NewJob


@extend_schema_field({"type": "integer", "minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX})
class PriorityField(serializers.Field):  # type: ignore[type-arg]
    """A JSON integer from -100 to 100 (`models.priority_problem`): no booleans, strings or floats."""

    def to_internal_value(self, data: Any) -> int:
        problem = priority_problem(data)
        if problem or not isinstance(data, int):
            raise serializers.ValidationError(problem)
        return data

    def to_representation(self, value: Any) -> int:
        return int(value)


def _key_valid(value: str) -> None:
    problem = key_problem(value)
    if problem:
        raise serializers.ValidationError(problem)


def _key_field(help_text: str) -> serializers.CharField:
    """An optional unique or concurrency key, checked by `models.key_problem`."""
    return serializers.CharField(
        max_length=KEY_MAX,
        required=False,
        allow_null=True,
        default=None,
        trim_whitespace=False,
        validators=[_key_valid],
        help_text=help_text,
    )


class JobSubmitIn(serializers.Serializer[Any]):
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
    priority = PriorityField(
        required=False,
        allow_null=True,
        default=None,
        help_text="-100..100, higher starts first among a workspace's due jobs of the queue. Default: the "
        "function's (0 unless registered otherwise).",
    )
    unique_key = _key_field(
        "While a job of this function in the workspace holds the key (see unique_while), a submit "
        "with it creates nothing and answers 200 with that job and `duplicate: true`."
    )
    unique_while = serializers.ChoiceField(
        UniqueWhile.choices,
        required=False,
        allow_null=True,
        default=None,
        help_text="How long the new job holds its key: waiting (default) or active (waiting or running).",
    )
    on_conflict = serializers.ChoiceField(
        OnConflict.choices,
        required=False,
        allow_null=True,
        default=None,
        help_text="When the key is held: keep (default) answers with the holder; replace also gives a queued "
        "or deferred holder this submit's args (and a later due time): a debounce.",
    )
    concurrency_key = _key_field(
        "Jobs with the same key share its limits (at most N running at once, N starts per period): "
        "1 to 200 characters, no control characters, e.g. customer:42."
    )

    def validate_args(self, value: object) -> object:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value

    def to_internal_value(self, data: Any) -> Any:
        """A key the submit does not know is refused by name (a typo such as `max_retries` must not
        quietly run the job without it), beside any other field's error."""
        unknown = unknown_fields(data, self.fields) if isinstance(data, dict) else {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **unknown}) from exc
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


def unknown_fields(body: dict[str, Any], known: Any) -> dict[str, list[str]]:
    """The error of each key of a submit body that names no field (at most 20 named)."""
    names = sorted((k for k in body if k not in known), key=str)[:20]
    return {str(k): [UNKNOWN_FIELD] for k in names}


UNKNOWN_FIELD = "Unknown field: a submit takes only the fields of POST /v1/queue/jobs."


class JobBatchIn(serializers.Serializer[Any]):
    jobs = JobSubmitIn(many=True, help_text="1 to 1,000 submissions, each as POST /v1/queue/jobs takes it.")


# --- the submit body, parsed without DRF's field machinery ---------------------------------------
#
# `JobSubmitIn` above describes the body (the schema, the docs); `submit_parse` applies the same
# rules about twenty times faster, which is what lets one request carry 1,000 jobs. A test feeds
# both the same bodies and compares their verdicts field by field.

_REQUIRED, _NULL, _BLANK = "This field is required.", "This field may not be null.", "This field may not be blank."
_TRUE = {True, "1", "true", "True", "TRUE", "t", "T", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_FALSE = {False, "0", "false", "False", "FALSE", "f", "F", "n", "N", "no", "No", "NO", "off", "Off", "OFF"}


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def _text(value: object, *, max_length: int, blank: bool, trim: bool = True) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Refused("Not a valid string.")
    text = str(value).strip() if trim else str(value)
    if "\x00" in text:
        raise _Refused("Null characters are not allowed.")
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:
        raise _Refused(f"Surrogate characters are not allowed: U+{ord(surrogate.group()):X}.")
    if not text and not blank:
        raise _Refused(_BLANK)
    if len(text) > max_length:
        raise _Refused(f"Ensure this field has no more than {max_length} characters.")
    return text


_DECIMAL_ZEROS = re.compile(r"\.0*\s*$")


def _integer(value: object, low: int, high: int) -> int:
    """As DRF's IntegerField: the text of the value, less a trailing ".0", must be an integer."""
    if isinstance(value, bool) or not isinstance(value, str | int | float) or len(str(value)) > 1000:
        raise _Refused("A valid integer is required.")
    try:
        result = int(_DECIMAL_ZEROS.sub("", str(value)))
    except ValueError:
        raise _Refused("A valid integer is required.") from None
    return _bounded(result, low, high)


def _number(value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or (isinstance(value, str) and len(value) > 1000):
        raise _Refused("A valid number is required.")
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise _Refused("A valid number is required.") from None
    if result != result or result in (float("inf"), float("-inf")):
        raise _Refused("A valid number is required.")
    return _bounded(result, low, high)


NumberT = TypeVar("NumberT", int, float)


def _bounded(value: NumberT, low: float, high: float) -> NumberT:
    if value < low:
        raise _Refused(f"Ensure this value is greater than or equal to {low}.")
    if value > high:
        raise _Refused(f"Ensure this value is less than or equal to {high}.")
    return value


def _boolean(value: object) -> bool:
    try:
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    except TypeError:  # unhashable
        pass
    raise _Refused("Must be a valid boolean.")


def _datetime(value: object) -> datetime:
    field = UTCDateTimeField()
    try:
        result: datetime = field.run_validation(value)
    except serializers.ValidationError as exc:
        # A field's errors are a list of messages (a serializer's would be a dict by field).
        detail = exc.detail
        raise _Refused(str(detail[0] if isinstance(detail, list) else detail)) from None
    return result


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Refused("Must be a JSON object.")
    return value


def _priority(value: object) -> int:
    problem = priority_problem(value)
    if problem or not isinstance(value, int):
        raise _Refused(problem or "")
    return value


def _key(value: object) -> str:
    text = _text(value, max_length=KEY_MAX, blank=False, trim=False)
    problem = key_problem(text)
    if problem:
        raise _Refused(problem)
    return text


def _choice(choices: type[UniqueWhile] | type[OnConflict]) -> Any:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value not in choices.values:
            raise _Refused(f'"{value}" is not a valid choice.')
        return value

    return parse


def _queue(value: object) -> str:
    text = _text(value, max_length=64, blank=False, trim=False)
    if not re.fullmatch(QUEUE_NAME, text):
        raise _Refused(QUEUE_NAME_RULE)
    return text


# body key -> (Submission field, parser, default when absent, null allowed)
_SUBMIT_RULES: dict[str, tuple[str, Any, Any, bool]] = {
    "function": ("function", lambda v: _text(v, max_length=200, blank=False), _REQUIRED, False),
    "args": ("args", _object, dict, False),
    "queue": ("queue", _queue, None, False),
    "correlation_id": ("correlation_id", lambda v: _text(v, max_length=200, blank=True), "", False),
    "idempotency_key": ("idempotency_key", lambda v: _text(v, max_length=200, blank=False), None, True),
    "defer_until": ("defer_until", _datetime, None, True),
    "defer_by_seconds": ("defer_by_seconds", lambda v: _number(v, 0, 365 * 86400), None, True),
    "max_tries": ("max_tries", lambda v: _integer(v, 1, 25), None, True),
    "timeout_seconds": ("timeout_seconds", lambda v: _integer(v, 1, 7 * 86400), None, True),
    "require_approval": ("requires_approval", _boolean, False, False),
    "approval_reason": ("approval_reason", lambda v: _text(v, max_length=2000, blank=True), "", False),
    "priority": ("priority", _priority, None, True),
    "unique_key": ("unique_key", _key, None, True),
    "unique_while": ("unique_while", _choice(UniqueWhile), None, True),
    "on_conflict": ("on_conflict", _choice(OnConflict), None, True),
    "concurrency_key": ("concurrency_key", _key, None, True),
}


def submit_parse(body: object) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(`services.Submission` keyword arguments, errors by field) for one submit body.

    The rules are `JobSubmitIn`'s: an unknown key is refused by name, a body that is not an object
    is refused as a whole (`non_field_errors`).
    """
    if not isinstance(body, dict):
        kind = "list" if isinstance(body, list) else type(body).__name__
        return {}, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for key, (name, parse, default, nullable) in _SUBMIT_RULES.items():
        if key not in body:
            if default is _REQUIRED:
                errors[key] = [_REQUIRED]
            else:
                values[name] = default() if callable(default) else default
            continue
        value = body[key]
        if value is None:
            if nullable:
                values[name] = None
            else:
                errors[key] = [_NULL]
            continue
        try:
            values[name] = parse(value)
        except _Refused as exc:
            errors[key] = [exc.message]
    if not body.keys() <= _SUBMIT_RULES.keys():
        errors.update(unknown_fields(body, _SUBMIT_RULES))
    return values, errors


def _ms(a: datetime | None, b: datetime | None) -> int | None:
    return int((b - a).total_seconds() * 1000) if a and b else None


def _wait_ms(job: Job | NewJob) -> int | None:
    return _ms(max(job.created_at, job.due_at) if job.due_at else job.created_at, job.first_started_at)


def _run_ms(job: Job | NewJob) -> int | None:
    return _ms(job.started_at, job.finished_at)


def job_out(job: Job | NewJob) -> dict[str, Any]:
    """`JobOut`'s fields, written out: DRF builds and walks a field object per value, which was a
    fifth of a submit's CPU. A `NewJob` (a batch's, not read back) renders as its row would."""
    return {
        "id": str(job.id),
        "workspace_id": str(job.workspace_id),
        "owner_id": str(job.owner_id) if job.owner_id else None,
        "function": job.function,
        "args": job.args,
        "queue": job.queue,
        "state": job.state,
        "priority": job.priority,
        "correlation_id": job.correlation_id,
        "idempotency_key": job.idempotency_key,
        "unique_key": job.unique_key,
        "unique_while": job.unique_while,
        "concurrency_key": job.concurrency_key,
        "attempts": job.attempts,
        "max_tries": job.max_tries,
        "timeout_seconds": job.timeout_s,
        "due_at": iso(job.due_at),
        "result": job.result,
        "error": job.error,
        "cancel_requested_at": iso(job.cancel_requested_at),
        "created_at": iso(job.created_at),
        "dispatched_at": iso(job.dispatched_at),
        "started_at": iso(job.started_at),
        "first_started_at": iso(job.first_started_at),
        "finished_at": iso(job.finished_at),
        "updated_at": iso(job.updated_at),
        "wait_ms": _wait_ms(job),
        "run_ms": _run_ms(job),
    }


class JobOut(serializers.ModelSerializer[Job]):
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
            "priority",
            "correlation_id",
            "idempotency_key",
            "unique_key",
            "unique_while",
            "concurrency_key",
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
        return _wait_ms(job)

    def get_run_ms(self, job: Job) -> int | None:
        return _run_ms(job)

    def to_representation(self, job: Job) -> dict[str, Any]:
        """`job_out`: the declared fields above describe the shape for the schema."""
        return job_out(job)


class JobEventOut(serializers.ModelSerializer[JobEvent]):
    results_key = "events"

    at = UTCDateTimeField()
    actor_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = JobEvent
        fields = ["id", "kind", "from_state", "to_state", "attempt", "actor_id", "detail", "at"]


class KeyDepthOut(serializers.Serializer[dict[str, Any]]):
    concurrency_key = serializers.CharField()
    waiting = serializers.IntegerField(help_text="Queued or deferred.")
    held = serializers.IntegerField(help_text="Waiting, held back by the key's concurrency limit.")
    running = serializers.IntegerField()
    concurrency_limit = serializers.IntegerField(allow_null=True, help_text="The smallest matching key limit's.")
    rate_limit = serializers.CharField(allow_null=True, help_text="The slowest matching key limit's rate.")


class DepthOut(serializers.Serializer[dict[str, Any]]):
    queue = serializers.CharField()
    waiting = serializers.IntegerField(help_text="Queued, or deferred and due.")
    deferred = serializers.IntegerField(help_text="Deferred, not yet due.")
    running = serializers.IntegerField()
    awaiting_approval = serializers.IntegerField()
    oldest_waiting_age_ms = serializers.IntegerField(allow_null=True)
    paused = serializers.BooleanField()


class FunctionOut(serializers.Serializer[JobFunction]):
    name = serializers.CharField()
    queue = serializers.CharField()
    requires_approval = serializers.BooleanField()
    timeout_seconds = serializers.IntegerField(source="timeout_s")
    max_tries = serializers.IntegerField()
    description = serializers.CharField()


class WorkerOut(serializers.Serializer[Worker]):
    id = serializers.CharField()
    hostname = serializers.CharField()
    pid = serializers.IntegerField()
    queues = serializers.ListField(child=serializers.CharField())
    concurrency = serializers.IntegerField()
    running = serializers.IntegerField(help_text="This workspace's jobs running on the worker.")
    started_at = UTCDateTimeField()
    last_heartbeat_at = UTCDateTimeField()


class QueueStateOut(serializers.Serializer[dict[str, Any]]):
    queue = serializers.CharField()
    paused = serializers.BooleanField()


class HITLRequestOut(serializers.ModelSerializer[HITLRequest]):
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
            *HITLRequest.DECISION_FIELDS,
            "job_state",
        ]


class HITLRejectIn(serializers.Serializer[Any]):
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


class JobSubmitOut(JobOut):
    duplicate = serializers.BooleanField(
        help_text="The submit's unique_key was held: this is the job holding it, and no job was created."
    )
    replaced = serializers.BooleanField(help_text="A duplicate whose args were replaced (on_conflict: replace).")

    class Meta(JobOut.Meta):
        fields = [*JobOut.Meta.fields, "duplicate", "replaced"]


def submitted_out(job: Job | NewJob, duplicate: bool, replaced: bool) -> dict[str, Any]:
    """`JobSubmitOut`: a submit's answer."""
    return {**job_out(job), "duplicate": duplicate, "replaced": replaced}


class JobBatchItemOut(JobSubmitOut):
    replayed = serializers.BooleanField(help_text="An idempotent replay: the job recorded earlier with this key.")

    class Meta(JobSubmitOut.Meta):
        fields = [*JobSubmitOut.Meta.fields, "replayed"]


class JobBatchOut(serializers.Serializer[dict[str, Any]]):
    jobs = JobBatchItemOut(many=True, help_text="The jobs, in the order submitted.")
