"""The ops console: HITL approvals, jobs with their timelines, queue pauses and workers.

Every page here is read-only; changes go through the same services the API uses. Staff need no
Django model permissions; the scope is `hq.admin_scoping`'s: a superuser sees everything, other
staff the rows of the workspaces they administer, where they may also decide, retry and cancel
(the services check again, through `hq.permissions`, with `via="admin"`).
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.db.models.expressions import OrderBy
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import Truncator

from hq import admin_actions, clock, console, permissions, timefmt
from hq.admin_scoping import WorkspaceScopedAdmin, WorkspaceScopedTabularInline, admin_user
from hq.display import clipped_note, json_text_attr, pretty_json, stored_json, stored_value, with_json_text
from hq.errors import HQError
from hq.jsonguard import load_json
from hq.models import Membership, Workspace
from hq.timefmt import when_html
from queueapp import limits, registry, selectors, services
from queueapp.models import (
    FINISHED_STATES,
    WAITING_STATES,
    DecidedVia,
    HITLRequest,
    HITLState,
    Job,
    JobEvent,
    JobState,
    KeyLimit,
    QueuePause,
)


def _search_value(raw: str) -> Any:
    """A `key=value` search's value: JSON when the input guard reads it as JSON, else the text."""
    try:
        return load_json(raw, subject="The searched value")
    except HQError:
        return raw


