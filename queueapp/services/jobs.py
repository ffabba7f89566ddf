"""A job's writes at a client's request: the one service that changes a job's state, submit (one
job or a batch), the push to ARQ, cancel and retry.

A job that must wait for a person enters `awaiting_approval` here, with its HITL request, on a
submit or a retry; `queueapp.services.hitl` takes it out (approve, reject, expire).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import redis
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from hq import clock, db, metrics, permissions
from hq.errors import Conflict, ValidationFailed
from hq.models import User, Workspace
from queueapp import enqueue, registry, transitions, transport
from queueapp.models import (
    UNIQUE_HOLD_STATES,
    UNIQUE_KEY_HELD,
    WAITING_STATES,
    DecidedVia,
    HITLRequest,
    HITLState,
    Job,
    JobEvent,
    JobState,
    OnConflict,
    UniqueWhile,
    key_problem,
    priority_problem,
    validate_queue_name,
)
from queueapp.transitions import MOVES

logger = logging.getLogger(__name__)

MAX_ARGS_BYTES = 256 * 1024
MAX_TEXT_CHARS = 2000


class JobStateConflict(Conflict):
    """The job's state does not allow this."""

    code = "invalid_state"


def _conflict(job: Job, action: str) -> JobStateConflict:
    return JobStateConflict(f"Cannot {action} a job that is {job.state}.", detail={"state": job.state})


# --- the one service that changes a job's state (ORM executor) -------------------------------


def job_transition(
    *,
    job_id: UUID | str | None = None,
    job: Job | None = None,
    move: str,
    kind: str | None = None,
    actor: User | None = None,
    detail: dict[str, Any] | None = None,
    **fields: Any,
) -> Job | None:
    """Apply a move from `transitions.MOVES` with the ORM executor (`transitions.write_move`).

    Returns the updated job, or None when the move does not leave from the job's state
    (someone else moved it first). Must run inside a transaction. Give `job` when the caller has
    already locked and read the row in this transaction (the row is not read again), else `job_id`.
    """
    now = clock.now()
    if job is None and job_id is not None:
        job = Job.objects.select_for_update(no_key=True).filter(pk=job_id).first()
    if job is None or not transitions.allows(move, job.state, job.due_at, now):
        return None
    source, target = job.state, MOVES[move].target
    fields.setdefault("updated_at", now)
    moved = transitions.write_move(
        job_id=job.pk,
        move=move,
        source=source,
        attempt=job.attempts,
        kind=kind or move,
        now=now,
        fields=fields,
        actor_id=actor.pk if actor else None,
        detail=detail,
    )
    if not moved:
        return None
    if target != source:  # a cancel request leaves the job running: it enters no state
        transaction.on_commit(partial(metrics.job_transition, job.queue, job.function, target))
    job.state = target  # the row as the UPDATE left it: every value set here is a plain one
    for name, value in fields.items():
        setattr(job, name, value)
    return job


