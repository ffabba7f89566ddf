"""HITL over the API: gated submits, list/get, approve, reject, expiry, cancel, retry, and every refusal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hq import clock
from hq import redis as hq_redis
from queueapp import services, transport
from queueapp.models import HITLRequest, Job, JobEvent
from tests import factories

pytestmark = pytest.mark.django_db

REQUEST_KEYS = {
    "id",
    "workspace_id",
    "job_id",
    "function",
    "args",
    "approved_args",
    "requested_by",
    "reason",
    "state",
    "created_at",
    "expires_at",
    "decided_by",
    "decided_at",
    "decided_via",
    "comment",
    "job_state",
}


@pytest.fixture
def approver(member) -> factories.Caller:
    """A plain member of the requester's workspace whose token holds `hitl:approve`."""
    return factories.caller(ws=member.workspace, scopes=["queue:read", "hitl:approve"])


def gated(api, caller, function="tests.gated", **body) -> HITLRequest:
    """Submit a gated job as `caller`; return its pending request."""
    body.setdefault("args", {"to": "ops@example.com"})
    resp = api.post("/v1/queue/jobs", {"function": function, **body}, format="json", **caller.headers)
    assert resp.status_code == 202, resp.content
    return HITLRequest.objects.get(job_id=resp.json()["id"])


def decide(api, caller, hitl, decision, body=None):
    return api.post(f"/v1/queue/hitl/{hitl.pk}/{decision}", body or {}, format="json", **caller.headers)


def queued_in_redis() -> int:
    return hq_redis.client().zcard(transport.queue_key("default"))


def test_submit_flagged_function__awaiting_with_request_and_no_push(api, member, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        resp = api.post(
            "/v1/queue/jobs", {"function": "tests.gated", "args": {"n": 1}}, format="json", **member.headers
        )
    assert resp.status_code == 202
    body = resp.json()
    assert body["state"] == "awaiting_approval" and body["dispatched_at"] is None
    hitl = HITLRequest.objects.get(job_id=body["id"])
    assert (hitl.state, hitl.function, hitl.args, hitl.requested_by, hitl.reason) == (
        "pending",
        "tests.gated",
        {"n": 1},
        member.user,
        "",
    )
    assert hitl.workspace == member.workspace
    assert hitl.expires_at - hitl.created_at == timedelta(seconds=3600), "tests.gated sets a one-hour TTL"
    event = JobEvent.objects.get(job_id=body["id"])
    assert (event.kind, event.to_state, event.detail) == (
        "submitted",
        "awaiting_approval",
        {"hitl_request_id": str(hitl.pk)},
    )
    assert queued_in_redis() == 0, "a gated job is not handed to ARQ"


def test_submit_require_approval__gates_an_ordinary_job(api, member):
    hitl = gated(api, member, function="hq.echo", require_approval=True, approval_reason="sends mail")
    assert hitl.job.state == "awaiting_approval"
    assert hitl.reason == "sends mail"
    assert hitl.expires_at - hitl.created_at == timedelta(hours=24), "the default TTL"
    plain = api.post("/v1/queue/jobs", {"function": "hq.echo"}, format="json", **member.headers).json()
    assert plain["state"] == "queued" and not HITLRequest.objects.filter(job_id=plain["id"]).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"function": "tests.gated", "defer_by_seconds": 60},
        {"function": "hq.echo", "require_approval": True, "defer_by_seconds": 60},
    ],
)
def test_submit_gated_and_deferred_is_400(api, member, body):
    resp = api.post("/v1/queue/jobs", body, format="json", **member.headers)
    assert resp.status_code == 400 and "defer_by_seconds" in resp.json()["error"]["fields"]
    assert not Job.objects.exists() and not HITLRequest.objects.exists()


def test_plugin_tool_call__requested_by_is_the_acting_user(api, member, approver):
    bot = factories.caller(ws=member.workspace)
    job, created = services.job_submit(
        workspace=member.workspace,
        owner=bot.user,
        submission=services.Submission(
            function="tests.gated", args={"q": 1}, requested_by=member.user, approval_reason="tool call"
        ),
    )
    hitl = HITLRequest.objects.get(job=job)
    assert created and job.owner == bot.user
    assert (hitl.requested_by, hitl.reason) == (member.user, "tool call")
    assert decide(api, member, hitl, "approve").json()["error"]["code"] == "self_approval"
    assert decide(api, bot, hitl, "approve").status_code == 200, "the owner is not the requester"


