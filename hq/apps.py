"""The HQ project app: tenancy, users, tokens, agents."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class HQConfig(AppConfig):
    name = "hq"
    verbose_name = "HQ"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hq import openai_backend  # noqa: F401  (registers the OpenAI-compatible agent backend)


class HQAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with HQ's site as `admin.site`: the throttled login (hq.admin_site)."""

    default = False  # HQConfig stays this module's default app config
    default_site = "hq.admin_site.HQAdminSite"