# --- submit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A validated request to run a function."""

    function: str
    args: dict[str, Any]
    queue: str | None = None
    correlation_id: str = ""
    idempotency_key: str | None = None
    defer_until: datetime | None = None
    defer_by_seconds: float | None = None
    max_tries: int | None = None
    timeout_seconds: int | None = None
    #: Base of the exponential backoff between attempts; the function's when None.
    retry_backoff_s: float | None = None
    #: Wait for a person's approval before running, even when the function does not ask for it.
    requires_approval: bool = False
    approval_reason: str = ""
    #: Who asks for the call (a plugin tool call's acting user); defaults to the job's owner.
    requested_by: User | None = None
    #: -100..100, higher starts first; the function's (`job_function(priority=)`) when None.
    priority: int | None = None
    #: No job of this function and workspace is created while another holds this key (README, "Unique jobs").
    unique_key: str | None = None
    #: How long the new job holds its key: "waiting" (the default) or "active" (waiting or running).
    unique_while: str | None = None
    #: When the key is held: "keep" (the default, answer with the holder) or "replace" its args.
    on_conflict: str | None = None
    #: Jobs with the same key share its limits (`queueapp.limits`).
    concurrency_key: str | None = None

    def fingerprint(self) -> str:
        body: dict[str, Any] = {
            "function": self.function,
            "args": self.args,
            "queue": self.queue,
            "correlation_id": self.correlation_id,
            "defer_until": self.defer_until.isoformat() if self.defer_until else None,
            "defer_by_seconds": self.defer_by_seconds,
            "max_tries": self.max_tries,
            "timeout_seconds": self.timeout_seconds,
        }
        if self.retry_backoff_s is not None:
            body["retry_backoff_s"] = self.retry_backoff_s  # only when used, as below
        if self.requires_approval or self.approval_reason:
            # Only when used, so the keys of jobs recorded before HITL existed keep their hash.
            body["requires_approval"] = self.requires_approval
            body["approval_reason"] = self.approval_reason
        for name in ("priority", "unique_key", "unique_while", "on_conflict", "concurrency_key"):
            if getattr(self, name) is not None:  # only when used, as above
                body[name] = getattr(self, name)
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def function_for_submit(name: str) -> registry.JobFunction:
    """Return the public function `name`, or 400 naming the known ones."""
    fn = registry.get_function(name)
    if fn is None or fn.internal:
        known = ", ".join(f.name for f in registry.functions())
        raise ValidationFailed(
            f"Unknown function '{name}'. Known functions: {known}.",
            fields={"function": [f"Unknown function. Known: {known}."]},
            code="unknown_function",
        )
    return fn


def job_args_validate(args: object, fn: registry.JobFunction | None, admin: Callable[[], bool]) -> None:
    """The args a job of `fn` may run with: a JSON object within the size limit that the function's
    own check (`check_args`) accepts; `admin` answers, when asked, whether the caller administers
    the workspace. The one check for submits and for args an approver corrects."""
    if not isinstance(args, dict):
        raise ValidationFailed("args must be a JSON object.", fields={"args": ["Must be a JSON object."]})
    size = len(json.dumps(args, separators=(",", ":")).encode())
    if size > MAX_ARGS_BYTES:
        raise ValidationFailed(
            f"args is {size} bytes; the limit is {MAX_ARGS_BYTES}.",
            fields={"args": [f"At most {MAX_ARGS_BYTES} bytes of JSON."]},
        )
    if fn is None or fn.check_args is None:
        return
    problems = fn.check_args(args, admin())
    if problems:
        raise ValidationFailed(
            f"Invalid args for {fn.name}: " + " ".join(problems.values()),
            fields={f"args.{key}": [message] for key, message in problems.items()},
        )


def _check_queue(queue: str | None) -> None:
    """A submit's queue: a well-formed name (`validate_queue_name`) that some worker takes jobs from."""
    if not queue:
        return
    validate_queue_name(queue)
    if queue in settings.HQ_QUEUES:  # the common case, without building the whole list per submit
        return
    allowed = registry.queues_allowed()
    if queue not in allowed:
        raise ValidationFailed(
            f"Unknown queue '{queue}': no worker takes jobs from it. Queues: {', '.join(allowed)}.",
            fields={"queue": [f"Must be one of: {', '.join(allowed)}."]},
            code="unknown_queue",
        )


def _check_options(submission: Submission) -> None:
    """A submit's priority (`models.priority_problem`), keys (`models.key_problem`) and unique-key
    options; 400 naming each bad field."""
    problems: dict[str, str] = {}
    if submission.priority is not None and (problem := priority_problem(submission.priority)):
        problems["priority"] = problem
    for name in ("unique_key", "concurrency_key"):
        key = getattr(submission, name)
        if key is not None and (problem := key_problem(key) if isinstance(key, str) else "A non-empty string."):
            problems[name] = problem
    for name, choices in (("unique_while", UniqueWhile), ("on_conflict", OnConflict)):
        value = getattr(submission, name)
        if value is None:
            continue
        if value not in choices.values:
            problems[name] = f"Must be one of: {', '.join(choices.values)}."
        elif submission.unique_key is None:
            problems[name] = "Only with a unique_key."
    if problems:
        raise ValidationFailed(
            " ".join(f"{name}: {message}" for name, message in problems.items()),
            fields={name: [message] for name, message in problems.items()},
        )


