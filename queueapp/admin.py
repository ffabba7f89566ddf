"""The ops console: HITL approvals, jobs with their timelines, queue pauses and workers.

Every page here is read-only; changes go through the same services the API uses. Staff need no
Django model permissions; the scope is `hq.admin_scoping`'s: a superuser sees everything, other
staff the rows of the workspaces they administer, where they may also decide, retry and cancel
(the services check again, through `hq.permissions`, with `via="admin"`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.db.models.expressions import OrderBy
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from hq import admin_actions, clock, console, permissions, timefmt
from hq.admin_scoping import WorkspaceScopedAdmin, WorkspaceScopedTabularInline, admin_user
from hq.display import clipped_note, json_text_attr, pretty_json, stored_json, with_json_text
from hq.errors import HQError
from hq.timefmt import when_html
from queueapp import selectors, services
from queueapp.models import DecidedVia, HITLRequest, HITLState, Job, JobEvent, JobState, QueuePause

#: `key=value` searches the arguments of jobs created this many days back (unless a date filter is set).
ARGS_SEARCH_DAYS = 7


def _json_shown(obj: Any, field: str) -> tuple[str, str] | None:
    """(indented JSON, a note when levels were left out) for a JSON field, None when NULL; from its
    stored text when the row came through `with_json_text`, so a value of any depth renders."""
    attr = json_text_attr(field)
    if hasattr(obj, attr):
        text = getattr(obj, attr)
        return None if text is None else (stored_json(text), clipped_note(text))
    value = getattr(obj, field)
    return None if value is None else (pretty_json(value), "")


def _pre(obj: Any, field: str) -> str:
    shown = _json_shown(obj, field)
    if shown is None:
        return "—"
    text, note = shown
    return format_html(
        '{}<pre class="hq-json">{}</pre>', format_html('<p class="help">{}</p>', note) if note else "", text
    )


class ConsoleAdmin(WorkspaceScopedAdmin):
    """A read-only console page: no Django model permissions needed, the workspace scope applies."""

    model_permissions = False


# --- HITL requests ----------------------------------------------------------------------------------


class DecisionForm(forms.Form):
    comment = forms.CharField(
        required=False,
        max_length=services.MAX_TEXT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded with the decision and shown in the job's timeline.",
    )


@admin.register(HITLRequest)
class HITLRequestAdmin(ConsoleAdmin):
    list_display = ["function", "state", "workspace", "requested_by", "age", "expires_at", "decided_by", "job_link"]
    list_filter = ["state", "function", ("requested_by", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["id", "job__id", "job__correlation_id"]
    search_help_text = "Request id, job id or correlation id."
    list_select_related = ["workspace", "requested_by", "decided_by"]
    actions = ["approve_selected", "reject_selected"]
    fields: ClassVar[tuple[str, ...]] = (
        "id",
        "state",
        "workspace",
        "job_link",
        "function",
        "args_pretty",
        "approved_args_pretty",
        "requested_by",
        "reason",
        *HITLRequest.DECISION_FIELDS,
    )
    readonly_fields = fields
    change_form_template = "admin/queueapp/hitlrequest/change_form.html"
    confirmation_template = "admin/queueapp/hitlrequest/decide_confirmation.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[HITLRequest]:
        return with_json_text(super().get_queryset(request), "args", "approved_args")

    # django-stubs types the ordering as field names only; Django's admin also takes expressions.
    def get_ordering(self, request: HttpRequest) -> list[str | OrderBy]:  # type: ignore[override]
        """Pending first, then oldest first."""
        pending_first = Case(
            When(state=HITLState.PENDING, then=Value(0)), default=Value(1), output_field=IntegerField()
        )
        return [pending_first.asc(), "created_at", "id"]

    @admin.display(description="Age")
    def age(self, obj: HITLRequest) -> str:
        return timesince(obj.created_at, clock.now())

    @admin.display(description="Job")
    def job_link(self, obj: HITLRequest) -> str:
        url = reverse("admin:queueapp_job_change", args=[obj.job_id])
        return format_html('<a href="{}">{}</a>', url, obj.job_id)

    @admin.display(description="Arguments (as requested)")
    def args_pretty(self, obj: HITLRequest) -> str:
        return _pre(obj, "args")

    @admin.display(description="Arguments (as approved)")
    def approved_args_pretty(self, obj: HITLRequest) -> str:
        return _pre(obj, "approved_args")

    # Actions on selected rows: a confirmation page first, like `delete_selected`.

    @admin.action(description="Approve selected requests…", permissions=["operate"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[HITLRequest]) -> HttpResponse | None:
        return self._decide_selected(request, queryset, "approve")

    @admin.action(description="Reject selected requests…", permissions=["operate"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[HITLRequest]) -> HttpResponse | None:
        return self._decide_selected(request, queryset, "reject")

    def _decide_selected(
        self, request: HttpRequest, queryset: QuerySet[HITLRequest], decision: str
    ) -> HttpResponse | None:
        form = DecisionForm(request.POST if request.POST.get("post") else None)
        if form.is_bound and form.is_valid():
            done = sum(self._decide(request, hitl, decision, form.cleaned_data["comment"]) for hitl in queryset)
            if done:
                verb = "Approved" if decision == "approve" else "Rejected"
                self.message_user(request, f"{verb} {done} request(s).", messages.SUCCESS)
            return None
        return self._confirmation(request, list(queryset), decision, form, action=f"{decision}_selected")

    def _decide(self, request: HttpRequest, hitl: HITLRequest, decision: str, comment: str) -> bool:
        """Run the service; show a refusal (403, 409...) as a message, never an error page."""
        try:
            services.hitl_decide(
                request=hitl, actor=admin_actions.actor(request), decision=decision, via="admin", comment=comment
            )
        except HQError as exc:
            self.message_user(request, f"{hitl.function} (job {hitl.job_id}): {exc.message}", messages.ERROR)
            return False
        return True

    def _confirmation(
        self, request: HttpRequest, rows: list[HITLRequest], decision: str, form: DecisionForm, action: str = ""
    ) -> TemplateResponse:
        return admin_actions.confirmation_page(
            self,
            request,
            template=self.confirmation_template,
            verb="Approve" if decision == "approve" else "Reject",
            objects=rows,
            action=action,
            confirm_id="confirm-decision",
            back_url=None if action else reverse("admin:queueapp_hitlrequest_change", args=[rows[0].pk]),
            decision=decision,
            rows=[self._confirmation_row(hitl) for hitl in rows],
            form=form,
        )

    @staticmethod
    def _confirmation_row(hitl: HITLRequest) -> dict[str, Any]:
        args, note = _json_shown(hitl, "args") or ("null", "")
        return {"obj": hitl, "args_json": args, "args_note": note}

    # Buttons on a request's page: the same confirmation, for one request.

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/approve/", view(self.approve_view), name="queueapp_hitlrequest_approve"),
            path("<path:object_id>/reject/", view(self.reject_view), name="queueapp_hitlrequest_reject"),
            *super().get_urls(),
        ]

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decide_view(request, object_id, "approve")

    def reject_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decide_view(request, object_id, "reject")

    def _decide_view(self, request: HttpRequest, object_id: str, decision: str) -> HttpResponse:
        hitl = self.get_object(request, unquote(object_id))
        if hitl is None or not self.has_view_permission(request, hitl):
            raise Http404("No such HITL request.")
        back = HttpResponseRedirect(reverse("admin:queueapp_hitlrequest_change", args=[hitl.pk]))
        try:
            permissions.ensure_may_decide_hitl(request=hitl, actor=admin_actions.actor(request), via=DecidedVia.ADMIN)
        except HQError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return back
        if hitl.state != HITLState.PENDING:
            self.message_user(request, f"This request is already {hitl.state}.", messages.WARNING)
            return back
        form = DecisionForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            if self._decide(request, hitl, decision, form.cleaned_data["comment"]):
                verb = "Approved: the job is queued." if decision == "approve" else "Rejected: the job will not run."
                self.message_user(request, verb, messages.SUCCESS)
            return back
        return self._confirmation(request, [hitl], decision, form)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        hitl = self.get_object(request, unquote(object_id))
        user = admin_user(request)
        can_decide = False
        if hitl is not None and user is not None and hitl.state == HITLState.PENDING:
            try:
                permissions.ensure_may_decide_hitl(request=hitl, actor=user, via=DecidedVia.ADMIN)
                can_decide = True
            except HQError:
                pass
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "can_decide": can_decide})


# --- jobs ---------------------------------------------------------------------------------------------


class JobEventInline(WorkspaceScopedTabularInline):
    """The job's timeline."""

    workspace_path = "job__workspace"
    model_permissions = False
    model = JobEvent
    fields: ClassVar[tuple[str, ...]] = ("at", "kind", "from_state", "to_state", "attempt", "actor", "detail_pretty")
    readonly_fields = fields
    ordering = ["at", "id"]
    extra = 0
    can_delete = False
    verbose_name = "event"
    verbose_name_plural = "Timeline"

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobEvent]:
        return with_json_text(super().get_queryset(request), "detail")

    @admin.display(description="Detail")
    def detail_pretty(self, obj: JobEvent) -> str:
        return "—" if getattr(obj, json_text_attr("detail"), None) == "{}" else _pre(obj, "detail")


