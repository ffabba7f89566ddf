"""Schedules: one engine table behind both schedule surfaces."""

from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    verbose_name = "Schedules"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from schedules import agent_runs, builtin_actions, jobs  # noqa: F401