def _is_admin(workspace: Workspace, owner: User | None) -> bool:
    return permissions.acts_as_admin(user=owner, workspace_id=workspace.pk)


def _prepare(
    *, workspace: Workspace, owner: User | None, submission: Submission, now: datetime, admin: Callable[[], bool]
) -> enqueue.NewJob:
    """Check one submission against the registry and the rules; return the row it would write.

    `admin` answers (once, lazily) whether the caller is a workspace admin, for functions whose
    args depend on it.
    """
    fn = function_for_submit(submission.function)
    job_args_validate(submission.args, fn, admin)
    _check_queue(submission.queue)
    _check_options(submission)
    gated = fn.requires_approval or submission.requires_approval
    if len(submission.approval_reason) > MAX_TEXT_CHARS:
        raise ValidationFailed(
            "approval_reason is too long.", fields={"approval_reason": [f"At most {MAX_TEXT_CHARS} characters."]}
        )
    if gated and (submission.defer_until or submission.defer_by_seconds):
        raise ValidationFailed(
            "A job that waits for approval cannot also be deferred: it is queued when approved.",
            fields={"defer_until" if submission.defer_until else "defer_by_seconds": ["Not with approval."]},
        )
    if submission.defer_until and submission.defer_by_seconds is not None:
        raise ValidationFailed(
            "Give defer_until or defer_by_seconds, not both.",
            fields={"defer_by_seconds": ["Not with defer_until."]},
        )
    due_at = now
    if submission.defer_until:
        if submission.defer_until < now - timedelta(minutes=1):
            raise ValidationFailed(
                "defer_until is more than a minute in the past.",
                fields={"defer_until": ["Must not be more than a minute in the past."]},
            )
        due_at = max(submission.defer_until, now)
    elif submission.defer_by_seconds:
        due_at = now + timedelta(seconds=submission.defer_by_seconds)
    return enqueue.new_job(
        fn,
        workspace_id=workspace.pk,
        args=submission.args,
        now=now,
        due_at=due_at,
        gated=gated,
        owner_id=owner.pk if owner else None,
        queue=submission.queue or None,
        correlation_id=submission.correlation_id or "",
        idempotency_key=submission.idempotency_key or None,
        # Only a key is ever compared with it: no hash (a JSON dump and a SHA-256) for the rest.
        idempotency_hash=submission.fingerprint() if submission.idempotency_key else "",
        max_tries=submission.max_tries or None,
        timeout_s=submission.timeout_seconds or None,
        retry_backoff_s=submission.retry_backoff_s,
        priority=submission.priority,
        unique_key=submission.unique_key,
        unique_while=submission.unique_while,
        concurrency_key=submission.concurrency_key,
    )


@dataclass(frozen=True)
class Submitted:
    """How a submit was answered: the job, and whether it is new."""

    #: The new job (as the row written), or the job answered instead of a new one.
    job: Job | enqueue.NewJob
    created: bool
    #: The submit's unique key was held: `job` is the job holding it, and nothing was created.
    duplicate: bool = False
    #: ... and the holder's args (and a deferred holder's due time) were replaced by the submit's.
    replaced: bool = False


def job_submit(*, workspace: Workspace, owner: User | None, submission: Submission) -> tuple[Job, bool]:
    """`job_submit_row`, with a new job as a `Job` instance."""
    job, created = job_submit_row(workspace=workspace, owner=owner, submission=submission)
    return (job.as_job() if isinstance(job, enqueue.NewJob) else job), created


def job_submit_row(
    *, workspace: Workspace, owner: User | None, submission: Submission
) -> tuple[Job | enqueue.NewJob, bool]:
    """`job_submit_outcome` as (job, created)."""
    answer = job_submit_outcome(workspace=workspace, owner=owner, submission=submission)
    return answer.job, answer.created


