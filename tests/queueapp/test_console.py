"""The ops console over the test client: the index order, one Workers page, no hard delete of jobs
and HITL requests (superusers included), and what the console's pages show and do."""

from __future__ import annotations

import pytest

from queueapp import services
from queueapp.models import HITLRequest, Job
from tests.queueapp.test_admin_hitl import client_for, request_for, staff

pytestmark = pytest.mark.django_db


def test_the_index_starts_with_what_ops_use_and_has_no_view_site(member):
    root = client_for(staff(superuser=True))
    resp = root.get("/admin/")
    apps = resp.context["app_list"]
    assert apps[0]["name"] == "Ops console"
    assert [m["name"] for m in apps[0]["models"]] == [
        "Dashboard",
        "HITL requests",
        "Jobs",
        "Schedules",
        "Workers",
        "Queue pauses",
    ]
    assert [a["app_label"] for a in apps[1:]] == ["hq", "delivery", "auth"]
    html = resp.content.decode()
    assert html.index("Ops console") < html.index("Delivery") < html.index("Authentication")
    assert "View site" not in html
    for model in apps[0]["models"]:
        assert root.get(model["admin_url"]).status_code == 200, model["name"]


def test_one_workers_page(member):
    root = client_for(staff(superuser=True))
    assert root.get("/admin/ops/workers/").status_code == 200
    assert root.get("/admin/queueapp/worker/").status_code == 404
    assert b"/admin/queueapp/worker/" not in root.get("/admin/").content


@pytest.mark.parametrize("superuser", [True, False], ids=["superuser", "workspace-admin"])
def test_jobs_and_hitl_requests_cannot_be_hard_deleted(member, superuser):
    hitl = request_for(member)
    ops = client_for(staff(None if superuser else member.workspace, superuser=superuser))
    for changelist, pk in (("/admin/queueapp/job/", hitl.job_id), ("/admin/queueapp/hitlrequest/", hitl.pk)):
        listing = ops.get(changelist)
        choices = [value for value, _ in listing.context["action_form"].fields["action"].choices]
        assert "delete_selected" not in choices and len(choices) > 1, changelist
        page = ops.get(f"{changelist}{pk}/change/").content.decode()
        assert "deletelink" not in page and f"{pk}/delete/" not in page
        assert ops.get(f"{changelist}{pk}/delete/").status_code == 403
        assert ops.post(f"{changelist}{pk}/delete/", {"post": "yes"}).status_code == 403
        ops.post(changelist, {"action": "delete_selected", "_selected_action": [str(pk)], "post": "yes"})
    assert Job.objects.filter(pk=hitl.job_id).exists() and HITLRequest.objects.filter(pk=hitl.pk).exists()
    # Cancelling (the service) stays: the request ends `cancelled`, with its history.
    services.job_cancel(job=Job.objects.get(pk=hitl.job_id), actor=member.user)
    assert HITLRequest.objects.get(pk=hitl.pk).state == "cancelled"
