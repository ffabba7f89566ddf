"""List filters for jobs and HITL requests."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from hq.api.fields import UTCIsoDateTimeFilter
from queueapp.models import HITLRequest, HITLState, Job, JobState


class JobFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=JobState.choices, help_text="Repeat for several states.")
    function = django_filters.CharFilter()
    queue = django_filters.CharFilter()
    correlation_id = django_filters.CharFilter()
    created_after = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["state", "function", "queue", "correlation_id"]


class HITLFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(
        choices=HITLState.choices, help_text="Repeat for several states; default: pending."
    )
    function = django_filters.CharFilter()
    job_id = django_filters.UUIDFilter(field_name="job_id")

    class Meta:
        model = HITLRequest
        fields = ["state", "function", "job_id"]

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        rows = super().filter_queryset(queryset)
        return rows if self.form.cleaned_data.get("state") else rows.filter(state=HITLState.PENDING)
