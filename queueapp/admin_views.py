"""Ops console pages beside the model admins: the dashboard (charts) and the live workers.

All are wrapped in `admin.site.admin_view` (staff only; anyone else goes to the admin login).
Superusers see every workspace and may narrow to one; other staff see the workspaces they
administer (`hq.permissions.staff_workspace_ids`, the rule of every admin page), and staff who
administer none get the page with an explanation instead of numbers. The pages are plain HTML
with inline SVG charts, nothing from the internet. The dashboard's live part (tiles, charts,
tables) is also served alone (`dashboard_live_view`): a small script of ours
(queueapp/static/queueapp/ops-dashboard.js) fetches it every `LIVE_S` seconds and swaps it in
place; without JavaScript the page reloads itself every `REFRESH_S` seconds instead, as the workers
page does.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.safestring import mark_safe

from hq.admin_scoping import request_workspace_ids
from hq.models import Workspace
from queueapp import observability

REFRESH_S = 30
#: Seconds between the dashboard's in-place updates (with JavaScript).
LIVE_S = 5
#: A function (or queue) whose finished attempts of the last hour failed this often or more is
#: highlighted as failing; at 100 % more strongly. Written in the page's caption and the README.
FAILING_RATE = 0.5
#: The header that marks the dashboard's live fragment (the script swaps in nothing else).
FRAGMENT_HEADER = "X-HQ-Fragment"


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
    """Tiles, charts and tables: jobs per minute by outcome, wait times, depth over time, fire lag,
    HITL pending, each linking to the admin list it counts; updated in place by its script."""
    context = _dashboard_context(request)
    if context["chosen"] is not None:
        context["live_query"] = "?" + urlencode({"workspace": context["chosen"].pk})
    return TemplateResponse(request, "admin/ops/dashboard.html", context)


def dashboard_live_view(request: HttpRequest) -> HttpResponse:
    """The dashboard's live part alone (same scope and `?workspace=`), for its script to swap in."""
    response = TemplateResponse(request, "admin/ops/dashboard_live.html", _dashboard_context(request))
    response[FRAGMENT_HEADER] = "ops-dashboard"
    return response


def _dashboard_context(request: HttpRequest) -> dict[str, Any]:
    context = _context(request, "Ops dashboard")
    context.update(live_s=LIVE_S, failing_pct=round(FAILING_RATE * 100))
    if context["no_workspace"]:
        return context
    ids = context["workspace_ids"]
    scope = observability.Scope.of(ids)
    summary = observability.summary(workspace_ids=ids, now=scope.now)
    links = _Links(context["chosen"], scope.now)
    rows = _queue_rows(summary["queues"], links)
    context.update(
        summary=summary,
        queue_rows=rows,
        waiting_total=sum(q["waiting"] for q in summary["queues"]),
        running_total=sum(q["states"]["running"] for q in summary["queues"]),
        failing_functions=sum(1 for r in rows if not r["is_queue"] and r["failing"]),
        hitl_oldest=human_ms(summary["hitl"]["oldest_pending_age_ms"]),
        links={
            "waiting": links.jobs(waiting=True),
            "running": links.jobs(state="running"),
            "failed_1h": links.jobs(state="failed", failed_within_s=3600),
            "hitl": links.url("admin:queueapp_hitlrequest_changelist", state__exact="pending"),
            # The schedules summary's rules (schedules.observability): failing is a failed latest fire
            # on a schedule not archived.
            "schedules_active": links.url("admin:schedules_schedule_changelist", state__exact="active"),
            "schedules_failing": links.url(
                "admin:schedules_schedule_changelist",
                consecutive_failure_count__gt=0,
                state__in="active,paused,quarantined",
            ),
            "schedules_quarantined": links.url("admin:schedules_schedule_changelist", state__exact="quarantined"),
        },
    )
    context["panels"] = [
        {"title": p.title, "svg": mark_safe(p.svg), "caption": p.caption}  # escaped in hq.charts
        for source in observability.panels()
        for p in source(scope)
    ]
    return context


class _Links:
    """Admin changelist URLs filtered by their list filters (or plain field lookups), keeping the
    workspace chosen on the dashboard; the admin itself keeps staff to their workspaces."""

    def __init__(self, chosen: Workspace | None, now: datetime) -> None:
        self.chosen = chosen
        self.now = now

    def url(self, name: str, **params: Any) -> str:
        if self.chosen is not None:
            params["workspace__id__exact"] = self.chosen.pk
        return f"{reverse(name)}?{urlencode(params)}"

    def jobs(
        self,
        *,
        queue: str = "",
        function: str = "",
        state: str = "",
        waiting: bool = False,
        failed_within_s: int = 0,
    ) -> str:
        """The jobs list: of a queue and function, in a state; `waiting` is queued, or deferred and due;
        `failed_within_s` keeps the jobs that finished in the last that many seconds."""
        params: dict[str, Any] = {}
        if queue:
            params["queue__exact"] = queue
        if function:
            params["function__exact"] = function
        if state:
            params["state__exact"] = state
        if waiting:
            params["state__in"] = "queued,deferred"
            # To the microsecond, as the tile counted: cut to the second, a job due in the same
            # second as the count would be counted but not listed.
            params["due_at__lte"] = self.now.isoformat()
        if failed_within_s:
            params["finished_at__gte"] = (self.now - timedelta(seconds=failed_within_s)).isoformat()
        return self.url("admin:queueapp_job_changelist", **params)


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


def _queue_rows(queues: list[dict[str, Any]], links: _Links) -> list[dict[str, Any]]:
    """One row per queue (its totals) followed by one per function, with the last hour's window, the
    links to its jobs, and whether it is failing (`FAILING_RATE`)."""
    rows = []
    for queue in queues:
        for entry, is_queue in [(queue, True), *((f, False) for f in queue["functions"])]:
            window = entry["windows"]["1h"]
            rate = window["failure_rate"]
            q, f = queue["queue"], entry.get("function", "")
            rows.append(
                {
                    "is_queue": is_queue,
                    "queue": q,
                    "paused": queue["paused"],
                    "function": f,
                    "waiting": entry["waiting"],
                    "running": entry["states"]["running"],
                    "awaiting": entry["states"]["awaiting_approval"],
                    "oldest": human_ms(entry["oldest_waiting_age_ms"]),
                    "w": window,
                    "failure_pct": None if rate is None else round(rate * 100, 1),
                    "failing": rate is not None and rate >= FAILING_RATE,
                    "all_failing": rate is not None and rate >= 1,
                    "url": links.jobs(queue=q, function=f),
                    "waiting_url": links.jobs(queue=q, function=f, waiting=True),
                    "running_url": links.jobs(queue=q, function=f, state="running"),
                    "awaiting_url": links.jobs(queue=q, function=f, state="awaiting_approval"),
                    "failed_url": links.jobs(queue=q, function=f, state="failed", failed_within_s=3600),
                }
            )
    return rows