def job_submit_outcome(*, workspace: Workspace, owner: User | None, submission: Submission) -> Submitted:
    """Record a job and hand it to ARQ after commit. A new job is answered as the row written
    (`enqueue.NewJob`, which reads like a fresh Job without building one), a replay as its Job.

    A job whose function requires approval, or submitted with `requires_approval`, is recorded
    `awaiting_approval` with its HITL request in the same transaction and is not pushed.
    An idempotency key seen in this workspace within `HQ_IDEMPOTENCY_WINDOW_S` returns the
    original job (created False) when the body matches, and 409 when it does not or when it
    belongs to another user. A unique key held by another job creates nothing (`_unique_answers`).
    """
    now = clock.now()
    job = _prepare(
        workspace=workspace, owner=owner, submission=submission, now=now, admin=lambda: _is_admin(workspace, owner)
    )
    if job.waiting and not job.idempotency_key and not job.unique_key:
        enqueue.jobs_insert([job], actor_id=job.owner_id)  # one statement: no transaction of its own
        return Submitted(job, True)
    for _ in range(SUBMIT_TRIES):
        try:
            with transaction.atomic():
                if job.idempotency_key:
                    existing = _idempotent_replay(workspace, owner, job.idempotency_key, job.idempotency_hash, now)
                    if existing is not None:
                        return Submitted(existing, False)
                answers = _unique_answers(workspace, owner, [job], {job.id: submission}, now)
                if job.id in answers:
                    return answers[job.id]
                _write_with_requests([job], submission_of={job.id: submission}, owner=owner)
                _unique_race_check([job])
                return Submitted(job, True)
        except (IntegrityError, _UniqueRace):
            # Two requests raced on one idempotency or unique key; the loser re-reads the winner's job.
            continue
    raise Conflict("Could not record the job; try again.", code="idempotency_race")


#: Tries of a submit that races others on one key: the loser of a race finds the winner's job on its next.
SUBMIT_TRIES = 5


class _UniqueRace(Exception):
    """A job just written with `unique_while: "active"` found a job of its key that started meanwhile."""


def _unique_answers(
    workspace: Workspace,
    owner: User | None,
    jobs: list[enqueue.NewJob],
    submission_of: dict[UUID, Submission],
    now: datetime,
) -> dict[UUID, Submitted]:
    """The answer of each of `jobs` (in submit order) whose unique key is held, by job id; the rest
    are to be written. Must run in the transaction that writes them.

    A key is held by a job of the same workspace and function in `models.UNIQUE_KEY_HELD` (waiting
    before its first start; with `unique_while: "active"`, anything short of finished); a submit
    with `unique_while: "active"` also takes any unfinished job of the key as its holder. A job
    earlier in the same batch holds it too. `on_conflict: "replace"` gives a queued or deferred
    holder the submit's args, and a deferred holder the submit's due time when later (a debounce).
    The partial unique index `uniq_job_unique_key_held` makes a concurrent second holder fail to
    insert (IntegrityError: the caller tries again and finds this one).
    """
    keyed = [job for job in jobs if job.unique_key]
    if not keyed:
        return {}
    holders = _unique_holders(workspace, {(job.function, job.unique_key) for job in keyed if job.unique_key})
    answers: dict[UUID, Submitted] = {}
    for job in keyed:
        key = (job.function, job.unique_key or "")
        active = job.unique_while == UniqueWhile.ACTIVE
        holder = next((row for row in holders.get(key, []) if active or _holds_key(row)), None)
        if holder is None:
            holders[key] = [job]  # later jobs of this batch with the key find this one
            continue
        replace = submission_of[job.id].on_conflict == OnConflict.REPLACE
        replaced = replace and holder.state in WAITING_STATES and _replace_args(holder, job, owner, now)
        answers[job.id] = Submitted(holder, False, duplicate=True, replaced=replaced)
    return answers


