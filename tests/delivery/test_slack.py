"""Slack deliveries against a loopback Web API."""

from __future__ import annotations

import pytest

from delivery import services
from delivery.models import DeliveryStatus
from delivery.slack import SECTION_MAX_CHARS, escape, message_blocks, split_sections
from tests.loopback import Reply

pytestmark = pytest.mark.django_db

OPENED = Reply(200, {"ok": True, "channel": {"id": "D0DM1"}})
POSTED = Reply(200, {"ok": True, "channel": "C0123", "ts": "1700000000.000100"})
SLACK_DM = {"kind": "slack_dm", "user_id": "U0123ABC"}
SLACK_CHANNEL = {"kind": "slack_channel", "channel_id": "C0123"}


def attempts(delivery) -> list[tuple]:
    return list(delivery.attempt_log.values_list("number", "outcome", "status_code", "error", "retry_after_s"))


def test_slack_dm__opens_the_dm_then_posts(slack, make_delivery):
    slack.script(OPENED, POSTED)
    delivery = make_delivery(SLACK_DM, body="Revenue <up> & costs down")
    assert delivery.status == DeliveryStatus.PENDING

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result == services.AttemptResult(status="delivered", retry_after_s=None, error="")
    opened, posted = slack.requests
    assert (opened.method, opened.path) == ("POST", "/api/conversations.open")
    assert opened.headers["authorization"] == "Bearer xoxb-test-token"
    assert opened.form == {"users": "U0123ABC"}
    assert (posted.path, posted.headers["authorization"]) == ("/api/chat.postMessage", "Bearer xoxb-test-token")
    assert posted.json == {
        "channel": "D0DM1",
        "text": "Daily digest · Mar 3, 2025, 9:00:00 AM CET",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": "Daily digest · Mar 3, 2025, 9:00:00 AM CET", "emoji": True},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": "Revenue &lt;up&gt; &amp; costs down"}},
        ],
    }
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.external_id == "1700000000.000100"
    assert delivery.attempts == 1 and delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert attempts(delivery) == [(1, "delivered", 200, "", None)]


def test_slack_channel__posts_to_the_channel(slack, make_delivery):
    slack.script(POSTED)
    delivery = make_delivery(SLACK_CHANNEL)

    assert services.delivery_attempt(delivery_id=delivery.id).status == "delivered"

    assert slack.paths() == ["/api/chat.postMessage"]
    assert slack.requests[0].json["channel"] == "C0123"
    assert slack.requests[0].json["blocks"][1]["text"]["text"] == "All *green* today."


def test_slack__429_retry_after_is_honoured(slack, make_delivery):
    slack.script(Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "7"}))
    delivery = make_delivery(SLACK_CHANNEL)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.retry_after_s) == ("retry", 7.0)
    assert "ratelimited" in result.error
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert 6 <= (delivery.next_attempt_at - delivery.updated_at).total_seconds() <= 7
    assert attempts(delivery) == [(1, "retry", 429, "chat.postMessage: ratelimited", 7.0)]


def test_slack__500_retries_with_backoff(slack, make_delivery):
    slack.script(Reply(500, "upstream exploded"), Reply(503, "still down"), POSTED)
    delivery = make_delivery(SLACK_CHANNEL)

    first = services.delivery_attempt(delivery_id=delivery.id)
    second = services.delivery_attempt(delivery_id=delivery.id)
    third = services.delivery_attempt(delivery_id=delivery.id)

    assert first.status == "retry" and 0.8 <= first.retry_after_s <= 1.2
    assert second.status == "retry" and 1.6 <= second.retry_after_s <= 2.4
    assert third.status == "delivered"
    assert [(n, outcome, code) for n, outcome, code, *_ in attempts(delivery)] == [
        (1, "retry", 500),
        (2, "retry", 503),
        (3, "delivered", 200),
    ]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.DELIVERED, 3, "")


def test_slack__ok_false_channel_not_found_fails_at_once(slack, make_delivery):
    slack.script(Reply(200, {"ok": False, "error": "channel_not_found"}))
    delivery = make_delivery(SLACK_CHANNEL)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.retry_after_s) == ("failed", None)
    assert result.error == "chat.postMessage: channel_not_found"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.FAILED, "chat.postMessage: channel_not_found")
    assert attempts(delivery) == [(1, "failed", 200, "chat.postMessage: channel_not_found", None)]