def test_get__shape(api, member, approver):
    hitl = gated(api, member, approval_reason="why not")
    body = api.get(f"/v1/queue/hitl/{hitl.pk}", **approver.headers).json()
    assert set(body) == REQUEST_KEYS
    assert body["id"] == str(hitl.pk) and body["job_id"] == str(hitl.job_id)
    assert body["requested_by"] == str(member.user.id) and body["reason"] == "why not"
    assert body["state"] == "pending" and body["job_state"] == "awaiting_approval"
    assert body["decided_by"] is None and body["decided_at"] is None and body["approved_args"] is None
    assert body["created_at"].endswith("Z") and body["expires_at"].endswith("Z")


def test_list__pending_oldest_first_filters_and_pagination(api, member, approver):
    first, second, third = (gated(api, member, args={"i": i}) for i in range(3))
    HITLRequest.objects.filter(pk=first.pk).update(created_at=clock.now() - timedelta(minutes=5))
    decide(api, approver, third, "reject")
    body = api.get("/v1/queue/hitl", **approver.headers).json()
    assert set(body) == {"requests", "total", "limit", "offset"}
    assert [r["id"] for r in body["requests"]] == [str(first.pk), str(second.pk)]
    assert body["total"] == 2 and body["limit"] == 100 and body["offset"] == 0
    rejected = api.get("/v1/queue/hitl?state=rejected", **approver.headers).json()
    assert [r["id"] for r in rejected["requests"]] == [str(third.pk)]
    both = api.get("/v1/queue/hitl?state=pending&state=rejected&limit=1&offset=2", **approver.headers).json()
    assert both["total"] == 3 and [r["id"] for r in both["requests"]] == [str(third.pk)]
    by_job = api.get(f"/v1/queue/hitl?job_id={second.job_id}", **approver.headers).json()
    assert [r["id"] for r in by_job["requests"]] == [str(second.pk)]
    assert api.get("/v1/queue/hitl?function=hq.echo", **approver.headers).json()["total"] == 0
    assert api.get("/v1/queue/hitl?state=bogus", **approver.headers).status_code == 400
    assert api.get("/v1/queue/hitl?limit=0", **approver.headers).status_code == 400


def test_visibility__deciders_see_all_members_their_own_strangers_nothing(api, member, admin, approver):
    mine = gated(api, member)
    bystander = factories.caller(ws=member.workspace, scopes=["queue:read", "queue:write"])
    stranger = factories.caller()
    theirs = gated(api, bystander)
    assert api.get("/v1/queue/hitl", **approver.headers).json()["total"] == 2
    assert api.get("/v1/queue/hitl", **admin.headers).json()["total"] == 2
    assert [r["id"] for r in api.get("/v1/queue/hitl", **bystander.headers).json()["requests"]] == [str(theirs.pk)]
    assert api.get(f"/v1/queue/hitl/{mine.pk}", **bystander.headers).status_code == 404
    assert api.get(f"/v1/queue/hitl/{mine.pk}", **member.headers).status_code == 200
    assert api.get("/v1/queue/hitl", **stranger.headers).json()["total"] == 0
    for path in (f"/v1/queue/hitl/{mine.pk}", f"/v1/queue/hitl/{mine.pk}/approve", f"/v1/queue/hitl/{mine.pk}/reject"):
        resp = api.get(path, **stranger.headers) if path.endswith(str(mine.pk)) else api.post(path, **stranger.headers)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found", path
    assert api.get("/v1/queue/hitl/not-a-uuid", **approver.headers).status_code == 404
    mine.refresh_from_db()
    assert mine.state == "pending"


def test_scopes__401_then_403_before_any_lookup(api, member, admin):
    hitl = gated(api, member)
    assert api.get("/v1/queue/hitl").status_code == 401
    assert api.post(f"/v1/queue/hitl/{hitl.pk}/approve").status_code == 401
    admin_without = factories.caller(ws=member.workspace, admin=True, scopes=["queue:read", "queue:write"])
    resp = decide(api, admin_without, hitl, "approve")
    assert resp.status_code == 403 and resp.json()["error"]["detail"] == {"scope": "hitl:approve"}, "admins too"
    stranger_without = factories.caller(scopes=["queue:read"])
    missing = api.post("/v1/queue/hitl/00000000-0000-4000-8000-000000000000/reject", **stranger_without.headers)
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "missing_scope"
    no_read = factories.caller(ws=member.workspace, scopes=["hitl:approve"])
    assert api.get("/v1/queue/hitl", **no_read.headers).json()["error"]["detail"] == {"scope": "queue:read"}
    hitl.refresh_from_db()
    assert hitl.state == "pending"


