"""One agent lookup (hq.selectors.agent_find/agent_get) behind rooms, trigger_ai tasks and agent schedules."""

from __future__ import annotations

import pytest

from hq import messaging
from hq.errors import NotFound, ValidationFailed
from hq.models import Agent
from hq.selectors import agent_find, agent_get
from tests import factories

pytestmark = pytest.mark.django_db

NO_AGENT = "00000000-0000-4000-8000-000000000000"


def test_agent_find__by_id_in_the_workspace_else_the_enabled_default(member):
    ws = member.workspace
    default = ws.agents.get(is_default=True)
    off = Agent.objects.create(workspace=ws, name="off", enabled=False)
    elsewhere = factories.workspace().agents.get()
    assert agent_find(workspace_id=ws.pk) == default
    assert agent_find(workspace_id=ws.pk, agent_id=off.pk) == off  # callers say "disabled" themselves
    assert agent_find(workspace_id=ws.pk, agent_id=elsewhere.pk) is None
    Agent.objects.filter(pk=default.pk).update(enabled=False)
    assert agent_find(workspace_id=ws.pk) is None
    with pytest.raises(NotFound):
        agent_get(workspace_id=ws.pk, agent_id=elsewhere.pk)


def test_rooms__an_agent_of_another_workspace_is_404(api, member):
    elsewhere = factories.workspace().agents.get()
    resp = api.post("/v1/rooms", {"name": "r", "agent_id": str(elsewhere.pk)}, format="json", **member.headers)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    own = member.workspace.agents.get()
    resp = api.post("/v1/rooms", {"name": "r", "agent_id": str(own.pk)}, format="json", **member.headers)
    assert resp.status_code == 201 and resp.json()["agent_id"] == str(own.pk)


def test_room_agent__given_the_rooms_or_the_default_and_enabled(member):
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="r")
    default = member.workspace.agents.get()
    assert messaging.room_agent(room) == default
    with pytest.raises(NotFound):
        messaging.room_agent(room, NO_AGENT)
    off = Agent.objects.create(workspace=member.workspace, name="off", enabled=False)
    with pytest.raises(ValidationFailed) as refused:
        messaging.room_agent(room, off.pk)
    assert refused.value.code == "no_default_agent"


@pytest.mark.parametrize("which", ["disabled", "elsewhere", "unknown"])
def test_trigger_ai_task__needs_an_enabled_agent_of_the_workspace(api, member, which):
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="r")
    agent_id = {
        "disabled": lambda: Agent.objects.create(workspace=member.workspace, name="off", enabled=False).pk,
        "elsewhere": lambda: factories.workspace().agents.get().pk,
        "unknown": lambda: NO_AGENT,
    }[which]()
    body = {
        "name": "ai",
        "schedule": "0 9 * * *",
        "timezone": "UTC",
        "action": "trigger_ai",
        "args": {"room_id": str(room.pk), "prompt": "hi", "agent_id": str(agent_id)},
    }
    resp = api.post("/v1/scheduled-tasks", body, format="json", **member.headers)
    assert resp.status_code == 400, resp.content
    assert "args.agent_id" in resp.json()["error"]["fields"]
