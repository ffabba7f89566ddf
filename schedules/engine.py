"""The scheduler: claim due schedules, write each slot's fire and job once, advance the schedules.

Any number of schedulers may run `scheduler_pass` at once (one per `runworker`); the claim, the
fire rows and the advance share one transaction, so each slot fires exactly once. The side task
that loops over `scheduler_tick` is `schedules.jobs.scheduler`; what a fire does is
`schedules.fires`. On PostgreSQL the hot statements (the claim, the next-due read) are SQL bound on
the server and prepared (`hq.db`); SQLite runs the same queries through the ORM.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import redis
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Min, TextField
from django.db.models.functions import Cast

from hq import clock, db
from queueapp import enqueue, transport
from schedules import actions, triggers
from schedules.models import Schedule, ScheduleFire, ScheduleState

logger = logging.getLogger("hq.scheduler")

#: The queue function that runs one fire (`schedules.fires.fire_job`).
FIRE_FUNCTION = "schedules.fire"
#: The nudge that wakes sleeping schedulers when a schedule's next fire may have moved earlier.
WAKE_MESSAGE = "*schedules*"


class FireItem(NamedTuple):
    """One fire to write: a schedule's slot (or a manual fire's request time)."""

    schedule_id: Any
    workspace_id: Any
    owner_id: Any
    slot: datetime
    #: Slots missed during downtime before this one.
    skipped_slots: int
    manual: bool


class _Outcome(NamedTuple):
    """What a pass does with a claimed row; the same for every row with its trigger, slot and action."""

    #: The slot to fire, or None when the row is quarantined instead.
    slot: datetime | None
    skipped_slots: int
    next_fire_at: datetime | None
    state: str
    state_reason: str


#: A pass's outcomes by (trigger JSON text, slot, action): rows that share them share the outcome.
_Outcomes = dict[tuple[str, datetime, str], _Outcome]


def next_fire(trigger: dict[str, Any], after: datetime) -> datetime | None:
    """The next slot strictly after `after` (TriggerError for a bad stored trigger)."""
    return triggers.next_fire_after(trigger, after)


def wake_schedulers() -> None:
    """Wake sleeping schedulers to re-read the earliest next fire; best-effort (they poll anyway)."""
    try:
        transport.nudge(WAKE_MESSAGE)
    except redis.RedisError:
        pass


def fires_create(items: list[FireItem]) -> list[uuid.UUID]:
    """Write fire rows and their jobs in the caller's transaction (pushed after commit); returns the fire ids.

    A (schedule, slot) that already has a scheduled fire is left out (`_not_yet_fired`).
    """
    items = _not_yet_fired(items)
    if not items:
        return []
    fire_ids = [uuid.uuid4() for _ in items]
    job_ids = [uuid.uuid4() for _ in items]
    db.bulk_insert(
        ScheduleFire,
        {
            "id": fire_ids,
            "schedule_id": [i.schedule_id for i in items],
            "slot": [i.slot for i in items],
            "skipped_slots": [i.skipped_slots for i in items],
            "manual": [i.manual for i in items],
            "job_id": job_ids,
            "created_at": [clock.now()] * len(items),
        },
    )
    enqueue.jobs_create(
        [
            enqueue.JobSpec(
                workspace_id=i.workspace_id,
                owner_id=i.owner_id,
                function=FIRE_FUNCTION,
                args={"fire_id": str(fire_id)},
                correlation_id=f"schedule:{i.schedule_id}",
                id=job_id,
            )
            for i, fire_id, job_id in zip(items, fire_ids, job_ids, strict=True)
        ]
    )
    return fire_ids


def _not_yet_fired(items: list[FireItem]) -> list[FireItem]:
    """Drop (schedule, slot) pairs that already have a scheduled fire, in one query.

    A slot can come round twice when next_fire_at is set back to one that fired (a resume or an
    edit computed on a host whose clock lags). Left in, the unique (schedule, slot) constraint
    would abort the whole batch on every pass and stall every schedule in it.
    """
    scheduled = [i for i in items if not i.manual]
    if not scheduled:
        return items
    ids, slots = [i.schedule_id for i in scheduled], list({i.slot for i in scheduled})
    if connection.vendor == "postgresql":
        rows = db.fetch_binary(
            "SELECT schedule_id, slot FROM schedules_schedulefire"
            " WHERE NOT manual AND schedule_id = ANY(%b::uuid[]) AND slot = ANY(%b::timestamptz[])",
            [ids, slots],
        )
    else:
        rows = list(
            ScheduleFire.objects.filter(manual=False, schedule_id__in=ids, slot__in=slots).values_list(
                "schedule_id", "slot"
            )
        )
    if not rows:
        return items
    fired = set(rows)
    for i in scheduled:
        if (i.schedule_id, i.slot) in fired:
            logger.warning("schedule %s: slot %s already fired; not firing it again", i.schedule_id, i.slot.isoformat())
    return [i for i in items if i.manual or (i.schedule_id, i.slot) not in fired]


#: Due active schedules, earliest first, locked FOR NO KEY UPDATE SKIP LOCKED: other schedulers skip
#: them, and inserts that reference them (the fires) do not wait. The state is a literal so that a
#: prepared (generic) plan still matches the partial index `schedule_due`; the batch size is one too.
CLAIM_SQL = (
    "SELECT id, workspace_id, owner_id, trigger::text, action, next_fire_at FROM schedules_schedule"
    " WHERE state = 'active' AND next_fire_at <= %s ORDER BY next_fire_at LIMIT {batch}"
    " FOR NO KEY UPDATE SKIP LOCKED"
)
NEXT_DUE_SQL = "SELECT min(next_fire_at) FROM schedules_schedule WHERE state = 'active'"

#: A claimed row: id, workspace_id, owner_id, the trigger as JSON text, action, next_fire_at.
_Claimed = tuple[Any, ...]


def _claim(now: datetime, batch: int) -> list[_Claimed]:
    """Claim up to `batch` due active schedules in the caller's transaction (`CLAIM_SQL`)."""
    if connection.vendor == "postgresql":
        return db.fetch_binary(CLAIM_SQL.format(batch=int(batch)), [now])
    rows = (
        Schedule.objects.select_for_update(skip_locked=True, no_key=True)
        .filter(state=ScheduleState.ACTIVE, next_fire_at__lte=now)
        .order_by("next_fire_at")
        .annotate(trigger_text=Cast("trigger", TextField()))
        .values_list("id", "workspace_id", "owner_id", "trigger_text", "action", "next_fire_at")[:batch]
    )
    return list(rows)