def test_slack__dm_open_refused_is_reported_with_its_method(slack, make_delivery):
    slack.script(Reply(200, {"ok": False, "error": "missing_scope", "needed": "im:write"}))
    delivery = make_delivery(SLACK_DM)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.error) == ("failed", "conversations.open: missing_scope (needed: im:write)")
    assert slack.paths() == ["/api/conversations.open"]


def test_slack__ok_false_ratelimited_is_a_retry(slack, make_delivery):
    slack.script(Reply(200, {"ok": False, "error": "ratelimited"}))
    delivery = make_delivery(SLACK_CHANNEL)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result.status == "retry" and 0.8 <= result.retry_after_s <= 1.2


def test_slack__other_4xx_fails_at_once(slack, make_delivery):
    slack.script(Reply(403, {"ok": False, "error": "not_allowed_token_type"}))
    delivery = make_delivery(SLACK_CHANNEL)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.error) == ("failed", "chat.postMessage: not_allowed_token_type")
    assert attempts(delivery)[0][:3] == (1, "failed", 403)


def test_slack__max_attempts_then_failed(slack, make_delivery, settings):
    settings.HQ_DELIVERY_MAX_ATTEMPTS = 3
    slack.script(*[Reply(502, "bad gateway")] * 3)
    delivery = make_delivery(SLACK_CHANNEL)

    results = [services.delivery_attempt(delivery_id=delivery.id) for _ in range(4)]

    assert [r.status for r in results] == ["retry", "retry", "failed", "failed"]
    assert results[2].retry_after_s is None
    assert results[2].error.startswith("Gave up after 3 attempts.")
    assert len(slack.requests) == 3, "a failed delivery is not sent again"
    assert [outcome for _, outcome, *_ in attempts(delivery)] == ["retry", "retry", "failed"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (DeliveryStatus.FAILED, 3, None)


def test_slack__connection_refused_is_a_retry(settings, make_delivery, closed_port):
    settings.SLACK_BOT_TOKEN = "xoxb-test-token"
    settings.SLACK_API_URL = f"http://127.0.0.1:{closed_port}/api/"
    delivery = make_delivery(SLACK_CHANNEL)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result.status == "retry"
    assert result.error.startswith("Slack did not answer")
    assert attempts(delivery)[0][:3] == (1, "retry", None)


def test_slack__timeout_is_a_retry(slack, make_delivery, settings):
    settings.HQ_DELIVERY_TIMEOUT_S = 0.3
    slack.script(Reply(200, {"ok": True, "ts": "1"}, delay_s=1.5))
    delivery = make_delivery(SLACK_CHANNEL)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result.status == "retry"
    assert "timed out" in result.error


def test_slack__no_token_fails_with_a_clear_error(settings, make_delivery):
    settings.SLACK_BOT_TOKEN = ""
    delivery = make_delivery(SLACK_DM)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result.status == "failed"
    assert "SLACK_BOT_TOKEN is not set" in result.error
    assert attempts(delivery)[0][:3] == (1, "failed", None)


def test_message_blocks__long_body_is_split_into_sections():
    body = "\n".join(f"line {i} " + "x" * 90 for i in range(100))  # about 10,000 characters
    blocks = message_blocks("H" * 200, body)

    assert blocks[0]["text"]["text"] == "H" * 149 + "…"
    sections = [b["text"]["text"] for b in blocks[1:]]
    assert len(sections) == 4
    assert all(len(s) <= SECTION_MAX_CHARS for s in sections)
    assert "\n".join(sections) == body


def test_message_blocks__too_long_is_truncated_within_the_block_limit():
    blocks = message_blocks("H", "y" * 200_000)
    assert len(blocks) == 50
    assert blocks[-1]["text"]["text"].endswith("_… (truncated)_")
    assert all(len(b["text"]["text"]) <= SECTION_MAX_CHARS for b in blocks)


def test_split_sections__never_cuts_an_entity():
    text = escape("a" * 2998 + "&b")  # "&amp;" straddles the 3000-character limit
    pieces = split_sections(text)
    assert pieces == ["a" * 2998, "&amp;b"]
