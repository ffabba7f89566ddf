"""Token scopes: what a personal access token may do."""

from __future__ import annotations

ALL_SCOPES: tuple[str, ...] = (
    "queue:read",
    "queue:write",
    "hitl:approve",
    "schedules:read",
    "schedules:write",
    "scheduled_tasks:read",
    "scheduled_tasks:write",
    "conversations:read",
    "rooms:read",
    "rooms:write",
    "notes:read",
    "notes:write",
)
