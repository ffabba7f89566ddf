"""Every `/v1` operation as a client method, written once for `Client` and `AsyncClient`.

Each method names its operation (`@op(method, path)`, `@paged(path)`); a test walks `/v1/schema`
and fails when an operation has no method here, or a method names an operation HQ does not have.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal

from hq_client._core import (
    Api,
    Gather,
    Listing,
    Program,
    Route,
    Sleep,
    flow,
    new_idempotency_key,
    op,
    paged,
    rfc3339,
)
from hq_client.errors import Timeout
from hq_client.types import (
    FINISHED_STATES,
    AgentSchedule,
    BatchJob,
    Conversation,
    ConversationDetail,
    ConversationMessage,
    FunctionInfo,
    HITLRequest,
    Job,
    JobEvent,
    JobSubmission,
    KeyDepth,
    Me,
    Message,
    Note,
    ObservabilitySummary,
    QueueDepth,
    QueueState,
    Room,
    ScheduleChange,
    ScheduledTask,
    ScheduleOwner,
    StoredQuery,
    StoredQueryResults,
    SubmittedJob,
    Worker,
)

#: Most jobs one POST /v1/queue/jobs/batch takes.
MAX_BATCH: Final = 1000


class _Unset(Enum):
    UNSET = "UNSET"


#: "Leave this field as it is" in an update (None would set it to null).
UNSET: Final = _Unset.UNSET


def _changes(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not UNSET}


def _when(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def submission(
    function: str,
    args: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    correlation_id: str | None = None,
    idempotency_key: str | None = None,
    defer_until: datetime | None = None,
    defer_by_seconds: float | None = None,
    max_tries: int | None = None,
    timeout_seconds: int | None = None,
    require_approval: bool = False,
    approval_reason: str | None = None,
    priority: int | None = None,
    unique_key: str | None = None,
    unique_while: str | None = None,
    on_conflict: str | None = None,
    concurrency_key: str | None = None,
) -> JobSubmission:
    """One submit's body (for `job_submit`'s fields, or an item of `jobs_submit_batch`).

    :param idempotency_key: HQ returns the job first submitted with this key instead of a new one
        (within `HQ_IDEMPOTENCY_WINDOW_S`); the client makes one up when none is given, so its own
        retries never submit twice.
    :param defer_until: an aware datetime: the job is not started before it.
    :param priority: -100..100, higher starts first (HQ's default: the function's, usually 0).
    :param unique_key: while a job of the function holding this key waits (or runs, with
        `unique_while="active"`), HQ creates no other and answers with it (`duplicate`);
        `on_conflict="replace"` also gives a waiting holder these args.
    :param concurrency_key: jobs with the same key share its limits (at most N running at once,
        N starts per period), set in HQ's admin or on the function.
    """
    body: JobSubmission = {"function": function, "args": dict(args or {})}
    optional: dict[str, Any] = {
        "queue": queue,
        "correlation_id": correlation_id,
        "idempotency_key": idempotency_key,
        "defer_until": _when(defer_until),
        "defer_by_seconds": defer_by_seconds,
        "max_tries": max_tries,
        "timeout_seconds": timeout_seconds,
        "approval_reason": approval_reason,
        "priority": priority,
        "unique_key": unique_key,
        "unique_while": unique_while,
        "on_conflict": on_conflict,
        "concurrency_key": concurrency_key,
    }
    body.update({k: v for k, v in optional.items() if v is not None})  # type: ignore[typeddict-item]
    if require_approval:
        body["require_approval"] = True
    return body


def _keyed(item: JobSubmission) -> JobSubmission:
    """`item` with an idempotency key (a fresh one unless it has its own)."""
    if item.get("idempotency_key"):
        return item
    return {**item, "idempotency_key": new_idempotency_key()}


def _page(route: Route, key: str, path: dict[str, Any] | None = None, **params: Any) -> Listing[Any]:
    return route.listing(key, path=path, params=params)


class Operations:
    """The methods of `Client` and `AsyncClient` (sync there, async here: same names, same arguments)."""

    # --- jobs ---------------------------------------------------------------------------------------

    @op("POST", "/v1/queue/jobs")
    def job_submit(
        route: Route,
        function: str,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        defer_until: datetime | None = None,
        defer_by_seconds: float | None = None,
        max_tries: int | None = None,
        timeout_seconds: int | None = None,
        require_approval: bool = False,
        approval_reason: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        unique_while: str | None = None,
        on_conflict: str | None = None,
        concurrency_key: str | None = None,
    ) -> Program[SubmittedJob]:
        """Submit one job (the fields: see `hq_client.submission`); returns it, the earlier job with
        the same idempotency key, or the job holding its unique key (`duplicate`). Retried on
        transport errors and 503 with the same key: one job, however many tries."""
        item = submission(
            function,
            args,
            queue=queue,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            defer_until=defer_until,
            defer_by_seconds=defer_by_seconds,
            max_tries=max_tries,
            timeout_seconds=timeout_seconds,
            require_approval=require_approval,
            approval_reason=approval_reason,
            priority=priority,
            unique_key=unique_key,
            unique_while=unique_while,
            on_conflict=on_conflict,
            concurrency_key=concurrency_key,
        )
        body = _keyed(item)
        return route.call(json=body, ok=(200, 202), retry=True)

    @op("POST", "/v1/queue/jobs/batch")
    def jobs_submit_batch(route: Route, jobs: Sequence[JobSubmission]) -> Program[list[BatchJob]]:
        """Submit 1 to 1,000 jobs in one request (all or none); each gets an idempotency key unless it
        has one, so the request is retried safely. Returns the jobs in order (`replayed` marks earlier
        ones returned for their key)."""
        body = {"jobs": [_keyed(item) for item in jobs]}
        answer = yield from route.call(json=body, ok=(200, 202), retry=True)
        result: list[BatchJob] = answer["jobs"]
        return result

    @flow
    def jobs_submit_many(
        api: Api, jobs: Iterable[JobSubmission], *, chunk: int = MAX_BATCH, concurrency: int = 1
    ) -> Program[list[BatchJob]]:
        """Submit any number of jobs in batches of `chunk` (at most 1,000): one request per batch,
        up to `concurrency` of them at once (each over its own keep-alive connection). Returns the
        jobs in the order given.

        A failure stops at that batch: no batch is sent after it, the batches before it (and, with
        `concurrency` > 1, those under way beside it) are recorded, and submitting the same items
        again (with their keys, which this sets on the given dicts) replays them.
        """
        if not 1 <= chunk <= MAX_BATCH:
            raise ValueError(f"chunk must be 1 to {MAX_BATCH}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        batches: list[list[JobSubmission]] = [[]]
        for item in jobs:
            item.setdefault("idempotency_key", new_idempotency_key())
            if len(batches[-1]) == chunk:
                batches.append([])
            batches[-1].append(item)
        if not batches[-1]:
            return []
        programs = tuple(Operations.jobs_submit_batch.program(api, batch) for batch in batches)
        answers: list[list[BatchJob]] = yield Gather(programs, concurrency)
        return [job for answer in answers for job in answer]

    @op("GET", "/v1/queue/jobs/{job_id}")
    def job_get(route: Route, job_id: str) -> Program[Job]:
        """One job."""
        return route.call(path={"job_id": job_id})

    @paged("/v1/queue/jobs")
    def jobs(
        route: Route,
        *,
        state: str | Sequence[str] | None = None,
        function: str | None = None,
        queue: str | None = None,
        correlation_id: str | None = None,
        concurrency_key: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Listing[Job]:
        """Every job of the workspace that matches the filters (`state`: one or several), the newest first."""
        return _page(
            route,
            "jobs",
            state=state,
            function=function,
            queue=queue,
            correlation_id=correlation_id,
            concurrency_key=concurrency_key,
            created_after=created_after,
            created_before=created_before,
        )

    @paged("/v1/queue/correlation/{correlation_id}")
    def jobs_by_correlation(route: Route, correlation_id: str) -> Listing[Job]:
        """Every job submitted with this correlation id."""
        return _page(route, "jobs", {"correlation_id": correlation_id})

    @op("POST", "/v1/queue/jobs/{job_id}/cancel")
    def job_cancel(route: Route, job_id: str) -> Program[Job]:
        """Cancel a job (a running one is cancelled when its attempt ends); Conflict when it has finished."""
        return route.call(path={"job_id": job_id})

    @op("POST", "/v1/queue/jobs/{job_id}/retry")
    def job_retry(route: Route, job_id: str) -> Program[Job]:
        """Run a failed, cancelled or rejected job again; Conflict in any other state."""
        return route.call(path={"job_id": job_id})

    @paged("/v1/queue/jobs/{job_id}/events")
    def job_events(route: Route, job_id: str) -> Listing[JobEvent]:
        """Every event of a job (each state change, with its attempt and detail), oldest first."""
        return _page(route, "events", {"job_id": job_id})

    @flow
    def wait(
        api: Api, job_id: str, timeout: float = 60.0, *, poll_s: float = 0.05, max_poll_s: float = 2.0
    ) -> Program[Job]:
        """Poll a job until it has finished (succeeded, failed, cancelled or rejected) and return it.

        Polls back off exponentially from `poll_s` to `max_poll_s`; raises `Timeout` (with the last
        job seen) when `timeout` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        delay = poll_s
        while True:
            job: Job = yield from Operations.job_get.program(api, job_id)
            if job["state"] in FINISHED_STATES:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"job {job_id} is still {job['state']} after {timeout:g} s", job=job)
            yield Sleep(min(delay, left))
            delay = min(delay * 2, max_poll_s)

    # --- the queue ----------------------------------------------------------------------------------

    @op("GET", "/v1/queue/depth")
    def depth(route: Route) -> Program[list[QueueDepth]]:
        """Waiting, deferred, running and awaiting jobs per queue (this workspace's)."""
        answer = yield from route.call()
        result: list[QueueDepth] = answer["queues"]
        return result

    @op("GET", "/v1/queue/depth/keys")
    def depth_keys(route: Route) -> Program[list[KeyDepth]]:
        """Waiting, held and running jobs per concurrency key, with the key limit in force (workspace admins)."""
        answer = yield from route.call()
        result: list[KeyDepth] = answer["keys"]
        return result

    @op("GET", "/v1/queue/functions")
    def functions(route: Route) -> Program[list[FunctionInfo]]:
        """The functions a submit may name."""
        answer = yield from route.call()
        result: list[FunctionInfo] = answer["functions"]
        return result

    @op("GET", "/v1/queue/workers")
    def workers(route: Route) -> Program[list[Worker]]:
        """The live workers."""
        answer = yield from route.call()
        result: list[Worker] = answer["workers"]
        return result

    @op("POST", "/v1/queue/queues/{queue}/pause")
    def queue_pause(route: Route, queue: str) -> Program[QueueState]:
        """Stop starting this workspace's jobs on `queue` (running ones finish)."""
        return route.call(path={"queue": queue})

    @op("POST", "/v1/queue/queues/{queue}/resume")
    def queue_resume(route: Route, queue: str) -> Program[QueueState]:
        """Start this workspace's jobs on `queue` again."""
        return route.call(path={"queue": queue})

    @op("GET", "/v1/queue/observability/summary")
    def observability_summary(route: Route) -> Program[ObservabilitySummary]:
        """Throughput, failures, latency per queue, HITL and schedule health (this workspace's)."""
        return route.call()

    # --- HITL ---------------------------------------------------------------------------------------

    @paged("/v1/queue/hitl")
    def hitl_requests(
        route: Route,
        *,
        state: str | Sequence[str] | None = None,
        function: str | None = None,
        job_id: str | None = None,
    ) -> Listing[HITLRequest]:
        """Every approval request that matches the filters (`state`: one or several; HQ's default: pending)."""
        return _page(route, "requests", state=state, function=function, job_id=job_id)

    @op("GET", "/v1/queue/hitl/{request_id}")
    def hitl_get(route: Route, request_id: str) -> Program[HITLRequest]:
        """One approval request."""
        return route.call(path={"request_id": request_id})

    @op("POST", "/v1/queue/hitl/{request_id}/approve")
    def hitl_approve(
        route: Route, request_id: str, *, comment: str = "", args: Mapping[str, Any] | None = None
    ) -> Program[HITLRequest]:
        """Approve a pending request (optionally with changed `args`); the job then runs."""
        body: dict[str, Any] = {"comment": comment}
        if args is not None:
            body["args"] = dict(args)
        return route.call(path={"request_id": request_id}, json=body)

    @op("POST", "/v1/queue/hitl/{request_id}/reject")
    def hitl_reject(route: Route, request_id: str, *, comment: str = "") -> Program[HITLRequest]:
        """Reject a pending request; its job ends `rejected`."""
        return route.call(path={"request_id": request_id}, json={"comment": comment})

    # --- scheduled tasks ----------------------------------------------------------------------------

    @paged("/v1/scheduled-tasks")
    def scheduled_tasks(route: Route) -> Listing[ScheduledTask]:
        """Every scheduled task the caller may read."""
        return _page(route, "tasks")

    @op("POST", "/v1/scheduled-tasks")
    def scheduled_task_create(
        route: Route,
        *,
        name: str,
        schedule: str,
        timezone: str,
        action: str,
        args: Mapping[str, Any],
        enabled: bool = True,
    ) -> Program[ScheduledTask]:
        """Create a task that runs `action` with `args` on the crontab `schedule` in `timezone`."""
        body = {"name": name, "schedule": schedule, "timezone": timezone, "action": action, "args": dict(args)}
        return route.call(json={**body, "enabled": enabled}, ok=(201,))

    @op("GET", "/v1/scheduled-tasks/{task_id}")
    def scheduled_task_get(route: Route, task_id: str) -> Program[ScheduledTask]:
        """One scheduled task."""
        return route.call(path={"task_id": task_id})

    @op("PATCH", "/v1/scheduled-tasks/{task_id}")
    def scheduled_task_update(
        route: Route,
        task_id: str,
        *,
        name: str | _Unset = UNSET,
        schedule: str | _Unset = UNSET,
        timezone: str | _Unset = UNSET,
        args: Mapping[str, Any] | _Unset = UNSET,
        enabled: bool | _Unset = UNSET,
    ) -> Program[ScheduledTask]:
        """Change the fields given (the others stay as they are)."""
        body = _changes(name=name, schedule=schedule, timezone=timezone, args=args, enabled=enabled)
        return route.call(path={"task_id": task_id}, json=body)

    @op("DELETE", "/v1/scheduled-tasks/{task_id}")
    def scheduled_task_delete(route: Route, task_id: str) -> Program[None]:
        """Delete a task (its pending fires are cancelled)."""
        return route.call(path={"task_id": task_id}, ok=(204,))

    # --- agent schedules ----------------------------------------------------------------------------

    @paged("/v1/api/schedules")
    def schedules(
        route: Route,
        *,
        state: str | None = None,
        scope: Literal["mine", "all"] | None = None,
        owner_user_id: str | None = None,
        include_archived: bool | None = None,
    ) -> Listing[AgentSchedule]:
        """Every agent schedule that matches the filters."""
        return _page(
            route, "schedules", state=state, scope=scope, owner_user_id=owner_user_id, include_archived=include_archived
        )

    @op("POST", "/v1/api/schedules")
    def schedule_create(
        route: Route,
        *,
        name: str,
        trigger: Mapping[str, Any],
        prompt: str,
        deliver_to: Mapping[str, Any],
        agent_id: str | None = None,
        description: str | None = None,
        reset_each_fire: bool = False,
        delivery_locale: str | None = None,
    ) -> Program[AgentSchedule]:
        """Create an agent schedule (trigger: `{"type": "cron", "expr", "tz"}` or an rrule); returns it."""
        body: dict[str, Any] = {
            "name": name,
            "trigger": dict(trigger),
            "prompt": prompt,
            "deliver_to": dict(deliver_to),
            "reset_each_fire": reset_each_fire,
        }
        body.update({k: v for k, v in (("agent_id", agent_id), ("description", description)) if v is not None})
        if delivery_locale is not None:
            body["delivery_locale"] = delivery_locale
        answer = yield from route.call(json=body, ok=(201,))
        schedule: AgentSchedule = answer["schedule"]
        return schedule

    @op("GET", "/v1/api/schedules/{schedule_id}")
    def schedule_get(route: Route, schedule_id: str) -> Program[AgentSchedule]:
        """One agent schedule."""
        return route.call(path={"schedule_id": schedule_id})

    @op("PATCH", "/v1/api/schedules/{schedule_id}")
    def schedule_update(
        route: Route,
        schedule_id: str,
        *,
        name: str | _Unset = UNSET,
        description: str | None | _Unset = UNSET,
        trigger: Mapping[str, Any] | _Unset = UNSET,
        args: Mapping[str, Any] | _Unset = UNSET,
    ) -> Program[ScheduleChange]:
        """Change the fields given (`args` merges key by key); Conflict when archived."""
        body = _changes(name=name, description=description, trigger=trigger, args=args)
        return route.call(path={"schedule_id": schedule_id}, json=body)

    @op("DELETE", "/v1/api/schedules/{schedule_id}")
    def schedule_archive(route: Route, schedule_id: str) -> Program[ScheduleChange]:
        """Archive an agent schedule (it stops firing; its history stays)."""
        return route.call(path={"schedule_id": schedule_id})

    @op("DELETE", "/v1/api/schedules/{schedule_id}/erase")
    def schedule_erase(route: Route, schedule_id: str) -> Program[ScheduleChange]:
        """Erase an agent schedule and its history."""
        return route.call(path={"schedule_id": schedule_id})

    @op("POST", "/v1/api/schedules/{schedule_id}/pause")
    def schedule_pause(route: Route, schedule_id: str) -> Program[ScheduleChange]:
        """Pause an agent schedule (pausing a paused one changes nothing); Conflict when quarantined or archived."""
        return route.call(path={"schedule_id": schedule_id})

    @op("POST", "/v1/api/schedules/{schedule_id}/resume")
    def schedule_resume(route: Route, schedule_id: str) -> Program[ScheduleChange]:
        """Resume an agent schedule; answers its `next_fire_at`."""
        return route.call(path={"schedule_id": schedule_id})

    @op("POST", "/v1/api/schedules/{schedule_id}/fire_now")
    def schedule_fire_now(route: Route, schedule_id: str) -> Program[ScheduleChange]:
        """Fire an active or paused agent schedule now; answers the fire's `fire_id` and `job_id`."""
        return route.call(path={"schedule_id": schedule_id})

    @op("GET", "/v1/api/schedules/owners")
    def schedule_owners(route: Route) -> Program[list[ScheduleOwner]]:
        """The users who own agent schedules, with their counts."""
        answer = yield from route.call()
        result: list[ScheduleOwner] = answer["owners"]
        return result

    # --- conversations ------------------------------------------------------------------------------

    @paged("/v1/api/conversations")
    def conversations(route: Route, *, schedule_id: str | None = None) -> Listing[Conversation]:
        """Every conversation of the caller (agent schedules' runs write into them)."""
        return _page(route, "conversations", schedule_id=schedule_id)

    @op("GET", "/v1/api/conversations/{conversation_id}")
    def conversation_get(
        route: Route, conversation_id: str, *, limit: int | None = None, offset: int | None = None
    ) -> Program[ConversationDetail]:
        """One conversation with one page of its messages (`conversation_messages` reads them all)."""
        return route.call(path={"conversation_id": conversation_id}, params={"limit": limit, "offset": offset})

    @paged("/v1/api/conversations/{conversation_id}")
    def conversation_messages(route: Route, conversation_id: str) -> Listing[ConversationMessage]:
        """Every message of a conversation, oldest first."""
        return _page(route, "messages", {"conversation_id": conversation_id})

    # --- rooms --------------------------------------------------------------------------------------

    @paged("/v1/rooms")
    def rooms(route: Route) -> Listing[Room]:
        """Every room of the workspace."""
        return _page(route, "rooms")

    @op("POST", "/v1/rooms")
    def room_create(
        route: Route, name: str, *, members: Sequence[str] = (), agent_id: str | None = None
    ) -> Program[Room]:
        """Create a room with these member user ids (and an agent)."""
        return route.call(json={"name": name, "members": list(members), "agent_id": agent_id}, ok=(201,))

    @op("GET", "/v1/rooms/{room_id}")
    def room_get(route: Route, room_id: str) -> Program[Room]:
        """One room."""
        return route.call(path={"room_id": room_id})

    @paged("/v1/rooms/{room_id}/messages")
    def room_messages(route: Route, room_id: str) -> Listing[Message]:
        """Every message of a room."""
        return _page(route, "messages", {"room_id": room_id})

    @op("POST", "/v1/rooms/{room_id}/messages")
    def room_message_post(
        route: Route, room_id: str, body: str, *, msgtype: Literal["swp.text", "swp.markdown"] = "swp.text"
    ) -> Program[Message]:
        """Post a message to a room."""
        return route.call(path={"room_id": room_id}, json={"msgtype": msgtype, "body": body}, ok=(201,))

    # --- notes and stored queries -------------------------------------------------------------------

    @paged("/v1/notes")
    def notes(route: Route) -> Listing[Note]:
        """Every note of the workspace."""
        return _page(route, "notes")

    @op("POST", "/v1/notes")
    def note_create(route: Route, title: str, body: str = "", *, tags: Sequence[str] = ()) -> Program[Note]:
        """Write a note."""
        return route.call(json={"title": title, "body": body, "tags": list(tags)}, ok=(201,))

    @paged("/v1/notes/queries")
    def stored_queries(route: Route) -> Listing[StoredQuery]:
        """Every stored notes query."""
        return _page(route, "queries")

    @op("POST", "/v1/notes/queries")
    def stored_query_create(route: Route, name: str, filters: Mapping[str, Any]) -> Program[StoredQuery]:
        """Store a notes query (`filters`: text, tags, author_id, created_after, created_before, limit)."""
        return route.call(json={"name": name, "filters": dict(filters)}, ok=(201,))

    @op("GET", "/v1/notes/queries/{query_id}/results")
    def stored_query_results(route: Route, query_id: str) -> Program[StoredQueryResults]:
        """Run a stored query: the notes it finds."""
        return route.call(path={"query_id": query_id})

    # --- the caller ---------------------------------------------------------------------------------

    @op("GET", "/v1/me")
    def me(route: Route) -> Program[Me]:
        """Who the token is: user, workspace, role, scopes."""
        return route.call()
