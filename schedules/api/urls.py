"""Routes of both schedule surfaces."""

from __future__ import annotations

from django.urls import path

from schedules.api import agent, tasks

#: /v1/api/schedules/{id}/<verb>: the HTTP method each verb answers to (`ScheduleActionView`).
ACTION_ROUTES = {"pause": "post", "resume": "post", "fire_now": "post", "erase": "delete"}

urlpatterns = [
    path("scheduled-tasks", tasks.TasksView.as_view(), name="scheduled-tasks"),
    path("scheduled-tasks/<uuid:task_id>", tasks.TaskView.as_view(), name="scheduled-task"),
    path("api/schedules", agent.SchedulesView.as_view(), name="schedules"),
    path("api/schedules/owners", agent.OwnersView.as_view(), name="schedule-owners"),
    path("api/schedules/<uuid:schedule_id>", agent.ScheduleView.as_view(), name="schedule"),
    *(
        path(
            f"api/schedules/<uuid:schedule_id>/{verb}",
            agent.ScheduleActionView.as_view(verb=verb, http_method_names=[method]),
        )
        for verb, method in ACTION_ROUTES.items()
    ),
]
