"""List filters for jobs and HITL requests."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from hq.api.fields import UTCIsoDateTimeFilter
from queueapp.models import HITLRequest, HITLState, Job, JobState


# django-filter ships no type information, so FilterSet is Any to mypy.
class JobFilter(django_filters.FilterSet):  # type: ignore[misc]
    state = django_filters.MultipleChoiceFilter(choices=JobState.choices, help_text="Repeat for several states.")
    function = django_filters.CharFilter()
    queue = django_filters.CharFilter()
    correlation_id = django_filters.CharFilter()
    priority = django_filters.NumberFilter(help_text="Jobs of exactly this priority.")
    priority_min = django_filters.NumberFilter(field_name="priority", lookup_expr="gte", help_text="At least.")
    priority_max = django_filters.NumberFilter(field_name="priority", lookup_expr="lte", help_text="At most.")
    unique_key = django_filters.CharFilter()
    concurrency_key = django_filters.CharFilter()
    created_after = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["state", "function", "queue", "correlation_id", "priority", "unique_key", "concurrency_key"]


class HITLFilter(django_filters.FilterSet):  # type: ignore[misc]  # Any, as above
    state = django_filters.MultipleChoiceFilter(
        choices=HITLState.choices, help_text="Repeat for several states; default: pending."
    )
    function = django_filters.CharFilter()
    job_id = django_filters.UUIDFilter(field_name="job_id")

    class Meta:
        model = HITLRequest
        fields = ["state", "function", "job_id"]

    def filter_queryset(self, queryset: QuerySet[HITLRequest]) -> QuerySet[HITLRequest]:
        rows: QuerySet[HITLRequest] = super().filter_queryset(queryset)
        return rows if self.form.cleaned_data.get("state") else rows.filter(state=HITLState.PENDING)
