"""Writes: create a delivery, and attempt to send it once.

The caller owns the loop: it runs `delivery_attempt` from a job and, on "retry", defers that job by
`retry_after_s`. Each attempt is one send (clients never retry themselves) and one DeliveryAttempt.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections, transaction

from delivery.destinations import validate_destination
from delivery.models import AttemptOutcome, Delivery, DeliveryAttempt, DeliveryKind, DeliveryStatus
from delivery.sending import NotConfigured, Sender, SendResult
from delivery.slack import SlackSender
from delivery.teams import TeamsSender
from hq import clock, metrics
from hq.errors import NotFound, ValidationFailed
from hq.models import Workspace

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
BACKOFF_JITTER = 0.2


@dataclass(frozen=True)
class AttemptResult:
    """The state of a delivery after an attempt: "delivered", "retry" (wait retry_after_s) or "failed"."""

    status: str
    retry_after_s: float | None = None
    error: str = ""


def backoff_s(attempt: int) -> float:
    """Return the wait after failed attempt number `attempt`: 1, 2, 4 … s ±20 % jitter, at most 300 s."""
    base: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(max(attempt, 1) - 1, 30))
    return min(BACKOFF_CAP_S, base * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER))


class _WebInbox:
    """The inbox conversation already holds the output, so "sending" only names it."""

    def __init__(self, conversation_id: uuid.UUID | None) -> None:
        self.conversation_id = conversation_id

    def send(self, *, destination: dict[str, Any], header: str, body: str) -> SendResult:
        return SendResult(AttemptOutcome.DELIVERED, external_id=str(self.conversation_id))


def _sender(delivery: Delivery) -> Sender:
    """Return the client for the delivery's kind; raises NotConfigured when settings are missing."""
    if delivery.kind == DeliveryKind.WEB_INBOX:
        return _WebInbox(delivery.conversation_id)
    if delivery.kind in (DeliveryKind.SLACK_DM, DeliveryKind.SLACK_CHANNEL):
        return SlackSender.from_settings()
    return TeamsSender.from_settings()


def _record(delivery: Delivery, sent: SendResult) -> AttemptResult:
    """Apply HQ's retry policy to one send, write its DeliveryAttempt and update the delivery."""
    number = delivery.attempts + 1
    outcome, error, retry_after_s = sent.outcome, sent.error, None
    if outcome == AttemptOutcome.RETRY:
        if number >= settings.HQ_DELIVERY_MAX_ATTEMPTS:
            outcome, error = AttemptOutcome.FAILED, f"Gave up after {number} attempts. {error}"
        elif sent.status_code == 401 and _previous_status_code(delivery, number) == 401:
            # A client drops its cached credentials on a 401, so one retry may help; two in a row won't.
            outcome, error = AttemptOutcome.FAILED, f"Refused twice in a row. {error}"
        else:
            retry_after_s = sent.retry_after_s if sent.retry_after_s is not None else backoff_s(number)
    now = clock.now()
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=number,
        outcome=outcome,
        status_code=sent.status_code,
        error=error,
        retry_after_s=retry_after_s,
        at=now,
    )
    metrics.delivery_attempt(delivery.kind, str(outcome))
    delivery.attempts = number
    delivery.last_error = error
    delivery.updated_at = now
    if outcome == AttemptOutcome.DELIVERED:
        delivery.status, delivery.external_id, delivery.delivered_at = DeliveryStatus.DELIVERED, sent.external_id, now
        delivery.next_attempt_at = None
    elif outcome == AttemptOutcome.FAILED:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
    else:
        delivery.next_attempt_at = now + timedelta(seconds=retry_after_s or 0)
    delivery.save(
        update_fields=[
            "attempts",
            "last_error",
            "status",
            "external_id",
            "delivered_at",
            "next_attempt_at",
            "updated_at",
        ]
    )
    return AttemptResult(status=AttemptOutcome(outcome).value, retry_after_s=retry_after_s, error=error)


def _previous_status_code(delivery: Delivery, number: int) -> int | None:
    return (
        DeliveryAttempt.objects.filter(delivery=delivery, number=number - 1)
        .values_list("status_code", flat=True)
        .first()
    )


