"""Writes for schedules: create, update, lifecycle, the scheduler pass and the fire job body."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F, Min

from hq import clock, db, metrics
from hq.errors import Conflict, HQError, PaymentRequired, ValidationFailed
from hq.models import User, Workspace
from hq.selectors import Departure, member_departure
from queueapp import enqueue, transport
from schedules import actions, triggers
from schedules.models import FireStatus, Schedule, ScheduleFire, ScheduleState

logger = logging.getLogger("hq.scheduler")

FIRE_FUNCTION = "schedules.fire"
WAKE_MESSAGE = "*schedules*"
UNSET: Any = object()


class ScheduleStateConflict(Conflict):
    """The schedule's state does not allow this."""

    code = "invalid_state"


def _conflict(schedule: Schedule, action: str) -> ScheduleStateConflict:
    return ScheduleStateConflict(
        f"Cannot {action} a schedule that is {schedule.state}.", detail={"state": schedule.state}
    )


class OwnerDeparted(Conflict):
    """The schedule's owner is no longer an active member of its workspace."""

    code = "owner_departed"


def owner_departure(s: Schedule) -> str:
    """Why the schedule may not run for its owner (left the workspace, deactivated), or "" when it may."""
    departure = member_departure(user_id=s.owner_id, workspace_id=s.workspace_id)
    return departure.reason("Owner") if departure else ""


def _ensure_owner_present(s: Schedule, action: str) -> None:
    """409 `owner_departed` when the owner is not an active member of the schedule's workspace."""
    reason = owner_departure(s)
    if reason:
        raise OwnerDeparted(
            f"Cannot {action} this schedule: {reason} Re-add the owner to the workspace (then resume it), "
            "or archive it.",
            detail={"state": s.state, "reason": reason},
        )


# --- triggers ----------------------------------------------------------------------------------


