"""Root URLs: the API under /v1/, the admin, docs and probes."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from hq.api.errors import json_error
from hq.api.health import healthz, readyz
from hq.api.metrics import metrics_view
from queueapp import admin_views

urlpatterns = [
    # Before admin.site.urls, whose catch-all would answer these paths with a 404.
    path("admin/ops/dashboard/", admin.site.admin_view(admin_views.dashboard_view), name="ops-dashboard"),
    path(
        "admin/ops/dashboard/live/",
        admin.site.admin_view(admin_views.dashboard_live_view),
        name="ops-dashboard-live",
    ),
    path("admin/ops/workers/", admin.site.admin_view(admin_views.workers_view), name="ops-workers"),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("v1/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("v1/redoc", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("v1/", include("hq.api.urls")),
    path("v1/queue/", include("queueapp.api.urls")),
    path("v1/", include("schedules.api.urls")),
]


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/v1/")


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Answer unknown /v1/ paths with the error envelope; the admin keeps Django's page."""
    if _is_api(request):
        return json_error(request, "not_found", f"No route for {request.path}.", 404)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    """Answer server errors under /v1/ with the envelope (details go to the log only)."""
    if _is_api(request):
        return json_error(request, "internal_error", "Internal server error.", 500)
    return defaults.server_error(request)


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Answer bad requests that never reached a view (e.g. a bad Host) with the envelope."""
    if _is_api(request):
        return json_error(request, "bad_request", "Bad request.", 400)
    return defaults.bad_request(request, exception)
