"""Deliveries of output to a destination, and each attempt to send one."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from hq import clock


class DeliveryKind(models.TextChoices):
    """Where a delivery goes: the `kind` of its destination (the same as `destinations.KINDS`)."""

    WEB_INBOX = "web_inbox", "Web inbox"
    SLACK_DM = "slack_dm", "Slack DM"
    SLACK_CHANNEL = "slack_channel", "Slack channel"
    TEAMS_DM = "teams_dm", "Teams chat"
    TEAMS_CHANNEL = "teams_channel", "Teams channel"


class DeliveryStatus(models.TextChoices):
    #: Not sent yet; `next_attempt_at` says when the next attempt is due.
    PENDING = "pending", "Pending"
    #: Sent; `external_id` names the message at the destination.
    DELIVERED = "delivered", "Delivered"
    #: Given up; `last_error` says why.
    FAILED = "failed", "Failed"


class AttemptOutcome(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    #: A temporary failure (429, 5xx, network); another attempt follows.
    RETRY = "retry", "Retry"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One piece of output (a run's result) on its way to one destination."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(
        "hq.Workspace", on_delete=models.CASCADE, related_name="deliveries", verbose_name="workspace"
    )
    source_kind = models.CharField(
        "source kind", max_length=50, help_text="What produced the output, e.g. schedule_fire."
    )
    source_id = models.UUIDField("source id", help_text="Id of the source row (in the app named by source kind).")
    destination = models.JSONField(
        "destination", help_text='The validated deliver_to object, e.g. {"kind": "slack_dm", "user_id": "U0123"}.'
    )
    kind = models.CharField(
        "kind", max_length=20, choices=DeliveryKind.choices, help_text="The destination's kind, for filtering."
    )
    header = models.TextField("header", help_text="Schedule name and slot time, formatted in the delivery locale.")
    body = models.TextField("body", blank=True, help_text="The output, as Markdown.")
    conversation_id = models.UUIDField(
        "conversation id", null=True, blank=True, help_text="The web inbox conversation holding the output, if any."
    )
    status = models.CharField(
        "status",
        max_length=20,
        choices=DeliveryStatus.choices,
        default=DeliveryStatus.PENDING,
        help_text="Pending until sent (delivered) or given up (failed).",
    )
    attempts = models.PositiveIntegerField("attempts", default=0, help_text="Send attempts made so far.")
    last_error = models.TextField("last error", blank=True, default="", help_text="Why the latest attempt failed.")
    external_id = models.CharField(
        "external id",
        max_length=255,
        blank=True,
        default="",
        help_text="The message at the destination: Slack ts, Teams activity id or inbox conversation id.",
    )
    next_attempt_at = models.DateTimeField(
        "next attempt at", null=True, blank=True, help_text="When a pending delivery may be tried again."
    )
    delivered_at = models.DateTimeField(
        "delivered at", null=True, blank=True, help_text="When the destination accepted it."
    )
    created_at = models.DateTimeField("created at", default=clock.now, help_text="When the output was handed over.")
    updated_at = models.DateTimeField("updated at", default=clock.now, help_text="Last change of status or attempts.")

    class Meta:
        verbose_name = "delivery"
        verbose_name_plural = "deliveries"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["source_kind", "source_id"], name="delivery_source_idx"),
            models.Index(fields=["workspace", "status"], name="delivery_ws_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"),
            models.CheckConstraint(condition=Q(kind__in=DeliveryKind.values), name="delivery_kind_valid"),
            models.CheckConstraint(
                condition=~Q(status=DeliveryStatus.DELIVERED) | Q(delivered_at__isnull=False),
                name="delivery_delivered_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} delivery of {self.source_kind} {self.source_id}"


class DeliveryAttempt(models.Model):
    """One try at sending a delivery, with what the destination answered."""

    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="attempt_log", verbose_name="delivery"
    )
    number = models.PositiveIntegerField("number", help_text="1 for the first attempt.")
    outcome = models.CharField(
        "outcome", max_length=20, choices=AttemptOutcome.choices, help_text="What the attempt led to."
    )
    status_code = models.PositiveIntegerField(
        "HTTP status", null=True, blank=True, help_text="The destination's HTTP status; empty when none came back."
    )
    error = models.TextField("error", blank=True, default="", help_text="The reason given, for retries and failures.")
    retry_after_s = models.FloatField(
        "retry after (s)", null=True, blank=True, help_text="Wait before the next attempt (Retry-After or backoff)."
    )
    at = models.DateTimeField("at", default=clock.now, help_text="When the attempt finished.")

    class Meta:
        verbose_name = "delivery attempt"
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_number_unique"),
            models.CheckConstraint(
                condition=Q(outcome__in=AttemptOutcome.values), name="delivery_attempt_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"