def trigger_prepare(trigger: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """Validate a trigger; an rrule without dtstart gets the current minute in its zone."""
    try:
        if not isinstance(trigger, dict):
            raise triggers.TriggerError("trigger must be an object with kind, expr and tz.")
        clean = triggers.validate_trigger(trigger)
        if clean["kind"] == "rrule" and not clean.get("dtstart"):
            now = now or clock.now()
            local = now.astimezone(ZoneInfo(clean["tz"])).replace(second=0, microsecond=0, tzinfo=None)
            clean["dtstart"] = local.isoformat()
            clean = triggers.validate_trigger(clean)
        return clean
    except triggers.TriggerError as exc:
        field = f"trigger.{exc.field}" if getattr(exc, "field", None) else "trigger"
        code = exc.code if isinstance(exc, triggers.TriggerTooExpensive) else "invalid_trigger"
        raise ValidationFailed(f"Invalid trigger: {exc}", fields={field: [str(exc)]}, code=code) from exc


def next_fire(trigger: dict[str, Any], after: datetime) -> datetime | None:
    """The next slot strictly after `after` (TriggerError for a bad stored trigger)."""
    return triggers.next_fire_after(trigger, after)


# --- create and update -------------------------------------------------------------------------


def _check_plan(workspace: Workspace, adding: int = 1) -> None:
    locked = Workspace.objects.select_for_update(of=("self",), no_key=True).select_related("plan").get(pk=workspace.pk)
    current = Schedule.objects.filter(workspace=locked).exclude(state=ScheduleState.ARCHIVED).count()
    limit = locked.plan.max_schedules
    if current + adding > limit:
        raise PaymentRequired(
            f"The plan allows {limit} schedules and the workspace has {current}.",
            detail={"limit": limit, "current": current},
        )


def _notify() -> None:
    try:
        transport.nudge(WAKE_MESSAGE)
    except redis.RedisError:
        pass


@transaction.atomic
def schedule_create(
    *,
    workspace: Workspace,
    owner: User,
    name: str,
    trigger: Any,
    action: str,
    args: Any,
    description: str | None = None,
    active: bool = True,
) -> Schedule:
    """Create a schedule (402 past the plan limit); it fires at its trigger's next slot."""
    now = clock.now()
    clean_trigger = trigger_prepare(trigger, now=now)
    clean_args = actions.validate_args(action, args, workspace=workspace, owner=owner)
    _check_plan(workspace)
    schedule = Schedule.objects.create(
        workspace=workspace,
        owner=owner,
        name=name,
        description=description,
        trigger=clean_trigger,
        action=action,
        args=clean_args,
        state=ScheduleState.ACTIVE if active else ScheduleState.PAUSED,
        state_reason="" if active else f"Created paused by {owner.label}.",
        next_fire_at=next_fire(clean_trigger, now) if active else None,
        created_at=now,
        updated_at=now,
    )
    transaction.on_commit(_notify, robust=True)
    return schedule


def _set_state(s: Schedule, state: str, reason: str, *, next_fire_at: datetime | None = None) -> None:
    """Move a locked schedule to `state`; only an active one keeps a next fire (a database check)."""
    s.state, s.state_reason, s.updated_at = state, reason[:2000], clock.now()
    s.next_fire_at = next_fire_at if state == ScheduleState.ACTIVE else None
    s.save(update_fields=["state", "next_fire_at", "state_reason", "updated_at"])


def _locked(schedule: Schedule | Any) -> Schedule:
    """The schedule (or schedule id) re-read and locked: its row only, never its workspace or owner.

    FOR NO KEY UPDATE: rows that reference it (fires, messages) can still be inserted meanwhile.
    """
    pk = schedule.pk if isinstance(schedule, Schedule) else schedule
    return Schedule.objects.select_for_update(of=("self",), no_key=True).select_related("workspace", "owner").get(pk=pk)


@transaction.atomic
def schedule_update(
    *,
    schedule: Schedule,
    name: Any = UNSET,
    description: Any = UNSET,
    trigger: Any = UNSET,
    args: Any = UNSET,
    merge: Collection[str] = (),
) -> tuple[Schedule, bool]:
    """Change only what is given; returns (schedule, trigger_changed). Archived: 409.

    merge: of "trigger" and "args", those given as only the keys to change; they are merged into
    the row's values after it is locked, so two concurrent partial updates cannot undo each other.
    """
    s = _locked(schedule)
    if s.state == ScheduleState.ARCHIVED:
        raise _conflict(s, "update")
    _ensure_owner_present(s, "update")
    if "trigger" in merge and trigger is not UNSET:
        trigger = _merged(s.trigger, trigger)
    if "args" in merge and args is not UNSET:
        args = _merged(s.args, args)
    now = clock.now()
    fields = ["updated_at"]
    if name is not UNSET:
        s.name = name
        fields.append("name")
    if description is not UNSET:
        s.description = description
        fields.append("description")
    trigger_changed = trigger is not UNSET
    if trigger_changed:
        s.trigger = trigger_prepare(trigger, now=now)
        fields.append("trigger")
        if s.state == ScheduleState.ACTIVE:
            s.next_fire_at = next_fire(s.trigger, now)
            fields.append("next_fire_at")
    if args is not UNSET:
        s.args = actions.validate_args(s.action, args, workspace=s.workspace, owner=s.owner)
        fields.append("args")
    s.updated_at = now
    s.save(update_fields=fields)
    transaction.on_commit(_notify, robust=True)
    return s, trigger_changed


def _merged(current: Any, changes: Any) -> Any:
    """`current` with `changes` applied key by key (a non-object on either side replaces it)."""
    if isinstance(current, dict) and isinstance(changes, dict):
        return {**current, **changes}
    return changes


# --- lifecycle -----------------------------------------------------------------------------------


@transaction.atomic
def schedule_pause(*, schedule: Schedule, actor: User | None, reason: str | None = None) -> Schedule:
    """active → paused (next fire cleared); paused stays paused; quarantined or archived: 409."""
    s = _locked(schedule)
    if s.state == ScheduleState.PAUSED:
        return s
    if s.state != ScheduleState.ACTIVE:
        raise _conflict(s, "pause")
    _set_state(s, ScheduleState.PAUSED, reason or f"Paused by {actor.label if actor else 'the system'}.")
    return s


@transaction.atomic
def schedule_resume(*, schedule: Schedule) -> Schedule:
    """paused → active with a fresh next fire; a quarantined one only once its trigger and args validate.

    Either needs its owner to be an active member of the workspace (else 409 `owner_departed`).
    """
    s = _locked(schedule)
    if s.state == ScheduleState.ACTIVE:
        return s
    if s.state == ScheduleState.ARCHIVED:
        raise _conflict(s, "resume")
    _ensure_owner_present(s, "resume")
    now = clock.now()
    try:
        trigger = triggers.validate_trigger(s.trigger, stored=True)
        actions.validate_args(s.action, s.args, workspace=s.workspace, owner=s.owner)
        nxt = next_fire(trigger, now)
    except (triggers.TriggerError, HQError) as exc:
        if s.state == ScheduleState.QUARANTINED:
            raise ScheduleStateConflict(
                f"The schedule stays quarantined: {exc}. Fix its trigger or args first.",
                detail={"state": s.state, "reason": str(exc)},
            ) from exc
        raise
    _set_state(s, ScheduleState.ACTIVE, "", next_fire_at=nxt)
    transaction.on_commit(_notify, robust=True)
    return s


@transaction.atomic
def schedule_fire_now(*, schedule: Schedule, actor: User | None) -> ScheduleFire:
    """A manual fire now (active or paused, owner an active member); the cadence is unchanged."""
    s = _locked(schedule)
    if s.state not in (ScheduleState.ACTIVE, ScheduleState.PAUSED):
        raise _conflict(s, "fire")
    _ensure_owner_present(s, "fire")
    due = _Due(s.pk, s.workspace_id, s.owner_id, s.trigger, s.action, s.next_fire_at)
    return ScheduleFire.objects.get(pk=_create_fires([(due, clock.now(), 0, True)])[0])


def _cancel_pending_fires(s: Schedule, reason: str) -> int:
    from queueapp import services as queue_services
    from queueapp.models import Job

    pending = list(ScheduleFire.objects.select_for_update(no_key=True).filter(schedule=s, status=FireStatus.PENDING))
    for fire in pending:
        job = Job.objects.filter(pk=fire.job_id).first()
        if job is not None and job.state in ("queued", "deferred", "awaiting_approval"):
            queue_services.job_cancel(job=job, actor=None)
        fire.status, fire.error, fire.finished_at = FireStatus.SKIPPED, reason, clock.now()
        fire.save(update_fields=["status", "error", "finished_at"])
    return len(pending)


@transaction.atomic
def schedule_archive(*, schedule: Schedule, actor: User | None) -> Schedule:
    """Cancel: archived, pending fires dropped, history kept. Archiving an archived one changes nothing."""
    s = _locked(schedule)
    if s.state == ScheduleState.ARCHIVED:
        return s
    _cancel_pending_fires(s, "Schedule archived.")
    _set_state(s, ScheduleState.ARCHIVED, f"Archived by {actor.label if actor else 'the system'}.")
    return s


@transaction.atomic
def schedule_erase(*, schedule: Schedule) -> None:
    """Delete an archived schedule and its history; anything else: 409."""
    s = _locked(schedule)
    if s.state != ScheduleState.ARCHIVED:
        raise _conflict(s, "erase")
    s.delete()


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    """Scheduled tasks' DELETE: drop pending fires and delete the row."""
    s = _locked(schedule)
    _cancel_pending_fires(s, "Schedule deleted.")
    s.delete()


def schedule_quarantine(s: Schedule, reason: str) -> None:
    """Park a schedule that may not run as it is: its stored trigger or args no longer parse, or its
    owner left the workspace or was deactivated (the row must be locked)."""
    _set_state(s, ScheduleState.QUARANTINED, reason)
    logger.warning("schedule %s quarantined: %s", s.pk, reason)


@transaction.atomic
def schedules_quarantine_departed(*, user: User, workspace_id: uuid.UUID | None, departure: Departure) -> int:
    """Quarantine every non-archived schedule of a departed owner (in one workspace, or all when None).

    A departure hook (`hq.services.on_member_departure`). Pending fires are dropped as on archive;
    the reason says why, and the schedules stay quarantined until someone resumes them (which
    needs the owner back as an active member). Returns how many were quarantined.
    """
    rows = Schedule.objects.filter(owner_id=user.pk).exclude(state=ScheduleState.ARCHIVED)
    if workspace_id is not None:
        rows = rows.filter(workspace_id=workspace_id)
    reason = departure.reason("Owner")
    locked = list(rows.select_for_update(of=("self",), no_key=True).order_by("pk"))
    for s in locked:
        _cancel_pending_fires(s, f"Quarantined: {reason}")
        schedule_quarantine(s, reason)
    if locked:
        transaction.on_commit(_notify, robust=True)
    return len(locked)


# --- the scheduler -----------------------------------------------------------------------------


class _Due(NamedTuple):
    """A claimed schedule row: what firing it needs, without a model instance per row."""

    id: Any
    workspace_id: Any
    owner_id: Any
    trigger: dict[str, Any]
    action: str
    next_fire_at: datetime


def _create_fires(items: list[tuple[_Due, datetime, int, bool]]) -> list[uuid.UUID]:
    """Write fire rows and their jobs in the caller's transaction (pushed after commit).

    Items are (schedule, slot, skipped slots, manual); returns the fire ids.
    """
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


def _not_yet_fired(items: list[tuple[_Due, datetime, int, bool]]) -> list[tuple[_Due, datetime, int, bool]]:
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
                _Due(*row)
                for row in Schedule.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(state=ScheduleState.ACTIVE, next_fire_at__lte=now)
                .order_by("next_fire_at")
                .values_list(*_Due._fields)[:batch]
            ]
            items, advanced = [], {"next_fire_at": [], "state": [], "state_reason": [], "updated_at": []}
            following: dict[tuple[str, datetime], datetime | None] = {}  # many rows share a trigger and slot
            for s in due:
                slot, skipped = s.next_fire_at, 0
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
            _create_fires(items)
            db.bulk_update(Schedule, [s.id for s in due], advanced)
        total += len(items)
        if len(due) < batch:
            return total


