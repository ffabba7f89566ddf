"""List filters for jobs."""

from __future__ import annotations

import django_filters

from queueapp.models import Job, JobState


class JobFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=JobState.choices, help_text="Repeat for several states.")
    function = django_filters.CharFilter()
    queue = django_filters.CharFilter()
    correlation_id = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["state", "function", "queue", "correlation_id"]
