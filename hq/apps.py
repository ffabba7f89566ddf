"""The HQ project app: tenancy, users, tokens, agents."""

from django.apps import AppConfig


class HQConfig(AppConfig):
    name = "hq"
    verbose_name = "HQ"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hq import openai_backend  # noqa: F401  (registers the OpenAI-compatible agent backend)
