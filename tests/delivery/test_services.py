"""delivery_create and delivery_attempt: web inbox, idempotency, locking, retry policy."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from django.db import connection, transaction

from delivery import services
from delivery.models import Delivery, DeliveryStatus
from hq.errors import NotFound, ValidationFailed
from tests.loopback import Reply

POSTED = Reply(200, {"ok": True, "ts": "1700000000.000100"})
SLACK_CHANNEL = {"kind": "slack_channel", "channel_id": "C0123"}


@pytest.mark.django_db
def test_delivery_create__web_inbox_is_delivered_at_once(make_delivery, workspace):
    conversation_id = uuid.uuid4()

    delivery = make_delivery({"kind": "web_inbox"}, conversation_id=conversation_id)

    delivery = Delivery.objects.get(pk=delivery.pk)
    assert delivery.workspace == workspace
    assert (delivery.kind, delivery.status, delivery.attempts) == ("web_inbox", DeliveryStatus.DELIVERED, 1)
    assert delivery.external_id == str(conversation_id)
    assert delivery.conversation_id == conversation_id
    assert delivery.delivered_at is not None
    assert list(delivery.attempt_log.values_list("number", "outcome")) == [(1, "delivered")]
    again = services.delivery_attempt(delivery_id=delivery.id)
    assert again == services.AttemptResult(status="delivered", retry_after_s=None, error="")
    assert delivery.attempt_log.count() == 1


@pytest.mark.django_db
def test_delivery_create__web_inbox_needs_a_conversation(make_delivery):
    with pytest.raises(ValidationFailed) as exc:
        make_delivery({"kind": "web_inbox"})
    assert list(exc.value.fields) == ["conversation_id"]
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_delivery_create__others_start_pending_with_the_normalised_destination(make_delivery):
    delivery = make_delivery({"user_id": "U0123", "kind": "slack_dm"})

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.external_id) == (DeliveryStatus.PENDING, 0, "")
    assert delivery.destination == {"kind": "slack_dm", "user_id": "U0123"}
    assert delivery.source_kind == "schedule_fire"
    assert not delivery.attempt_log.exists()


@pytest.mark.django_db
def test_delivery_create__refuses_an_invalid_destination(make_delivery):
    with pytest.raises(ValidationFailed) as exc:
        make_delivery({"kind": "slack_dm", "user_id": "nope"})
    assert list(exc.value.fields) == ["deliver_to.user_id"]


@pytest.mark.django_db
def test_delivery_attempt__delivered_is_not_sent_again(slack, make_delivery):
    slack.script(POSTED)
    delivery = make_delivery(SLACK_CHANNEL)

    first = services.delivery_attempt(delivery_id=delivery.id)
    second = services.delivery_attempt(delivery_id=delivery.id)

    assert first == second == services.AttemptResult(status="delivered", retry_after_s=None, error="")
    assert len(slack.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.attempt_log.count()) == (1, 1)


@pytest.mark.django_db
def test_delivery_attempt__failed_answers_its_error_without_sending(slack, make_delivery):
    slack.script(Reply(200, {"ok": False, "error": "is_archived"}))
    delivery = make_delivery(SLACK_CHANNEL)
    services.delivery_attempt(delivery_id=delivery.id)

    again = services.delivery_attempt(delivery_id=delivery.id)

    assert again == services.AttemptResult(status="failed", retry_after_s=None, error="chat.postMessage: is_archived")
    assert len(slack.requests) == 1


@pytest.mark.django_db
def test_delivery_attempt__unknown_id():
    with pytest.raises(NotFound):
        services.delivery_attempt(delivery_id=uuid.uuid4())


@pytest.mark.django_db(transaction=True)
def test_delivery_attempt__a_locked_delivery_is_left_to_its_holder(slack, make_delivery, settings):
    """While another attempt holds the row, a second one sends nothing and is told to come back."""
    delivery = make_delivery(SLACK_CHANNEL)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with transaction.atomic():
            Delivery.objects.select_for_update().get(pk=delivery.pk)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        result = services.delivery_attempt(delivery_id=delivery.id)
    finally:
        release.set()
        holder.join()

    assert result == services.AttemptResult(
        status="retry",
        retry_after_s=settings.HQ_DELIVERY_TIMEOUT_S,
        error="Another attempt at this delivery is in progress.",
    )
    assert slack.requests == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)


@pytest.mark.django_db(transaction=True)
def test_adelivery_attempt__sends_from_async_code(slack, make_delivery):
    slack.script(POSTED)
    delivery = make_delivery(SLACK_CHANNEL)

    result = asyncio.run(services.adelivery_attempt(delivery_id=delivery.id))

    assert result.status == "delivered"
    delivery.refresh_from_db()
    assert delivery.external_id == "1700000000.000100"


@pytest.mark.parametrize(("attempt", "low", "high"), [(1, 0.8, 1.2), (2, 1.6, 2.4), (3, 3.2, 4.8), (9, 204.8, 300)])
def test_backoff_s__doubles_with_jitter(attempt, low, high):
    values = [services.backoff_s(attempt) for _ in range(200)]
    assert all(low <= v <= high for v in values)
    assert len(set(values)) > 1


def test_backoff_s__capped():
    assert all(services.backoff_s(n) <= 300 for n in (10, 50, 10_000))
