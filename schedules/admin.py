"""Schedules in the ops console: owner filter, recent fires, and every change through the services.

Scoped by `hq.admin_scoping` (a superuser sees every schedule, other staff those of the workspaces
they administer), with Django's model permissions on top: `view_schedule` to see, `add_schedule`
to create, `change_schedule` to edit and to run the actions. Like the queue pages, nothing here
writes a schedule by itself: the add and change forms run `schedule_create` / `schedule_update`
(their refusals show as form errors), and pause, resume, fire now, archive and erase run their
services after a confirmation page (`hq.admin_actions`). There is no delete: as on
/v1/api/schedules, whose DELETE archives, a schedule is archived (fires stop, history kept) and
an archived one may then be erased with its history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django import forms
from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from hq import admin_actions, clock, console
from hq.admin import GuardedJSONField
from hq.admin_scoping import WorkspaceScopedAdmin, WorkspaceScopedTabularInline, admin_user
from hq.display import clipped_note, json_text_attr, stored_json, stored_value, with_json_text
from hq.errors import HQError
from hq.models import User
from hq.timefmt import exact, when_html
from schedules import actions, services, triggers
from schedules.models import Schedule, ScheduleFire, ScheduleState

if TYPE_CHECKING:
    # Django's form classes are generic only in django-stubs (see hq.admin).
    _ScheduleModelForm = forms.ModelForm[Schedule]
else:
    _ScheduleModelForm = forms.ModelForm

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

    def queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> QuerySet[Schedule]:
        owner = self.value()
        # owner__pk (same SQL as owner_id, no join): django-stubs types an FK's own column as a UUID
        # only, its target's pk as a UUID or its text, which is what the query string gives.
        return queryset.filter(owner__pk=owner) if owner else queryset


class DestinationFilter(admin.SimpleListFilter):
    title = "destination"
    parameter_name = "destination"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        kinds = ("web_inbox", "slack_dm", "slack_channel", "teams_dm", "teams_channel")
        return [(k, k) for k in kinds]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> QuerySet[Schedule]:
        return queryset.filter(args__deliver_to__kind=self.value()) if self.value() else queryset


class FireInline(WorkspaceScopedTabularInline):
    workspace_path = "schedule__workspace"
    model = ScheduleFire
    extra = 0
    can_delete = False
    ordering = ["-slot"]
    fields: ClassVar[tuple[str, ...]] = (
        "slot",
        "manual",
        "status",
        "lag_ms",
        "skipped_slots",
        "error",
        "job_id",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields
    max_num = 0
    verbose_name_plural = f"recent fires (latest {RECENT_FIRES})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ScheduleFire]:
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


#: What the add and change forms call `args` is this form field, not the model field: a stored
#: value may be nested deeper than Python can load while rendering a page (`hq.display`), so the
#: input starts from the stored text, clipped, and the model field is never loaded.
ARGS_INPUT = "action_args"
#: The form field that shows a service's complaint about each part of a schedule.
_FORM_FIELD_OF = {
    "name": "name",
    "description": "description",
    "action": "action",
    "trigger": "trigger",
    "args": ARGS_INPUT,
}


def _action_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in actions.names()]


class ScheduleForm(_ScheduleModelForm):
    """The add and change form. Validating it runs `schedule_create` or `schedule_update`.

    The services hold every rule for a schedule's trigger, args, owner, plan limit and state, and
    they validate and write in one transaction. So the form calls the service last in its
    validation (after the field checks and the admin's same-workspace check) and turns an
    `HQError` into form errors; the admin's own save then has nothing left to write
    (`ScheduleAdmin.save_model`). The admin view runs in a transaction, and a refused service
    wrote nothing.
    """

    action = forms.ChoiceField(
        choices=_action_choices, help_text="What the schedule does when it fires; it cannot change later."
    )
    action_args = GuardedJSONField(
        label="Args",
        indent=2,
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80}),
        help_text="The action's arguments as a JSON object (see the README for each action).",
    )

    class Meta:
        model = Schedule
        fields = ["workspace", "owner", "name", "description", "action", "trigger"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None or ARGS_INPUT not in self.fields:
            return
        text = getattr(self.instance, json_text_attr("args"), None)
        if text is None:  # an instance not read through ScheduleAdmin.get_queryset: no stored text
            self.initial[ARGS_INPUT] = self.instance.args
            return
        self.initial[ARGS_INPUT] = stored_value(text)
        note = clipped_note(text)
        if note:
            self.fields[ARGS_INPUT].help_text = f"{note} Saving other changes keeps the stored args."

    # django-stubs leaves out BaseModelForm._post_clean, Django's step after clean() that builds the
    # instance and validates the model, which this form extends.
    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        try:
            self.instance = self._save_through_services()
        except HQError as exc:
            self._show(exc)
            if not self.instance._state.adding:
                # The page drawn again shows the schedule as stored (its next fires), not as typed.
                self.instance.refresh_from_db(fields=["name", "description", "trigger"])

    def _save_through_services(self) -> Schedule:
        data = self.cleaned_data
        if self.instance._state.adding:
            return services.schedule_create(
                workspace=data["workspace"],
                owner=data["owner"],
                name=data["name"],
                description=data["description"],
                trigger=data["trigger"],
                action=data["action"],
                args=data[ARGS_INPUT],
            )
        if self.instance.state == ScheduleState.ARCHIVED:
            return self.instance  # read-only: its page shows no field to change
        changes = {
            part: data[field]
            for part, field in _FORM_FIELD_OF.items()
            if part != "action" and field in self.changed_data
        }
        if not changes:
            return self.instance
        schedule, _ = services.schedule_update(schedule=self.instance, **changes)
        return schedule

    def _show(self, exc: HQError) -> None:
        """Each of the service's field complaints under its input; the message when none has one."""
        shown = False
        for key, problems in exc.fields.items():
            part, _, inner = key.partition(".")
            field = _FORM_FIELD_OF.get(part)
            if field in self.fields:
                for problem in problems if isinstance(problems, list) else [problems]:
                    self.add_error(field, f"{inner}: {problem}" if inner else str(problem))
                shown = True
        if not shown:
            self.add_error(None, exc.message)


#: The lifecycle actions on schedules (bulk actions and buttons on a schedule's page).
Lifecycle = admin_actions.Button[Schedule]

LIFECYCLE = {
    "pause": Lifecycle(
        "Pause",
        "Paused",
        "Each active schedule stops firing until it is resumed (its next fire is cleared); a paused one "
        "stays as it is. Quarantined and archived schedules cannot be paused.",
        lambda s, actor: services.schedule_pause(schedule=s, actor=actor),
    ),
    "resume": Lifecycle(
        "Resume",
        "Resumed",
        "Each schedule fires again from its trigger's next slot after now. A quarantined one resumes only "
        "once its trigger and args validate and its owner is an active member of its workspace; an "
        "archived one cannot be resumed.",
        lambda s, actor: services.schedule_resume(schedule=s),
    ),
    "fire_now": Lifecycle(
        "Fire now",
        "Fired",
        "Each active or paused schedule fires once now, beside its cadence, which does not change.",
        lambda s, actor: services.schedule_fire_now(schedule=s, actor=actor),
    ),
    "archive": Lifecycle(
        "Archive",
        "Archived",
        "Each schedule is cancelled for good: it never fires again and its pending fires are dropped; "
        "it and its fire history are kept, and can then be erased.",
        lambda s, actor: services.schedule_archive(schedule=s, actor=actor),
    ),
    "erase": Lifecycle(
        "Erase",
        "Erased",
        "Each archived schedule is deleted with its whole fire history. This cannot be undone. "
        "Schedules that are not archived are refused: archive them first.",
        lambda s, actor: services.schedule_erase(schedule=s),
    ),
}


def _schedule_label(s: Schedule) -> str:
    return s.name


#: The buttons a schedule's page shows in each state (the services refuse the others anyway).
BUTTONS_BY_STATE = {
    ScheduleState.ACTIVE: ("pause", "fire_now", "archive"),
    ScheduleState.PAUSED: ("resume", "fire_now", "archive"),
    ScheduleState.QUARANTINED: ("resume", "archive"),
    ScheduleState.ARCHIVED: ("erase",),
}


@admin.register(Schedule)
class ScheduleAdmin(WorkspaceScopedAdmin):
    list_display = [
        "name",
        "owner",
        "workspace",
        "action",
        "state_badge",
        "reason",
        "trigger_summary",
        "next_fire",
        "last_fire_status",
        "fire_count",
        "failure_count",
    ]
    list_filter = [OwnerFilter, "state", "action", DestinationFilter, "workspace"]
    search_fields = ["name", "id", "owner__email"]
    list_select_related = ["owner", "workspace"]
    fields: ClassVar[tuple[str, ...]] = (
        "id",
        "name",
        "description",
        "workspace",
        "owner",
        "action",
        "trigger",
        "trigger_words",
        "args_json",
        "state",
        "state_reason",
        "next_fire_exact",
        "upcoming",
        "last_fire_exact",
        "last_fire_status",
        "fire_count",
        "failure_count",
        "consecutive_failure_count",
        "last_fire_lag_ms",
        "last_run_conversation_id",
        "created_at",
        "updated_at",
    )
    add_fields = ("workspace", "owner", "name", "description", "action", "trigger", ARGS_INPUT)
    #: What a schedule's page lets you change (not once it is archived); the rest is fixed or the engine's.
    editable_fields = ["name", "description", "trigger", ARGS_INPUT]
    form = ScheduleForm
    formfield_overrides = {
        models.JSONField: {
            "form_class": GuardedJSONField,
            "indent": 2,
            "widget": forms.Textarea(attrs={"rows": 6, "cols": 80}),
        }
    }
    inlines = [FireInline]
    actions = ["pause", "resume", "fire_now", "archive", "erase"]
    change_form_template = "admin/schedules/schedule/change_form.html"
    list_per_page = console.PER_PAGE
    Media = console.ConsoleMedia
    confirmation_template = "admin/schedules/schedule/action_confirmation.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        # args are the client's (an agent schedule's prompt and extras): read as stored text, so a
        # row of any depth renders. The trigger is normalised on every write, so always flat.
        return with_json_text(super().get_queryset(request), "args")

    def _editable(self, request: HttpRequest, obj: Schedule) -> bool:
        return obj.state != ScheduleState.ARCHIVED and self.has_change_permission(request, obj)

    def get_fields(self, request: HttpRequest, obj: Schedule | None = None) -> tuple[str, ...]:
        if obj is None:
            return self.add_fields
        if self._editable(request, obj):
            return tuple(ARGS_INPUT if f == "args_json" else f for f in self.fields)
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> list[str]:
        if obj is None:
            return []
        editable = self.editable_fields if self._editable(request, obj) else []
        return [f for f in self.get_fields(request, obj) if f not in editable]

    def get_inlines(self, request: HttpRequest, obj: Schedule | None) -> list[type[InlineModelAdmin[Any, Any]]]:
        # The recent fires are for reading. A POST goes without them: the scheduler may have added
        # a fire since the page was drawn, and the posted rows would then fail a formset check
        # after ScheduleForm's service had already saved the schedule.
        return [] if obj is None or request.method == "POST" else self.inlines

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        """Nothing left to write: validating ScheduleForm ran the service that saved the schedule."""

    def has_erase_permission(self, request: HttpRequest) -> bool:
        """Erasing deletes a schedule and its history for good: it takes Django's delete permission,
        as deleting did before the admin went through the services (change alone is not enough)."""
        user = admin_user(request)
        return bool(self.admits(request) and user and user.has_perm(f"{self.opts.app_label}.delete_schedule"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """None on the schedules pages (no delete action, button or page): archive, then erase.

        Deleting a schedule's owner or workspace on their own pages still takes its schedules
        along (the database cascades); Django asks this admin about each of them there, and the
        answer is the model permission's.
        """
        match = request.resolver_match
        if match is None or (match.url_name or "").startswith(f"{self.opts.app_label}_{self.opts.model_name}_"):
            return False
        return super().has_delete_permission(request, obj)

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

    @admin.display(description="next fires")
    def upcoming(self, obj: Schedule) -> str:
        try:
            zone = obj.trigger["tz"]
            times = triggers.fire_times(obj.trigger, clock.now(), 5)
        except (triggers.TriggerError, KeyError, TypeError) as exc:
            return f"Trigger does not parse: {exc}"
        if not times:
            return "No further fires."
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((exact(t, zone),) for t in times)))

    @staticmethod
    def _zone(obj: Schedule) -> str | None:
        zone = obj.trigger.get("tz") if isinstance(obj.trigger, dict) else None
        return zone if isinstance(zone, str) else None

    @admin.display(description="trigger")
    def trigger_summary(self, obj: Schedule) -> str:
        """The expression and, under it, the same in words with the zone."""
        expr = obj.trigger.get("expr", "") if isinstance(obj.trigger, dict) else ""
        return format_html(
            '<code>{}</code> <span class="hq-trigger-words">{}</span>', expr, triggers.describe(obj.trigger)
        )

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: Schedule) -> str:
        return console.badge(obj.state)

    @admin.display(description="trigger in words")
    def trigger_words(self, obj: Schedule) -> str:
        return triggers.describe(obj.trigger)

    @admin.display(description="next fire", ordering="next_fire_at")
    def next_fire(self, obj: Schedule) -> str:
        return when_html(obj.next_fire_at, clock.now(), self._zone(obj))

    @admin.display(description="next fire at")
    def next_fire_exact(self, obj: Schedule) -> str:
        return exact(obj.next_fire_at, self._zone(obj))

    @admin.display(description="last fire at")
    def last_fire_exact(self, obj: Schedule) -> str:
        return exact(obj.last_fire_at, self._zone(obj))

    # Actions on selected schedules: a confirmation page first, then the service for each.

    @admin.action(description="Pause selected schedules", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> HttpResponse | None:
        return self._lifecycle(request, queryset, "pause")

    @admin.action(description="Resume selected schedules", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> HttpResponse | None:
        return self._lifecycle(request, queryset, "resume")

    @admin.action(description="Fire selected schedules now", permissions=["change"])
    def fire_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> HttpResponse | None:
        return self._lifecycle(request, queryset, "fire_now")

    @admin.action(description="Archive (cancel) selected schedules", permissions=["change"])
    def archive(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> HttpResponse | None:
        return self._lifecycle(request, queryset, "archive")

    @admin.action(description="Erase selected archived schedules and their history", permissions=["erase"])
    def erase(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> HttpResponse | None:
        return self._lifecycle(request, queryset, "erase")

    def _lifecycle(self, request: HttpRequest, queryset: QuerySet[Schedule], name: str) -> HttpResponse | None:
        step = LIFECYCLE[name]
        return admin_actions.run_action(
            self,
            request,
            queryset if admin_actions.confirmed(request) else queryset.select_related("owner", "workspace"),
            step.run,
            template=self.confirmation_template,
            verb=step.verb,
            consequence=step.consequence,
            action=name,
            confirm_id="confirm-action",
            done=f"{step.done} {{count}} schedule(s).",
            label=_schedule_label,
            logged=step.log_message,
        )

    # Buttons on a schedule's page: the same confirmation and services as the actions, for one schedule.

    def _may(self, request: HttpRequest, obj: Schedule, name: str) -> bool:
        if name == "erase":
            return self.has_erase_permission(request) and self.covers(request, obj)
        return self.has_change_permission(request, obj)

    def get_urls(self) -> list[URLPattern]:
        return admin_actions.button_urls(self, LIFECYCLE, self.schedule_button) + super().get_urls()

    def schedule_button(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        """A button on a schedule's page: its confirmation page (GET), then the service (POST)."""
        schedule = self.get_object(request, unquote(object_id))
        if schedule is None or not self.has_view_permission(request, schedule):
            raise Http404("No such schedule.")
        if not self._may(request, schedule, name):
            raise PermissionDenied
        step = LIFECYCLE[name]
        return admin_actions.object_button(
            self,
            request,
            schedule,
            step.run,
            template=self.confirmation_template,
            verb=step.verb,
            consequence=step.consequence,
            confirm_id=f"confirm-{name}",
            done=f"{step.done}: {schedule.name}.",
            label=_schedule_label,
            logged=step.log_message,
            back_url=reverse("admin:schedules_schedule_change", args=[schedule.pk]),
            # An erased schedule has no page left: back to the list.
            done_url=reverse("admin:schedules_schedule_changelist") if name == "erase" else None,
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        schedule = self.get_object(request, unquote(object_id))
        buttons = []
        if schedule is not None:
            for name in BUTTONS_BY_STATE.get(ScheduleState(schedule.state), ()):
                if self._may(request, schedule, name):
                    url = reverse(f"admin:schedules_schedule_{name}", args=[schedule.pk])
                    buttons.append((f"schedule-{name.replace('_', '-')}", LIFECYCLE[name].verb + "…", url))
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "schedule_buttons": buttons})
