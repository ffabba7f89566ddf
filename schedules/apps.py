"""Schedules: one engine table behind both schedule surfaces."""

from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    verbose_name = "Schedules"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from schedules import builtin_actions, jobs  # noqa: F401  (registers actions, the fire job, the scheduler)
