"""Reads for the schedule APIs: which schedules a caller sees on each surface, and one of them."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from hq import permissions
from hq.permissions import Principal
from hq.selectors import one_or_404
from schedules import actions
from schedules.models import Schedule


def schedules_on(principal: Principal, surface: str) -> QuerySet[Schedule]:
    """The workspace's schedules on `surface`: "agent" runs, or "tasks", everything else.

    Tasks are "not an agent action" rather than "a registered task action", so a task whose
    plugin action is gone (quarantined) can still be seen and deleted.
    """
    rows = permissions.workspace_rows(principal, Schedule.objects.all())
    agent = actions.names("agent")
    return rows.filter(action__in=agent) if surface == "agent" else rows.exclude(action__in=agent)


def schedules_visible(principal: Principal, surface: str) -> QuerySet[Schedule]:
    """What the caller may read on `surface`: an admin every schedule, anyone else their own."""
    return permissions.owned_rows(principal, schedules_on(principal, surface))


_NO_SUCH = {"agent": "No such schedule.", "tasks": "No such scheduled task."}


def schedule_get(*, principal: Principal, surface: str, schedule_id: Any, to_change: bool = False) -> Schedule:
    """One schedule on `surface` that the caller may read, else 404; with `to_change`, one they may change.

    Another member's agent schedule is found for a change and refused with 403 `not_owner`, as the
    agent schedules guide has it; another member's task stays 404 (`hq.permissions`).
    """
    finds_others = to_change and surface == "agent"
    rows = schedules_on(principal, surface) if finds_others else schedules_visible(principal, surface)
    schedule = one_or_404(rows, schedule_id, _NO_SUCH[surface])
    if to_change:
        permissions.ensure_may_change(principal, schedule, what="schedule")
    return schedule
