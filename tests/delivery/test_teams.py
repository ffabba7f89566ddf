"""Teams deliveries against a loopback Bot Framework and token endpoint."""

from __future__ import annotations

import pytest

from delivery import services
from delivery.models import Delivery, DeliveryStatus
from delivery.teams import TEXT_MAX_BYTES, activities_url, message_text
from tests.loopback import Reply

pytestmark = pytest.mark.django_db

TOKEN = Reply(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "tok-1"})
SENT = Reply(201, {"id": "1:activity-42"})
TEAMS_DM = {"kind": "teams_dm", "conversation_id": "a:1Xyz-_abc;messageid=9"}
TEAMS_CHANNEL = {"kind": "teams_channel", "team_id": "19:team@thread.tacv2", "channel_id": "19:chan@thread.tacv2"}
TOKEN_PATH = "/oauth2/v2.0/token"


def attempts(delivery) -> list[tuple]:
    return list(delivery.attempt_log.values_list("number", "outcome", "status_code", "error", "retry_after_s"))


def test_teams_dm__token_then_activity(msteams, make_delivery):
    msteams.script(TOKEN, SENT)
    delivery = make_delivery(TEAMS_DM, body="All *green* today.")

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result == services.AttemptResult(status="delivered", retry_after_s=None, error="")
    token, activity = msteams.requests
    assert (token.method, token.path) == ("POST", TOKEN_PATH)
    assert token.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token.form == {
        "grant_type": "client_credentials",
        "client_id": "app-id-1",
        "client_secret": "app-secret-1",
        "scope": "https://api.botframework.com/.default",
    }
    # The id is one path segment: ":", ";" and "=" are quoted.
    assert activity.path == "/teams/v3/conversations/a%3A1Xyz-_abc%3Bmessageid%3D9/activities"
    assert activity.headers["authorization"] == "Bearer tok-1"
    assert activity.json == {
        "type": "message",
        "textFormat": "markdown",
        "text": "**Daily digest · Mar 3, 2025, 9:00:00 AM CET**\n\nAll *green* today.",
    }
    delivery.refresh_from_db()
    assert (delivery.status, delivery.external_id, delivery.attempts) == (DeliveryStatus.DELIVERED, "1:activity-42", 1)
    assert attempts(delivery) == [(1, "delivered", 201, "", None)]


def test_teams_channel__posts_with_channel_data(msteams, make_delivery):
    msteams.script(TOKEN, SENT)
    delivery = make_delivery(TEAMS_CHANNEL)

    assert services.delivery_attempt(delivery_id=delivery.id).status == "delivered"

    activity = msteams.requests[1]
    assert activity.path == "/teams/v3/conversations/19%3Achan%40thread.tacv2/activities"
    assert activity.json["channelData"] == {
        "team": {"id": "19:team@thread.tacv2"},
        "channel": {"id": "19:chan@thread.tacv2"},
    }
    assert activity.json["type"] == "message" and activity.json["textFormat"] == "markdown"


def test_teams__token_is_cached_across_sends(msteams, make_delivery):
    msteams.script(TOKEN, SENT, Reply(200, {"id": "2"}))
    first, second = make_delivery(TEAMS_DM), make_delivery(TEAMS_CHANNEL)

    assert services.delivery_attempt(delivery_id=first.id).status == "delivered"
    assert services.delivery_attempt(delivery_id=second.id).status == "delivered"

    assert msteams.paths().count(TOKEN_PATH) == 1
    assert [r.headers.get("authorization") for r in msteams.requests[1:]] == ["Bearer tok-1", "Bearer tok-1"]


def test_teams__token_near_expiry_is_not_reused(msteams, make_delivery):
    short = Reply(200, {"access_token": "short", "expires_in": 300})  # within the 5-minute margin
    msteams.script(short, SENT, TOKEN, SENT)
    first, second = make_delivery(TEAMS_DM), make_delivery(TEAMS_DM)

    services.delivery_attempt(delivery_id=first.id)
    services.delivery_attempt(delivery_id=second.id)

    assert msteams.paths().count(TOKEN_PATH) == 2
    assert msteams.requests[3].headers["authorization"] == "Bearer tok-1"


def test_teams__429_honours_retry_after(msteams, make_delivery):
    msteams.script(
        TOKEN, Reply(429, {"error": {"code": "TooManyRequests", "message": "slow down"}}, {"Retry-After": "12"})
    )
    delivery = make_delivery(TEAMS_DM)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.retry_after_s, result.error) == ("retry", 12.0, "TooManyRequests: slow down")
    assert attempts(delivery) == [(1, "retry", 429, "TooManyRequests: slow down", 12.0)]


def test_teams__retry_after_as_http_date(msteams, make_delivery):
    msteams.script(TOKEN, Reply(503, "", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    delivery = make_delivery(TEAMS_DM)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.retry_after_s) == ("retry", 0.0)  # a date in the past: go again now


def test_teams__503_then_delivered_reusing_the_token(msteams, make_delivery):
    msteams.script(TOKEN, Reply(503, "Service Unavailable"), SENT)
    delivery = make_delivery(TEAMS_CHANNEL)

    first = services.delivery_attempt(delivery_id=delivery.id)
    second = services.delivery_attempt(delivery_id=delivery.id)

    assert first.status == "retry" and 0.8 <= first.retry_after_s <= 1.2
    assert first.error == "Service Unavailable"
    assert second.status == "delivered"
    assert msteams.paths().count(TOKEN_PATH) == 1
    assert [outcome for _, outcome, *_ in attempts(delivery)] == ["retry", "delivered"]


def test_teams__400_fails_at_once_with_the_reason(msteams, make_delivery):
    msteams.script(TOKEN, Reply(400, {"error": {"code": "BadArgument", "message": "Unknown activity type"}}))
    delivery = make_delivery(TEAMS_DM)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.retry_after_s) == ("failed", None)
    assert result.error == "BadArgument: Unknown activity type"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.FAILED, "BadArgument: Unknown activity type")
    assert attempts(delivery) == [(1, "failed", 400, "BadArgument: Unknown activity type", None)]


