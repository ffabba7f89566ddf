"""HQ's own API routes (rooms and notes arrive with the schedule actions)."""

from __future__ import annotations

from django.urls import path

from hq.api.views import MeView

urlpatterns = [path("me", MeView.as_view(), name="me")]
