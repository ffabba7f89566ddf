"""The scheduler: claim due schedules, write each slot's fire and job once, advance the schedules.

Any number of schedulers may run `scheduler_pass` at once (one per `runworker`); the claim, the
fire rows and the advance share one transaction, so each slot fires exactly once. The side task
that loops over it is `schedules.jobs.scheduler`; what a fire does is `schedules.fires`.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Min

from hq import clock, db
from queueapp import enqueue, transport
from schedules import actions, triggers
from schedules.models import Schedule, ScheduleFire, ScheduleState

logger = logging.getLogger("hq.scheduler")

#: The queue function that runs one fire (`schedules.fires.fire_job`).
FIRE_FUNCTION = "schedules.fire"
#: The nudge that wakes sleeping schedulers when a schedule's next fire may have moved earlier.
WAKE_MESSAGE = "*schedules*"


class Due(NamedTuple):
    """A claimed schedule row: what firing it needs, without a model instance per row."""

    id: Any
    workspace_id: Any
    owner_id: Any
    trigger: dict[str, Any]
    action: str
    #: None for a schedule fired by hand while paused (`schedule_fire_now`); the scheduler claims
    #: only rows where it is set and due.
    next_fire_at: datetime | None


#: (schedule, slot, slots skipped before it, manual) for each fire to write.
FireItem = tuple[Due, datetime, int, bool]


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
    """Write fire rows and their jobs in the caller's transaction (pushed after commit); returns the fire ids."""
    fire_ids = [uuid.uuid4() for _ in items]
    specs = [
        enqueue.JobSpec(
            workspace_id=s.workspace_id,
            owner_id=s.owner_id,
            function=FIRE_FUNCTION,
            args={"fire_id": str(fire_id)},
            correlation_id=f"schedule:{s.id}",
        )
        for (s, *_), fire_id in zip(items, fire_ids, strict=True)
    ]
    db.bulk_insert(
        ScheduleFire,
        {
            "id": fire_ids,
            "schedule_id": [s.id for s, *_ in items],
            "slot": [slot for _, slot, _, _ in items],
            "skipped_slots": [skipped for _, _, skipped, _ in items],
            "manual": [manual for *_, manual in items],
            "job_id": [spec.id for spec in specs],
            "created_at": [clock.now()] * len(items),
        },
    )
    enqueue.jobs_create(specs)
    return fire_ids


def _not_yet_fired(items: list[FireItem]) -> list[FireItem]:
    """Drop (schedule, slot) pairs that already have a scheduled fire, in one query.

    A slot can come round twice when next_fire_at is set back to one that fired (a resume or an
    edit computed on a host whose clock lags). Left in, the unique (schedule, slot) constraint
    would abort the whole batch on every pass and stall every schedule in it.
    """
    if not items:
        return items
    fired = set(
        ScheduleFire.objects.filter(
            manual=False, schedule_id__in=[s.id for s, *_ in items], slot__in=[slot for _, slot, *_ in items]
        ).values_list("schedule_id", "slot")
    )
    for s, slot, *_ in items:
        if (s.id, slot) in fired:
            logger.warning("schedule %s: slot %s already fired; not firing it again", s.id, slot.isoformat())
    return [item for item in items if (item[0].id, item[1]) not in fired]


def scheduler_pass(*, batch: int | None = None) -> int:
    """Fire every due active schedule once; return how many fires were written.

    Rows are claimed with FOR NO KEY UPDATE SKIP LOCKED (other schedulers skip them; inserts that
    reference them do not wait) and advanced in the same transaction that writes
    their fire rows and jobs, so any number of schedulers fire each slot exactly once; the unique
    (schedule, slot) constraint is the last guard. After downtime only the latest missed slot
    fires, with the number skipped recorded.
    """
    now = clock.now()
    batch = batch or settings.HQ_SCHEDULER_BATCH
    total = 0
    while True:
        with transaction.atomic():
            due = [
                Due(*row)
                for row in Schedule.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(state=ScheduleState.ACTIVE, next_fire_at__lte=now)
                .order_by("next_fire_at")
                .values_list(*Due._fields)[:batch]
            ]
            items: list[FireItem] = []
            advanced: dict[str, list[Any]] = {"next_fire_at": [], "state": [], "state_reason": [], "updated_at": []}
            following: dict[tuple[str, datetime], datetime | None] = {}  # many rows share a trigger and slot
            for s in due:
                slot, skipped = s.next_fire_at, 0
                assert slot is not None  # claimed by next_fire_at <= now
                try:
                    key = (json.dumps(s.trigger, sort_keys=True), slot)
                    if key not in following:
                        following[key] = next_fire(s.trigger, slot)
                    nxt = following[key]
                    if nxt is not None and nxt <= now:
                        latest, skipped = triggers.latest_fire_at_or_before(
                            s.trigger, before=now, not_before=slot - timedelta(microseconds=1)
                        )
                        slot = latest or slot
                        nxt = next_fire(s.trigger, now)
                    if actions.get(s.action) is None:
                        raise triggers.TriggerError(f"Action '{s.action}' is not registered.")
                except triggers.TriggerError as exc:
                    state, nxt, reason = ScheduleState.QUARANTINED, None, f"Trigger: {exc}"[:2000]
                    logger.warning("schedule %s quarantined: %s", s.id, exc)
                else:
                    items.append((s, slot, skipped, False))
                    state, reason = ScheduleState.ACTIVE, "" if nxt is not None else "The trigger has no further fires."
                for column, value in zip(advanced, (nxt, state, reason, now), strict=True):
                    advanced[column].append(value)
            items = _not_yet_fired(items)
            fires_create(items)
            db.bulk_update(Schedule, [s.id for s in due], advanced)
        total += len(items)
        if len(due) < batch:
            return total


def next_due_at() -> datetime | None:
    """The earliest next fire of any active schedule (one indexed query)."""
    active = Schedule.objects.filter(state=ScheduleState.ACTIVE)
    earliest: datetime | None = active.aggregate(m=Min("next_fire_at"))["m"]
    return earliest
