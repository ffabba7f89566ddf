"""/v1/rooms, /v1/notes and /v1/api/conversations: bodies, order, pagination and who sees what."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from hq import clock, messaging
from hq.models import Agent, Conversation, ConversationMessage, Note
from tests import factories

pytestmark = pytest.mark.django_db

ROOM_KEYS = {"id", "name", "agent_id", "member_ids", "created_at"}
MESSAGE_KEYS = {"id", "kind", "author_id", "agent_id", "msgtype", "body", "schedule_id", "created_at"}
NOTE_KEYS = {"id", "title", "body", "tags", "author_id", "created_at"}
QUERY_KEYS = {"id", "name", "filters", "owner_id", "created_at"}
CONVERSATION_KEYS = {"id", "title", "schedule_id", "created_at", "updated_at"}


def _error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.content
    error = resp.json()["error"]
    assert error["code"] == code
    return error


# --- rooms --------------------------------------------------------------------------------------


def test_rooms__create_answers_the_room_with_its_members(api, member):
    other = factories.caller(ws=member.workspace)
    resp = api.post("/v1/rooms", {"name": "ops", "members": [str(other.user.pk)]}, format="json", **member.headers)
    assert resp.status_code == 201
    body = resp.json()
    assert set(body) == ROOM_KEYS
    assert body["name"] == "ops" and body["agent_id"] is None
    assert body["member_ids"] == sorted([str(member.user.pk), str(other.user.pk)])
    assert body["created_at"].endswith("Z")


def test_rooms__create_with_an_agent_of_the_workspace(api, member):
    agent = Agent.objects.get(workspace=member.workspace, is_default=True)
    resp = api.post("/v1/rooms", {"name": "ai", "agent_id": str(agent.pk)}, format="json", **member.headers)
    assert resp.status_code == 201
    assert resp.json()["agent_id"] == str(agent.pk)


@pytest.mark.parametrize("whose", ["unknown", "other workspace"])
def test_rooms__create_with_an_agent_it_cannot_see_is_404(api, member, whose):
    if whose == "unknown":
        agent_id = str(uuid.uuid4())
    else:
        agent_id = str(Agent.objects.get(workspace=factories.workspace(), is_default=True).pk)
    resp = api.post("/v1/rooms", {"name": "ai", "agent_id": agent_id}, format="json", **member.headers)
    assert _error(resp, 404, "not_found")["message"] == "No such agent."


def test_rooms__list_is_the_callers_rooms_by_name_in_pages(api, member):
    colleague = factories.caller(ws=member.workspace)
    for name in ("charlie", "alpha", "bravo"):
        messaging.room_create(workspace=member.workspace, creator=member.user, name=name)
    messaging.room_create(workspace=member.workspace, creator=colleague.user, name="not mine")
    stranger = factories.caller()
    messaging.room_create(workspace=stranger.workspace, creator=stranger.user, name="elsewhere")

    whole = api.get("/v1/rooms", **member.headers).json()
    assert [r["name"] for r in whole["rooms"]] == ["alpha", "bravo", "charlie"]
    assert (whole["total"], whole["limit"], whole["offset"]) == (3, 100, 0)
    assert set(whole["rooms"][0]) == ROOM_KEYS
    page = api.get("/v1/rooms?limit=1&offset=1", **member.headers).json()
    assert [r["name"] for r in page["rooms"]] == ["bravo"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    _error(api.get("/v1/rooms?limit=0", **member.headers), 400, "invalid")


def test_room__members_only(api, member):
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="ops")
    resp = api.get(f"/v1/rooms/{room.pk}", **member.headers)
    assert resp.status_code == 200
    assert resp.json()["member_ids"] == [str(member.user.pk)]
    colleague = factories.caller(ws=member.workspace)
    error = _error(api.get(f"/v1/rooms/{room.pk}", **colleague.headers), 404, "not_found")
    assert error["message"] == "No such room (or you are not a member)."


def test_room_messages__post_then_list_oldest_first_in_pages(api, member):
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="ops")
    posted = []
    for text in ("one", "two", "three"):
        resp = api.post(f"/v1/rooms/{room.pk}/messages", {"body": text}, format="json", **member.headers)
        assert resp.status_code == 201
        posted.append(resp.json())
    assert set(posted[0]) == MESSAGE_KEYS
    assert posted[0]["kind"] == "user" and posted[0]["msgtype"] == "swp.text"
    assert posted[0]["author_id"] == str(member.user.pk)

    listed = api.get(f"/v1/rooms/{room.pk}/messages?limit=2", **member.headers).json()
    assert [m["body"] for m in listed["messages"]] == ["one", "two"]
    assert (listed["total"], listed["limit"], listed["offset"]) == (3, 2, 0)
    colleague = factories.caller(ws=member.workspace)
    _error(api.get(f"/v1/rooms/{room.pk}/messages", **colleague.headers), 404, "not_found")
    _error(
        api.post(f"/v1/rooms/{room.pk}/messages", {"body": "x"}, format="json", **colleague.headers), 404, "not_found"
    )


# --- notes and stored queries ----------------------------------------------------------------------------


def test_notes__create_then_list_newest_first_in_the_workspace(api, member):
    resp = api.post("/v1/notes", {"title": "first", "tags": ["a"]}, format="json", **member.headers)
    assert resp.status_code == 201
    created = resp.json()
    assert set(created) == NOTE_KEYS
    assert (created["title"], created["body"], created["tags"]) == ("first", "", ["a"])
    assert created["author_id"] == str(member.user.pk)
    colleague = factories.caller(ws=member.workspace)
    second = messaging.note_create(workspace=member.workspace, author=colleague.user, title="second")
    Note.objects.filter(pk=second.pk).update(created_at=clock.now() + timedelta(seconds=5))
    stranger = factories.caller()
    messaging.note_create(workspace=stranger.workspace, author=stranger.user, title="elsewhere")

    listed = api.get("/v1/notes", **member.headers).json()
    assert [n["title"] for n in listed["notes"]] == ["second", "first"]
    assert (listed["total"], listed["limit"], listed["offset"]) == (2, 100, 0)
    page = api.get("/v1/notes?offset=1", **member.headers).json()
    assert [n["title"] for n in page["notes"]] == ["first"]


def test_stored_queries__create_then_list_by_name(api, member):
    resp = api.post(
        "/v1/notes/queries",
        {"name": "zulu", "filters": {"tags": ["a"], "created_after": "2026-01-01T00:00:00Z"}},
        format="json",
        **member.headers,
    )
    assert resp.status_code == 201
    created = resp.json()
    assert set(created) == QUERY_KEYS
    assert created["filters"] == {"tags": ["a"], "created_after": "2026-01-01T00:00:00+00:00"}
    api.post("/v1/notes/queries", {"name": "alpha"}, format="json", **member.headers)
    stranger = factories.caller()
    messaging.stored_query_create(workspace=stranger.workspace, owner=stranger.user, name="elsewhere", filters={})

    listed = api.get("/v1/notes/queries", **member.headers).json()
    assert [q["name"] for q in listed["queries"]] == ["alpha", "zulu"]
    assert (listed["total"], listed["limit"], listed["offset"]) == (2, 100, 0)
    assert listed["queries"][0]["filters"] == {}


def test_stored_query_results__matching_notes_of_the_workspace(api, member):
    messaging.note_create(workspace=member.workspace, author=member.user, title="tagged", tags=["a", "b"])
    messaging.note_create(workspace=member.workspace, author=member.user, title="untagged")
    query = messaging.stored_query_create(
        workspace=member.workspace, owner=member.user, name="a", filters={"tags": ["a"]}
    )
    resp = api.get(f"/v1/notes/queries/{query.pk}/results", **member.headers)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"notes", "total"}
    assert [n["title"] for n in body["notes"]] == ["tagged"] and body["total"] == 1
    assert set(body["notes"][0]) == NOTE_KEYS

    stranger = factories.caller()
    error = _error(api.get(f"/v1/notes/queries/{query.pk}/results", **stranger.headers), 404, "not_found")
    assert error["message"] == "No such stored query."


# --- conversations ------------------------------------------------------------------------------------


def _conversation(caller: factories.Caller, title: str, *, schedule_id: object = None, age_s: int = 0) -> Conversation:
    at = clock.now() - timedelta(seconds=age_s)
    return Conversation.objects.create(
        workspace=caller.workspace,
        owner=caller.user,
        title=title,
        schedule_id=schedule_id,
        created_at=at,
        updated_at=at,
    )


def test_conversations__the_callers_own_most_recent_first(api, member):
    schedule_id = uuid.uuid4()
    _conversation(member, "old", age_s=60)
    _conversation(member, "new", schedule_id=schedule_id)
    _conversation(factories.caller(ws=member.workspace), "a colleague's")

    listed = api.get("/v1/api/conversations", **member.headers).json()
    assert [c["title"] for c in listed["conversations"]] == ["new", "old"]
    assert (listed["total"], listed["limit"], listed["offset"]) == (2, 100, 0)
    assert set(listed["conversations"][0]) == CONVERSATION_KEYS
    assert listed["conversations"][0]["schedule_id"] == str(schedule_id)

    only = api.get(f"/v1/api/conversations?schedule_id={schedule_id}", **member.headers).json()
    assert [c["title"] for c in only["conversations"]] == ["new"] and only["total"] == 1


def test_conversations__schedule_id_must_be_a_uuid(api, member):
    error = _error(api.get("/v1/api/conversations?schedule_id=nope", **member.headers), 400, "invalid")
    assert error["message"] == "schedule_id is not a UUID."
    assert error["fields"] == {"schedule_id": ["Not a UUID."]}


def test_conversation__one_page_of_its_messages_oldest_first(api, member):
    conversation = _conversation(member, "inbox")
    start = clock.now()
    for i, role in enumerate(("user", "assistant", "user")):
        ConversationMessage.objects.create(
            conversation=conversation, role=role, body=f"m{i}", created_at=start + timedelta(seconds=i)
        )

    whole = api.get(f"/v1/api/conversations/{conversation.pk}", **member.headers)
    assert whole.status_code == 200
    body = whole.json()
    assert set(body) == CONVERSATION_KEYS | {"messages", "total", "limit", "offset"}
    assert [m["body"] for m in body["messages"]] == ["m0", "m1", "m2"]
    assert set(body["messages"][0]) == {"id", "role", "body", "fire_id", "agent_id", "created_at"}
    assert (body["total"], body["limit"], body["offset"]) == (3, 100, 0)

    page = api.get(f"/v1/api/conversations/{conversation.pk}?limit=1&offset=2", **member.headers).json()
    assert [m["body"] for m in page["messages"]] == ["m2"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 2)
    _error(api.get(f"/v1/api/conversations/{conversation.pk}?offset=-1", **member.headers), 400, "invalid")


def test_conversation__anothers_is_404(api, member):
    conversation = _conversation(member, "inbox")
    colleague = factories.caller(ws=member.workspace)
    error = _error(api.get(f"/v1/api/conversations/{conversation.pk}", **colleague.headers), 404, "not_found")
    assert error["message"] == "No such conversation."
