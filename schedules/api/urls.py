"""Routes of both schedule surfaces."""

from __future__ import annotations

from django.urls import path

from schedules.api import agent, tasks

urlpatterns = [
    path("scheduled-tasks", tasks.TasksView.as_view(), name="scheduled-tasks"),
    path("scheduled-tasks/<uuid:task_id>", tasks.TaskView.as_view(), name="scheduled-task"),
    path("api/schedules", agent.SchedulesView.as_view(), name="schedules"),
    path("api/schedules/owners", agent.OwnersView.as_view(), name="schedule-owners"),
    path("api/schedules/<uuid:schedule_id>", agent.ScheduleView.as_view(), name="schedule"),
    path(
        "api/schedules/<uuid:schedule_id>/pause",
        agent.ScheduleActionView.as_view(verb="pause", http_method_names=["post"]),
    ),
    path(
        "api/schedules/<uuid:schedule_id>/resume",
        agent.ScheduleActionView.as_view(verb="resume", http_method_names=["post"]),
    ),
    path(
        "api/schedules/<uuid:schedule_id>/fire_now",
        agent.ScheduleActionView.as_view(verb="fire_now", http_method_names=["post"]),
    ),
    path(
        "api/schedules/<uuid:schedule_id>/erase",
        agent.ScheduleActionView.as_view(verb="erase", http_method_names=["delete"]),
    ),
]
