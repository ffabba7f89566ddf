"""Ops console pages beside the model admins: the dashboard (charts) and the live workers.

Both are wrapped in `admin.site.admin_view` (staff only; anyone else goes to the admin login).
Superusers see every workspace and may narrow to one; other staff see the workspaces they
administer (`hq.permissions.staff_workspace_ids`, the rule of every admin page), and staff who
administer none get the page with an explanation instead of numbers. The pages are plain HTML
with inline SVG charts and refresh themselves every 30 s: no JavaScript, nothing from the internet.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from hq.admin_scoping import request_workspace_ids
from hq.models import Workspace
from queueapp import observability

REFRESH_S = 30


def _scope(request: HttpRequest) -> tuple[list[Any] | None, Workspace | None, list[Workspace]]:
    """(workspace ids to show, the one chosen, the choices) for this staff user."""
    ids = request_workspace_ids(request)
    choices = Workspace.objects.order_by("slug")
    if ids is not None:
        choices = choices.filter(pk__in=ids)
    chosen = None
    raw = request.GET.get("workspace", "")
    if raw:
        try:
            chosen = choices.filter(pk=uuid.UUID(raw)).first()
        except ValueError:
            chosen = None
    if chosen is not None:
        ids = [chosen.pk]
    return ids, chosen, list(choices[:500])


def _context(request: HttpRequest, title: str) -> dict[str, Any]:
    ids, chosen, choices = _scope(request)
    return {
        **admin.site.each_context(request),
        "title": title,
        "refresh_s": REFRESH_S,
        "workspace_ids": ids,
        "chosen": chosen,
        "choices": choices,
        "all_workspaces": ids is None,
        "no_workspace": ids == [],
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """Charts and numbers: jobs per minute by outcome, wait times, depth, fire lag, HITL pending."""
    context = _context(request, "Ops dashboard")
    if context["no_workspace"]:
        return TemplateResponse(request, "admin/ops/dashboard.html", context)
    ids = context["workspace_ids"]
    scope = observability.Scope.of(ids)
    summary = observability.summary(workspace_ids=ids, now=scope.now)
    chosen = context["chosen"]
    context.update(
        summary=summary,
        queue_rows=_queue_rows(summary["queues"], chosen),
        links=_links(chosen),
        waiting_total=sum(q["waiting"] for q in summary["queues"]),
        running_total=sum(q["states"]["running"] for q in summary["queues"]),
        hitl_oldest=human_ms(summary["hitl"]["oldest_pending_age_ms"]),
    )
    context["panels"] = [
        {"title": p.title, "svg": mark_safe(p.svg), "caption": p.caption}  # escaped in hq.charts
        for source in observability.panels()
        for p in source(scope)
    ]
    return TemplateResponse(request, "admin/ops/dashboard.html", context)


def workers_view(request: HttpRequest) -> HttpResponse:
    """Live workers: last heartbeat, queues, and the jobs (of the workspaces shown) running on them."""
    context = _context(request, "Workers")
    if context["no_workspace"]:
        return TemplateResponse(request, "admin/ops/workers.html", context)
    workers = observability.workers_overview(workspace_ids=context["workspace_ids"])
    for row in workers:
        row["heartbeat_age_s"] = round((row["heartbeat_age_ms"] or 0) / 1000, 1)
        for job in row["jobs"]:
            job["running_for_s"] = round((job["running_for_ms"] or 0) / 1000)
    context["workers"] = workers
    return TemplateResponse(request, "admin/ops/workers.html", context)


def human_ms(ms: int | None) -> str:
    """An age for people: 850 ms, 42 s, 7 min, 3.5 h, 2.1 d."""
    if ms is None:
        return ""
    seconds = ms / 1000
    if seconds < 1:
        return f"{ms} ms"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


#: A function failing at least this share of its finished jobs in the last hour is highlighted.
FAILING_SHARE = 0.5


def _list_url(name: str, workspace: Workspace | None, **filters: str) -> str:
    """An admin list filtered by `filters` (and by the chosen workspace, where one is chosen)."""
    if workspace is not None:
        filters["workspace__id__exact"] = str(workspace.pk)
    query = urlencode(filters)
    return reverse(name) + (f"?{query}" if query else "")


def _links(workspace: Workspace | None) -> dict[str, str]:
    """Where each tile leads: the list of the rows it counts."""
    jobs, hitl, schedules = (
        "admin:queueapp_job_changelist",
        "admin:queueapp_hitlrequest_changelist",
        "admin:schedules_schedule_changelist",
    )
    return {
        "waiting": _list_url(jobs, workspace, state__exact="queued"),
        "running": _list_url(jobs, workspace, state__exact="running"),
        "hitl": _list_url(hitl, workspace, state__exact="pending"),
        "schedules_active": _list_url(schedules, workspace, state__exact="active"),
        "schedules_paused": _list_url(schedules, workspace, state__exact="paused"),
        "quarantined": _list_url(schedules, workspace, state__exact="quarantined"),
    }


def _queue_rows(queues: list[dict[str, Any]], workspace: Workspace | None = None) -> list[dict[str, Any]]:
    """One row per queue (its totals) followed by one per function, with the last hour's window;
    each with links to its jobs (all, and failed), and a flag on functions failing FAILING_SHARE."""
    rows = []
    for queue in queues:
        for entry, is_queue in [(queue, True), *((f, False) for f in queue["functions"])]:
            window = entry["windows"]["1h"]
            filters = (
                {"queue": queue["queue"]} if is_queue else {"queue": queue["queue"], "function": entry["function"]}
            )
            rate = window["failure_rate"]
            rows.append(
                {
                    "is_queue": is_queue,
                    "queue": queue["queue"],
                    "paused": queue["paused"],
                    "function": entry.get("function", ""),
                    "waiting": entry["waiting"],
                    "running": entry["states"]["running"],
                    "awaiting": entry["states"]["awaiting_approval"],
                    "oldest": human_ms(entry["oldest_waiting_age_ms"]),
                    "w": window,
                    "failure_pct": None if rate is None else round(rate * 100, 1),
                    "failing": rate is not None and rate >= FAILING_SHARE,
                    "url": _list_url("admin:queueapp_job_changelist", workspace, **filters),
                    "failed_url": _list_url(
                        "admin:queueapp_job_changelist", workspace, state__exact="failed", **filters
                    ),
                }
            )
    return rows
