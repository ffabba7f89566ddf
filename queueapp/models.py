"""Jobs and their timelines: PostgreSQL is the record, Redis only the transport."""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from hq import clock
from hq.errors import ValidationFailed

if TYPE_CHECKING:
    from hq.models import User

#: A queue name, the whole string: a lower-case letter or digit, then up to 63 lower-case letters,
#: digits, `_`, `.` or `-` (64 at most, the column's length). Anchored with \A and \Z, never `$`,
#: which also matches before a trailing newline: "secq\n" was once stored as a name.
QUEUE_NAME = re.compile(r"\A[a-z0-9][a-z0-9_.-]{0,63}\Z")
QUEUE_NAME_RULE = "1 to 64 characters: lower-case letters, digits, _ . - (starting with a letter or digit)."


def validate_queue_name(name: object) -> str:
    """Return `name` if it is a valid queue name, else raise ValidationFailed (400) on `queue`."""
    if isinstance(name, str) and QUEUE_NAME.fullmatch(name):
        return name
    raise ValidationFailed(f"Invalid queue name. {QUEUE_NAME_RULE}", fields={"queue": [QUEUE_NAME_RULE]})


def user_reference(
    *, related_name: str | None = None, help_text: str = "", db_index: bool = True
) -> models.ForeignKey[User | None, User | None]:
    """A user who did or asked for something: optional, and kept as empty when the user is deleted.

    `db_index=False` where the table is written per job: the model then indexes the column only
    where it is set (`set_user_index`), which is all that deleting a user looks up.
    """
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name=related_name,
        help_text=help_text,
        db_index=db_index,
    )


def set_user_index(field: str, name: str) -> models.Index:
    """An index of a `user_reference` over the rows where it is set: a job or event made by the
    system (schedule fires, the worker's own moves) adds no entry."""
    return models.Index(fields=[field], name=name, condition=Q(**{f"{field}__isnull": False}))


# Choices take Django's label (the member's name, title-cased) unless it would read wrong.
class JobState(models.TextChoices):
    """A job's lifecycle; every change is a conditional update plus a JobEvent."""

    #: Waiting to start.
    QUEUED = "queued"
    #: Waiting for `due_at` (a deferred submit, or a retry's backoff).
    DEFERRED = "deferred"
    #: Waiting for a human decision (HITL).
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    #: An attempt is running on a worker.
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded"
    #: Terminal after `max_tries` attempts; `error` keeps the last error.
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: A human rejected it, or its approval expired.
    REJECTED = "rejected"


WAITING_STATES = (JobState.QUEUED, JobState.DEFERRED)
#: The states in which a job waits to start, for a person's decision too: a job holds its
#: `unique_key` in them until its first start, or, submitted with `unique_while: "active"`, in them
#: and `running` until it finishes (README, "Unique jobs"; `UNIQUE_KEY_HELD`).
UNIQUE_HOLD_STATES = (JobState.QUEUED, JobState.DEFERRED, JobState.AWAITING_APPROVAL)

#: Priorities run from -100 to 100 (Django's Tasks framework's range); higher starts first.
PRIORITY_MIN, PRIORITY_MAX = -100, 100


#: The longest unique key or concurrency key (`key_problem`).
KEY_MAX = 200


