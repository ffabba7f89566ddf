"""The /v1/queue API: submit, read, cancel, retry, correlation, depth, functions, workers, pause."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hq import clock
from hq.api.fields import iso
from queueapp.models import Job, JobEvent, QueuePause
from tests import factories

pytestmark = pytest.mark.django_db


def submit(api, caller, **body):
    body.setdefault("function", "hq.echo")
    return api.post("/v1/queue/jobs", body, format="json", **caller.headers)


def test_submit__202_with_job_row_and_event(api, member):
    resp = submit(api, member, args={"a": 1}, correlation_id="order-1")
    assert resp.status_code == 202, resp.json()
    body = resp.json()
    job = Job.objects.get(pk=body["id"])
    assert body["state"] == "queued" == job.state
    assert body["args"] == {"a": 1} and body["correlation_id"] == "order-1"
    assert body["owner_id"] == str(member.user.id)
    assert body["created_at"].endswith("Z")
    assert list(job.events.values_list("kind", flat=True)) == ["submitted"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"function": "nope"}, "function"),
        ({"function": "tests.internal"}, "function"),
        ({"args": [1, 2]}, "args"),
        ({"args": "x"}, "args"),
        ({"defer_by_seconds": -1}, "defer_by_seconds"),
        ({"max_tries": 0}, "max_tries"),
        ({"max_tries": 26}, "max_tries"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"queue": "Bad Queue!"}, "queue"),
        ({"defer_until": "2026-01-01T00:00:00"}, "defer_until"),
        ({"args": {"blob": "x" * (256 * 1024)}}, "args"),
    ],
)
def test_submit__bad_input_is_400_and_writes_nothing(api, member, body, field):
    resp = submit(api, member, **body)
    assert resp.status_code == 400, resp.content
    err = resp.json()["error"]
    assert field in err["fields"], err
    assert not Job.objects.exists()


def test_submit__unknown_function_names_known_ones(api, member):
    err = submit(api, member, function="nope").json()["error"]
    assert err["code"] == "unknown_function"
    assert "hq.echo" in err["message"] and "tests.internal" not in err["message"]


def test_submit__an_unknown_field_is_refused_by_name_and_nothing_is_recorded(api, member):
    # A typo (max_retries for max_tries) or a field of a later version must not run the job without it.
    resp = submit(api, member, function="hq.echo", max_retries=5, prority=3)
    assert resp.status_code == 400
    assert set(resp.json()["error"]["fields"]) == {"max_retries", "prority"}
    assert not Job.objects.exists()


def test_submit__defer_in_the_past_beyond_a_minute(api, member):
    past = iso(clock.now() - timedelta(minutes=5))
    resp = submit(api, member, defer_until=past)
    assert resp.status_code == 400 and "defer_until" in resp.json()["error"]["fields"]
    both = submit(api, member, defer_until=iso(clock.now() + timedelta(minutes=5)), defer_by_seconds=3)
    assert both.status_code == 400


def test_submit__deferred(api, member):
    resp = submit(api, member, defer_by_seconds=120)
    assert resp.status_code == 202
    assert resp.json()["state"] == "deferred"


def test_submit__malformed_json_is_envelope_400(api, member):
    resp = api.generic("POST", "/v1/queue/jobs", b'{"function": ', content_type="application/json", **member.headers)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "malformed_json"


def test_idempotency(api, member):
    first = submit(api, member, args={"x": 1}, idempotency_key="k1")
    again = submit(api, member, args={"x": 1}, idempotency_key="k1")
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    different = submit(api, member, args={"x": 2}, idempotency_key="k1")
    assert different.status_code == 409 and different.json()["error"]["code"] == "idempotency_conflict"
    other = factories.caller(ws=member.workspace)
    taken = submit(api, other, args={"x": 1}, idempotency_key="k1")
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "idempotency_key_in_use"
    elsewhere = submit(api, factories.caller(), args={"x": 1}, idempotency_key="k1")
    assert elsewhere.status_code == 202
    assert Job.objects.count() == 2


def test_idempotency__key_is_free_after_the_window(api, member):
    first = submit(api, member, idempotency_key="k2").json()
    Job.objects.filter(pk=first["id"]).update(created_at=clock.now() - timedelta(hours=25))
    again = submit(api, member, idempotency_key="k2")
    assert again.status_code == 202 and again.json()["id"] != first["id"]


def test_visibility__member_admin_other_workspace(api, member, admin):
    mine = submit(api, member).json()["id"]
    other_member = factories.caller(ws=member.workspace)
    stranger = factories.caller()
    assert api.get(f"/v1/queue/jobs/{mine}", **member.headers).status_code == 200
    assert api.get(f"/v1/queue/jobs/{mine}", **admin.headers).status_code == 200
    assert api.get(f"/v1/queue/jobs/{mine}", **other_member.headers).status_code == 404
    assert api.get(f"/v1/queue/jobs/{mine}", **stranger.headers).status_code == 404
    assert api.post(f"/v1/queue/jobs/{mine}/cancel", **stranger.headers).status_code == 404
    assert api.get("/v1/queue/jobs", **other_member.headers).json()["total"] == 0
    assert api.get("/v1/queue/jobs", **admin.headers).json()["total"] == 1
    assert api.get("/v1/queue/jobs/not-a-uuid", **member.headers).status_code == 404


def test_scopes__missing_scope_is_403_before_lookup(api, member):
    reader = factories.caller(ws=member.workspace, scopes=["queue:read"])
    resp = submit(api, reader)
    assert resp.status_code == 403
    assert resp.json()["error"]["detail"] == {"scope": "queue:write"}
    nobody = factories.caller(ws=member.workspace, scopes=["schedules:read"])
    resp = api.get("/v1/queue/jobs/00000000-0000-4000-8000-000000000000", **nobody.headers)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "missing_scope"
    assert api.get("/v1/queue/jobs").status_code == 401


def test_list__filters_and_pagination(api, member):
    for i in range(5):
        submit(api, member, function="hq.echo" if i % 2 else "hq.noop", correlation_id=f"c{i % 2}")
    resp = api.get("/v1/queue/jobs?function=hq.noop&limit=2", **member.headers).json()
    assert resp["total"] == 3 and len(resp["jobs"]) == 2 and resp["limit"] == 2
    assert api.get("/v1/queue/jobs?state=queued&state=running", **member.headers).json()["total"] == 5
    assert api.get("/v1/queue/jobs?state=bogus", **member.headers).status_code == 400
    assert api.get("/v1/queue/jobs?limit=501", **member.headers).status_code == 400
    assert api.get("/v1/queue/jobs?created_after=yesterday", **member.headers).status_code == 400
    after = iso(clock.now() + timedelta(minutes=1))
    assert api.get(f"/v1/queue/jobs?created_after={after}", **member.headers).json()["total"] == 0
    corr = api.get("/v1/queue/correlation/c1", **member.headers).json()
    assert corr["total"] == 2 and {j["correlation_id"] for j in corr["jobs"]} == {"c1"}


def test_cancel__waiting_states_and_finished_conflict(api, member):
    queued = submit(api, member).json()["id"]
    deferred = submit(api, member, defer_by_seconds=300).json()["id"]
    for job_id in (queued, deferred):
        resp = api.post(f"/v1/queue/jobs/{job_id}/cancel", **member.headers)
        assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
        assert resp.json()["finished_at"] is not None
    again = api.post(f"/v1/queue/jobs/{queued}/cancel", **member.headers)
    assert again.status_code == 409
    assert again.json()["error"]["detail"] == {"state": "cancelled"}
    kinds = list(JobEvent.objects.filter(job_id=queued).values_list("kind", "to_state"))
    assert kinds == [("submitted", "queued"), ("cancel", "cancelled")]


def test_retry__only_from_failed_cancelled_rejected(api, member):
    job_id = submit(api, member).json()["id"]
    assert api.post(f"/v1/queue/jobs/{job_id}/retry", **member.headers).status_code == 409
    api.post(f"/v1/queue/jobs/{job_id}/cancel", **member.headers)
    resp = api.post(f"/v1/queue/jobs/{job_id}/retry", **member.headers)
    assert resp.status_code == 200 and resp.json()["state"] == "queued"


def test_events__timeline(api, member):
    job_id = submit(api, member).json()["id"]
    api.post(f"/v1/queue/jobs/{job_id}/cancel", **member.headers)
    body = api.get(f"/v1/queue/jobs/{job_id}/events", **member.headers).json()
    assert body["total"] == 2
    assert [e["kind"] for e in body["events"]] == ["submitted", "cancel"]
    assert body["events"][1]["actor_id"] == str(member.user.id)


def test_depth__counts_against_fixture(api, admin):
    now = clock.now()
    ws, owner = admin.workspace, admin.user

    def make(state, queue="default", due=now, **kw):
        return Job.objects.create(
            workspace=ws, owner=owner, function="hq.echo", state=state, queue=queue, due_at=due, **kw
        )

    make("queued", due=now - timedelta(seconds=30))
    make("queued")
    make("deferred", due=now - timedelta(seconds=5))
    make("deferred", due=now + timedelta(hours=1))
    make("running")
    make("awaiting_approval")
    make("succeeded")
    make("queued", queue="mail")
    Job.objects.create(workspace=factories.workspace(), function="hq.echo", state="queued", due_at=now)
    body = api.get("/v1/queue/depth", **admin.headers).json()
    by_queue = {q["queue"]: q for q in body["queues"]}
    assert set(by_queue) == {"default", "mail"}
    d = by_queue["default"]
    assert (d["waiting"], d["deferred"], d["running"], d["awaiting_approval"]) == (3, 1, 1, 1)
    assert d["oldest_waiting_age_ms"] >= 30_000
    assert by_queue["mail"]["waiting"] == 1 and d["paused"] is False


def test_functions__lists_public_functions(api, member):
    body = api.get("/v1/queue/functions", **member.headers).json()
    names = {f["name"] for f in body["functions"]}
    assert {"hq.noop", "hq.echo", "hq.sleep", "tests.flaky"} <= names
    assert "tests.internal" not in names
    echo = next(f for f in body["functions"] if f["name"] == "hq.echo")
    assert echo["queue"] == "default" and echo["requires_approval"] is False


def test_admin_routes__members_get_403(api, member, admin):
    assert api.get("/v1/queue/workers", **member.headers).status_code == 403
    assert api.post("/v1/queue/queues/default/pause", **member.headers).status_code == 403
    assert api.get("/v1/queue/workers", **admin.headers).status_code == 200


def test_pause_resume__workspace_scoped(api, admin):
    resp = api.post("/v1/queue/queues/default/pause", **admin.headers)
    assert resp.status_code == 200 and resp.json() == {"queue": "default", "paused": True}
    assert QueuePause.objects.get().workspace == admin.workspace
    assert api.get("/v1/queue/depth", **admin.headers).json()["queues"][0]["paused"] is True
    api.post("/v1/queue/queues/default/resume", **admin.headers)
    assert not QueuePause.objects.exists()
    assert api.post("/v1/queue/queues/Bad!/pause", **admin.headers).status_code in (400, 404)


NAME_64 = "q" * 64
BAD_NAMES = [
    "secq%0A",  # "secq\n": `re.match` with `$` once took it, and it was stored
    "secq%0D%0A",
    f"{NAME_64}%0A",  # 65 characters: once a 500 (too long for the column)
    "q" * 65,
    "Default",
    "-lead",
    ".",
    "..",
    "a%20b",
    "caf%C3%A9",
]


@pytest.mark.parametrize("action", ["pause", "resume"])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_pause_resume__a_bad_queue_name_is_400_and_stores_nothing(api, admin, name, action):
    resp = api.post(f"/v1/queue/queues/{name}/{action}", **admin.headers)
    assert resp.status_code in (400, 404), resp.content  # 404: ".." and "." are resolved away by the URL
    if resp.status_code == 400:
        error = resp.json()["error"]
        assert error["code"] == "invalid" and "queue" in error["fields"], error
    assert not QueuePause.objects.exists()


@pytest.mark.parametrize("name", ["a", "0", NAME_64, "mail.out-2_b"])
def test_pause__the_allowed_names(api, admin, name):
    resp = api.post(f"/v1/queue/queues/{name}/pause", **admin.headers)
    assert resp.status_code == 200 and resp.json() == {"queue": name, "paused": True}
    assert QueuePause.objects.get().queue == name


@pytest.mark.parametrize("name", ["secq\n", f"{NAME_64}\n", "q" * 65, "Mail", ""])
def test_submit__a_bad_queue_name_is_400(api, member, name):
    resp = submit(api, member, queue=name)
    assert resp.status_code == 400, resp.content
    assert "queue" in resp.json()["error"]["fields"]
    assert not Job.objects.exists()


def test_submit__a_queue_name_is_taken_as_given(api, member, settings):
    settings.HQ_QUEUES = ["default", NAME_64]  # a queue some worker serves
    resp = submit(api, member, queue=NAME_64)
    assert resp.status_code == 202 and Job.objects.get().queue == NAME_64
