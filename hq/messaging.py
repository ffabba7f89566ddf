"""Rooms, room messages, notes and stored queries: writes and reads used by the API and schedule actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from hq import agents
from hq.errors import NotFound, ValidationFailed
from hq.models import Agent, Membership, Note, Room, RoomMessage, StoredQuery, User, Workspace
from hq.selectors import agent_find, agent_get

MAX_QUERY_LIMIT = 100


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
        room.members.set(members)
    return room


def rooms_visible(*, workspace_id: Any, user: User) -> QuerySet[Room]:
    return Room.objects.filter(workspace_id=workspace_id, members=user)


def room_for_member(*, workspace_id: Any, user_id: Any, room_id: Any) -> Room:
    """The room, when `user_id` is a member of it in this workspace; else NotFound."""
    room = Room.objects.filter(workspace_id=workspace_id, pk=room_id, members__pk=user_id).first()
    if room is None:
        raise NotFound("No such room (or you are not a member).")
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


def room_agent(room: Room, agent_id: Any = None) -> Agent:
    """The agent to engage: `agent_id`, else the room's, else the workspace default."""
    if agent_id:
        agent = agent_get(workspace_id=room.workspace_id, agent_id=agent_id)
    else:
        agent = room.agent or agent_find(workspace_id=room.workspace_id)
    if agent is None or not agent.enabled:
        raise ValidationFailed("No enabled agent for this room.", code="no_default_agent")
    return agent


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