def priority_problem(value: object) -> str | None:
    """What is wrong with `value` as a job's priority (a JSON integer, booleans not), or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"Must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}."
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        return f"Must be from {PRIORITY_MIN} to {PRIORITY_MAX} (higher starts first); got {value}."
    return None


def key_problem(value: str) -> str | None:
    """What is wrong with `value` as a job's unique or concurrency key (1 to 200 characters, no
    control characters or lone surrogates), or None. The one rule for both keys."""
    if not value:
        return "Must not be blank."
    if len(value) > KEY_MAX:
        return f"At most {KEY_MAX} characters; got {len(value)}."
    bad = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Cs")), None)
    if bad is not None:
        return f"Control characters are not allowed: U+{ord(bad):04X}."
    return None


class UniqueWhile(models.TextChoices):
    """How long a job holds its `unique_key`."""

    #: Queued, deferred or awaiting approval.
    WAITING = "waiting"
    #: Waiting, or running.
    ACTIVE = "active"


#: The rows that hold their unique key. A job enters this set only when it is written (a submit, or a
#: retry by a client, which answers 409 when the key is held meanwhile), never through a worker's
#: move: a "waiting" job leaves it at its first start and a retry's backoff or a requeue does not
#: bring it back; an "active" job stays in it from submit to finish, retries included.
UNIQUE_KEY_HELD = Q(unique_key__isnull=False) & (
    Q(unique_while=UniqueWhile.WAITING, attempts=0, state__in=UNIQUE_HOLD_STATES)
    | Q(unique_while=UniqueWhile.ACTIVE, state__in=[*UNIQUE_HOLD_STATES, JobState.RUNNING])
)


class OnConflict(models.TextChoices):
    """What a submit does when its unique key is held by another job."""

    #: Create nothing; answer with the job that holds the key.
    KEEP = "keep"
    #: Also replace that job's args, when it is queued or deferred (a debounce).
    REPLACE = "replace"


FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED)


class Job(models.Model):
    """One unit of work, run by a registered function on a worker."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: every composite index below starts with workspace_id (one fewer per insert).
    workspace = models.ForeignKey("hq.Workspace", on_delete=models.CASCADE, related_name="jobs", db_index=False)
    owner = user_reference(
        related_name="jobs",
        help_text="Who submitted it; empty for system jobs (schedule fires, retention).",
        db_index=False,
    )
    function = models.CharField(max_length=200, help_text="Registered function name.")
    args = models.JSONField(default=dict, blank=True, help_text="Keyword arguments, a JSON object.")
    queue = models.CharField(max_length=64, default="default")
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.QUEUED)
    # Defaults in the database too: every insert of a job names its columns (enqueue.jobs_insert).
    priority = models.SmallIntegerField(
        default=0,
        db_default=0,
        validators=[MinValueValidator(PRIORITY_MIN), MaxValueValidator(PRIORITY_MAX)],
        help_text="-100..100; among due jobs of a workspace and queue, higher starts first.",
    )
    unique_key = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        help_text="No other job of this function and workspace is created while this one holds the key.",
    )
    unique_while = models.CharField(
        max_length=8,
        choices=UniqueWhile.choices,
        default=UniqueWhile.WAITING,
        db_default=UniqueWhile.WAITING,
        help_text="The job holds its unique key while waiting, or while waiting or running (active).",
    )
    correlation_id = models.CharField(max_length=200, blank=True, default="")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    idempotency_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts started so far.")
    max_tries = models.PositiveSmallIntegerField(
        default=3, help_text="Attempts allowed per run (a retry starts a new run)."
    )
    tries_base = models.PositiveIntegerField(default=0, help_text="Attempts made before the current run.")
    timeout_s = models.PositiveIntegerField(default=300, help_text="Per-attempt time limit, seconds.")
    retry_backoff_s = models.FloatField(default=2.0, help_text="Base of the exponential backoff, seconds.")
    due_at = models.DateTimeField(default=clock.now, help_text="Earliest start: submit, defer or retry time.")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    worker_id = models.CharField(max_length=200, blank=True, default="", help_text="Worker running the attempt.")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="Last push to Redis; empty means the relay must push it."
    )
    started_at = models.DateTimeField(null=True, blank=True, help_text="Start of the latest attempt.")
    first_started_at = models.DateTimeField(null=True, blank=True, help_text="Start of the first attempt.")
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=clock.now)
    concurrency_key = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        help_text="Jobs with the same key share its limits (KeyLimit rows, the function's registration).",
    )
    limit_scope = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        editable=False,
        help_text="The limit gate the latest START counted or held it under: its key, or its function's name.",
    )
    held_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Held back by a concurrency limit since then; a finish under its gate wakes it.",
    )

    class Meta:
        ordering = ["-created_at"]
        # Every index costs each job three entries (its insert, start and finish are never HOT
        # updates: `state` is indexed), so columns that are empty for most jobs are indexed only
        # where set, and time columns only once they are (bench/RESULTS.md counts entries per job).
        indexes = [
            models.Index(fields=["workspace", "state"], name="job_ws_state"),
            models.Index(fields=["workspace", "-created_at"], name="job_ws_created"),
            # A superuser's jobs list (every workspace), newest first: 50 rows read from the end of
            # this index instead of a sort of every job (1.6 s over a million; bench/admin_bench.py).
            # created_at only grows, so inserts land on the index's last page.
            models.Index(fields=["-created_at"], name="job_created"),
            models.Index(
                fields=["workspace", "correlation_id"], name="job_ws_corr_set", condition=~Q(correlation_id="")
            ),
            models.Index(fields=["workspace", "function"], name="job_ws_function"),
            # A member's own jobs, newest first (hq.permissions.owned_rows), and the user foreign
            # key's lookups by owner: one index for both, set only where a job has an owner.
            models.Index(
                fields=["owner", "workspace", "-created_at"],
                name="job_owner_ws_created",
                condition=Q(owner__isnull=False),
            ),
            models.Index(
                fields=["queue", "state", "due_at"],
                name="job_waiting_queue",
                condition=Q(state__in=["queued", "deferred"]),
            ),
            models.Index(fields=["due_at"], name="job_waiting_due", condition=Q(state__in=["queued", "deferred"])),
            # The relay's two reads stay small however long the backlog: waiting rows never pushed
            # (normally none; the highest priority first), and waiting rows by the time of their
            # last push (the oldest first).
            models.Index(
                fields=["-priority", "due_at"],
                name="job_unpushed",
                condition=Q(state__in=["queued", "deferred"], dispatched_at__isnull=True),
            ),
            models.Index(
                fields=["dispatched_at"],
                name="job_pushed_waiting",
                condition=Q(state__in=["queued", "deferred"], dispatched_at__isnull=False),
            ),
            models.Index(fields=["worker_id"], name="job_running_worker", condition=Q(state="running")),
            # Retention and the observability summary: windows over finishes.
            models.Index(fields=["finished_at"], name="job_finished_at", condition=Q(finished_at__isnull=False)),
            models.Index(
                fields=["workspace", "finished_at"], name="job_ws_finished_at", condition=Q(finished_at__isnull=False)
            ),
            # Current counts over the few rows still waiting or running (queueapp.observability).
            models.Index(
                fields=["workspace", "queue", "function"],
                name="job_live",
                condition=Q(state__in=["queued", "deferred", "awaiting_approval", "running"]),
            ),
            # Keyed jobs only: the API's filter and the depth per key; a plain job adds no entry.
            models.Index(
                fields=["workspace", "concurrency_key"],
                name="job_ws_key_set",
                condition=Q(concurrency_key__isnull=False),
            ),
            # The waiting jobs of a key, the earliest due first: the ones a finish under its gate
            # wakes. On state and key only, so that holding a job and waking it (`held_at`,
            # `limit_scope`) change no indexed column (HOT updates where the page has room; the
            # drain bench's freshly filled pages mostly had none).
            models.Index(
                fields=["workspace", "concurrency_key", "due_at"],
                name="job_key_waiting",
                condition=Q(state__in=["queued", "deferred"], concurrency_key__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="uniq_job_idempotency_key",
            ),
            models.CheckConstraint(condition=Q(max_tries__gte=1) & Q(max_tries__lte=25), name="job_max_tries_range"),
            models.CheckConstraint(
                condition=Q(priority__gte=PRIORITY_MIN) & Q(priority__lte=PRIORITY_MAX), name="job_priority_range"
            ),
            # One holder per key, function and workspace: 50 concurrent submits of one key make one
            # job (services.jobs). Only holders are in the index, so it costs other jobs nothing.
            models.UniqueConstraint(
                fields=["workspace", "function", "unique_key"],
                condition=UNIQUE_KEY_HELD,
                name="uniq_job_unique_key_held",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.function} {self.id} ({self.state})"


class JobEvent(models.Model):
    """One entry in a job's timeline."""

    # Indexed by jobevent_job_at, which starts with job_id. Not a database constraint: its check ran
    # once per event at every worker commit (5.6 us an event, about a seventh of PostgreSQL's time
    # per job in the drain), and an event is only ever written in the statement or transaction
    # that writes or moves its job (`queueapp.enqueue`, `queueapp.transitions`); a job's events go
    # with it through Django's cascade (retention, erase).
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events", db_index=False, db_constraint=False)
    kind = models.CharField(max_length=40, help_text="What happened: submitted, started, retry_scheduled, ...")
    from_state = models.CharField(max_length=20, blank=True, default="")
    to_state = models.CharField(max_length=20, blank=True, default="")
    attempt = models.PositiveIntegerField(default=0)
    actor = user_reference(related_name="+", db_index=False)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["job", "at"], name="jobevent_job_at"),
            set_user_index("actor", "jobevent_actor"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_state}→{self.to_state}"


class QueuePause(models.Model):
    """A paused queue: jobs are accepted but none start. No workspace means every workspace."""

    queue = models.CharField(max_length=64)
    workspace = models.ForeignKey("hq.Workspace", null=True, blank=True, on_delete=models.CASCADE)
    paused_by = user_reference()
    paused_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["queue", "workspace"], name="uniq_queue_pause"),
            models.UniqueConstraint(
                fields=["queue"], condition=Q(workspace__isnull=True), name="uniq_global_queue_pause"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.queue} paused ({self.workspace or 'all workspaces'})"


