"""Schedules: one engine table behind both schedule surfaces."""

from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    verbose_name = "Schedules"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hq import metrics
        from hq.services import on_member_departure
        from queueapp import retention
        from queueapp.observability import registry
        from schedules import agent_runs, builtin_actions, jobs, observability, services  # noqa: F401

        # A member who leaves (or is deactivated) has their schedules quarantined with the reason.
        on_member_departure(services.schedules_quarantine_departed)

        # Schedules in the ops views (summary, dashboard, /metrics) and in retention.
        registry.register_summary_section("schedules", observability.schedules_summary)
        registry.register_dashboard_panels("schedules", observability.schedule_panels, order=50)
        metrics.register_gauge_source("schedules", observability.schedule_gauges)
        retention.register_pruner("schedule_fires", observability.prune_fires)