@admin.register(Job)
class JobAdmin(ConsoleAdmin):
    list_display = [
        "short_id",
        "function",
        "state_badge",
        "args_preview",
        "correlation",
        "queue",
        "owner",
        "workspace",
        "attempts",
        "created",
        "duration",
    ]
    list_display_links = None  # the short id column links to the job itself
    list_filter = [
        "state",
        "queue",
        "function",
        ("owner", admin.RelatedOnlyFieldListFilter),
        ("workspace", admin.RelatedOnlyFieldListFilter),
        # Presets (today, past 7 days, this month...); any range also works as
        # ?created_at__gte=2026-01-01&created_at__lt=2026-01-08.
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["id"]  # searched by JobAdmin.get_search_results, never as a text scan
    search_help_text = (
        "A job id or its first characters, a correlation id, a function name, or key=value to find jobs "
        f"whose arguments contain it (jobs created in the last {ARGS_SEARCH_DAYS} days, or in the date filter's range)."
    )
    list_select_related = ["owner", "workspace"]
    list_per_page = console.PER_PAGE
    show_full_result_count = False
    paginator = console.CappedPaginator
    change_list_template = "admin/queueapp/job/change_list.html"
    inlines = [JobEventInline]
    actions = ["retry_selected", "cancel_selected"]
    Media = console.ConsoleMedia
    fields: ClassVar[tuple[str, ...]] = (
        "id",
        "state",
        "workspace",
        "owner",
        "function",
        "queue",
        "args_pretty",
        "result_pretty",
        "error",
        "correlation_id",
        "idempotency_key",
        "attempts",
        "max_tries",
        "timeout_s",
        "due_at",
        "created_at",
        "dispatched_at",
        "first_started_at",
        "started_at",
        "finished_at",
        "cancel_requested_at",
        "worker_id",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return with_json_text(super().get_queryset(request), "args", "result")

    # --- the list ---------------------------------------------------------------------------------

    @admin.display(description="Job", ordering="id")
    def short_id(self, obj: Job) -> str:
        return console.short_id(obj.pk, reverse("admin:queueapp_job_change", args=[obj.pk]))

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj: Job) -> str:
        return console.badge(obj.state)

    @admin.display(description="Arguments")
    def args_preview(self, obj: Job) -> str:
        return console.preview(getattr(obj, json_text_attr("args"), None))

    @admin.display(description="Correlation id", ordering="correlation_id")
    def correlation(self, obj: Job) -> str:
        return obj.correlation_id or "—"

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Job) -> str:
        return when_html(obj.created_at, clock.now())

    @admin.display(description="Duration")
    def duration(self, obj: Job) -> str:
        """The latest attempt's run time; a running one's so far."""
        if obj.started_at is None:
            return "—"
        end = obj.finished_at or (clock.now() if obj.state == JobState.RUNNING else None)
        if end is None:
            return "—"
        text = timefmt.duration((end - obj.started_at).total_seconds())
        return f"{text} so far" if obj.finished_at is None else text

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        """Indexed lookups only: an id (whole, or its first characters: a range of the primary key),
        a correlation id or a function name (exact), or `key=value` inside the arguments (JSONB
        containment, limited to recent jobs so it never scans the whole history)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if "=" in term:
            key, _, raw = term.partition("=")
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
            rows = queryset.filter(args__contains={key.strip(): value})
            if not any(k.startswith("created_at__") for k in request.GET):
                rows = rows.filter(created_at__gte=clock.now() - timedelta(days=ARGS_SEARCH_DAYS))
            return rows, False
        match = Q(correlation_id=term) | Q(function=term)
        hex_digits = term.replace("-", "").lower()
        if 0 < len(hex_digits) <= 32 and all(c in "0123456789abcdef" for c in hex_digits):
            low = uuid.UUID(hex_digits.ljust(32, "0"))
            high = uuid.UUID(hex_digits.ljust(32, "f"))
            match |= Q(id__gte=low, id__lte=high)
        return queryset.filter(match), False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        now = clock.now()
        counts = selectors.job_state_counts(rows=self.get_queryset(request), now=now)
        context = {
            "state_counts": [(state, label, counts[state]) for state, label in JobState.choices],
            "finished_window_h": int(selectors.FINISHED_COUNT_WINDOW.total_seconds() // 3600),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    @admin.display(description="Arguments")
    def args_pretty(self, obj: Job) -> str:
        return _pre(obj, "args")

    @admin.display(description="Result")
    def result_pretty(self, obj: Job) -> str:
        return _pre(obj, "result")

    @admin.action(description="Retry selected jobs", permissions=["operate"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._run(request, queryset, "Retried", services.job_retry)

    @admin.action(description="Cancel selected jobs", permissions=["operate"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._run(request, queryset, "Cancelled (or asked to abort)", services.job_cancel)

    def _run(self, request: HttpRequest, queryset: QuerySet[Job], verb: str, service: Callable[..., object]) -> None:
        """Call `service(job=, actor=, via=ADMIN)` for each job the user administers; every refusal (the
        service's own role check included) is reported, none skipped silently."""
        actor = admin_actions.actor(request)
        admin_actions.apply_each(
            self,
            request,
            queryset,
            lambda job: service(job=job, actor=actor, via=DecidedVia.ADMIN),
            done=f"{verb} {{count}} job(s).",
            label=_job_label,
        )


def _job_label(job: Job) -> str:
    return f"Job {job.pk}"


# --- queue pauses (workers are on the console's own page, /admin/ops/workers/) -------------------


@admin.register(QueuePause)
class QueuePauseAdmin(ConsoleAdmin):
    list_display = ["queue", "workspace", "paused_by", "paused_at"]
    list_filter = ["queue"]
    list_select_related = ["workspace", "paused_by"]
