"""Rooms, room messages, notes and stored queries: the writes the API and schedule actions make.

The reads are `hq.messaging_selectors`; the ones schedule actions use are importable from here too.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from hq import agents
from hq.errors import ValidationFailed
from hq.messaging_selectors import MAX_QUERY_LIMIT, notes_matching, room_agent, room_for_member
from hq.models import Agent, Membership, Note, Room, RoomMessage, StoredQuery, User, Workspace

__all__ = [
    "MAX_QUERY_LIMIT",
    "format_query_results",
    "message_post",
    "note_create",
    "notes_matching",
    "room_agent",
    "room_create",
    "room_engage_ai",
    "room_for_member",
    "stored_query_create",
]


def room_create(
    *, workspace: Workspace, creator: User, name: str, member_ids: list[Any] | None = None, agent: Agent | None = None
) -> Room:
    """Create a room; the creator is always a member; members must belong to the workspace.

    Members are checked before the room is written, so a refused create leaves nothing behind.
    """
    members = {creator.pk}
    if member_ids:
        found = set(
            Membership.objects.filter(workspace=workspace, user_id__in=member_ids).values_list("user_id", flat=True)
        )
        missing = {str(m) for m in member_ids} - {str(f) for f in found}
        if missing:
            raise ValidationFailed("Some members are not in this workspace.", fields={"members": sorted(missing)})
        members |= found
    with transaction.atomic():
        room = Room.objects.create(workspace=workspace, name=name, created_by=creator, agent=agent)
        # The stub takes only int primary keys; Django takes any primary key, and User's is a UUID.
        room.members.set(members)  # type: ignore[arg-type]
    return room


def message_post(
    *,
    room: Room,
    body: str,
    msgtype: str = RoomMessage.MsgType.TEXT,
    kind: str = RoomMessage.Kind.USER,
    author: User | None = None,
    agent: Agent | None = None,
    schedule_id: Any = None,
) -> RoomMessage:
    return RoomMessage.objects.create(
        room=room, body=body, msgtype=msgtype, kind=kind, author=author, agent=agent, schedule_id=schedule_id
    )


def room_engage_ai(
    *, room: Room, prompt: str, agent_id: Any = None, history: int = 20, schedule_id: Any = None
) -> RoomMessage:
    """Give the agent the prompt plus the room's recent messages; post its reply in the room."""
    agent = room_agent(room, agent_id)
    recent = list(room.messages.order_by("-created_at", "-id")[:history])[::-1]
    messages = [agents.ChatMessage("system", agent.system_prompt)] if agent.system_prompt else []
    messages += [
        agents.ChatMessage("assistant" if m.kind == RoomMessage.Kind.AGENT else "user", m.body) for m in recent
    ]
    messages.append(agents.ChatMessage("user", prompt))
    reply = agents.run(agent, messages)
    return message_post(
        room=room,
        body=reply,
        kind=RoomMessage.Kind.AGENT,
        agent=agent,
        schedule_id=schedule_id,
        msgtype=RoomMessage.MsgType.MARKDOWN,
    )


def note_create(
    *, workspace: Workspace, author: User, title: str, body: str = "", tags: list[str] | None = None
) -> Note:
    return Note.objects.create(workspace=workspace, author=author, title=title, body=body, tags=tags or [])


def stored_query_create(*, workspace: Workspace, owner: User, name: str, filters: dict[str, Any]) -> StoredQuery:
    return StoredQuery.objects.create(workspace=workspace, owner=owner, name=name, filters=filters)


def format_query_results(query: StoredQuery, notes: list[Note]) -> str:
    """A readable markdown list of a query's results."""
    if not notes:
        return f"**{query.name}**: no matching notes."
    lines = [f"**{query.name}**: {len(notes)} note{'s' if len(notes) != 1 else ''}"]
    for n in notes:
        author = n.author.label if n.author else "unknown"
        tags = f" [{', '.join(n.tags)}]" if n.tags else ""
        lines.append(f"- {n.title} ({author}, {n.created_at:%Y-%m-%d}){tags}")
    return "\n".join(lines)