@pytest.mark.parametrize(
    "destination",
    [
        {"kind": "teams_dm", "conversation_id": ".."},
        {"kind": "teams_dm", "conversation_id": "."},
        {"kind": "teams_dm", "conversation_id": "a:1/../../v3/x"},
        {"kind": "teams_channel", "team_id": "19:team@thread.tacv2", "channel_id": ".."},
    ],
)
def test_teams__a_stored_bad_id_fails_without_a_request(msteams, make_delivery, destination):
    """A delivery recorded before the ids' formats were enforced is refused by the sender too: `..`
    would have been resolved into another URL path."""
    msteams.script(TOKEN, SENT)
    delivery = make_delivery(TEAMS_DM)
    Delivery.objects.filter(pk=delivery.pk).update(destination=destination, kind=destination["kind"])

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result.status == "failed" and "Not sent" in result.error and "Teams id" in result.error
    assert msteams.requests == []


@pytest.mark.parametrize("conversation_id", ["", ".", ".."])
def test_activities_url__never_a_dot_segment(conversation_id):
    with pytest.raises(ValueError):
        activities_url("https://smba.example/teams", conversation_id)


def test_teams__401_drops_the_token_and_retries_once(msteams, make_delivery):
    denied = Reply(401, {"message": "Authorization has been denied for this request."})
    msteams.script(TOKEN, denied, Reply(200, {"access_token": "tok-2", "expires_in": 3599}), denied)
    delivery = make_delivery(TEAMS_DM)

    first = services.delivery_attempt(delivery_id=delivery.id)
    second = services.delivery_attempt(delivery_id=delivery.id)

    assert first.status == "retry"
    assert second.status == "failed" and second.error.startswith("Refused twice in a row.")
    assert msteams.paths().count(TOKEN_PATH) == 2, "the refused token was dropped"
    assert msteams.requests[3].headers["authorization"] == "Bearer tok-2"
    assert [(outcome, code) for _, outcome, code, *_ in attempts(delivery)] == [("retry", 401), ("failed", 401)]


def test_teams__401_once_then_delivered_with_a_new_token(msteams, make_delivery):
    msteams.script(TOKEN, Reply(401, ""), Reply(200, {"access_token": "tok-2", "expires_in": 3599}), SENT)
    delivery = make_delivery(TEAMS_DM)

    assert services.delivery_attempt(delivery_id=delivery.id).status == "retry"
    assert services.delivery_attempt(delivery_id=delivery.id).status == "delivered"


def test_teams__token_refused_fails_without_leaking_the_secret(msteams, make_delivery):
    msteams.script(Reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"}))
    delivery = make_delivery(TEAMS_DM)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result.status == "failed"
    assert result.error == "Teams token request refused: invalid_client: AADSTS7000215: Invalid client secret"
    assert "app-secret-1" not in result.error
    assert msteams.paths() == [TOKEN_PATH]


def test_teams__token_endpoint_503_is_a_retry(msteams, make_delivery):
    msteams.script(Reply(503, "busy", {"Retry-After": "3"}))
    delivery = make_delivery(TEAMS_DM)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.retry_after_s) == ("retry", 3.0)


def test_teams__connection_refused_is_a_retry(settings, make_delivery, closed_port):
    settings.TEAMS_APP_ID, settings.TEAMS_APP_PASSWORD = "app", "secret"
    settings.TEAMS_TOKEN_URL = f"http://127.0.0.1:{closed_port}/token"
    delivery = make_delivery(TEAMS_DM)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result.status == "retry"
    assert result.error.startswith("The Teams token endpoint did not answer: ConnectError")


def test_teams__timeout_is_a_retry(msteams, make_delivery, settings):
    settings.HQ_DELIVERY_TIMEOUT_S = 0.3
    msteams.script(TOKEN, Reply(201, {"id": "late"}, delay_s=1.5))
    delivery = make_delivery(TEAMS_DM)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert result.status == "retry"
    assert result.error.startswith("Teams did not answer: ReadTimeout")


@pytest.mark.parametrize("missing", ["TEAMS_APP_ID", "TEAMS_APP_PASSWORD"])
def test_teams__missing_credentials_fail_with_a_clear_error(msteams, make_delivery, settings, missing):
    setattr(settings, missing, "")
    delivery = make_delivery(TEAMS_CHANNEL)

    result = services.delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.error) == ("failed", f"{missing} not set, so Teams deliveries cannot be sent.")
    assert msteams.requests == []


def test_message_text__is_cut_to_the_size_limit():
    text = message_text("H", "é" * 20_000)
    assert len(text.encode()) <= TEXT_MAX_BYTES
    assert text.startswith("**H**\n\né") and text.endswith("*… (truncated)*")
