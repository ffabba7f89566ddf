"""The ops console: HITL approvals, jobs with their timelines, queue pauses and workers.

Every page here is read-only; changes go through the same services the API uses. Staff need no
Django model permissions; the scope is `hq.admin_scoping`'s: a superuser sees everything, other
staff the rows of the workspaces they administer, where they may also decide, retry and cancel
(the services check again, through `hq.permissions`, with `via="admin"`).
"""

from __future__ import annotations

from collections.abc import Callable
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

from hq import admin_actions, clock, permissions
from hq.admin_scoping import WorkspaceScopedAdmin, WorkspaceScopedTabularInline, admin_user
from hq.display import clipped_note, json_text_attr, pretty_json, stored_json, with_json_text
from hq.errors import HQError
from queueapp import limits, services
from queueapp.models import (
    WAITING_STATES,
    DecidedVia,
    HITLRequest,
    HITLState,
    Job,
    JobEvent,
    KeyLimit,
    QueuePause,
    Worker,
)


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


class PriorityFilter(admin.SimpleListFilter):
    """Priority by band: Django's own filter of an integer lists its distinct values (a scan of every job)."""

    title = "priority"
    parameter_name = "priority_band"
    BANDS: ClassVar[dict[str, tuple[str, Q]]] = {
        "high": ("Above 0 (starts first)", Q(priority__gt=0)),
        "normal": ("0 (the default)", Q(priority=0)),
        "low": ("Below 0", Q(priority__lt=0)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, (label, _) in self.BANDS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        band = self.BANDS.get(self.value() or "")
        return queryset.filter(band[1]) if band else queryset


class HeldFilter(admin.SimpleListFilter):
    title = "held by a limit"
    parameter_name = "held"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Held: waiting for a place under its limit")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if self.value() == "yes":
            return queryset.filter(held_at__isnull=False, state__in=WAITING_STATES)
        return queryset


@admin.register(Job)
class JobAdmin(ConsoleAdmin):
    list_display = [
        "id",
        "function",
        "queue",
        "state",
        "priority",
        "concurrency_key",
        "held",
        "owner",
        "workspace",
        "attempts",
        "created_at",
        "finished_at",
    ]
    list_filter = [
        "state",
        PriorityFilter,
        "queue",
        "function",
        HeldFilter,
        ("owner", admin.RelatedOnlyFieldListFilter),
        ("workspace", admin.RelatedOnlyFieldListFilter),
        # Presets (today, past 7 days, this month...); any range also works as
        # ?created_at__gte=2026-01-01&created_at__lt=2026-01-08.
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["id", "correlation_id", "unique_key", "=concurrency_key"]
    search_help_text = "Job id, correlation id, unique key or concurrency key (exact)."
    list_select_related = ["owner", "workspace"]
    show_full_result_count = False
    inlines = [JobEventInline]
    actions = ["retry_selected", "cancel_selected"]
    fields: ClassVar[tuple[str, ...]] = (
        "id",
        "state",
        "workspace",
        "owner",
        "function",
        "queue",
        "priority",
        "args_pretty",
        "result_pretty",
        "error",
        "correlation_id",
        "idempotency_key",
        "unique_key",
        "unique_while",
        "concurrency_key",
        "limit_scope",
        "held_at",
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

    @admin.display(description="Arguments")
    def args_pretty(self, obj: Job) -> str:
        return _pre(obj, "args")

    @admin.display(description="Held by a limit", boolean=True)
    def held(self, obj: Job) -> bool:
        return obj.held_at is not None and obj.state in WAITING_STATES

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


# --- limits -----------------------------------------------------------------------------------------------


class KeyLimitForm(forms.ModelForm[KeyLimit]):
    """The service's checks (`limits.key_limit_clean`) as form errors on the fields they name."""

    class Meta:
        model = KeyLimit
        fields = ["pattern", "workspace", "concurrency", "rate"]

    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        if self.errors:
            return data
        try:
            limits.key_limit_clean(KeyLimit(**(data or {})))
        except HQError as exc:
            for field, problems in exc.fields.items():
                self.add_error(field if field in self.fields else None, problems)
        return data


@admin.register(KeyLimit)
class KeyLimitAdmin(WorkspaceScopedAdmin):
    """Concurrency and rate limits per key pattern, in force at the next start (no restart). A
    limit for every workspace (empty workspace) is for superusers."""

    form = KeyLimitForm
    list_display = ["pattern", "workspace", "concurrency", "rate", "updated_at"]
    search_fields = ["pattern"]
    list_select_related = ["workspace"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        user = admin_user(request)
        if "workspace" in form.base_fields and not (user is not None and user.is_superuser):
            form.base_fields["workspace"].required = True
        return form

    def save_model(self, request: HttpRequest, obj: KeyLimit, form: Any, change: bool) -> None:
        limits.key_limit_save(obj)

    def delete_model(self, request: HttpRequest, obj: KeyLimit) -> None:
        limits.key_limit_delete(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[KeyLimit]) -> None:
        for limit in queryset:
            limits.key_limit_delete(limit)


# --- queues and workers -----------------------------------------------------------------------------------


@admin.register(QueuePause)
class QueuePauseAdmin(ConsoleAdmin):
    list_display = ["queue", "workspace", "paused_by", "paused_at"]
    list_filter = ["queue"]
    list_select_related = ["workspace", "paused_by"]


@admin.register(Worker)
class WorkerAdmin(ConsoleAdmin):
    """Live and stopped worker processes: infrastructure shared by all workspaces, for superusers."""

    workspace_path = None
    list_display = ["id", "hostname", "pid", "queues", "concurrency", "running", "jobs_done", "last_heartbeat_at"]
    list_filter = [("stopped_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "hostname"]
