"""Schedules in the ops console: owner filter, lifecycle actions through the services, recent fires.

Scoped by `hq.admin_scoping` (a superuser sees every schedule, other staff those of the workspaces
they administer), with Django's model permissions on top: `view_schedule` to see, `change_schedule`
to edit the name and description and to run the actions.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from hq import clock
from hq.admin_scoping import WorkspaceScopedAdmin, WorkspaceScopedTabularInline
from hq.display import clipped_note, json_text_attr, stored_json, with_json_text
from hq.errors import HQError
from hq.models import User
from schedules import services, triggers
from schedules.models import Schedule, ScheduleFire

RECENT_FIRES = 20
#: The list shows this much of a state reason; the schedule's page shows all of it.
REASON_CHARS = 120


class OwnerFilter(admin.SimpleListFilter):
    """Only users who have schedules (the admin twin of GET /v1/api/schedules/owners)."""

    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        owner_ids = model_admin.scope_rows(request, Schedule.objects.all()).values("owner_id").distinct()
        return [(str(u.pk), u.label) for u in User.objects.filter(pk__in=owner_ids).order_by("display_name", "email")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(owner_id=self.value()) if self.value() else queryset


class DestinationFilter(admin.SimpleListFilter):
    title = "destination"
    parameter_name = "destination"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        kinds = ("web_inbox", "slack_dm", "slack_channel", "teams_dm", "teams_channel")
        return [(k, k) for k in kinds]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(args__deliver_to__kind=self.value()) if self.value() else queryset


class FireInline(WorkspaceScopedTabularInline):
    workspace_path = "schedule__workspace"
    model = ScheduleFire
    extra = 0
    can_delete = False
    ordering = ["-slot"]
    fields = ["slot", "manual", "status", "lag_ms", "skipped_slots", "error", "job_id", "started_at", "finished_at"]
    readonly_fields = fields
    max_num = 0
    verbose_name_plural = f"recent fires (latest {RECENT_FIRES})"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """The schedule's latest RECENT_FIRES fires only: a years-old schedule has thousands."""
        rows = super().get_queryset(request).order_by("-slot")
        match = request.resolver_match
        object_id = match.kwargs.get("object_id") if match else None
        if object_id:
            recent = ScheduleFire.objects.filter(schedule_id=object_id).order_by("-slot").values_list("pk", flat=True)
            rows = rows.filter(pk__in=list(recent[:RECENT_FIRES]))
        return rows

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Schedule)
class ScheduleAdmin(WorkspaceScopedAdmin):
    list_display = [
        "name",
        "owner",
        "workspace",
        "action",
        "state",
        "reason",
        "next_fire_at",
        "last_fire_status",
        "fire_count",
        "failure_count",
    ]
    list_filter = [OwnerFilter, "state", "action", DestinationFilter, "workspace"]
    search_fields = ["name", "id", "owner__email"]
    list_select_related = ["owner", "workspace"]
    fields = [
        "id",
        "name",
        "description",
        "workspace",
        "owner",
        "action",
        "trigger",
        "args_json",
        "state",
        "state_reason",
        "next_fire_at",
        "upcoming",
        "last_fire_at",
        "last_fire_status",
        "fire_count",
        "failure_count",
        "consecutive_failure_count",
        "last_fire_lag_ms",
        "last_run_conversation_id",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [f for f in fields if f not in ("name", "description")]
    inlines = [FireInline]
    actions = ["pause", "resume", "fire_now", "archive"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # args are the client's (an agent schedule's prompt and extras): read as stored text, so a
        # row of any depth renders. The trigger is normalised on every write, so always flat.
        return with_json_text(super().get_queryset(request), "args")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # schedules are created through the API, where args are validated per action

    @admin.display(description="state reason", ordering="state_reason")
    def reason(self, obj: Schedule) -> str:
        """Why it is paused or quarantined (who paused it, a bad trigger, an owner who left...), shortened."""
        return Truncator(obj.state_reason).chars(REASON_CHARS) if obj.state_reason else "—"

    @admin.display(description="args")
    def args_json(self, obj: Schedule) -> str:
        text = getattr(obj, json_text_attr("args"))
        note = clipped_note(text)
        return format_html(
            '{}<pre class="hq-json">{}</pre>',
            format_html('<p class="help">{}</p>', note) if note else "",
            stored_json(text),
        )

    @admin.display(description="next fires (schedule's zone)")
    def upcoming(self, obj: Schedule) -> str:
        try:
            zone = ZoneInfo(obj.trigger["tz"])
            times = triggers.fire_times(obj.trigger, clock.now(), 5)
        except (triggers.TriggerError, KeyError, TypeError) as exc:
            return f"Trigger does not parse: {exc}"
        if not times:
            return "No further fires."
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} ({})</li>",
                ((t.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"), t.strftime("%H:%MZ")) for t in times),
            ),
        )

    def _apply(self, request: HttpRequest, queryset: QuerySet, verb: str, fn: Any) -> None:
        done, refused = 0, []
        for schedule in queryset:
            if not self.covers(request, schedule):
                refused.append(f"{schedule.name}: only an admin of its workspace may change it.")
                continue
            try:
                fn(schedule)
                done += 1
            except HQError as exc:
                refused.append(f"{schedule.name}: {exc.message}")
        if done:
            self.message_user(request, f"{verb} {done} schedule(s).")
        for line in refused:
            self.message_user(request, line, level=messages.ERROR)

    @admin.action(description="Pause selected schedules", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, "Paused", lambda s: services.schedule_pause(schedule=s, actor=request.user))

    @admin.action(description="Resume selected schedules", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, "Resumed", lambda s: services.schedule_resume(schedule=s))

    @admin.action(description="Fire selected schedules now", permissions=["change"])
    def fire_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, "Fired", lambda s: services.schedule_fire_now(schedule=s, actor=request.user))

    @admin.action(description="Archive (cancel) selected schedules", permissions=["change"])
    def archive(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, "Archived", lambda s: services.schedule_archive(schedule=s, actor=request.user))