def _unique_holders(
    workspace: Workspace, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], list[Job | enqueue.NewJob]]:
    """The workspace's waiting or running jobs of `keys` ((function, unique key)), their rows locked;
    waiting ones first."""
    query = Q()
    for function, key in keys:
        query |= Q(function=function, unique_key=key)
    rows = (
        Job.objects.select_for_update(no_key=True)
        .filter(query, workspace=workspace, state__in=[*UNIQUE_HOLD_STATES, JobState.RUNNING])
        .order_by("id")  # locks taken in one order, so two batches cannot deadlock
    )
    found: dict[tuple[str, str], list[Job | enqueue.NewJob]] = {}
    for row in sorted(rows, key=lambda r: r.state == JobState.RUNNING):
        found.setdefault((row.function, row.unique_key or ""), []).append(row)
    return found


def _holds_key(job: Job | enqueue.NewJob) -> bool:
    """Is an unfinished job in `models.UNIQUE_KEY_HELD`? (A new one is: it has made no attempt.)"""
    if job.unique_while == UniqueWhile.ACTIVE:
        return True
    return job.attempts == 0 and job.state in UNIQUE_HOLD_STATES


def _replace_args(holder: Job | enqueue.NewJob, job: enqueue.NewJob, owner: User | None, now: datetime) -> bool:
    """Give a waiting holder (locked) the new submit's args, and when it is deferred, the later of
    the two due times. A job not yet written (earlier in the batch) is changed in place."""
    fields: dict[str, Any] = {"args": job.args}
    if holder.state == JobState.DEFERRED and job.due_at > holder.due_at:
        fields["due_at"] = job.due_at
    if isinstance(holder, enqueue.NewJob):
        for name, value in fields.items():
            setattr(holder, name, value)
        return True
    fields["updated_at"] = now
    Job.objects.filter(pk=holder.pk).update(**fields)
    JobEvent.objects.create(
        job_id=holder.pk,
        kind="args_replaced",
        from_state=holder.state,
        to_state=holder.state,
        attempt=holder.attempts,
        actor_id=owner.pk if owner else None,
        detail={"due_at": fields["due_at"].isoformat()} if "due_at" in fields else {},
        at=now,
    )
    for name, value in fields.items():
        setattr(holder, name, value)
    return True


def _unique_race_check(jobs: list[enqueue.NewJob]) -> None:
    """After writing `jobs`: one with `unique_while: "active"` found no unfinished job of its key,
    but one that does not hold the key in the index (a "waiting" job that started between the read
    and the insert) may have appeared since. Then the new job must not stay: raise, so that the
    caller's transaction rolls back and tries again (and finds that job)."""
    active = [j for j in jobs if j.unique_key and j.unique_while == UniqueWhile.ACTIVE]
    if not active:
        return
    query = Q()
    for job in active:
        query |= Q(workspace_id=job.workspace_id, function=job.function, unique_key=job.unique_key)
    others = Job.objects.filter(query, state__in=[*UNIQUE_HOLD_STATES, JobState.RUNNING]).exclude(
        pk__in=[j.id for j in active]
    )
    if others.exists():
        raise _UniqueRace


def _write_with_requests(
    jobs: list[enqueue.NewJob], *, submission_of: dict[UUID, Submission], owner: User | None
) -> None:
    """Write jobs, and for each gated one its HITL request, in the caller's transaction."""
    requests = {}
    for job in jobs:
        if job.state == JobState.AWAITING_APPROVAL:
            requests[job.id] = uuid.uuid4()
            job.detail = {"hitl_request_id": str(requests[job.id])}
    enqueue.jobs_insert(jobs, actor_id=owner.pk if owner else None)
    for job in jobs:
        if job.id in requests:
            submission = submission_of[job.id]
            _hitl_open(
                job=job.as_job(),
                fn=registry.get_function(job.function),
                requested_by=submission.requested_by or owner,
                reason=submission.approval_reason,
                id=requests[job.id],
            )


def _hitl_open(
    *, job: Job, fn: registry.JobFunction | None, requested_by: User | None, reason: str, id: UUID | None = None
) -> HITLRequest:
    """Record the pending request of a job that now waits in `awaiting_approval`."""
    now = clock.now()
    ttl_s = fn.approval_ttl_s if fn else registry.JobFunction.approval_ttl_s
    return HITLRequest.objects.create(
        id=id or uuid.uuid4(),
        workspace_id=job.workspace_id,
        job=job,
        function=job.function,
        args=job.args,
        requested_by=requested_by,
        reason=reason,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )


