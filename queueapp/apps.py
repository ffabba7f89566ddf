"""The job queue: jobs, events, HITL requests, the worker."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class QueueConfig(AppConfig):
    name = "queueapp"
    verbose_name = "Queue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from queueapp import builtin, sidetasks  # noqa: F401  (registers functions and side tasks)

        # Plugins: every installed app's `hq_plugin` module registers functions and actions.
        autodiscover_modules("hq_plugin")
