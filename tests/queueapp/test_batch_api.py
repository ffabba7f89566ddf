"""POST /v1/queue/jobs/batch: up to 1,000 submits in one request, all or none, in request order."""

from __future__ import annotations

import pytest

from hq.models import PersonalAccessToken
from queueapp.models import HITLRequest, Job, JobEvent
from tests import factories

pytestmark = pytest.mark.django_db

URL = "/v1/queue/jobs/batch"


def batch(api, caller, jobs):
    return api.post(URL, {"jobs": jobs}, format="json", **caller.headers)


def test_batch__records_every_job_in_request_order_with_its_event(api, member):
    items = [{"function": "hq.echo", "args": {"n": n}, "correlation_id": f"c-{n}"} for n in range(5)]
    items.append({"function": "hq.echo", "defer_by_seconds": 60})
    resp = batch(api, member, items)
    assert resp.status_code == 202, resp.content
    jobs = resp.json()["jobs"]
    assert [j["args"] for j in jobs[:5]] == [{"n": n} for n in range(5)]
    assert [j["state"] for j in jobs] == ["queued"] * 5 + ["deferred"]
    assert not any(j["replayed"] for j in jobs)
    rows = {str(j.id): j for j in Job.objects.all()}
    assert set(rows) == {j["id"] for j in jobs}
    for body in jobs:
        row = rows[body["id"]]
        assert (row.state, row.correlation_id, row.owner_id) == (body["state"], body["correlation_id"], member.user.id)
    events = JobEvent.objects.filter(kind="submitted")
    assert sorted(str(e.job_id) for e in events) == sorted(rows) and {e.actor_id for e in events} == {member.user.id}
    deferred = events.get(job_id=jobs[5]["id"])
    assert deferred.to_state == "deferred" and "due_at" in deferred.detail


def test_batch__an_unknown_field_in_one_item_refuses_the_batch_naming_it(api, member):
    resp = batch(api, member, [{"function": "hq.echo"}, {"function": "hq.echo", "uniq_key": "k"}])
    assert resp.status_code == 400
    assert set(resp.json()["error"]["fields"]) == {"jobs.1.uniq_key"}
    assert not Job.objects.exists()


def test_batch__a_bad_item_refuses_the_whole_batch_naming_each(api, member):
    items = [
        {"function": "hq.echo"},
        {"function": "hq.echo", "args": [1]},
        {"args": {}},
        {"function": "nope"},
        {"function": "hq.echo", "max_tries": 99, "queue": "Bad Queue"},
        "not an object",
    ]
    resp = batch(api, member, items)
    assert resp.status_code == 400
    fields = resp.json()["error"]["fields"]
    assert set(fields) == {
        "jobs.1.args",
        "jobs.2.function",
        "jobs.4.max_tries",
        "jobs.4.queue",
        "jobs.5.non_field_errors",
    }
    # Past the shape, the service's own checks name their item too.
    resp = batch(api, member, [{"function": "hq.echo"}, {"function": "nope"}, {"function": "tests.internal"}])
    assert resp.status_code == 400 and set(resp.json()["error"]["fields"]) == {"jobs.1.function", "jobs.2.function"}
    assert not Job.objects.exists() and not JobEvent.objects.exists()


@pytest.mark.parametrize("body", [{}, {"jobs": []}, {"jobs": {"a": 1}}, [], {"jobs": [{"function": "hq.echo"}] * 1001}])
def test_batch__needs_one_to_a_thousand_jobs(api, member, body):
    resp = api.post(URL, body, format="json", **member.headers)
    assert resp.status_code == 400 and "jobs" in resp.json()["error"]["fields"], resp.content
    assert not Job.objects.exists()


def test_batch__a_thousand_jobs_is_one_request(api, member):
    resp = batch(api, member, [{"function": "hq.noop", "args": {"i": i}} for i in range(1000)])
    assert resp.status_code == 202
    assert [j["args"]["i"] for j in resp.json()["jobs"]] == list(range(1000))
    assert Job.objects.count() == 1000 and JobEvent.objects.count() == 1000