class DepthState(models.TextChoices):
    """How a queue's live jobs are counted on the dashboard's depth charts."""

    WAITING = "waiting", "waiting (queued, or deferred and due)"
    DEFERRED = "deferred", "deferred (not due yet)"
    RUNNING = "running", "running"
    AWAITING_APPROVAL = "awaiting_approval", "awaiting approval"


class QueueDepthSample(models.Model):
    """Jobs of one workspace in one queue and depth state at the start of a minute.

    Written once a minute by the `depth_sampler` side task (only states with jobs get a row), read
    by the dashboard's depth-over-time charts, pruned by retention after two days
    (`queueapp.observability.depth`).
    """

    at = models.DateTimeField(help_text="The minute sampled (its first second, UTC).")
    workspace = models.ForeignKey("hq.Workspace", on_delete=models.CASCADE, db_index=False)
    queue = models.CharField(max_length=64)
    state = models.CharField(max_length=32, choices=DepthState.choices)
    jobs = models.PositiveIntegerField()

    class Meta:
        # The unique constraint's index (minute first) serves the unscoped read and pruning.
        constraints = [
            models.UniqueConstraint(fields=["at", "workspace", "queue", "state"], name="uniq_depth_sample"),
        ]
        indexes = [models.Index(fields=["workspace", "at"], name="depth_ws_at")]

    def __str__(self) -> str:
        return f"{self.queue} {self.state}: {self.jobs} at {self.at:%Y-%m-%d %H:%M}"


