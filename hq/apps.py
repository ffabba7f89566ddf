"""The HQ project app: tenancy, users, tokens, agents."""

from django.apps import AppConfig


class HQConfig(AppConfig):
    name = "hq"
    verbose_name = "HQ"
    default_auto_field = "django.db.models.BigAutoField"
