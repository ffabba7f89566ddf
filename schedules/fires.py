"""Running one fire: the queue job body that re-checks its schedule, runs the action once and
records the outcome on the fire and the schedule.

The scheduler (`schedules.engine`) writes fires and their jobs; this module is what those jobs do.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from hq import clock, metrics
from hq.errors import HQError
from schedules import actions, services, triggers
from schedules.models import FireStatus, Schedule, ScheduleFire, ScheduleState

logger = logging.getLogger("hq.scheduler")


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
        s = services.schedule_locked(fire.schedule_id)
        runnable = s.state == ScheduleState.ACTIVE or (fire.manual and s.state == ScheduleState.PAUSED)
        if not runnable:
            fire.status, fire.error, fire.finished_at = FireStatus.SKIPPED, f"Schedule is {s.state}.", now
            fire.save(update_fields=["status", "error", "finished_at"])
            return FireStatus.SKIPPED
        try:
            departed = services.owner_departure(s)
            if departed:
                raise services.OwnerDeparted(departed)
            triggers.validate_trigger(s.trigger, stored=True)
            args = actions.validate_args(s.action, s.args, workspace=s.workspace, owner=s.owner)
        except (triggers.TriggerError, HQError) as exc:
            reason = str(exc) if isinstance(exc, services.OwnerDeparted) else f"{_quarantine_cause(exc)}: {exc}"
            services.schedule_quarantine(s, reason)
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
    try:
        result = _registered(s.action).fn(s, fire, args)
    except Exception as exc:
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
    reason = services.owner_departure(fire.schedule)
    if not reason:
        return ""
    s = services.schedule_locked(fire.schedule_id)
    if s.state != ScheduleState.ARCHIVED:
        services.schedule_quarantine(s, reason)
    finish_fire(fire, FireStatus.SKIPPED, error=f"Quarantined: {reason} {outcome}")
    return reason


def _registered(name: str) -> actions.Action:
    """The action a fire runs. `validate_args` has refused an unregistered name before a fire gets
    here, and actions register at start-up, so this raises only if that changes."""
    action = actions.get(name)
    if action is None:
        raise LookupError(f"Action '{name}' is not registered.")
    return action


def _quarantine_cause(exc: Exception) -> str:
    return "Trigger" if isinstance(exc, triggers.TriggerError) else "Args"


def finish_fire(fire: ScheduleFire, status: str, *, error: str = "", conversation_id: Any = None) -> None:
    """Record a fire's end and count it on its schedule; enough failures in a row pause the schedule."""
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
            services.schedule_pause(
                schedule=s, actor=None, reason=f"Paused automatically after {threshold} consecutive failures."
            )


def fire_job(ctx: Any) -> dict[str, Any]:
    """Queue function body: run the fire named in the job's args."""
    return {"status": fire_run(fire_id=ctx.args["fire_id"])}