def test_batch__idempotency_keys_replay_as_on_the_single_route(api, member):
    first = api.post(
        "/v1/queue/jobs", {"function": "hq.echo", "idempotency_key": "k1"}, format="json", **member.headers
    )
    assert first.status_code == 202
    items = [
        {"function": "hq.echo", "idempotency_key": "k1"},  # replays the earlier submit
        {"function": "hq.echo", "idempotency_key": "k2", "args": {"x": 1}},
        {"function": "hq.echo", "idempotency_key": "k2", "args": {"x": 1}},  # replays item 1
        {"function": "hq.echo"},
    ]
    resp = batch(api, member, items)
    assert resp.status_code == 202
    jobs = resp.json()["jobs"]
    assert [j["replayed"] for j in jobs] == [True, False, True, False]
    assert jobs[0]["id"] == first.json()["id"] and jobs[2]["id"] == jobs[1]["id"]
    assert Job.objects.count() == 3
    again = batch(api, member, items[:3])
    assert again.status_code == 200 and all(j["replayed"] for j in again.json()["jobs"])
    assert Job.objects.count() == 3


def test_batch__an_idempotency_conflict_is_409_naming_the_item_and_writes_nothing(api, member):
    batch(api, member, [{"function": "hq.echo", "idempotency_key": "k", "args": {"a": 1}}])
    resp = batch(api, member, [{"function": "hq.echo"}, {"function": "hq.echo", "idempotency_key": "k", "args": {}}])
    assert resp.status_code == 409
    err = resp.json()["error"]
    assert err["code"] == "idempotency_conflict" and err["detail"]["index"] == 1
    assert list(err["fields"]) == ["jobs.1.idempotency_key"]
    within = [
        {"function": "hq.echo", "idempotency_key": "n", "args": {"a": 1}},
        {"function": "hq.echo", "idempotency_key": "n", "args": {"a": 2}},
    ]
    resp = batch(api, member, within)
    assert resp.status_code == 409 and resp.json()["error"]["detail"]["index"] == 1
    other = factories.caller(ws=member.workspace)
    resp = batch(api, other, [{"function": "hq.echo", "idempotency_key": "k", "args": {"a": 1}}])
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "idempotency_key_in_use"
    assert Job.objects.count() == 1


def test_batch__gated_items_wait_for_approval_with_their_requests(api, member):
    items = [{"function": "tests.gated", "args": {"n": 1}}, {"function": "hq.echo", "require_approval": True}]
    resp = batch(api, member, items)
    assert resp.status_code == 202
    jobs = resp.json()["jobs"]
    assert [j["state"] for j in jobs] == ["awaiting_approval"] * 2
    for body in jobs:
        request = HITLRequest.objects.get(job_id=body["id"])
        assert request.state == "pending" and request.requested_by_id == member.user.id
        event = JobEvent.objects.get(job_id=body["id"])
        assert event.detail == {"hitl_request_id": str(request.pk)}


def test_batch__checks_args_once_per_caller_role(api, member, admin):
    long_sleep = [{"function": "hq.sleep", "args": {"seconds": 120}}]
    resp = batch(api, member, long_sleep)
    assert resp.status_code == 400 and list(resp.json()["error"]["fields"]) == ["jobs.0.args.seconds"]
    assert batch(api, admin, long_sleep).status_code == 202


def test_batch__body_limit_and_scope_apply(api, member, settings):
    settings.HQ_MAX_BODY_BYTES = 2000
    resp = batch(api, member, [{"function": "hq.echo", "args": {"pad": "x" * 100}} for _ in range(30)])
    assert resp.status_code == 413
    reader = factories.caller(ws=member.workspace, scopes=["queue:read"])
    resp = batch(api, reader, [{"function": "hq.echo"}])
    assert resp.status_code == 403 and resp.json()["error"]["detail"]["scope"] == "queue:write"
    assert not Job.objects.exists()
    assert PersonalAccessToken.objects.filter(user=reader.user).exists()


@pytest.mark.django_db(transaction=True)
def test_batch__jobs_run_on_a_real_worker(api, member, burst):
    resp = batch(api, member, [{"function": "hq.echo", "args": {"n": n}} for n in range(20)])
    assert resp.status_code == 202
    burst()
    assert list(Job.objects.values_list("state", flat=True).distinct()) == ["succeeded"]
    results = {str(j.id): j.result for j in Job.objects.all()}
    assert [results[j["id"]] for j in resp.json()["jobs"]] == [{"n": n} for n in range(20)]
