"""Reads for the schedule APIs: which schedules a caller sees on each surface."""

from __future__ import annotations

from django.db.models import QuerySet

from hq.api.auth import Principal
from schedules import actions
from schedules.models import Schedule


def schedules_on(principal: Principal, surface: str) -> QuerySet[Schedule]:
    """The workspace's schedules on `surface`: "agent" runs, or "tasks", everything else.

    Tasks are "not an agent action" rather than "a registered task action", so a task whose
    plugin action is gone (quarantined) can still be seen and deleted.
    """
    rows = Schedule.objects.filter(workspace_id=principal.workspace_id)
    agent = actions.names("agent")
    return rows.filter(action__in=agent) if surface == "agent" else rows.exclude(action__in=agent)


def schedules_visible(principal: Principal, surface: str) -> QuerySet[Schedule]:
    """What the caller may read on `surface`: an admin every schedule, anyone else their own."""
    rows = schedules_on(principal, surface)
    return rows if principal.is_admin else rows.filter(owner_id=principal.user.pk)