def _idempotent_replay(
    workspace: Workspace, owner: User | None, key: str, fingerprint: str, now: datetime
) -> Job | None:
    """The job a submit with this key replays, its row locked, or None to record anew (`_replay_or_free_key`)."""
    existing = Job.objects.select_for_update(no_key=True).filter(workspace=workspace, idempotency_key=key).first()
    return _replay_or_free_key(existing, owner, fingerprint, now)


def _replay_or_free_key(existing: Job | None, owner: User | None, fingerprint: str, now: datetime) -> Job | None:
    """The job a submit with this key replays (its row locked by the caller), or None to record anew.

    A key last used before the window is freed here (a write). 409 when the key is another
    user's, or was used with a different body within the window.
    """
    if existing is None:
        return None
    if existing.created_at < now - timedelta(seconds=settings.HQ_IDEMPOTENCY_WINDOW_S):
        # Outside the window the key is free again: the old job keeps its row, not its key.
        Job.objects.filter(pk=existing.pk).update(idempotency_key=None)
        return None
    if existing.owner_id != (owner.pk if owner else None):
        raise Conflict("This idempotency key is in use by another user's job.", code="idempotency_key_in_use")
    if existing.idempotency_hash != fingerprint:
        raise Conflict(
            "This idempotency key was used with a different request body.",
            code="idempotency_conflict",
            detail={"job_id": str(existing.pk)},
        )
    return existing


MAX_BATCH = 1000


def jobs_submit_many(
    *, workspace: Workspace, owner: User | None, submissions: list[Submission]
) -> list[tuple[Job | enqueue.NewJob, bool]]:
    """`jobs_submit_many_outcomes` as (job, created) per submission."""
    answers = jobs_submit_many_outcomes(workspace=workspace, owner=owner, submissions=submissions)
    return [(answer.job, answer.created) for answer in answers]


def jobs_submit_many_outcomes(
    *, workspace: Workspace, owner: User | None, submissions: list[Submission]
) -> list[Submitted]:
    """Record up to MAX_BATCH jobs at once, all or none: how each submission was answered, in order.

    Each submission is checked as `job_submit` checks it; any refusal refuses the whole batch with
    400 naming each bad item (`jobs.3.args`). The new rows and their events are one statement,
    their pushes one pipelined Redis call. An idempotency key behaves as on a single submit: a
    replay returns the original job (created False), within the batch too; a conflict is 409 with
    the item's `index` and nothing is recorded. A unique key behaves as on a single submit, and a
    job earlier in the batch holds its key for the later ones.
    """
    if not 1 <= len(submissions) <= MAX_BATCH:
        raise ValidationFailed(
            f"A batch holds 1 to {MAX_BATCH} jobs; this one has {len(submissions)}.",
            fields={"jobs": [f"Give 1 to {MAX_BATCH} jobs."]},
        )
    now = clock.now()
    admin = functools.cache(lambda: _is_admin(workspace, owner))
    jobs: list[enqueue.NewJob] = []
    errors: dict[str, list[str]] = {}
    for i, submission in enumerate(submissions):
        try:
            jobs.append(_prepare(workspace=workspace, owner=owner, submission=submission, now=now, admin=admin))
        except ValidationFailed as exc:
            for field, messages in (exc.fields or {"": [exc.message]}).items():
                errors[f"jobs.{i}.{field}".rstrip(".")] = messages
    if errors:
        first, messages = next(iter(errors.items()))
        raise ValidationFailed(
            f"{len({k.split('.')[1] for k in errors})} of {len(submissions)} jobs are invalid; nothing was "
            f"recorded. {first}: {messages[0]}",
            fields=errors,
        )
    submission_of = {job.id: submission for job, submission in zip(jobs, submissions, strict=True)}
    for _ in range(SUBMIT_TRIES):
        try:
            with transaction.atomic():
                results, fresh = _replays_and_fresh(workspace, owner, jobs, now)
                answers = _unique_answers(workspace, owner, fresh, submission_of, now)
                fresh = [job for job in fresh if job.id not in answers]
                _write_with_requests(fresh, submission_of=submission_of, owner=owner)
                _unique_race_check(fresh)
                return [answers.get(job.id) or Submitted(job, created) for job, created in results]
        except (IntegrityError, _UniqueRace):
            continue  # raced another request on an idempotency or unique key: read again
    raise Conflict("Could not record the jobs; try again.", code="idempotency_race")


