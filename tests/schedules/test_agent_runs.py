"""Agent schedules end to end through a real worker: agent runs, conversations, every destination."""

from __future__ import annotations

import pytest

from delivery.models import Delivery
from hq import clock
from hq.models import Agent, Conversation
from schedules.models import Schedule, ScheduleFire
from tests.conftest import wait_for
from tests.loopback import Reply

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/api/schedules"


def create(api, caller, **over):
    body = {
        "name": "Revenue digest",
        "trigger": {"kind": "cron", "expr": "0 8 * * MON", "tz": "Europe/Stockholm"},
        "prompt": "Summarise revenue.",
        "deliver_to": {"kind": "web_inbox"},
    }
    body.update(over)
    resp = api.post(URL, body, format="json", **caller.headers)
    assert resp.status_code == 201, resp.content
    return resp.json()["schedule"]["id"]


def fire(api, caller, sid, burst):
    assert api.post(f"{URL}/{sid}/fire_now", **caller.headers).status_code == 200
    burst()
    return ScheduleFire.objects.filter(schedule_id=sid).order_by("-created_at").first()


def test_web_inbox_keeps_one_thread_with_context(api, member, burst):
    sid = create(api, member)
    first = fire(api, member, sid, burst)
    assert first.status == "succeeded" and first.conversation_id is not None
    second = fire(api, member, sid, burst)
    assert second.conversation_id == first.conversation_id
    conv = api.get(f"/v1/api/conversations/{first.conversation_id}", **member.headers).json()
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    assert conv["total"] == 4 and conv["messages"][0]["body"] == "Summarise revenue."
    assert "2 earlier message(s)" in conv["messages"][3]["body"], "the second run saw the first as context"
    s = api.get(f"{URL}/{sid}", **member.headers).json()
    assert s["fire_count"] == 2 and s["last_fire_status"] == "succeeded"
    assert s["last_run_conversation_id"] == str(first.conversation_id)
    inbox = api.get("/v1/api/conversations", **member.headers).json()
    assert inbox["total"] == 1 and inbox["conversations"][0]["schedule_id"] == sid
    delivery = Delivery.objects.get(source_id=first.pk)
    assert delivery.status == "delivered" and delivery.header.startswith("Revenue digest · ")


def test_reset_each_fire_starts_a_new_conversation(api, member, burst):
    sid = create(api, member, reset_each_fire=True)
    a, b = fire(api, member, sid, burst), fire(api, member, sid, burst)
    assert a.conversation_id != b.conversation_id
    assert Conversation.objects.filter(schedule_id=sid).count() == 2
    other = api.get(f"/v1/api/conversations/{a.conversation_id}", **api_headers_of_peer(member))
    assert other.status_code == 404


def api_headers_of_peer(member):
    from tests import factories

    return factories.caller(ws=member.workspace).headers


def test_slack_dm_delivery(api, member, burst, slack):
    slack.script(
        Reply(200, {"ok": True, "channel": {"id": "D0DM"}}),
        Reply(200, {"ok": True, "channel": "D0DM", "ts": "1700000000.000100"}),
    )
    sid = create(api, member, deliver_to={"kind": "slack_dm", "user_id": "U0123ABC"}, delivery_locale="sv-SE")
    f = fire(api, member, sid, burst)
    assert f.status == "succeeded", f.error
    assert slack.paths() == ["/api/conversations.open", "/api/chat.postMessage"]
    post = slack.requests[1]
    assert post.headers["authorization"] == "Bearer xoxb-test-token"
    payload = post.form if "form" in post.headers.get("content-type", "") else post.json
    assert "Revenue digest" in str(payload) and "D0DM" in str(payload)
    d = Delivery.objects.get(source_id=f.pk)
    assert (d.status, d.external_id, d.attempts) == ("delivered", "1700000000.000100", 1)