def next_due_at() -> datetime | None:
    """The earliest next fire of any active schedule (one indexed query)."""
    return Schedule.objects.filter(state=ScheduleState.ACTIVE).aggregate(m=Min("next_fire_at"))["m"]


# --- the fire job ------------------------------------------------------------------------------


def fire_run(*, fire_id: Any) -> str:
    """Run one fire's action and record the outcome on the fire and the schedule; returns its status.

    Before anything runs, the fire re-checks its schedule: its owner must still be an active
    member of the workspace, its trigger and args must still validate; otherwise the schedule is
    quarantined with the reason and the fire is skipped.

    A fire runs its action at most once: a fire found `running` (its worker died mid-action) is
    recorded as failed rather than run again, since actions post messages and must not double.
    """
    now = clock.now()
    with transaction.atomic():
        fire = ScheduleFire.objects.select_for_update(no_key=True).filter(pk=fire_id).first()
        if fire is None:
            return "missing"
        if fire.status == FireStatus.RUNNING:
            if fire.conversation_id is not None:
                return FireStatus.RUNNING  # the action ran; a delivery job finishes this fire
            finish_fire(fire, FireStatus.FAILED, error="Interrupted: the worker running this fire stopped.")
            return FireStatus.FAILED
        if fire.status != FireStatus.PENDING:
            return fire.status
        s = _locked(fire.schedule_id)
        runnable = s.state == ScheduleState.ACTIVE or (fire.manual and s.state == ScheduleState.PAUSED)
        if not runnable:
            fire.status, fire.error, fire.finished_at = FireStatus.SKIPPED, f"Schedule is {s.state}.", now
            fire.save(update_fields=["status", "error", "finished_at"])
            return FireStatus.SKIPPED
        try:
            departed = owner_departure(s)
            if departed:
                raise OwnerDeparted(departed)
            triggers.validate_trigger(s.trigger, stored=True)
            args = actions.validate_args(s.action, s.args, workspace=s.workspace, owner=s.owner)
        except (triggers.TriggerError, HQError) as exc:
            reason = str(exc) if isinstance(exc, OwnerDeparted) else f"{_quarantine_cause(exc)}: {exc}"
            schedule_quarantine(s, reason)
            fire.status, fire.error, fire.finished_at = FireStatus.SKIPPED, f"Quarantined: {exc}", now
            fire.save(update_fields=["status", "error", "finished_at"])
            return FireStatus.SKIPPED
        lag_ms = int((now - fire.slot).total_seconds() * 1000)
        if not fire.manual:
            metrics.schedule_fire_lag(lag_ms / 1000)
        fire.status, fire.started_at, fire.lag_ms = FireStatus.RUNNING, now, lag_ms
        fire.save(update_fields=["status", "started_at", "lag_ms"])
        Schedule.objects.filter(pk=s.pk).update(
            last_fire_at=now, last_fire_status=FireStatus.RUNNING, last_fire_lag_ms=lag_ms
        )
    action = actions.get(s.action)
    try:
        result = action.fn(s, fire, args)
    except Exception as exc:  # noqa: BLE001 - an action's failure is recorded on the fire
        logger.warning("fire %s of schedule %s failed: %s", fire.pk, s.pk, exc)
        with transaction.atomic():
            finish_fire(fire, FireStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000])
        return FireStatus.FAILED
    with transaction.atomic():
        if result.pending:
            fire.conversation_id = result.conversation_id
            fire.save(update_fields=["conversation_id"])
            Schedule.objects.filter(pk=fire.schedule_id).update(last_run_conversation_id=result.conversation_id)
            return FireStatus.RUNNING
        finish_fire(fire, FireStatus.SUCCEEDED, conversation_id=result.conversation_id)
    return FireStatus.SUCCEEDED


