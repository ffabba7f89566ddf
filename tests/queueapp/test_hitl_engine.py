"""HITL end to end: real PostgreSQL, Redis and ARQ workers; concurrent decisions; expiry by the worker."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from queueapp.models import HITLRequest, Job, JobEvent
from tests import factories
from tests.conftest import wait_for
from tests.plugin.hq_plugin import runs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def approver(member) -> factories.Caller:
    return factories.caller(ws=member.workspace, scopes=["queue:read", "hitl:approve"])


def gated(api, caller, function="tests.gated", args=None) -> HITLRequest:
    body = {"function": function, "args": args or {"n": 1}}
    resp = api.post("/v1/queue/jobs", body, format="json", **caller.headers)
    assert resp.status_code == 202, resp.content
    return HITLRequest.objects.get(job_id=resp.json()["id"])


def test_approved_job_runs_on_a_worker_with_the_approved_args(api, member, approver, burst):
    hitl = gated(api, member, args={"amount": 100})
    burst()
    assert Job.objects.get(pk=hitl.job_id).state == "awaiting_approval" and runs(hitl.job_id) == 0
    resp = api.post(
        f"/v1/queue/hitl/{hitl.pk}/approve",
        {"args": {"amount": 10}, "comment": "cap it"},
        format="json",
        **approver.headers,
    )
    assert resp.status_code == 200
    burst()
    job = Job.objects.get(pk=hitl.job_id)
    assert job.state == "succeeded" and runs(job.pk) == 1
    assert job.result == {"args": {"amount": 10}}
    assert list(job.events.values_list("kind", flat=True)) == ["submitted", "approved", "started", "succeeded"]


def test_rejected_job_never_runs(api, member, approver, burst):
    hitl = gated(api, member)
    api.post(f"/v1/queue/hitl/{hitl.pk}/reject", **approver.headers)
    burst()
    job = Job.objects.get(pk=hitl.job_id)
    assert job.state == "rejected" and runs(job.pk) == 0
    assert not JobEvent.objects.filter(job=job, kind="started").exists()


def test_concurrent_approve_and_reject__exactly_one_wins(api, member, approver):
    other = factories.caller(ws=member.workspace, scopes=["queue:read", "hitl:approve"])
    for _ in range(5):
        hitl = gated(api, member)
        barrier = threading.Barrier(2)
        answers: dict[str, int] = {}

        def race(caller, decision, hitl=hitl, barrier=barrier, answers=answers):
            client = APIClient()
            try:
                barrier.wait(timeout=10)
                resp = client.post(f"/v1/queue/hitl/{hitl.pk}/{decision}", **caller.headers)
                answers[decision] = resp.status_code
            finally:
                connection.close()

        threads = [
            threading.Thread(target=race, args=(approver, "approve")),
            threading.Thread(target=race, args=(other, "reject")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(answers.values()) == [200, 409], answers
        winner = next(d for d, code in answers.items() if code == 200)
        hitl.refresh_from_db()
        job = Job.objects.get(pk=hitl.job_id)
        expected = ("approved", "queued") if winner == "approve" else ("rejected", "rejected")
        assert (hitl.state, job.state) == expected
        assert JobEvent.objects.filter(job=job, kind__in=["approved", "rejected"]).count() == 1


def test_worker_process_expires_requests_without_anyone_asking(api, member, procs, worker_env):
    procs.env = {**worker_env, "HQ_HITL_EXPIRY_INTERVAL_S": "0.2"}
    hitl = gated(api, member, function="tests.gated_short")  # approval_ttl=1
    procs.worker("--no-jobs", "--only", "hitl_expiry")
    wait_for(lambda: HITLRequest.objects.get(pk=hitl.pk).state == "expired", timeout=20, what="the expiry")
    job = Job.objects.get(pk=hitl.job_id)
    assert job.state == "rejected" and runs(job.pk) == 0
    assert job.events.last().kind == "approval_expired"