def _outcome(trigger_text: str, slot: datetime, action: str, now: datetime) -> _Outcome:
    """What to do with a due row: fire its slot (after downtime, the latest missed one) and move
    on to the next, or quarantine it when its stored trigger or action no longer works."""
    try:
        trigger = json.loads(trigger_text)
        skipped = 0
        nxt = next_fire(trigger, slot)
        if nxt is not None and nxt <= now:
            latest, skipped = triggers.latest_fire_at_or_before(
                trigger, before=now, not_before=slot - timedelta(microseconds=1)
            )
            slot = latest or slot
            nxt = next_fire(trigger, now)
        if actions.get(action) is None:
            raise triggers.TriggerError(f"Action '{action}' is not registered.")
    except triggers.TriggerError as exc:
        return _Outcome(None, 0, None, ScheduleState.QUARANTINED, f"Trigger: {exc}"[:2000])
    return _Outcome(
        slot, skipped, nxt, ScheduleState.ACTIVE, "" if nxt is not None else "The trigger has no further fires."
    )


def scheduler_pass(*, batch: int | None = None) -> int:
    """Fire every due active schedule once; return how many fires were written.

    Rows are claimed with FOR NO KEY UPDATE SKIP LOCKED (`CLAIM_SQL`) and advanced in the same
    transaction that writes their fire rows and jobs, so any number of schedulers fire each slot
    exactly once; the unique (schedule, slot) constraint is the last guard. After downtime only
    the latest missed slot fires, with the number skipped recorded.
    """
    return _fire_due(clock.now(), batch or settings.HQ_SCHEDULER_BATCH)


