"""One engine table behind both schedule surfaces, and one row per fire."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from hq import clock


class ScheduleState(models.TextChoices):
    #: Firing on its trigger.
    ACTIVE = "active", "Active"
    #: Stopped until resumed; no next fire.
    PAUSED = "paused", "Paused"
    #: Its stored trigger or args no longer parse, or its owner left the workspace or was deactivated;
    #: the engine parked it (see state_reason).
    QUARANTINED = "quarantined", "Quarantined"
    #: Cancelled; never fires again; history kept.
    ARCHIVED = "archived", "Archived"


class FireStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class Schedule(models.Model):
    """A trigger (cron or rrule in an IANA zone) that runs an action with args."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("hq.Workspace", on_delete=models.CASCADE, related_name="schedules")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=200)
    description = models.TextField(null=True, blank=True)
    trigger = models.JSONField(help_text='{"kind": "cron"|"rrule", "expr": ..., "tz": IANA name, "dtstart"?}')
    action = models.CharField(max_length=64, help_text="Registered action: run_agent, send_message, ...")
    args = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=ScheduleState.choices, default=ScheduleState.ACTIVE)
    state_reason = models.TextField(blank=True, default="", help_text="Why it is paused or quarantined.")
    next_fire_at = models.DateTimeField(null=True, blank=True, help_text="Next slot, UTC; empty unless active.")
    last_fire_at = models.DateTimeField(null=True, blank=True)
    last_fire_status = models.CharField(max_length=16, choices=FireStatus.choices, blank=True, default="")
    fire_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)
    consecutive_failure_count = models.PositiveIntegerField(default=0)
    last_fire_lag_ms = models.IntegerField(null=True, blank=True, help_text="Job start minus slot, ms.")
    last_run_conversation_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["next_fire_at"], name="schedule_due", condition=Q(state="active")),
            models.Index(fields=["workspace", "owner", "state"], name="schedule_ws_owner_state"),
            models.Index(fields=["workspace", "action", "state"], name="schedule_ws_action_state"),
            # Failing schedules in the observability summary.
            models.Index(
                fields=["workspace", "-consecutive_failure_count"],
                name="schedule_failing",
                condition=Q(consecutive_failure_count__gt=0),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["active", "paused", "quarantined", "archived"]), name="schedule_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(state="active") | Q(next_fire_at__isnull=True), name="schedule_next_fire_only_if_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class ScheduleFire(models.Model):
    """One fire of a schedule: a trigger slot (unique per schedule) or a manual fire_now."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    slot = models.DateTimeField(help_text="The trigger slot (UTC), or the request time of a manual fire.")
    manual = models.BooleanField(default=False)
    job_id = models.UUIDField(null=True, blank=True, help_text="The queue job that runs this fire.")
    status = models.CharField(max_length=16, choices=FireStatus.choices, default=FireStatus.PENDING)
    skipped_slots = models.PositiveIntegerField(default=0, help_text="Slots missed during downtime before this one.")
    lag_ms = models.IntegerField(null=True, blank=True, help_text="Job start minus slot, ms.")
    error = models.TextField(blank=True, default="")
    conversation_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-slot"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "slot"], condition=Q(manual=False), name="uniq_fire_per_slot")
        ]
        indexes = [
            models.Index(fields=["schedule", "-slot"], name="fire_schedule_slot"),
            models.Index(fields=["created_at"], name="fire_created"),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.slot:%Y-%m-%d %H:%M}Z ({self.status})"