class Worker(models.Model):
    """A worker process and its heartbeat."""

    id = models.CharField(primary_key=True, max_length=200, help_text="host:pid:random")
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0, help_text="Jobs running at the last heartbeat.")
    attempts = models.JSONField(
        null=True,
        blank=True,
        help_text="ARQ ids ('job:attempt') of the attempts in flight at the last heartbeat; null when the "
        "worker does not report them. The reaper requeues a running job its live worker no longer has.",
    )
    jobs_done = models.PositiveIntegerField(default=0, help_text="Attempts finished since start.")
    started_at = models.DateTimeField(default=clock.now)
    last_heartbeat_at = models.DateTimeField(default=clock.now)
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Clean stop, or declared dead by the reaper.")

    class Meta:
        ordering = ["-last_heartbeat_at"]
        indexes = [models.Index(fields=["stopped_at", "last_heartbeat_at"], name="worker_live")]

    def __str__(self) -> str:
        return self.id


class HITLState(models.TextChoices):
    """A human-in-the-loop request's lifecycle; only `pending` may change."""

    #: Waiting for a decision; its job is `awaiting_approval`.
    PENDING = "pending"
    #: Approved: the job was queued with `approved_args`.
    APPROVED = "approved"
    #: Rejected by a person: the job ended `rejected`.
    REJECTED = "rejected"
    #: Nobody decided before `expires_at`: the job ended `rejected`.
    EXPIRED = "expired"
    #: The job was cancelled while it waited.
    CANCELLED = "cancelled"


class DecidedVia(models.TextChoices):
    API = "api", "API"
    ADMIN = "admin"
    #: The expiry side task.
    SYSTEM = "system"


