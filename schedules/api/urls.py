"""Routes of the scheduled-tasks surface (agent schedules arrive under /v1/api/schedules)."""

from __future__ import annotations

from django.urls import path

from schedules.api import tasks

urlpatterns = [
    path("scheduled-tasks", tasks.TasksView.as_view(), name="scheduled-tasks"),
    path("scheduled-tasks/<uuid:task_id>", tasks.TaskView.as_view(), name="scheduled-task"),
]
