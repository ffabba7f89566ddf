"""The job queue: jobs, events, HITL requests, the worker."""

from django.apps import AppConfig


class QueueConfig(AppConfig):
    name = "queueapp"
    verbose_name = "Queue"
    default_auto_field = "django.db.models.BigAutoField"