def test_approve__queues_the_job_and_pushes_it(api, member, approver, django_capture_on_commit_callbacks):
    hitl = gated(api, member, args={"to": "a@example.com"})
    with django_capture_on_commit_callbacks(execute=True):
        resp = decide(api, approver, hitl, "approve", {"comment": "looks right"})
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert (body["state"], body["job_state"], body["decided_via"], body["comment"]) == (
        "approved",
        "queued",
        "api",
        "looks right",
    )
    assert body["decided_by"] == str(approver.user.id) and body["decided_at"].endswith("Z")
    assert body["approved_args"] == body["args"] == {"to": "a@example.com"}
    job = Job.objects.get(pk=hitl.job_id)
    assert job.state == "queued" and job.dispatched_at is not None
    assert queued_in_redis() == 1, "approval hands the job to ARQ on commit"
    event = job.events.get(kind="approved")
    assert (event.from_state, event.to_state, event.actor) == ("awaiting_approval", "queued", approver.user)
    assert event.detail == {
        "hitl_request_id": str(hitl.pk),
        "via": "api",
        "comment": "looks right",
        "args_changed": False,
    }


def test_approve__corrected_args_keep_the_original(api, member, approver):
    hitl = gated(api, member, args={"to": "everyone@example.com"})
    resp = decide(api, approver, hitl, "approve", {"args": {"to": "team@example.com"}})
    assert resp.status_code == 200
    assert resp.json()["args"] == {"to": "everyone@example.com"}
    assert resp.json()["approved_args"] == {"to": "team@example.com"}
    assert Job.objects.get(pk=hitl.job_id).args == {"to": "team@example.com"}
    assert JobEvent.objects.get(job_id=hitl.job_id, kind="approved").detail["args_changed"] is True


def test_approve_twice__200_with_the_first_decision(api, member, approver, admin):
    hitl = gated(api, member)
    first = decide(api, approver, hitl, "approve", {"comment": "ok"}).json()
    again = decide(api, admin, hitl, "approve", {"comment": "me too"})
    assert again.status_code == 200 and again.json() == first
    assert JobEvent.objects.filter(job_id=hitl.job_id, kind="approved").count() == 1


def test_reject__job_rejected_and_never_pushed(api, member, approver, django_capture_on_commit_callbacks):
    hitl = gated(api, member)
    with django_capture_on_commit_callbacks(execute=True):
        resp = decide(api, approver, hitl, "reject", {"comment": "not today"})
    assert resp.status_code == 200
    assert (resp.json()["state"], resp.json()["job_state"], resp.json()["approved_args"]) == (
        "rejected",
        "rejected",
        None,
    )
    job = Job.objects.get(pk=hitl.job_id)
    assert job.finished_at is not None and "not today" in job.error
    assert queued_in_redis() == 0
    event = job.events.get(kind="rejected")
    assert (event.actor, event.detail["comment"]) == (approver.user, "not today")
    assert decide(api, approver, hitl, "reject").status_code == 200, "the same decision again"
    conflict = decide(api, approver, hitl, "approve")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "invalid_state"
    assert conflict.json()["error"]["detail"] == {"state": "rejected"}


def test_approve_after_reject_by_someone_else_is_409(api, member, approver, admin):
    hitl = gated(api, member)
    decide(api, admin, hitl, "approve")
    resp = decide(api, approver, hitl, "reject")
    assert resp.status_code == 409 and resp.json()["error"]["detail"] == {"state": "approved"}
    assert Job.objects.get(pk=hitl.job_id).state == "queued"


def test_self_approval__403_for_members_and_admins(api, admin, approver):
    hitl = gated(api, admin)
    for decision in ("approve", "reject"):
        resp = decide(api, admin, hitl, decision)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "self_approval"
    hitl.refresh_from_db()
    assert hitl.state == "pending" and hitl.job.state == "awaiting_approval"
    assert decide(api, approver, hitl, "approve").status_code == 200, "a member with hitl:approve may"


def test_order__self_approval_before_body_before_state(api, member, approver):
    hitl = gated(api, member)
    assert decide(api, member, hitl, "approve", {"args": [1]}).json()["error"]["code"] == "self_approval"
    bad = decide(api, approver, hitl, "approve", {"args": [1]})
    assert bad.status_code == 400 and "args" in bad.json()["error"]["fields"]
    long = decide(api, approver, hitl, "reject", {"comment": "x" * 2001})
    assert long.status_code == 400 and "comment" in long.json()["error"]["fields"]
    decide(api, approver, hitl, "reject")
    assert decide(api, approver, hitl, "approve", {"args": "nope"}).status_code == 400, "400 before 409"
    assert decide(api, approver, hitl, "approve", {"args": {"ok": 1}}).status_code == 409