def test_slack_429_is_retried_after_retry_after(api, member, burst, slack):
    slack.script(
        Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "1"}),
        Reply(200, {"ok": True, "channel": "C0CHAN", "ts": "1.2"}),
    )
    sid = create(api, member, deliver_to={"kind": "slack_channel", "channel_id": "C0CHAN"})
    f = fire(api, member, sid, burst)
    assert f.status == "running", "the delivery waits for its retry"
    d = Delivery.objects.get(source_id=f.pk)
    assert d.status == "pending" and d.attempts == 1
    wait_for(lambda: clock.now() >= d.next_attempt_at, timeout=5, what="Retry-After")
    burst()
    f.refresh_from_db()
    d.refresh_from_db()
    assert (f.status, d.status, d.attempts) == ("succeeded", "delivered", 2)


def test_slack_4xx_fails_the_fire_and_counts(api, member, burst, slack):
    slack.script(Reply(200, {"ok": False, "error": "channel_not_found"}))
    sid = create(api, member, deliver_to={"kind": "slack_channel", "channel_id": "C0GONE"})
    f = fire(api, member, sid, burst)
    assert f.status == "failed" and "channel_not_found" in f.error
    s = Schedule.objects.get(pk=sid)
    assert (s.failure_count, s.consecutive_failure_count, s.last_fire_status) == (1, 1, "failed")


def test_teams_dm_and_channel_delivery(api, member, burst, msteams):
    msteams.script(
        Reply(200, {"access_token": "tok-1", "expires_in": 3600, "token_type": "Bearer"}),
        Reply(201, {"id": "act-1"}),
        Reply(201, {"id": "act-2"}),
    )
    dm = create(api, member, deliver_to={"kind": "teams_dm", "conversation_id": "a:1xyz"})
    channel = create(api, member, deliver_to={"kind": "teams_channel", "team_id": "19:team", "channel_id": "19:chan"})
    assert fire(api, member, dm, burst).status == "succeeded"
    assert fire(api, member, channel, burst).status == "succeeded"
    token, activity_dm, activity_channel = msteams.requests
    assert token.form["grant_type"] == "client_credentials" and token.form["client_id"] == "app-id-1"
    assert activity_dm.path == "/teams/v3/conversations/a%3A1xyz/activities"
    assert activity_dm.headers["authorization"] == "Bearer tok-1"
    assert activity_dm.json["type"] == "message" and "Revenue digest" in activity_dm.json["text"]
    assert activity_channel.json["channelData"]["channel"]["id"] == "19:chan"


def openai_agent(member, loopback, monkeypatch) -> Agent:
    monkeypatch.setenv("HQ_TEST_MODEL_KEY", "sk-test-secret")
    return Agent.objects.create(
        workspace=member.workspace,
        name="gpt",
        backend="openai_compatible",
        base_url=f"{loopback.url}/v1",
        model="test-model",
        api_key_env="HQ_TEST_MODEL_KEY",
        system_prompt="You are terse.",
    )


def completion(text: str) -> dict:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
    }


def test_openai_compatible_agent(api, member, burst, loopback, monkeypatch, settings):
    agent = openai_agent(member, loopback, monkeypatch)
    loopback.script(
        Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
        Reply(200, completion("Revenue grew 4%.")),
    )
    sid = create(api, member, agent_id=str(agent.id))
    f = fire(api, member, sid, burst)
    assert f.status == "succeeded", f.error
    assert len(loopback.requests) == 2, "one retry after the 429"
    req = loopback.requests[1]
    assert req.path == "/v1/chat/completions" and req.headers["authorization"] == "Bearer sk-test-secret"
    assert req.json["model"] == "test-model"
    assert req.json["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Summarise revenue."},
    ]
    conv = Conversation.objects.get(pk=f.conversation_id)
    assert conv.messages.get(role="assistant").body == "Revenue grew 4%."


def test_openai_4xx_fails_the_fire_with_the_reason(api, member, burst, loopback, monkeypatch):
    agent = openai_agent(member, loopback, monkeypatch)
    loopback.script(Reply(400, {"error": {"message": "model not found"}}))
    sid = create(api, member, agent_id=str(agent.id))
    f = fire(api, member, sid, burst)
    assert f.status == "failed" and "400" in f.error and "model not found" in f.error
    assert len(loopback.requests) == 1