def _replays_and_fresh(
    workspace: Workspace, owner: User | None, jobs: list[enqueue.NewJob], now: datetime
) -> tuple[list[tuple[Job | enqueue.NewJob, bool]], list[enqueue.NewJob]]:
    """(job, created) for each of `jobs`, in order, and the jobs to write: those no key replays."""
    keys = [job.idempotency_key for job in jobs if job.idempotency_key]
    existing = {}
    if keys:
        existing = {row.idempotency_key: row for row in _jobs_keyed(workspace, keys)}
    results: list[tuple[Job | enqueue.NewJob, bool]] = []
    fresh: list[enqueue.NewJob] = []
    first_of: dict[str, enqueue.NewJob] = {}
    for index, job in enumerate(jobs):
        key = job.idempotency_key
        try:
            if key in first_of:  # the same key earlier in this batch
                earlier = first_of[key]
                if earlier.idempotency_hash != job.idempotency_hash:
                    raise Conflict(
                        "This idempotency key was used with a different request body.",
                        code="idempotency_conflict",
                        detail={"job_id": str(earlier.id)},
                    )
                results.append((earlier, False))
                continue
            replayed = _replay_or_free_key(existing.get(key), owner, job.idempotency_hash, now) if key else None
        except Conflict as exc:
            exc.detail = {**(exc.detail or {}), "index": index}
            exc.fields = {f"jobs.{index}.idempotency_key": [exc.message]}
            raise
        if replayed is not None:
            results.append((replayed, False))
            continue
        if key:
            first_of[key] = job
        results.append((job, True))
        fresh.append(job)
    return results, fresh


#: The ids of a workspace's jobs that hold any of the keys (an array), their rows locked (`_jobs_keyed`).
KEYED_JOBS_SQL = (
    "SELECT j.id FROM unnest(%b::text[]) AS k(key) CROSS JOIN LATERAL (SELECT id FROM queueapp_job"
    " WHERE workspace_id = %s AND idempotency_key = k.key LIMIT 1 FOR NO KEY UPDATE) AS j"
)


def _jobs_keyed(workspace: Workspace, keys: list[str]) -> list[Job]:
    """The workspace's jobs that hold any of `keys`, their rows locked.

    The keys go as one array (psycopg binds a list of 1,000 placeholders through a regex: a sixth of
    a batch submit's time), each looked up on its own in the unique index on (workspace, key): a
    LATERAL ... LIMIT 1 cannot be flattened into a join, so the plan is one index probe per key
    however many jobs the workspace has and whatever the statistics say. (`idempotency_key =
    ANY(keys)`, and a plain join, let the planner read every job of the workspace instead, which it
    did once psycopg prepared the statement and PostgreSQL chose a generic plan: 3 ms became
    100-150 ms a batch at 10,000 jobs, and grew with the table.) Rows are locked in key order, so
    two batches that share keys lock them in the same order. The rows, seldom any, are then read by id.
    """
    if connection.vendor != "postgresql":
        return list(Job.objects.select_for_update(no_key=True).filter(workspace=workspace, idempotency_key__in=keys))
    ids = db.fetch_binary(KEYED_JOBS_SQL, [sorted(set(keys)), workspace.pk])
    return list(Job.objects.filter(pk__in=[row[0] for row in ids])) if ids else []


def job_push(job: Job) -> None:
    """Hand a waiting job's next attempt to ARQ; a failure is left to the relay."""
    lane = registry.fair_lane(job.function, job.workspace_id)
    enqueue.push([transport.Push(job.id, job.attempts + 1, job.queue, job.due_at, lane, job.priority)])