def test_expired__409_and_the_job_rejected(api, member, approver):
    hitl = gated(api, member)
    HITLRequest.objects.filter(pk=hitl.pk).update(expires_at=clock.now() - timedelta(seconds=1))
    resp = decide(api, approver, hitl, "approve")
    assert resp.status_code == 409 and resp.json()["error"]["detail"] == {"state": "expired"}
    hitl.refresh_from_db()
    assert (hitl.state, hitl.decided_via, hitl.decided_by) == ("expired", "system", None)
    assert hitl.job.state == "rejected"
    assert list(hitl.job.events.values_list("kind", flat=True)) == ["submitted", "approval_expired"]


def test_expire_due__only_past_requests(api, member):
    due, fresh = gated(api, member), gated(api, member)
    HITLRequest.objects.filter(pk=due.pk).update(expires_at=clock.now() - timedelta(seconds=1))
    assert services.hitl_expire_due() == 1
    assert services.hitl_expire_due() == 0
    due.refresh_from_db()
    fresh.refresh_from_db()
    assert (due.state, due.job.state, fresh.state, fresh.job.state) == (
        "expired",
        "rejected",
        "pending",
        "awaiting_approval",
    )
    assert "expired" in due.job.error and due.job.finished_at is not None
    event = due.job.events.get(kind="approval_expired")
    assert event.actor is None and event.detail["hitl_request_id"] == str(due.pk)


def test_cancel_awaiting_job__request_cancelled(api, member, approver):
    hitl = gated(api, member)
    resp = api.post(f"/v1/queue/jobs/{hitl.job_id}/cancel", **member.headers)
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    hitl.refresh_from_db()
    assert (hitl.state, hitl.decided_by, hitl.decided_via) == ("cancelled", member.user, "api")
    conflict = decide(api, approver, hitl, "approve")
    assert conflict.status_code == 409 and conflict.json()["error"]["detail"] == {"state": "cancelled"}


@pytest.mark.parametrize("ending", ["rejected", "expired", "cancelled"])
def test_retry__goes_back_to_awaiting_with_a_new_request(api, member, approver, ending):
    hitl = gated(api, member, approval_reason="needed")
    if ending == "rejected":
        decide(api, approver, hitl, "reject")
    elif ending == "expired":
        HITLRequest.objects.filter(pk=hitl.pk).update(expires_at=clock.now() - timedelta(seconds=1))
        services.hitl_expire_due()
    else:
        api.post(f"/v1/queue/jobs/{hitl.job_id}/cancel", **member.headers)
    resp = api.post(f"/v1/queue/jobs/{hitl.job_id}/retry", **member.headers)
    assert resp.status_code == 200 and resp.json()["state"] == "awaiting_approval"
    assert resp.json()["dispatched_at"] is None
    new = HITLRequest.objects.get(job_id=hitl.job_id, state="pending")
    assert new.pk != hitl.pk and (new.requested_by, new.reason) == (member.user, "needed")
    assert HITLRequest.objects.get(pk=hitl.pk).state == ending, "the old decision stays on record"
    assert JobEvent.objects.filter(job_id=hitl.job_id).last().kind == "retry_gated"
    assert decide(api, member, new, "approve").status_code == 403, "still no self-approval"
    assert decide(api, approver, new, "approve").json()["job_state"] == "queued"


def test_retry_of_an_approved_job_that_failed_is_not_gated_again(api, member, approver):
    hitl = gated(api, member)
    decide(api, approver, hitl, "approve")
    services.job_transition(job_id=hitl.job_id, move="start", attempts=1)
    services.job_transition(job_id=hitl.job_id, move="fail", error="boom")
    resp = api.post(f"/v1/queue/jobs/{hitl.job_id}/retry", **member.headers)
    assert resp.status_code == 200 and resp.json()["state"] == "queued"
    assert HITLRequest.objects.filter(job_id=hitl.job_id).count() == 1


def test_functions__show_the_approval_flag(api, member):
    body = api.get("/v1/queue/functions", **member.headers).json()
    flags = {f["name"]: f["requires_approval"] for f in body["functions"]}
    assert flags["tests.gated"] is True and flags["hq.echo"] is False
