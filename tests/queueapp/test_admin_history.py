"""Every admin action writes the changed object's History (Django's LogEntry, by the signed-in
user, saying what was done): HITL decisions, job retry and cancel, schedule lifecycle, queue pauses."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Permission

from queueapp.models import Job, QueuePause
from schedules.models import Schedule
from tests.observability.helpers import schedule
from tests.queueapp.test_admin_hitl import CHANGELIST, client_for, request_for, staff

pytestmark = pytest.mark.django_db


def history(obj) -> list[tuple[int, str, str]]:
    """(flag, message, who) of `obj`'s History entries, oldest first."""
    rows = LogEntry.objects.filter(object_id=str(obj.pk)).order_by("action_time", "id")
    return [(e.action_flag, e.change_message, e.user.email) for e in rows]


def test_approve_in_the_admin__the_requests_history_page_lists_who_and_why(member):
    hitl = request_for(member)
    ops = staff(member.workspace)
    c = client_for(ops)
    assert c.post(f"{CHANGELIST}{hitl.pk}/approve/", {"comment": "looks right"}).status_code == 302
    assert history(hitl) == [(CHANGE, "Approved: looks right", ops.email)]
    page = c.get(f"{CHANGELIST}{hitl.pk}/history/").content.decode()
    assert "Approved: looks right" in page and ops.email in page
    # The bulk action too, without a comment; a refused row gets no entry.
    second, third = request_for(member), request_for(member)
    c.post(CHANGELIST, {"action": "reject_selected", "_selected_action": [second.pk, hitl.pk], "post": "yes"})
    assert history(second) == [(CHANGE, "Rejected", ops.email)]
    assert len(history(hitl)) == 1  # already approved: refused, not logged
    assert history(third) == []


def test_job_retry_and_cancel__in_each_jobs_history(member):
    hitl = request_for(member)
    ops = staff(member.workspace)
    c = client_for(ops)
    job = hitl.job
    assert c.post(f"/admin/queueapp/job/{job.pk}/cancel/").status_code == 302
    assert Job.objects.get(pk=job.pk).state == "cancelled"
    c.post("/admin/queueapp/job/", {"action": "retry_selected", "_selected_action": [job.pk], "post": "yes"})
    assert [m for _, m, _ in history(job)] == ["Cancelled (a running job: asked to abort)", "Retried"]
    assert "Retried" in c.get(f"/admin/queueapp/job/{job.pk}/history/").content.decode()


def test_schedule_lifecycle_and_queue_pauses__logged_even_when_the_row_goes(member):
    ops = staff(member.workspace)
    ops.user_permissions.set(
        Permission.objects.filter(codename__in=["view_schedule", "change_schedule", "delete_schedule"])
    )
    c = client_for(ops)
    s = schedule(member.workspace, member.user, name="digest")
    c.post(f"/admin/schedules/schedule/{s.pk}/pause/")
    c.post("/admin/schedules/schedule/", {"action": "archive", "_selected_action": [s.pk], "post": "yes"})
    c.post(f"/admin/schedules/schedule/{s.pk}/erase/")
    assert not Schedule.objects.filter(pk=s.pk).exists()
    assert history(s) == [
        (CHANGE, "Paused", ops.email),
        (CHANGE, "Archived", ops.email),
        (DELETION, "Erased", ops.email),
    ]

    c.post("/admin/queueapp/queuepause/pause/", {"queue": "default", "workspace": str(member.workspace.pk)})
    pause = QueuePause.objects.get(queue="default", workspace=member.workspace)
    c.post(f"/admin/queueapp/queuepause/{pause.pk}/resume/")
    assert not QueuePause.objects.filter(pk=pause.pk).exists()
    where = f"workspace {member.workspace.slug}"
    assert history(pause) == [
        (ADDITION, f"Paused queue default for {where}", ops.email),
        (DELETION, f"Resumed queue default for {where}", ops.email),
    ]