def fire_stop_for_departed_owner(fire: ScheduleFire, *, outcome: str) -> str:
    """Stop a running fire (locked by the caller) whose schedule's owner is no longer an active member.

    The schedule is quarantined with the reason and the fire ends `skipped`; returns the reason,
    or "" (nothing changed) while the owner is still an active member.
    """
    reason = owner_departure(fire.schedule)
    if not reason:
        return ""
    s = _locked(fire.schedule_id)
    if s.state != ScheduleState.ARCHIVED:
        schedule_quarantine(s, reason)
    finish_fire(fire, FireStatus.SKIPPED, error=f"Quarantined: {reason} {outcome}")
    return reason


def _quarantine_cause(exc: Exception) -> str:
    return "Trigger" if isinstance(exc, triggers.TriggerError) else "Args"


def finish_fire(fire: ScheduleFire, status: str, *, error: str = "", conversation_id: Any = None) -> None:
    now = clock.now()
    fire.status, fire.error, fire.finished_at, fire.conversation_id = status, error, now, conversation_id
    fire.save(update_fields=["status", "error", "finished_at", "conversation_id"])
    failed = status == FireStatus.FAILED
    updates: dict[str, Any] = {
        "fire_count": F("fire_count") + 1,
        "failure_count": F("failure_count") + (1 if failed else 0),
        "consecutive_failure_count": F("consecutive_failure_count") + 1 if failed else 0,
        "last_fire_status": status,
    }
    if conversation_id:
        updates["last_run_conversation_id"] = conversation_id
    Schedule.objects.filter(pk=fire.schedule_id).update(**updates)
    if failed:
        s = Schedule.objects.select_for_update(no_key=True).get(pk=fire.schedule_id)
        threshold = settings.HQ_SCHEDULE_MAX_CONSECUTIVE_FAILURES
        if s.state == ScheduleState.ACTIVE and s.consecutive_failure_count >= threshold:
            schedule_pause(
                schedule=s, actor=None, reason=f"Paused automatically after {threshold} consecutive failures."
            )


def fire_job(ctx: Any) -> dict[str, Any]:
    """Queue function body: run the fire named in the job's args."""
    return {"status": fire_run(fire_id=ctx.args["fire_id"])}


@transaction.atomic
def task_update(*, schedule: Schedule, actor: User, enabled: bool | None = None, **changes: Any) -> Schedule:
    """PATCH of a scheduled task: field changes, then `enabled` as pause/resume, all in one transaction."""
    s = schedule
    if changes:
        s, _ = schedule_update(schedule=s, **changes)
    if enabled is True and s.state != ScheduleState.ACTIVE:
        s = schedule_resume(schedule=s)
    elif enabled is False and s.state == ScheduleState.ACTIVE:
        s = schedule_pause(schedule=s, actor=actor)
    return s
