"""A task's job is a job like any other: the HITL gate, cancel, the REST API, the admin, /metrics, the summary."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from hq_client.django.compat import TaskResultStatus
from hq_client.results import TaskApprovalExpired, TaskCancelled, TaskRejected

from hq import clock
from hq import services as hq_services
from hq.models import User
from queueapp import services
from queueapp.models import HITLRequest, Job
from tests import factories
from tests.plugin import tasks
from tests.plugin.tasks import task_runs

pytestmark = pytest.mark.django_db(transaction=True)

HITL_CHANGELIST = "/admin/queueapp/hitlrequest/"


def ops_client(workspace) -> Client:
    """The admin as a staff admin of `workspace` sees it."""
    user = User.objects.create_user(email=f"ops{User.objects.count()}@example.com", password="pw", is_staff=True)
    hq_services.membership_set(user=user, workspace=workspace, role="admin")
    client = Client()
    client.force_login(user)
    return client


def test_gated_task__waits_then_runs_once_approved_in_the_admin(tasks_admin, burst):
    result = tasks.gated_transfer.enqueue(250)
    job = Job.objects.get(pk=result.id)
    request = HITLRequest.objects.get(job=job)
    assert (job.state, request.state, result.status) == ("awaiting_approval", "pending", TaskResultStatus.READY)
    burst()
    assert task_runs("transfer-250") == 0  # nothing runs before a person decides
    ops = ops_client(tasks_admin.workspace)
    confirm = ops.post(HITL_CHANGELIST, {"action": "approve_selected", "_selected_action": [request.pk]})
    assert confirm.status_code == 200 and b"tests.plugin.tasks.gated_transfer" in confirm.content
    done = ops.post(
        HITL_CHANGELIST,
        {"action": "approve_selected", "_selected_action": [request.pk], "post": "yes", "comment": "ok"},
    )
    assert done.status_code == 302
    assert HITLRequest.objects.get(pk=request.pk).state == "approved"
    burst()
    final = tasks.gated_transfer.get_result(result.id)
    assert (final.status, final.return_value) == (TaskResultStatus.SUCCESSFUL, {"transferred": 250})
    assert task_runs("transfer-250") == 1


def test_gated_task_rejected__failed_saying_so(tasks_admin):
    result = tasks.gated_transfer.enqueue(1)
    request = HITLRequest.objects.get(job_id=result.id)
    approver = factories.caller(ws=tasks_admin.workspace, admin=True)
    services.hitl_decide(request=request, actor=approver.user, decision="reject", via="api", comment="too much")
    final = tasks.gated_transfer.get_result(result.id)
    assert final.status == TaskResultStatus.FAILED
    [error] = final.errors
    assert error.exception_class is TaskRejected and "too much" in error.traceback


def test_gated_task_expired__failed_saying_so(tasks_admin):
    result = tasks.gated_transfer.enqueue(2)
    HITLRequest.objects.filter(job_id=result.id).update(expires_at=clock.now() - timedelta(seconds=1))
    assert services.hitl_expire_due() == 1
    final = tasks.gated_transfer.get_result(result.id)
    assert final.status == TaskResultStatus.FAILED
    [error] = final.errors
    assert error.exception_class is TaskApprovalExpired and error.traceback.startswith("Expired")


def test_cancelled_task__failed_saying_so(tasks_admin, burst):
    result = tasks.add.using(run_after=clock.now() + timedelta(hours=1)).enqueue(1, 1)
    services.job_cancel(job=Job.objects.get(pk=result.id), actor=tasks_admin.user)
    burst()
    final = tasks.add.get_result(result.id)
    assert final.status == TaskResultStatus.FAILED and final.attempts == 0
    [error] = final.errors
    assert error.exception_class is TaskCancelled


def test_task_job_is_seen_like_any_job__api_admin_metrics_summary(tasks_admin, api, burst):
    from hq import metrics

    result = tasks.add.using(correlation_id="order-7").enqueue(20, 22)
    burst()
    name = "tests.plugin.tasks.add"
    job = api.get(f"/v1/queue/jobs/{result.id}", **tasks_admin.headers)
    assert job.status_code == 200, job.content
    assert (job.json()["function"], job.json()["state"], job.json()["result"]) == (name, "succeeded", 42)
    related = api.get("/v1/queue/correlation/order-7", **tasks_admin.headers).json()
    assert [j["id"] for j in related["jobs"]] == [result.id]
    functions = api.get("/v1/queue/functions", **tasks_admin.headers).json()
    assert name in {f["name"] for f in functions["functions"]}
    page = ops_client(tasks_admin.workspace).get(f"/admin/queueapp/job/{result.id}/change/")
    assert page.status_code == 200 and name.encode() in page.content
    metrics.flush()
    scrape = api.get("/metrics", **tasks_admin.headers).content.decode()
    assert f'function="{name}"' in scrape and 'state="succeeded"' in scrape
    summary = api.get("/v1/queue/observability/summary", **tasks_admin.headers).json()
    default = next(q for q in summary["queues"] if q["queue"] == "default")
    mine = next(f for f in default["functions"] if f["function"] == name)
    assert mine["windows"]["5m"]["succeeded"] == 1


@pytest.mark.parametrize(
    "function",
    [
        "os.system",
        "tests.plugin.tasks.not_there",
        "tests.plugin.tasks.task_runs",  # a function of that module, not a task
        "tests.plugin.tasks._count",
        "queueapp.tasks_backend.discover",
        "tests.tasks.test_contract.undiscovered",  # a task, but not in an installed app's tasks module
    ],
)
def test_rest_submit_of_a_dotted_path_that_is_no_discovered_task__400(tasks_admin, api, function):
    resp = api.post(
        "/v1/queue/jobs", {"function": function, "args": {"args": []}}, format="json", **tasks_admin.headers
    )
    assert resp.status_code == 400, resp.content
    error = resp.json()["error"]
    assert error["code"] == "unknown_function" and "function" in error["fields"]
    assert not Job.objects.exists()


def test_rest_submit_of_a_discovered_task__runs_it(tasks_admin, api, burst):
    resp = api.post(
        "/v1/queue/jobs",
        {"function": "tests.plugin.tasks.add", "args": {"args": [40], "kwargs": {"b": 2}}},
        format="json",
        **tasks_admin.headers,
    )
    assert resp.status_code == 202, resp.content
    burst()
    result = tasks.add.get_result(resp.json()["id"])
    assert (result.status, result.return_value, result.args, result.kwargs) == (
        TaskResultStatus.SUCCESSFUL,
        42,
        [40],
        {"b": 2},
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [({"args": "1, 2"}, "args.args"), ({"kwargs": [1]}, "args.kwargs"), ({"a": 1}, "args.a")],
)
def test_rest_submit_of_a_task_with_args_not_a_call__400(tasks_admin, api, args, field):
    resp = api.post(
        "/v1/queue/jobs", {"function": "tests.plugin.tasks.add", "args": args}, format="json", **tasks_admin.headers
    )
    assert resp.status_code == 400, resp.content
    assert field in resp.json()["error"]["fields"]
    assert not Job.objects.exists()
