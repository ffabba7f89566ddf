"""Routes under /v1/queue/."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from queueapp.api import views

router = SimpleRouter(trailing_slash=False)
router.register("jobs", views.JobViewSet, basename="job")
router.register("hitl", views.HITLViewSet, basename="hitl")

urlpatterns = [
    *router.urls,
    path("depth", views.DepthView.as_view(), name="queue-depth"),
    path("depth/keys", views.KeyDepthView.as_view(), name="queue-key-depth"),
    path("correlation/<str:correlation_id>", views.CorrelationView.as_view(), name="queue-correlation"),
    path("functions", views.FunctionsView.as_view(), name="queue-functions"),
    path("workers", views.WorkersView.as_view(), name="queue-workers"),
    path("observability/summary", views.ObservabilitySummaryView.as_view(), name="queue-observability-summary"),
    path("queues/<str:queue>/pause", views.QueuePauseView.as_view(), name="queue-pause"),
    path("queues/<str:queue>/resume", views.QueuePauseView.as_view(resume=True), name="queue-resume"),
]