class HITLRequest(models.Model):
    """A job waiting for a person's approval (human in the loop): one per gated run of a job."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("hq.Workspace", on_delete=models.CASCADE, related_name="hitl_requests")
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="hitl_requests", help_text="The job that waits for this decision."
    )
    function = models.CharField(max_length=200, help_text="The tool (registered function) the job would run.")
    args = models.JSONField(default=dict, blank=True, help_text="The arguments as requested.")
    approved_args = models.JSONField(
        null=True, blank=True, help_text="The arguments the approver let run (corrected or as requested)."
    )
    requested_by = user_reference(
        related_name="+", help_text="Who asked for the call; may never decide it (separation of duties)."
    )
    reason = models.TextField(blank=True, default="", help_text="Why the requester wants this to run.")
    state = models.CharField(max_length=16, choices=HITLState.choices, default=HITLState.PENDING)
    created_at = models.DateTimeField(default=clock.now)
    expires_at = models.DateTimeField(help_text="A pending request expires (its job is rejected) at this time.")
    decided_by = user_reference(
        related_name="+", help_text="Who approved, rejected or cancelled it; empty for an expiry."
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_via = models.CharField(max_length=8, choices=DecidedVia.choices, blank=True, default="")
    comment = models.TextField(blank=True, default="", help_text="The decider's comment.")

    #: A request's life from asked to decided, as the admin page and the API both show it.
    DECISION_FIELDS = ("created_at", "expires_at", "decided_by", "decided_at", "decided_via", "comment")

    class Meta:
        verbose_name = "HITL request"
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["workspace", "state", "created_at"], name="hitl_ws_state_created"),
            models.Index(fields=["expires_at"], name="hitl_pending_expiry", condition=Q(state="pending")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["job"], condition=Q(state="pending"), name="uniq_pending_hitl_per_job"),
        ]

    def __str__(self) -> str:
        return f"{self.function} ({self.state})"


#: The longest concurrency key, and the one rule both the API and the admin check keys with.
def validate_concurrency_key(key: object, field: str = "concurrency_key") -> str | None:
    """Return `key` (None for none) if it is a valid concurrency key (`key_problem`), else raise
    ValidationFailed naming `field`."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise ValidationFailed(f"Invalid {field}.", fields={field: ["A non-empty string."]})
    problem = key_problem(key)
    if problem:
        raise ValidationFailed(f"Invalid {field}.", fields={field: [problem]})
    return key


class KeyLimit(models.Model):
    """A limit on the jobs whose concurrency key matches `pattern` (`*` matches any run of
    characters): at most `concurrency` running at once per key, and at most `rate` starts per
    period per key. No workspace means every workspace (each key still counts per workspace)."""

    pattern = models.CharField(
        max_length=200, help_text="A concurrency key, `*` matching any characters: `customer:*`, `api:github`."
    )
    workspace = models.ForeignKey(
        "hq.Workspace", null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: every workspace."
    )
    concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many jobs of one key running at once; empty: no limit."
    )
    rate = models.CharField(
        max_length=32, blank=True, default="", help_text="Starts per period per key, e.g. 60/min, 5/10s; empty: none."
    )
    #: Derived on save: the pattern as a SQL LIKE pattern, and the rate as seconds between starts.
    like_pattern = models.CharField(max_length=400, editable=False, default="")
    rate_interval_s = models.FloatField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["pattern"]
        constraints = [
            models.UniqueConstraint(fields=["pattern", "workspace"], name="uniq_keylimit"),
            models.UniqueConstraint(
                fields=["pattern"], condition=Q(workspace__isnull=True), name="uniq_global_keylimit"
            ),
            models.CheckConstraint(
                condition=Q(concurrency__gte=1) | Q(concurrency__isnull=True), name="keylimit_min_1"
            ),
        ]

    def __str__(self) -> str:
        parts = [f"{self.concurrency} at once" if self.concurrency else "", self.rate]
        return f"{self.pattern}: {', '.join(p for p in parts if p) or 'no limit'}"


class LimitGate(models.Model):
    """One gate's live count, written only by the START and FINISH statements (and the reaper's
    recount): jobs running under it, and the earliest time its rate lets the next one start."""

    workspace = models.ForeignKey("hq.Workspace", on_delete=models.CASCADE, db_index=False)
    #: A concurrency key, or a function's name for its jobs without one.
    scope = models.CharField(max_length=200)
    running = models.IntegerField(default=0)
    next_at = models.DateTimeField(null=True, blank=True)
    #: Starts the latest START statement let through (read back by that statement only).
    granted = models.IntegerField(default=0)
    #: The latest turn given to a job held by the rate: the next held job's turn comes after it
    #: (`transitions._BOOK`).
    booked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "scope"], name="uniq_limitgate")]

    def __str__(self) -> str:
        return f"{self.scope}: {self.running} running"