def json_storable(value: Any) -> bool:
    """Can PostgreSQL's jsonb hold `value`: no NUL or lone surrogate in a string (the text
    fallback of `_search_value` skips the guard), no infinite number (1e999 reads as inf)."""
    if isinstance(value, str):
        return not any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(json_storable(k) and json_storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(json_storable(v) for v in value)
    return True


if TYPE_CHECKING:
    # Django's form classes are generic only in django-stubs (see hq.admin).
    _KeyLimitModelForm = forms.ModelForm[KeyLimit]
else:
    _KeyLimitModelForm = forms.ModelForm

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


class ConsoleChangeList(ChangeList):
    """Django's list, which takes a first page of less than a page from the rows the console's
    paginator already read (`CappedPaginator`): Django reads a single page's rows again."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = getattr(self.paginator, "_first_rows", None)
        if not self.multi_page and rows is not None:
            self.result_list = rows


class ConsoleAdmin(WorkspaceScopedAdmin):
    """A read-only console page: no Django model permissions needed, the workspace scope applies.
    Its lists share these columns (for models with a `state` and JSON `args` read as stored text)."""

    model_permissions = False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ConsoleChangeList

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Any:
        """The console's paginator is told whether this is the first page (it reads that page first)."""
        if issubclass(self.paginator, console.CappedPaginator):
            first = request.GET.get(PAGE_VAR, "1") in ("1", "")
            return self.paginator(queryset, per_page, orphans, allow_empty_first_page, first_page=first)
        return super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj: Any) -> str:
        return console.badge(obj.state)

    @admin.display(description="Arguments")
    def args_preview(self, obj: Any) -> str:
        return console.preview(getattr(obj, json_text_attr("args"), None))


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
    list_display = [
        "function",
        "state_badge",
        "row_actions",
        "args_preview",
        "reason_preview",
        "requested_by",
        "workspace",
        "requested",
        "expires",
        "decided",
        "job_link",
    ]
    list_display_links = ["function"]
    list_filter = ["state", "function", ("requested_by", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["id", "job__id", "job__correlation_id"]
    search_help_text = "Request id, job id or correlation id."
    list_per_page = console.PER_PAGE
    show_full_result_count = False
    paginator = console.CappedPaginator
    Media = console.ConsoleMedia
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
        # HITLRequest.DECISION_FIELDS, the times in hq.timefmt's format (UTC and the viewer's zone).
        "requested_exact",
        "expires_exact",
        "decided_by",
        "decided_exact",
        "decided_via",
        "comment",
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

    @admin.display(description="Requested at")
    def requested_exact(self, obj: HITLRequest) -> str:
        return timefmt.exact(obj.created_at)

    @admin.display(description="Expires at")
    def expires_exact(self, obj: HITLRequest) -> str:
        return timefmt.exact(obj.expires_at)

    @admin.display(description="Decided at")
    def decided_exact(self, obj: HITLRequest) -> str:
        return timefmt.exact(obj.decided_at)

    @admin.display(description="Reason")
    def reason_preview(self, obj: HITLRequest) -> str:
        return console.preview(obj.reason, 50)

    @admin.display(description="Requested", ordering="created_at")
    def requested(self, obj: HITLRequest) -> str:
        return when_html(obj.created_at, clock.now())

    @admin.display(description="Expires", ordering="expires_at")
    def expires(self, obj: HITLRequest) -> str:
        """Only while it is pending: a decided request no longer expires."""
        return when_html(obj.expires_at, clock.now()) if obj.state == HITLState.PENDING else "—"

    @admin.display(description="Decided", ordering="decided_at")
    def decided(self, obj: HITLRequest) -> str:
        if obj.decided_at is None:
            return "—"
        who = f" by {obj.decided_by}" if obj.decided_by else ""
        return format_html("{}{}", when_html(obj.decided_at, clock.now()), who)

    @admin.display(description="Job")
    def job_link(self, obj: HITLRequest) -> str:
        return console.short_id(obj.job_id, reverse("admin:queueapp_job_change", args=[obj.job_id]))

    @admin.display(description="")
    def row_actions(self, obj: HITLRequest) -> str:
        """Approve… / Reject… on a pending row, each to the request's confirmation page (who may
        decide is checked there, by hq.permissions)."""
        if obj.state != HITLState.PENDING:
            return ""
        links = [
            (reverse(f"admin:queueapp_hitlrequest_{d}", args=[obj.pk]) + "?from=list", d, obj.pk, d.capitalize())
            for d in ("approve", "reject")
        ]
        return format_html(
            '<span class="hq-row-actions">{}</span>',
            format_html_join(" ", '<a class="button" href="{}" id="{}-{}">{}…</a>', links),
        )

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
        verb = "Approved" if decision == "approve" else "Rejected"
        admin_actions.log_done(request, hitl, f"{verb}: {comment}" if comment else verb)
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
        # From a row of the list (?from=list), back to the list; else to the request's page.
        from_list = request.GET.get("from") == "list"
        back_url = reverse(
            "admin:queueapp_hitlrequest_" + ("changelist" if from_list else "change"),
            args=[] if from_list else [hitl.pk],
        )
        back = HttpResponseRedirect(back_url)
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
    fields: ClassVar[tuple[str, ...]] = (
        "at_shown",
        "kind",
        "from_state",
        "to_state",
        "attempt",
        "actor",
        "detail_pretty",
    )
    readonly_fields = fields
    ordering = ["at", "id"]
    extra = 0
    can_delete = False
    verbose_name = "event"
    verbose_name_plural = "Timeline"

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobEvent]:
        return with_json_text(super().get_queryset(request), "detail")

    @admin.display(description="At")
    def at_shown(self, obj: JobEvent) -> str:
        return timefmt.exact(obj.at)

    @admin.display(description="Detail")
    def detail_pretty(self, obj: JobEvent) -> str:
        """`key: value` lines (a nested value as one line of JSON), wrapped to the column; the worker's
        name links to the workers page."""
        text = getattr(obj, json_text_attr("detail"), None)
        if not isinstance(text, str) or text == "{}":
            return "—"
        value = stored_value(text)
        if not isinstance(value, dict):
            return _pre(obj, "detail")
        lines = []
        for key, item in value.items():
            shown = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
            if key == "worker" and isinstance(item, str):
                lines.append(
                    format_html('<b>{}</b>: <a href="{}"><code>{}</code></a>', key, reverse("ops-workers"), item)
                )
            else:
                lines.append(
                    format_html('<b>{}</b>: <span class="hq-detail">{}</span>', key, Truncator(shown).chars(2000))
                )
        return format_html(
            '<div class="hq-event-detail">{}</div>', format_html_join("", "<div>{}</div>", ((line,) for line in lines))
        )


def recent_unless_dated(request: HttpRequest, rows: QuerySet[Job]) -> QuerySet[Job]:
    """`rows` among the jobs created in the last ARGS_SEARCH_DAYS days, unless the request's date
    filter names a range: for the lookups no index serves (arguments, a priority band), so that a
    request reads a bounded slice of the history, never all of it."""
    if any(k.startswith("created_at__") for k in request.GET):
        return rows
    return rows.filter(created_at__gte=clock.now() - timedelta(days=ARGS_SEARCH_DAYS))


class PriorityFilter(admin.SimpleListFilter):
    """Priority by band: Django's own filter of an integer lists its distinct values (a scan of every job).

    No index holds a job's priority (it would cost each prioritised job an entry per write: the
    priority drain of `make bench`), so a band other than 0 is looked for among recent jobs
    (`recent_unless_dated`); the default band is most jobs and is found at once."""

    title = "priority"
    parameter_name = "priority_band"
    BANDS: ClassVar[dict[str, tuple[str, Q]]] = {
        "high": (f"Above 0 (starts first; last {ARGS_SEARCH_DAYS} days unless dated)", Q(priority__gt=0)),
        "normal": ("0 (the default)", Q(priority=0)),
        "low": (f"Below 0 (last {ARGS_SEARCH_DAYS} days unless dated)", Q(priority__lt=0)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, (label, _) in self.BANDS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value() or ""
        band = self.BANDS.get(value)
        if band is None:
            return queryset
        rows = queryset.filter(band[1])
        return rows if value == "normal" else recent_unless_dated(request, rows)


class StateFilter(admin.ChoicesFieldListFilter):
    """Django's filter by state, which also understands `?state__in=queued,deferred` (the
    dashboard's links): that set shows as selected instead of "All". The usual sets are listed."""

    #: Sets of states offered below the single states, by their `state__in` value.
    SETS: ClassVar[dict[str, str]] = {
        "queued,deferred": "Waiting (queued, deferred)",
        "queued,deferred,awaiting_approval,running": "Not finished (waiting, awaiting approval, running)",
        "failed,cancelled,rejected": "Did not succeed (failed, cancelled, rejected)",
    }

    def __init__(
        self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str
    ) -> None:
        self.lookup_kwarg_in = f"{field_path}__in"
        raw = params.get(self.lookup_kwarg_in)
        # Django passes each parameter's values as a list; the last one counts, as for its own filters.
        self.lookup_val_in = (raw[-1] if isinstance(raw, list) else raw) or None
        super().__init__(field, request, params, model, model_admin, field_path)

    def expected_parameters(self) -> list[str | None]:
        return [*super().expected_parameters(), self.lookup_kwarg_in]

    def _chosen_set(self) -> list[str]:
        return [s for s in (self.lookup_val_in or "").split(",") if s]

    def choices(self, changelist: Any) -> Any:
        chosen = self._chosen_set()
        key = ",".join(chosen)
        yield {
            "selected": self.lookup_val is None and not chosen,
            "query_string": changelist.get_query_string(
                remove=[self.lookup_kwarg, self.lookup_kwarg_isnull, self.lookup_kwarg_in]
            ),
            "display": "All",
        }
        for lookup, title in self.field.flatchoices:
            yield {
                "selected": not chosen and self.lookup_val is not None and str(lookup) in self.lookup_val,
                "query_string": changelist.get_query_string(
                    {self.lookup_kwarg: lookup}, [self.lookup_kwarg_isnull, self.lookup_kwarg_in]
                ),
                "display": title,
            }
        labels = dict(self.field.flatchoices)
        sets = dict(self.SETS)
        if chosen and key not in sets:  # another set, typed or linked: shown as it is
            sets[key] = ", ".join(str(labels.get(s, s)) for s in chosen)
        for value, title in sets.items():
            yield {
                "selected": key == value,
                "query_string": changelist.get_query_string(
                    {self.lookup_kwarg_in: value}, [self.lookup_kwarg, self.lookup_kwarg_isnull]
                ),
                "display": title,
            }


class KnownValuesFilter(admin.AllValuesFieldListFilter):
    """Django's filter of a text column (same `?queue=` parameter), listing the registry's values and
    those of the first LIVE_SAMPLE jobs still waiting or running (the `job_live` index), not SELECT
    DISTINCT over every job (a scan of a million rows on every page), nor over every live job (as
    many, behind a backlog). Any value still works from the querystring."""

    LIVE_SAMPLE = 1000

    def __init__(
        self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        live = (
            model_admin.get_queryset(request)
            .filter(state__in=selectors.LIVE_STATES)
            .order_by()
            .values_list(field_path, flat=True)[: self.LIVE_SAMPLE]
        )
        # django-stubs type it as the QuerySet Django builds; the template only iterates it.
        self.lookup_choices = sorted({*self.known(field_path), *live})  # type: ignore[assignment]

    @staticmethod
    def known(field_path: str) -> list[str]:
        if field_path == "queue":
            return registry.queues_allowed()
        return [f.name for f in registry.functions(include_internal=True)]


class ScopeRelatedFilter(admin.RelatedFieldListFilter):
    """Owner or workspace (same `?owner__id__exact=` parameter) among the viewer's workspaces and
    their members, not the values that occur in a million jobs (Django's RelatedOnlyFieldListFilter,
    a DISTINCT over the whole table on every page); the first CHOICES_MAX of them, so that a
    deployment of thousands of workspaces or members does not list them all on every page (the
    title says so; any value still works from the querystring)."""

    CHOICES_MAX = 100

    def __init__(
        self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str
    ) -> None:
        self.capped = False
        super().__init__(field, request, params, model, model_admin, field_path)
        if self.capped:
            self.title = f"{self.title} (the first {self.CHOICES_MAX})"

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        ids = model_admin.workspace_ids(request)
        allowed: QuerySet[Any, Any]
        if field.name == "workspace":
            allowed = Workspace.objects.all() if ids is None else Workspace.objects.filter(pk__in=ids)
        else:
            members = Membership.objects.all() if ids is None else Membership.objects.filter(workspace_id__in=ids)
            allowed = members.values("user_id")
        rows = field.related_model._default_manager.filter(pk__in=allowed)
        ordering = self.field_admin_ordering(field, request, model_admin)
        shown = list(rows.order_by(*(ordering or ("pk",)))[: self.CHOICES_MAX + 1])
        self.capped = len(shown) > self.CHOICES_MAX
        return [(row.pk, str(row)) for row in shown[: self.CHOICES_MAX]]


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
        "short_id",
        "function",
        "state_badge",
        "priority",
        "args_preview",
        "correlation",
        "queue",
        "concurrency_key",
        "held",
        "owner",
        "workspace",
        "attempts",
        "created",
        "duration",
    ]
    list_display_links = None  # the short id column links to the job itself
    list_filter = [
        ("state", StateFilter),
        PriorityFilter,
        ("queue", KnownValuesFilter),
        ("function", KnownValuesFilter),
        HeldFilter,
        ("owner", ScopeRelatedFilter),
        ("workspace", ScopeRelatedFilter),
        # Presets (today, past 7 days, this month...); any range also works as
        # ?created_at__gte=2026-01-01&created_at__lt=2026-01-08.
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["id"]  # searched by JobAdmin.get_search_results, never as a text scan
    search_help_text = (
        "A job id or its first characters, a correlation id, a concurrency key, a function name, "
        f"or key=value to find jobs whose arguments contain it (jobs created in the last {ARGS_SEARCH_DAYS} days, "
        "or in the date filter's range)."
    )
    list_select_related = ["owner", "workspace"]
    list_per_page = console.PER_PAGE
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter value over every job
    paginator = console.CappedPaginator
    change_list_template = "admin/queueapp/job/change_list.html"
    inlines = [JobEventInline]
    actions = ["retry_selected", "cancel_selected"]
    Media = console.ConsoleMedia
    #: Every stored field, under "All fields" (collapsed): the page starts with `job_summary`.
    all_fields: ClassVar[tuple[str, ...]] = (
        "id",
        "state",
        "workspace",
        "owner",
        "function",
        "queue",
        "priority",
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
        "dispatched_shown",
        "first_started_at",
        "started_at",
        "finished_at",
        "cancel_requested_at",
        "worker_id",
    )
    fieldsets = [("All fields", {"classes": ["collapse"], "fields": all_fields})]
    readonly_fields = all_fields
    change_form_template = "admin/queueapp/job/change_form.html"
    confirmation_template = "admin/queueapp/job/action_confirmation.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return with_json_text(super().get_queryset(request), "args", "result")

    # --- the list ---------------------------------------------------------------------------------

    @admin.display(description="Held by a limit", boolean=True)
    def held(self, obj: Job) -> bool:
        return obj.held_at is not None and obj.state in WAITING_STATES

    @admin.display(description="Job", ordering="id")
    def short_id(self, obj: Job) -> str:
        return console.short_id(obj.pk, reverse("admin:queueapp_job_change", args=[obj.pk]))

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
        a correlation id, a function name or a concurrency key (exact), or `key=value` inside the arguments (JSONB
        containment, limited to recent jobs so it never scans the whole history)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if "=" in term:
            key, _, raw = term.partition("=")
            value = _search_value(raw)
            if "\x00" in key or not json_storable(value):
                return queryset.none(), False  # nothing stored holds it (PostgreSQL refuses NUL, NaN)
            return recent_unless_dated(request, queryset.filter(args__contains={key.strip(): value})), False
        if "\x00" in term:
            return queryset.none(), False
        match = Q(correlation_id=term) | Q(function=term) | Q(concurrency_key=term)
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

    @admin.display(description="Dispatched at")
    def dispatched_shown(self, obj: Job) -> str:
        """When the relay last pushed it to Redis; for a finished job, history only."""
        return timefmt.exact(obj.dispatched_at) if obj.dispatched_at else "—"

    # --- the job's page: what matters first, buttons, then every field and the timeline --------------

    def job_summary(self, request: HttpRequest, job: Job) -> list[tuple[str, str]]:
        """(label, HTML) rows at the top of a job's page."""
        now = clock.now()
        wait_from = job.first_started_at or job.started_at
        rows = [
            ("State", format_html("{} {}", console.badge(job.state), self._state_note(job))),
            ("Function", format_html("<code>{}</code> on queue <code>{}</code>", job.function, job.queue)),
            ("Arguments", _pre(job, "args")),
        ]
        if job.error:
            rows.append(("Error", format_html('<pre class="hq-json">{}</pre>', job.error)))
        if job.state == JobState.SUCCEEDED or getattr(job, json_text_attr("result"), None) not in (None, "null"):
            rows.append(("Result", _pre(job, "result")))
        wait = (wait_from - job.due_at).total_seconds() if wait_from else None
        if wait_from is None and job.state in (JobState.QUEUED, JobState.DEFERRED) and job.due_at <= now:
            wait_text = f"{timefmt.duration((now - job.due_at).total_seconds())} so far"
        else:
            wait_text = timefmt.duration(max(wait, 0.0) if wait is not None else None)
        run_end = job.finished_at or (now if job.state == JobState.RUNNING else None)
        run = (run_end - job.started_at).total_seconds() if job.started_at and run_end else None
        run_text = timefmt.duration(run) + (" so far" if run is not None and job.finished_at is None else "")
        rows += [
            ("Wait", format_html("{} <span class='help'>(due → first start)</span>", wait_text)),
            ("Run", format_html("{} <span class='help'>(latest attempt)</span>", run_text)),
            ("Attempts", f"{job.attempts} of {job.max_tries}" + (f" (timeout {job.timeout_s} s each)")),
            ("Created", timefmt.exact(job.created_at)),
            ("Finished", timefmt.exact(job.finished_at)),
            ("Owner", _admin_link("hq_user", job.owner_id, str(job.owner) if job.owner else None)),
            ("Workspace", _admin_link("hq_workspace", job.workspace_id, str(job.workspace))),
        ]
        if job.correlation_id:
            url = reverse("admin:queueapp_job_changelist") + "?" + urlencode({"q": job.correlation_id})
            rows.append(("Correlation id", format_html('<a href="{}">{}</a> (all its jobs)', url, job.correlation_id)))
        requests = list(job.hitl_requests.order_by("created_at").values_list("pk", "state"))
        if requests:
            rows.append(
                (
                    "Approval",
                    format_html_join(
                        ", ",
                        "{} {}",
                        (
                            (console.short_id(pk, reverse("admin:queueapp_hitlrequest_change", args=[pk])), state)
                            for pk, state in requests
                        ),
                    ),
                )
            )
        if job.worker_id:
            url = reverse("ops-workers") + "?" + urlencode({"workspace": str(job.workspace_id)})
            rows.append(("Worker", format_html('<a href="{}"><code>{}</code></a>', url, job.worker_id)))
        return rows

    @staticmethod
    def _state_note(job: Job) -> str:
        if job.state == JobState.RUNNING and job.cancel_requested_at:
            return f"(cancel asked at {timefmt.exact(job.cancel_requested_at)})"
        if job.state == JobState.DEFERRED:
            return f"(until {timefmt.exact(job.due_at)})"
        return ""

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        job = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if job is not None:
            context["job_summary"] = self.job_summary(request, job)
            context["job_buttons"] = self._buttons(request, job)
        return super().change_view(request, object_id, form_url, context)

    def _buttons(self, request: HttpRequest, job: Job) -> list[tuple[str, str, str]]:
        """(id, label, url) of the buttons the job's state allows; the service has the last word."""
        if not self.has_operate_permission(request):
            return []
        names = ["retry"] if job.state in FINISHED_STATES else ["cancel"]
        return [
            (f"job-{name}", JOB_BUTTONS[name].verb + "…", reverse(f"admin:queueapp_job_{name}", args=[job.pk]))
            for name in names
        ]

    def get_urls(self) -> list[URLPattern]:
        return admin_actions.button_urls(self, JOB_BUTTONS, self.job_button) + super().get_urls()

    def job_button(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        """A button on a job's page: its confirmation page (GET), then the service (POST)."""
        job = self.get_object(request, unquote(object_id))
        if job is None or not self.has_view_permission(request, job) or not self.has_operate_permission(request):
            raise Http404("No such job.")
        button = JOB_BUTTONS[name]
        # From the workers page (?from=workers: cancel a running job there), back to it.
        if request.GET.get("from") == "workers":
            back = reverse("ops-workers")
        else:
            back = reverse("admin:queueapp_job_change", args=[job.pk])
        return admin_actions.object_button(
            self,
            request,
            job,
            button.run,
            template=self.confirmation_template,
            verb=button.verb,
            consequence=button.consequence,
            confirm_id=f"confirm-{name}",
            done=button.done,
            label=_job_label,
            back_url=back,
            logged=button.log_message,
        )

    @admin.action(description="Retry selected jobs…", permissions=["operate"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return self._run(request, queryset, "retry", "Retried")

    @admin.action(description="Cancel selected jobs…", permissions=["operate"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return self._run(request, queryset, "cancel", "Cancelled (or asked to abort)")

    def _run(self, request: HttpRequest, queryset: QuerySet[Job], name: str, verb: str) -> HttpResponse | None:
        """A confirmation page first; then the button's service (the API's) for each job the user
        administers; every refusal (the service's own role check included) is reported."""
        button = JOB_BUTTONS[name]
        return admin_actions.run_action(
            self,
            request,
            queryset if admin_actions.confirmed(request) else queryset.select_related("workspace"),
            button.run,
            template=self.confirmation_template,
            verb=button.verb,
            consequence=button.consequence,
            action=f"{name}_selected",
            confirm_id=f"confirm-{name}",
            done=f"{verb} {{count}} job(s).",
            label=_job_label,
            logged=button.log_message,
        )


def _job_label(job: Job) -> str:
    return f"Job {job.pk}"


def _admin_link(model: str, pk: Any, text: str | None) -> str:
    """A link to a row's admin page, or "—" when there is no row (a system job has no owner)."""
    if pk is None:
        return "—"
    return format_html('<a href="{}">{}</a>', reverse(f"admin:{model}_change", args=[pk]), text or str(pk))


#: Retry and cancel: buttons on a job's page and bulk actions, each calling the API's service.
JobButton = admin_actions.Button[Job]

JOB_BUTTONS = {
    "retry": JobButton(
        "Retry",
        "Retried: the job is queued again with a fresh set of tries.",
        "The job runs again with a fresh set of tries and its arguments unchanged. A job that needed an "
        "approval goes back to awaiting approval with a new request: a retry never bypasses a decision.",
        lambda job, actor: services.job_retry(job=job, actor=actor, via=DecidedVia.ADMIN),
        logged="Retried",
    ),
    "cancel": JobButton(
        "Cancel",
        "Cancelled (a running job is asked to abort).",
        "A waiting job is cancelled at once (and its pending approval request with it); a running one is "
        "asked to abort and ends cancelled when its worker stops it.",
        lambda job, actor: services.job_cancel(job=job, actor=actor, via=DecidedVia.ADMIN),
        logged="Cancelled (a running job: asked to abort)",
    ),
}


# --- limits -----------------------------------------------------------------------------------------------


class KeyLimitForm(_KeyLimitModelForm):
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


# --- queue pauses (workers are on the console's own page, /admin/ops/workers/) -------------------


class PauseForm(forms.Form):
    """Pause a queue: its name (one of the known queues) and a workspace, or every workspace (superusers)."""

    def __init__(self, *args: Any, queues: list[str], workspaces: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"] = forms.ChoiceField(choices=[(q, q) for q in queues])
        self.fields["workspace"] = forms.ChoiceField(choices=workspaces, required=False)


@admin.register(QueuePause)
class QueuePauseAdmin(ConsoleAdmin):
    """Paused queues, a form to pause one and a Resume… button per row, each through a confirmation
    page and then `queue_pause` / `queue_resume`, the API's services. A pause covers one workspace,
    or (superusers only, as DECISIONS says) every workspace: the global pause."""

    list_display = ["queue", "scope", "paused_by", "paused", "row_actions"]
    list_filter = ["queue"]
    list_select_related = ["workspace", "paused_by"]
    list_display_links = None
    change_list_template = "admin/queueapp/queuepause/change_list.html"
    confirmation_template = "admin/queueapp/queuepause/confirmation.html"
    Media = console.ConsoleMedia

    def scope_rows(self, request: HttpRequest, rows: QuerySet[Any]) -> QuerySet[Any]:
        """The pauses of the user's workspaces; global pauses too, which hold their jobs as well."""
        ids = self.workspace_ids(request)
        if ids is None:
            return rows
        return rows.filter(Q(workspace_id__in=ids) | Q(workspace__isnull=True)) if ids else rows.none()

    @admin.display(description="Workspace", ordering="workspace__slug")
    def scope(self, obj: QueuePause) -> str:
        return str(obj.workspace) if obj.workspace_id else "every workspace (global)"

    @admin.display(description="Paused", ordering="paused_at")
    def paused(self, obj: QueuePause) -> str:
        return when_html(obj.paused_at, clock.now())

    @admin.display(description="")
    def row_actions(self, obj: QueuePause) -> str:
        url = reverse("admin:queueapp_queuepause_resume", args=[obj.pk])
        return format_html('<a class="button" href="{}" id="resume-{}">Resume…</a>', url, obj.pk)

    def _may_pause(self, request: HttpRequest, workspace_id: Any) -> bool:
        """hq.permissions' staff rule: a workspace the user covers; every workspace for a superuser."""
        user = admin_actions.actor(request)
        return (
            permissions.staff_covers_all(user) if workspace_id is None else permissions.staff_covers(user, workspace_id)
        )

    def _workspace_choices(self, request: HttpRequest) -> list[tuple[str, str]]:
        ids = self.workspace_ids(request)
        rows = Workspace.objects.order_by("slug")
        if ids is not None:
            rows = rows.filter(pk__in=ids)
        choices = [(str(w.pk), w.slug) for w in rows[:500]]
        if ids is None:
            choices.insert(0, ("", "Every workspace (global pause)"))
        return choices

    def pause_form(self, request: HttpRequest, data: Any = None) -> PauseForm:
        return PauseForm(data, queues=registry.queues_allowed(), workspaces=self._workspace_choices(request))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"pause_form": self.pause_form(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("pause/", view(self.pause_view), name="queueapp_queuepause_pause"),
            path("<path:object_id>/resume/", view(self.resume_view), name="queueapp_queuepause_resume"),
            *super().get_urls(),
        ]

    def pause_view(self, request: HttpRequest) -> HttpResponse:
        """GET (from the list's form): the confirmation; POST (confirmed): `queue_pause`."""
        if not self.has_operate_permission(request):
            raise PermissionDenied
        back = reverse("admin:queueapp_queuepause_changelist")
        form = self.pause_form(request, request.POST if request.method == "POST" else request.GET)
        if not form.is_valid():
            for field, problems in form.errors.items():
                self.message_user(request, f"{field}: {' '.join(str(p) for p in problems)}", messages.ERROR)
            return HttpResponseRedirect(back)
        queue, chosen = form.cleaned_data["queue"], form.cleaned_data["workspace"]
        workspace_id = uuid.UUID(chosen) if chosen else None
        if not self._may_pause(request, workspace_id):
            refusal = (
                "Only superusers may pause a queue for every workspace."
                if workspace_id is None
                else ("You are not an admin of that workspace.")
            )
            self.message_user(request, refusal, messages.ERROR)
            return HttpResponseRedirect(back)
        workspace = Workspace.objects.get(pk=workspace_id) if workspace_id else None
        where = f"workspace {workspace.slug}" if workspace else "every workspace"
        if request.method == "POST":
            try:
                pause = services.queue_pause(queue=queue, workspace=workspace, actor=admin_actions.actor(request))
            except HQError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                admin_actions.log_done(request, pause, f"Paused queue {queue} for {where}", added=True)
                self.message_user(request, f"Paused queue {queue} for {where}.", messages.SUCCESS)
            return HttpResponseRedirect(back)
        return self._confirm(
            request,
            "Pause",
            f"Queue {queue} for {where}: jobs are still accepted, none start until it is resumed; running jobs finish.",
            "confirm-pause",
            fields={"queue": queue, "workspace": workspace_id or ""},
        )

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the confirmation; POST (confirmed): `queue_resume`."""
        pause = self.get_object(request, unquote(object_id))
        if pause is None or not self.has_view_permission(request, pause):
            raise Http404("No such pause.")
        back = reverse("admin:queueapp_queuepause_changelist")
        if not self._may_pause(request, pause.workspace_id):
            self.message_user(request, "Only superusers may resume a global pause.", messages.ERROR)
            return HttpResponseRedirect(back)
        where = f"workspace {pause.workspace.slug}" if pause.workspace else "every workspace"
        if request.method == "POST":
            before = copy.copy(pause)  # the row goes: its History keeps who resumed it
            services.queue_resume(queue=pause.queue, workspace=pause.workspace)
            admin_actions.log_done(request, before, f"Resumed queue {pause.queue} for {where}")
            self.message_user(request, f"Resumed queue {pause.queue} for {where}.", messages.SUCCESS)
            return HttpResponseRedirect(back)
        return self._confirm(
            request,
            "Resume",
            f"Queue {pause.queue} for {where}: its waiting jobs start again.",
            "confirm-resume",
            objects=[pause],
        )

    def _confirm(
        self,
        request: HttpRequest,
        verb: str,
        consequence: str,
        confirm_id: str,
        *,
        objects: list[QueuePause] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> TemplateResponse:
        page = admin_actions.confirmation_page(
            self,
            request,
            template=self.confirmation_template,
            verb=verb,
            objects=objects or [],
            confirm_id=confirm_id,
            consequence=consequence,
            hidden_fields=(fields or {}).items(),
        )
        page.context_data["title"] = f"{verb} a queue"  # type: ignore[index]
        return page
