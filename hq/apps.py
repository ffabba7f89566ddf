"""The HQ project app: tenancy, users, tokens, agents."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class HQConfig(AppConfig):
    name = "hq"
    verbose_name = "HQ"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from hq import (
            checks,  # noqa: F401  (registers the start-up checks)
            openai_backend,  # noqa: F401  (registers the OpenAI-compatible agent backend)
        )
        from hq.api.auth import forget_all
        from hq.models import Membership, PersonalAccessToken, User, Workspace

        # Cached token checks must not outlive a change to what they checked, whichever code path
        # saved it (services, the admin, a shell); `.update()` callers call forget_all themselves.
        for model in (PersonalAccessToken, Membership, User, Workspace):
            post_save.connect(forget_all, sender=model, dispatch_uid=f"hq-auth-cache-save-{model.__name__}")
            post_delete.connect(forget_all, sender=model, dispatch_uid=f"hq-auth-cache-delete-{model.__name__}")


class HQAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with HQ's site as `admin.site`: the throttled login (hq.admin_site)."""

    default = False  # HQConfig stays this module's default app config
    default_site = "hq.admin_site.HQAdminSite"