def scheduler_tick(*, batch: int | None = None) -> tuple[int, datetime | None]:
    """One scheduler iteration: fire what is due; return (fires written, the earliest next fire).

    The earliest next fire is read first, outside any transaction: when it is still ahead (the
    idle case) that one indexed read is the whole iteration. Otherwise the due rows are claimed and
    fired as by `scheduler_pass`, and the earliest next fire is read again. The read decides only
    whether to claim: exactly-once rests on the claim and the advance, as before.
    """
    now = clock.now()
    earliest = next_due_at()
    if earliest is None or earliest > now:
        return 0, earliest
    return _fire_due(now, batch or settings.HQ_SCHEDULER_BATCH), next_due_at()


def _fire_due(now: datetime, batch: int) -> int:
    """Fire every row due at `now`, a batch per transaction; return how many fires were written.

    A backlog larger than one batch (a burst: thousands of schedules on the same minute) is
    fired by HQ_SCHEDULER_CONNECTIONS transactions at once, each on its own connection, from the
    moment a claim comes back full: while PostgreSQL writes one batch, the next is built. They
    claim disjoint rows (SKIP LOCKED), exactly as that many schedulers would.
    """
    outcomes: _Outcomes = {}
    helpers = settings.HQ_SCHEDULER_CONNECTIONS - 1 if connection.vendor == "postgresql" else 0
    pool: ThreadPoolExecutor | None = None
    running: list[Future[int]] = []

    def backlog() -> None:
        nonlocal pool
        if pool is None and helpers > 0:
            pool = ThreadPoolExecutor(helpers, thread_name_prefix="scheduler")
            running.extend(pool.submit(_fire_batches, now, batch, outcomes, own_thread=True) for _ in range(helpers))

    try:
        fired = _fire_batches(now, batch, outcomes, on_full=backlog)
        return fired + sum(f.result() for f in running)
    finally:
        if pool is not None:
            pool.shutdown()


def _fire_batches(
    now: datetime,
    batch: int,
    outcomes: _Outcomes,
    *,
    on_full: Callable[[], None] | None = None,
    own_thread: bool = False,
) -> int:
    """Fire batches until a claim comes back short; in a thread of its own, close its connection after."""
    total = 0
    try:
        while True:
            fired, full = _fire_batch(now, batch, outcomes, on_full)
            total += fired
            if not full:
                return total
    finally:
        if own_thread:
            connections.close_all()


def _fire_batch(
    now: datetime,
    batch: int,
    outcomes: _Outcomes,
    on_full: Callable[[], None] | None = None,
) -> tuple[int, bool]:
    """Claim, fire and advance one batch in one transaction; return (fires written, whether the claim was full).

    `on_full` is called as soon as a claim comes back full (more may be due).
    """
    with transaction.atomic():
        due = _claim(now, batch)
        if on_full is not None and len(due) == batch:
            on_full()
        items: list[FireItem] = []
        nexts: list[datetime | None] = []
        states: list[str] = []
        reasons: list[str] = []
        for schedule_id, workspace_id, owner_id, trigger_text, action, slot in due:
            key = (trigger_text, slot, action)
            out = outcomes.get(key)
            if out is None:
                out = outcomes[key] = _outcome(trigger_text, slot, action, now)
            if out.slot is None:
                logger.warning("schedule %s quarantined: %s", schedule_id, out.state_reason)
            else:
                items.append(FireItem(schedule_id, workspace_id, owner_id, out.slot, out.skipped_slots, False))
            nexts.append(out.next_fire_at)
            states.append(out.state)
            reasons.append(out.state_reason)
        fired = len(fires_create(items))
        db.bulk_update(
            Schedule,
            [row[0] for row in due],
            {"next_fire_at": nexts, "state": states, "state_reason": reasons, "updated_at": [now] * len(due)},
        )
    return fired, len(due) == batch


def next_due_at() -> datetime | None:
    """The earliest next fire of any active schedule (one read of the partial index `schedule_due`)."""
    if connection.vendor == "postgresql":
        earliest: datetime | None = db.fetch_binary(NEXT_DUE_SQL, [])[0][0]
        return earliest
    value: datetime | None = Schedule.objects.filter(state=ScheduleState.ACTIVE).aggregate(m=Min("next_fire_at"))["m"]
    return value