# --- client actions --------------------------------------------------------------------------


def job_cancel(*, job: Job, actor: User | None, via: str = DecidedVia.API) -> Job:
    """Cancel a waiting job at once (and its pending HITL request); ask a running one to abort; 409 when finished.

    403 unless `actor` may change the job through `via` (hq.permissions); None is the system.
    """
    permissions.ensure_may_change(actor, job, what="job", via=via)
    with transaction.atomic():
        current = Job.objects.select_for_update(no_key=True).get(pk=job.pk)
        moved = job_transition(job=current, move="cancel", actor=actor, finished_at=clock.now())
        if moved is not None:
            HITLRequest.objects.filter(job_id=job.pk, state=HITLState.PENDING).update(
                state=HITLState.CANCELLED, decided_by=actor, decided_at=moved.updated_at, decided_via=via
            )
            return moved
        if current.state != JobState.RUNNING:
            raise _conflict(current, "cancel")
        if current.cancel_requested_at is None:
            job_transition(
                job=current,
                move="request_cancel",
                kind="cancel_requested",
                actor=actor,
                cancel_requested_at=clock.now(),
            )
            attempt = current.attempts
            transaction.on_commit(lambda: _abort(current.pk, attempt), robust=True)
        return current


def _abort(job_id: UUID, attempt: int) -> None:
    try:
        transport.abort(job_id, attempt)
    except redis.RedisError as exc:
        logger.warning("abort of job %s could not reach Redis (%s)", job_id, exc)


def job_retry(*, job: Job, actor: User | None, via: str = DecidedVia.API) -> Job:
    """Run a failed, cancelled or rejected job again, with a fresh set of tries.

    403 unless `actor` may change the job through `via` (hq.permissions); None is the system.

    A retry never bypasses a decision: a job whose latest HITL request is not `approved` (or whose
    function requires approval and which was never approved) goes back to `awaiting_approval`
    with a new request for the same requester.
    """
    permissions.ensure_may_change(actor, job, what="job", via=via)
    now = clock.now()
    with transaction.atomic():
        current = Job.objects.select_for_update(no_key=True).get(pk=job.pk)
        latest = current.hitl_requests.order_by("-created_at").first()
        gated = _needs_new_approval(current, latest)
        try:
            with transaction.atomic():  # a savepoint: the unique index may refuse the move
                moved = job_transition(
                    job=current,
                    move="retry_gated" if gated else "retry",
                    actor=actor,
                    due_at=now,
                    dispatched_at=None if gated else now,
                    finished_at=None,
                    error="",
                    result=None,
                    cancel_requested_at=None,
                    tries_base=current.attempts,
                )
        except IntegrityError:
            raise _unique_key_held(current) from None
        if moved is None:
            raise _conflict(current, "retry")
        if gated:
            _hitl_open(
                job=moved,
                fn=registry.get_function(moved.function),
                requested_by=latest.requested_by if latest else moved.owner,
                reason=latest.reason if latest else "",
            )
        else:
            transaction.on_commit(lambda: job_push(moved), robust=True)
        return moved


class UniqueKeyHeld(Conflict):
    """Retrying the job would make it a second holder of its unique key."""

    code = "unique_key_held"


def _unique_key_held(job: Job) -> UniqueKeyHeld:
    holder = (
        Job.objects.filter(
            UNIQUE_KEY_HELD, workspace_id=job.workspace_id, function=job.function, unique_key=job.unique_key
        )
        .values_list("pk", flat=True)
        .first()
    )
    return UniqueKeyHeld(
        f"Another job holds this job's unique key ({job.unique_key!r}); retry it once that one has started or ended.",
        detail={"state": job.state, "job_id": str(holder) if holder else None},
    )


def _needs_new_approval(job: Job, latest: HITLRequest | None) -> bool:
    if latest is not None:
        return latest.state != HITLState.APPROVED
    fn = registry.get_function(job.function)
    return bool(fn and fn.requires_approval)
