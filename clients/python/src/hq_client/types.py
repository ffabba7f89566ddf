"""The shapes HQ answers with, as TypedDicts (JSON as it arrives: ids and datetimes are strings).

Datetimes are RFC 3339 UTC strings (`2026-03-29T01:00:00.000Z`); `hq_client.parse_datetime` turns
one into an aware `datetime`. A test compares every class here with `/v1/schema`, field by field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

JobState = Literal["queued", "deferred", "awaiting_approval", "running", "succeeded", "failed", "cancelled", "rejected"]

#: The states a job never leaves (`wait` returns once a job is in one of them).
FINISHED_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "rejected"})


def parse_datetime(value: str) -> datetime:
    """An HQ datetime (`...Z`) as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Job(TypedDict):
    id: str
    workspace_id: str
    owner_id: str | None
    function: str
    args: Any
    queue: str
    state: JobState
    priority: int
    correlation_id: str
    idempotency_key: str | None
    unique_key: str | None
    unique_while: str
    concurrency_key: str | None
    attempts: int
    max_tries: int
    timeout_seconds: int
    due_at: str
    result: Any
    error: str
    cancel_requested_at: str | None
    created_at: str
    dispatched_at: str | None
    started_at: str | None
    first_started_at: str | None
    finished_at: str | None
    updated_at: str
    wait_ms: int | None
    run_ms: int | None


class SubmittedJob(Job):
    """A submit's answer: `duplicate` when its unique key was held (the job is the holder), `replaced`
    when the holder's args were replaced."""

    duplicate: bool
    replaced: bool


class BatchJob(SubmittedJob):
    """A job of a batch submit's answer: `replayed` is true when its idempotency key returned an earlier job."""

    replayed: bool


class JobSubmission(TypedDict, total=False):
    """One submit's body (POST /v1/queue/jobs, or one item of a batch); only `function` is required."""

    function: str
    args: dict[str, Any]
    queue: str
    correlation_id: str
    idempotency_key: str | None
    defer_until: str | None
    defer_by_seconds: float | None
    max_tries: int | None
    timeout_seconds: int | None
    require_approval: bool
    approval_reason: str
    priority: int | None
    unique_key: str | None
    unique_while: str | None
    on_conflict: str | None
    concurrency_key: str | None


class JobEvent(TypedDict):
    id: int
    kind: str
    from_state: str
    to_state: str
    attempt: int
    actor_id: str | None
    detail: Any
    at: str


class HITLRequest(TypedDict):
    id: str
    workspace_id: str
    job_id: str
    function: str
    args: Any
    approved_args: Any
    requested_by: str | None
    reason: str
    state: Literal["pending", "approved", "rejected", "expired", "cancelled"]
    created_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    decided_via: str
    comment: str
    job_state: str


class ScheduledTask(TypedDict):
    id: str
    owner_id: str
    name: str
    schedule: str
    timezone: str
    action: str
    args: Any
    enabled: bool
    state: str
    state_reason: str
    next_run_at: str | None
    last_run_at: str | None
    last_run_status: str | None
    run_count: int
    failure_count: int
    consecutive_failure_count: int
    last_run_lag_ms: int | None
    created_at: str
    updated_at: str


class AgentSchedule(TypedDict):
    id: str
    name: str
    description: str | None
    owner_user_id: str
    trigger: Any
    prompt: str
    agent_id: str | None
    deliver_to: Any
    reset_each_fire: bool
    delivery_locale: str | None
    args: Any
    state: str
    state_reason: str
    next_fire_at: str | None
    last_fire_at: str | None
    last_fire_status: str | None
    fire_count: int
    failure_count: int
    consecutive_failure_count: int
    last_fire_lag_ms: int | None
    last_run_conversation_id: str | None
    created_at: str
    updated_at: str


class ScheduleChange(TypedDict):
    """What pause, resume, fire_now, PATCH, DELETE and erase of an agent schedule answer."""

    ok: bool
    next_fire_at: NotRequired[str | None]
    fire_id: NotRequired[str]
    job_id: NotRequired[str]


class ScheduleOwner(TypedDict):
    user_id: str
    display_name: str
    schedule_count: int


class Room(TypedDict):
    id: str
    name: str
    agent_id: str | None
    member_ids: list[str]
    created_at: str


class Message(TypedDict):
    id: str
    kind: Literal["user", "bot", "agent"]
    author_id: str | None
    agent_id: str | None
    msgtype: Literal["swp.text", "swp.markdown"]
    body: str
    schedule_id: str | None
    created_at: str


class Note(TypedDict):
    id: str
    title: str
    body: str
    tags: Any
    author_id: str | None
    created_at: str


class StoredQuery(TypedDict):
    id: str
    name: str
    filters: Any
    owner_id: str | None
    created_at: str


class StoredQueryResults(TypedDict):
    notes: list[Note]
    total: int


class Conversation(TypedDict):
    id: str
    title: str
    schedule_id: str | None
    created_at: str
    updated_at: str


class ConversationMessage(TypedDict):
    id: str
    role: Literal["user", "assistant", "system"]
    body: str
    fire_id: str | None
    agent_id: str | None
    created_at: str


class ConversationDetail(Conversation):
    """A conversation with one page of its messages (`total`, `limit`, `offset` describe the page)."""

    messages: list[ConversationMessage]
    total: int
    limit: int
    offset: int


class QueueDepth(TypedDict):
    queue: str
    waiting: int
    deferred: int
    running: int
    awaiting_approval: int
    oldest_waiting_age_ms: int | None
    paused: bool


class KeyDepth(TypedDict):
    concurrency_key: str
    waiting: int
    held: int
    running: int
    concurrency_limit: int | None
    rate_limit: str | None


class QueueState(TypedDict):
    queue: str
    paused: bool


class FunctionInfo(TypedDict):
    name: str
    queue: str
    requires_approval: bool
    timeout_seconds: int
    max_tries: int
    description: str


class Worker(TypedDict):
    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    started_at: str
    last_heartbeat_at: str


class ObservabilitySummary(TypedDict):
    generated_at: str
    windows: list[str]
    queues: list[dict[str, Any]]
    hitl: dict[str, Any]
    schedules: dict[str, Any]


class Me(TypedDict):
    user_id: str
    email: str
    display_name: str
    workspace_id: str
    workspace: str
    role: str
    scopes: list[str]