@transaction.atomic
def delivery_create(
    *,
    workspace: Workspace,
    source_kind: str,
    source_id: uuid.UUID | str,
    destination: dict[str, Any],
    header: str,
    body: str,
    conversation_id: uuid.UUID | str | None = None,
) -> Delivery:
    """Create a delivery of `body` to `destination` (validated again here).

    A web_inbox delivery is delivered at once, because the conversation (`conversation_id`) is the
    inbox; the others start pending, for `delivery_attempt`.
    """
    destination = validate_destination(destination)
    if destination["kind"] == DeliveryKind.WEB_INBOX and conversation_id is None:
        raise ValidationFailed(
            "A web_inbox delivery needs the conversation holding the output.",
            fields={"conversation_id": ["This field is required for web_inbox."]},
        )
    now = clock.now()
    delivery = Delivery(
        workspace=workspace,
        source_kind=source_kind,
        source_id=source_id,
        destination=destination,
        kind=destination["kind"],
        header=header,
        body=body,
        conversation_id=conversation_id,
        created_at=now,
        updated_at=now,
    )
    delivery.full_clean()
    delivery.save(force_insert=True)
    if delivery.kind == DeliveryKind.WEB_INBOX:
        _record(delivery, _WebInbox(delivery.conversation_id).send(destination=destination, header=header, body=body))
    return delivery


def delivery_attempt(*, delivery_id: uuid.UUID | str) -> AttemptResult:
    """Send a pending delivery once and record the attempt; answer what the caller should do next.

    A delivery already delivered or failed is not sent again: its current status is returned. The
    row stays locked while sending (at most a few HQ_DELIVERY_TIMEOUT_S), so two jobs never send
    the same delivery at once; the one that finds it locked is told to retry after that timeout.
    Raises NotFound for an unknown id.
    """
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update(skip_locked=True, no_key=True).filter(pk=delivery_id).first()
        if delivery is None:
            if not Delivery.objects.filter(pk=delivery_id).exists():
                raise NotFound("No such delivery.")
            return AttemptResult(
                status="retry",
                retry_after_s=float(settings.HQ_DELIVERY_TIMEOUT_S),
                error="Another attempt at this delivery is in progress.",
            )
        if delivery.status != DeliveryStatus.PENDING:
            return AttemptResult(status=DeliveryStatus(delivery.status).value, error=delivery.last_error)
        try:
            sender = _sender(delivery)
        except NotConfigured as exc:
            return _record(delivery, SendResult(AttemptOutcome.FAILED, error=str(exc)))
        sent = sender.send(destination=delivery.destination, header=delivery.header, body=delivery.body)
        return _record(delivery, sent)


@transaction.atomic
def delivery_abandon(*, delivery_id: uuid.UUID | str, reason: str) -> bool:
    """Give up a pending delivery without sending it (its source may no longer deliver).

    It ends `failed` with `reason` as its last error; returns False when it was not pending.
    """
    delivery = Delivery.objects.select_for_update(no_key=True).filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return False
    delivery.status, delivery.last_error, delivery.next_attempt_at = DeliveryStatus.FAILED, reason, None
    delivery.updated_at = clock.now()
    delivery.save(update_fields=["status", "last_error", "next_attempt_at", "updated_at"])
    return True


def _delivery_attempt_in_thread(*, delivery_id: uuid.UUID | str) -> AttemptResult:
    """Run one attempt in a pool thread, closing the thread's connection after (pool threads idle on)."""
    try:
        return delivery_attempt(delivery_id=delivery_id)
    finally:
        connections.close_all()


async def adelivery_attempt(*, delivery_id: uuid.UUID | str) -> AttemptResult:
    """`delivery_attempt` for async jobs.

    It runs in a pool thread (`thread_sensitive=False`), not the one shared sync thread, so a slow
    destination does not hold up every other job's database calls.
    """
    return await sync_to_async(_delivery_attempt_in_thread, thread_sensitive=False)(delivery_id=delivery_id)
