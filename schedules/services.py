"""Writes for schedules: create, update and the lifecycle (pause, resume, fire now, archive, erase,
quarantine), for both API surfaces and the admin.

The scheduler pass is `schedules.engine` and a fire's job body `schedules.fires`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction

from hq import clock
from hq.errors import Conflict, HQError, PaymentRequired, ValidationFailed
from hq.models import User, Workspace
from hq.selectors import Departure, member_departure
from schedules import actions, engine, triggers
from schedules.engine import next_fire
from schedules.models import FireStatus, Schedule, ScheduleFire, ScheduleState

logger = logging.getLogger("hq.scheduler")

# Still importable from here, where they were before the scheduler moved to `schedules.engine`.
FIRE_FUNCTION = engine.FIRE_FUNCTION
WAKE_MESSAGE = engine.WAKE_MESSAGE
scheduler_pass = engine.scheduler_pass
next_due_at = engine.next_due_at

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
    """Create a schedule (402 past the plan limit); it fires at its trigger's next slot.

    Its owner must be an active member of the workspace (else 409 `owner_departed`), as for an
    update, a resume or a fire now.
    """
    now = clock.now()
    clean_trigger = trigger_prepare(trigger, now=now)
    clean_args = actions.validate_args(action, args, workspace=workspace, owner=owner)
    departure = member_departure(user_id=owner.pk, workspace_id=workspace.pk)
    if departure:
        reason = departure.reason("Owner")
        raise OwnerDeparted(f"Cannot create this schedule: {reason}", detail={"reason": reason})
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
    transaction.on_commit(engine.wake_schedulers, robust=True)
    return schedule


def _set_state(s: Schedule, state: str, reason: str, *, next_fire_at: datetime | None = None) -> None:
    """Move a locked schedule to `state`; only an active one keeps a next fire (a database check)."""
    s.state, s.state_reason, s.updated_at = state, reason[:2000], clock.now()
    s.next_fire_at = next_fire_at if state == ScheduleState.ACTIVE else None
    s.save(update_fields=["state", "next_fire_at", "state_reason", "updated_at"])


def schedule_locked(schedule: Schedule | Any, *, with_args: bool = True) -> Schedule:
    """The schedule (or schedule id) re-read and locked: its row only, never its workspace or owner.

    FOR NO KEY UPDATE: rows that reference it (fires, messages) can still be inserted meanwhile.
    with_args=False leaves the args unloaded until first read, for changes that do not touch them:
    they then work on a row whose stored args are nested too deep to load (`hq.display`).
    """
    pk = schedule.pk if isinstance(schedule, Schedule) else schedule
    rows = Schedule.objects.select_for_update(of=("self",), no_key=True).select_related("workspace", "owner")
    return (rows if with_args else rows.defer("args")).get(pk=pk)


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
    s = schedule_locked(schedule, with_args="args" in merge and args is not UNSET)  # else replaced or kept
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
    transaction.on_commit(engine.wake_schedulers, robust=True)
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
    s = schedule_locked(schedule, with_args=False)
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
    s = schedule_locked(schedule)
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
    transaction.on_commit(engine.wake_schedulers, robust=True)
    return s


@transaction.atomic
def schedule_fire_now(*, schedule: Schedule, actor: User | None) -> ScheduleFire:
    """A manual fire now (active or paused, owner an active member); the cadence is unchanged."""
    s = schedule_locked(schedule, with_args=False)
    if s.state not in (ScheduleState.ACTIVE, ScheduleState.PAUSED):
        raise _conflict(s, "fire")
    _ensure_owner_present(s, "fire")
    item = engine.FireItem(s.pk, s.workspace_id, s.owner_id, clock.now(), skipped_slots=0, manual=True)
    return ScheduleFire.objects.get(pk=engine.fires_create([item])[0])


def _cancel_pending_fires(s: Schedule, reason: str) -> int:
    from queueapp import services as queue_services
    from queueapp.models import Job

    pending = list(ScheduleFire.objects.select_for_update(no_key=True).filter(schedule=s, status=FireStatus.PENDING))
    for fire in pending:
        job = None if fire.job_id is None else Job.objects.filter(pk=fire.job_id).first()
        if job is not None and job.state in ("queued", "deferred", "awaiting_approval"):
            queue_services.job_cancel(job=job, actor=None)
        fire.status, fire.error, fire.finished_at = FireStatus.SKIPPED, reason, clock.now()
        fire.save(update_fields=["status", "error", "finished_at"])
    return len(pending)


@transaction.atomic
def schedule_archive(*, schedule: Schedule, actor: User | None) -> Schedule:
    """Cancel: archived, pending fires dropped, history kept. Archiving an archived one changes nothing."""
    s = schedule_locked(schedule, with_args=False)
    if s.state == ScheduleState.ARCHIVED:
        return s
    _cancel_pending_fires(s, "Schedule archived.")
    _set_state(s, ScheduleState.ARCHIVED, f"Archived by {actor.label if actor else 'the system'}.")
    return s


@transaction.atomic
def schedule_erase(*, schedule: Schedule) -> None:
    """Delete an archived schedule and its history; anything else: 409."""
    s = schedule_locked(schedule, with_args=False)
    if s.state != ScheduleState.ARCHIVED:
        raise _conflict(s, "erase")
    s.delete()


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    """Scheduled tasks' DELETE: drop pending fires and delete the row."""
    s = schedule_locked(schedule, with_args=False)
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
        transaction.on_commit(engine.wake_schedulers, robust=True)
    return len(locked)


# --- scheduled tasks ----------------------------------------------------------------------------


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
