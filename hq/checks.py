"""Start-up checks (`manage.py check`, and every `runserver`, `migrate`...): the admin's static files
and the API docs' assets are where the web server will look for them.

The web server serves static files through WhiteNoise, from STATIC_ROOT (after collectstatic) and,
with WHITENOISE_USE_FINDERS, from the installed apps' static directories. A file in neither place
is a 404, and the admin then renders without CSS: hq.W001 names the missing files and the fix.
hq.W002 says that /v1/docs and /v1/redoc load Swagger UI and ReDoc from a CDN because
drf-spectacular-sidecar is not installed (they are blank without internet).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.checks import CheckMessage, Tags, Warning, register

#: Files the admin cannot render without (its stylesheet and its script).
ADMIN_STATIC = ("admin/css/base.css", "admin/js/core.js")
#: Files /v1/docs and /v1/redoc load when drf-spectacular-sidecar is installed.
DOCS_STATIC = (
    "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
    "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js",
)


def missing_static_files(paths: tuple[str, ...]) -> list[str]:
    """The paths the web server would answer with 404: in STATIC_ROOT nor (when WhiteNoise uses the
    finders) in any app's static directory."""
    root = Path(settings.STATIC_ROOT) if settings.STATIC_ROOT else None
    use_finders = getattr(settings, "WHITENOISE_USE_FINDERS", settings.DEBUG)
    return [
        p for p in paths if not (root is not None and (root / p).is_file()) and not (use_finders and finders.find(p))
    ]


@register(Tags.staticfiles)
def static_files_present(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    wanted = ADMIN_STATIC + (DOCS_STATIC if getattr(settings, "HQ_DOCS_SIDECAR", False) else ())
    missing = missing_static_files(wanted)
    if not missing:
        return []
    return [
        Warning(
            f"Static files missing: {', '.join(missing)}. The web server will answer 404 for them and the "
            "admin will show without styles.",
            hint="Run `python manage.py collectstatic --no-input`, or set WHITENOISE_USE_FINDERS = True "
            "so WhiteNoise serves the apps' static files directly.",
            id="hq.W001",
        )
    ]


@register(Tags.staticfiles)
def docs_assets_installed(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if getattr(settings, "HQ_DOCS_SIDECAR", False):
        return []
    return [
        Warning(
            "drf-spectacular-sidecar is not installed: /v1/docs and /v1/redoc load Swagger UI and ReDoc "
            "from cdn.jsdelivr.net and are blank without internet.",
            hint="Install drf-spectacular-sidecar into the environment (`pip install drf-spectacular-sidecar`).",
            id="hq.W002",
        )
    ]
