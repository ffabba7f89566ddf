"""Schedules: one engine table behind both schedule surfaces."""

from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    verbose_name = "Schedules"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hq.services import on_member_departure
        from schedules import agent_runs, builtin_actions, jobs, services  # noqa: F401

        # A member who leaves (or is deactivated) has their schedules quarantined with the reason.
        on_member_departure(services.schedules_quarantine_departed)
