"""Reads for rooms, notes, stored queries and conversations, each limited to what the caller may see.

A room is read by its members, a conversation by its owner, notes and stored queries by the
workspace; an object outside that answers NotFound, as if it did not exist. Lists come in the
order the API shows them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet

from hq.errors import ValidationFailed
from hq.models import Agent, Conversation, ConversationMessage, Note, Room, RoomMessage, StoredQuery
from hq.selectors import agent_find, agent_get, one_or_404

MAX_QUERY_LIMIT = 100

M = TypeVar("M", bound=Model)


def room_agent(room: Room, agent_id: Any = None) -> Agent:
    """The agent to engage: `agent_id`, else the room's, else the workspace default; it must be enabled."""
    agent: Agent | None
    if agent_id:
        agent = agent_get(workspace_id=room.workspace_id, agent_id=agent_id)
    else:
        agent = room.agent or agent_find(workspace_id=room.workspace_id)
    if agent is None or not agent.enabled:
        raise ValidationFailed("No enabled agent for this room.", code="no_default_agent")
    return agent


def room_list(*, workspace_id: Any, user_id: Any) -> QuerySet[Room]:
    """The rooms `user_id` is a member of, by name, with their members loaded."""
    rooms = Room.objects.filter(workspace_id=workspace_id, members__pk=user_id)
    return rooms.prefetch_related("members").order_by("name", "id")


def room_for_member(*, workspace_id: Any, user_id: Any, room_id: Any) -> Room:
    """The room, when `user_id` is a member of it in this workspace; else NotFound."""
    rows = Room.objects.filter(workspace_id=workspace_id, members__pk=user_id)
    return one_or_404(rows, room_id, "No such room (or you are not a member).")


def room_message_list(*, room: Room) -> QuerySet[RoomMessage]:
    """A room's messages, oldest first."""
    return room.messages.order_by("created_at", "id")


def note_list(*, workspace_id: Any) -> QuerySet[Note]:
    """The workspace's notes, newest first."""
    return Note.objects.filter(workspace_id=workspace_id).order_by("-created_at", "id")


def notes_matching(*, workspace_id: Any, filters: dict[str, Any]) -> list[Note]:
    """Run saved filters over a workspace's notes, newest first."""
    notes = Note.objects.filter(workspace_id=workspace_id).select_related("author")
    if filters.get("text"):
        notes = notes.filter(Q(title__icontains=filters["text"]) | Q(body__icontains=filters["text"]))
    if filters.get("author_id"):
        notes = notes.filter(author_id=filters["author_id"])
    if filters.get("created_after"):
        notes = notes.filter(created_at__gte=_dt(filters["created_after"]))
    if filters.get("created_before"):
        notes = notes.filter(created_at__lt=_dt(filters["created_before"]))
    limit = min(int(filters.get("limit") or 20), MAX_QUERY_LIMIT)
    wanted = set(filters.get("tags") or [])
    # Tags are matched in Python so the same code runs on PostgreSQL and SQLite; the text, author
    # and date filters above already narrow the rows, and the scan stops at `limit` matches.
    out: list[Note] = []
    for note in notes.order_by("-created_at", "id").iterator(chunk_size=500):
        if wanted <= set(note.tags or []):
            out.append(note)
            if len(out) >= limit:
                break
    return out


def _dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def stored_query_list(*, workspace_id: Any) -> QuerySet[StoredQuery]:
    """The workspace's stored queries, by name."""
    return StoredQuery.objects.filter(workspace_id=workspace_id).order_by("name", "id")


def stored_query_get(*, workspace_id: Any, query_id: Any) -> StoredQuery:
    """The workspace's stored query `query_id`; else NotFound."""
    return one_or_404(StoredQuery.objects.filter(workspace_id=workspace_id), query_id, "No such stored query.")


def conversation_list(*, workspace_id: Any, owner_id: Any, schedule_id: Any = None) -> QuerySet[Conversation]:
    """The owner's conversations (of one schedule, when given), most recently active first."""
    rows = Conversation.objects.filter(workspace_id=workspace_id, owner_id=owner_id)
    if schedule_id is not None:
        rows = rows.filter(schedule_id=schedule_id)
    return rows.order_by("-updated_at", "id")


def conversation_get(*, workspace_id: Any, owner_id: Any, conversation_id: Any) -> Conversation:
    """The owner's conversation `conversation_id`; else NotFound."""
    rows = Conversation.objects.filter(workspace_id=workspace_id, owner_id=owner_id)
    return one_or_404(rows, conversation_id, "No such conversation.")


def conversation_message_list(*, conversation: Conversation) -> QuerySet[ConversationMessage]:
    """A conversation's messages, oldest first."""
    return conversation.messages.order_by("created_at", "id")
