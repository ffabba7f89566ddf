"""The ops console over the test client: the index order, one Workers page, no hard delete of jobs
and HITL requests (superusers included), and what the console's pages show and do."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hq import clock
from queueapp import services
from queueapp.models import HITLRequest, Job
from tests import factories
from tests.observability import helpers
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
        "Key limits",
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


def _jobs(member, n: int, **kw) -> list[Job]:
    now = clock.now()
    return [helpers.job(member.workspace, now, **kw) for _ in range(n)]


def test_the_job_list_is_dense_and_counts_per_state_without_counting_the_table(member):
    ops = client_for(staff(member.workspace))
    now = clock.now()
    done = helpers.job(member.workspace, now, state="succeeded", finished_ago_s=60, run_ms=2500)
    Job.objects.filter(pk=done.pk).update(args={"order": 7, "to": "ops@example.com"}, correlation_id="order-7")
    helpers.job(member.workspace, now, state="failed", finished_ago_s=90000, run_ms=10)  # finished 25 h ago
    _jobs(member, 3, state="queued")
    helpers.job(member.workspace, now, state="running", started_ago_s=12)
    helpers.job(factories.caller().workspace, now, state="queued")  # another workspace: not counted

    resp = ops.get("/admin/queueapp/job/")
    html = resp.content.decode()
    row = next(r for r in html.split("<tr") if str(done.pk) in r)
    assert f'<code title="{done.pk}">{str(done.pk)[:8]}</code>' in row and f'data-copy="{done.pk}"' in row
    assert '<span class="hq-badge hq-state-succeeded">succeeded</span>' in row
    assert "{&quot;to&quot;: &quot;ops@example.com&quot;, &quot;order&quot;: 7}" in row, "the argument preview"
    assert "order-7" in row and "2.5 s" in row
    assert re.search(r'<time class="hq-when" datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">', row)
    counts = {state: int(n) for state, n in re.findall(r'id="count-(\w+)">[^<]*<span class="n">(\d+)</span>', html)}
    assert counts == {
        "queued": 3,
        "deferred": 0,
        "awaiting_approval": 0,
        "running": 1,
        "succeeded": 1,
        "failed": 0,  # finished more than 24 h ago
        "cancelled": 0,
        "rejected": 0,
    }
    assert "s so far" in html, "a running job's duration"


def test_the_job_list_pages_by_50_and_never_counts_the_whole_table(member):
    ops = client_for(staff(member.workspace))
    _jobs(member, 60, state="succeeded", finished_ago_s=5, run_ms=1)
    with CaptureQueriesContext(connection) as few:
        ops.get("/admin/queueapp/job/?p=1")
    _jobs(member, 40, state="queued")
    with CaptureQueriesContext(connection) as more:
        resp = ops.get("/admin/queueapp/job/")
    assert len(resp.context["cl"].result_list) == 50
    assert len(more.captured_queries) == len(few.captured_queries), "no query per row"
    counts = [q["sql"] for q in more.captured_queries if "COUNT(" in q["sql"] and "queueapp_job" in q["sql"]]
    assert counts, "the paginator and the state counts count"
    for sql in counts:
        assert "LIMIT" in sql or '"finished_at" >=' in sql or '"state" IN' in sql, sql


def test_a_first_page_shorter_than_a_page_is_read_once_without_a_count(member):
    ops = client_for(staff(member.workspace))
    rows = _jobs(member, 3, state="queued")
    _jobs(member, 60, state="succeeded", finished_ago_s=5, run_ms=1)

    def paginator_counts(url: str) -> tuple[list[str], int]:
        with CaptureQueriesContext(connection) as seen:
            resp = ops.get(url)
        sql = [q["sql"] for q in seen.captured_queries if "SELECT COUNT(*) FROM (SELECT" in q["sql"]]
        return sql, len(resp.context["cl"].result_list)

    def reads_of_the_rows(url: str) -> int:
        with CaptureQueriesContext(connection) as seen:
            ops.get(url)
        rows_read = [q for q in seen.captured_queries if 'SELECT "queueapp_job"."id"' in q["sql"]]
        return sum(1 for q in rows_read if "ORDER BY" in q["sql"])

    assert paginator_counts("/admin/queueapp/job/?state__exact=queued") == ([], 3)  # the rows are the count
    assert reads_of_the_rows("/admin/queueapp/job/?state__exact=queued") == 1  # and read once
    assert paginator_counts(f"/admin/queueapp/job/?q={rows[0].pk}") == ([], 1)
    counted, shown = paginator_counts("/admin/queueapp/job/")  # more than a page: counted (capped)
    assert len(counted) == 1 and "LIMIT" in counted[0] and shown == 50
    counted, shown = paginator_counts("/admin/queueapp/job/?p=2")
    assert len(counted) == 1 and shown == 13


def test_a_capped_list_says_more_than(member, monkeypatch):
    from hq import console

    monkeypatch.setattr(console.CappedPaginator, "cap", 30)
    monkeypatch.setattr(console, "CAP", 30)
    _jobs(member, 35, state="queued")
    html = client_for(staff(member.workspace)).get("/admin/queueapp/job/").content.decode()
    assert "more than 30 jobs: filter to narrow them" in html


def test_job_search_by_short_id_correlation_function_and_inside_args(member):
    ops = client_for(staff(member.workspace))
    a, b, c = _jobs(member, 3, state="queued")
    Job.objects.filter(pk=a.pk).update(args={"order": 7, "to": "ops"}, correlation_id="order-7")
    Job.objects.filter(pk=b.pk).update(args={"order": 8}, function="mail.send")
    Job.objects.filter(pk=c.pk).update(args={"order": 7}, created_at=clock.now() - timedelta(days=30))

    def found(term: str, extra: str = "") -> set:
        resp = ops.get("/admin/queueapp/job/", {"q": term, **dict([extra.split(":")] if extra else [])})
        return {j.pk for j in resp.context["cl"].result_list}

    assert found(str(a.pk)[:8]) == {a.pk}
    assert found(str(a.pk)) == {a.pk}
    assert found("order-7") == {a.pk}
    assert found("mail.send") == {b.pk}
    assert found("order=7") == {a.pk}, "args search covers the last 7 days"
    assert found("order=7", "created_at__gte:2000-01-01") == {a.pk, c.pk}, "unless a date filter says otherwise"
    assert found('to="ops"') == {a.pk}
    assert found("nothing-like-this") == set()
    Job.objects.filter(pk=b.pk).update(concurrency_key="customer:42")
    assert found("customer:42") == {b.pk}
    # What jsonb cannot hold finds nothing, never a 500: NaN, 1e999, an escaped NUL or surrogate.
    for term in ("order=NaN", "order=1e999", 'order="\\u0000"', 'order="\\ud800"', "order=[1e999]"):
        resp = ops.get("/admin/queueapp/job/", {"q": term})
        assert resp.status_code == 200, term
        assert list(resp.context["cl"].result_list) == [], term
    # A raw NUL in the query string is refused before the admin runs (the request guard).
    for term in ("order=\x00", "a\x00b"):
        assert ops.get("/admin/queueapp/job/", {"q": term}).status_code == 400, repr(term)


def test_the_priority_bands_above_and_below_0_look_among_recent_jobs_unless_dated(member):
    ops = client_for(staff(member.workspace))
    high, low, plain, old_high = _jobs(member, 4, state="queued")
    Job.objects.filter(pk__in=[high.pk, old_high.pk]).update(priority=5)
    Job.objects.filter(pk=low.pk).update(priority=-5)
    Job.objects.filter(pk=old_high.pk).update(created_at=clock.now() - timedelta(days=30))

    def band(value: str, extra: dict[str, str] | None = None) -> set:
        resp = ops.get("/admin/queueapp/job/", {"priority_band": value, **(extra or {})})
        assert resp.status_code == 200
        return {j.pk for j in resp.context["cl"].result_list}

    assert band("high") == {high.pk}, "a band other than 0 covers the last 7 days"
    assert band("high", {"created_at__gte": "2000-01-01"}) == {high.pk, old_high.pk}, "unless a date filter says"
    assert band("low") == {low.pk}
    assert band("normal") == {plain.pk}


def test_the_job_page_starts_with_what_matters_then_the_timeline(member):
    ops = client_for(staff(member.workspace))
    now = clock.now()
    failed = helpers.job(member.workspace, now, state="failed", finished_ago_s=10, run_ms=4200, wait_ms=1500)
    Job.objects.filter(pk=failed.pk).update(
        args={"to": "ops"}, error="ValueError: no such mailbox", correlation_id="order-9", max_tries=3
    )
    html = ops.get(f"/admin/queueapp/job/{failed.pk}/change/").content.decode()
    summary = html[html.index('id="job-summary"') : html.index("All fields")]
    labels = re.findall(r"<dt>([^<]+)</dt>", summary)
    assert labels[:7] == ["State", "Function", "Arguments", "Error", "Wait", "Run", "Attempts"], labels
    assert "ValueError: no such mailbox" in summary and "4.2 s" in summary and "1.5 s" in summary
    assert "1 of 3" in summary
    assert re.search(r"<dt>Finished</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</dd>", summary)
    assert f'href="/admin/hq/workspace/{member.workspace.pk}/change/"' in summary
    assert 'href="/admin/queueapp/job/?q=order-9"' in summary
    assert html.index('id="job-summary"') < html.index("All fields") < html.index("Timeline")
    assert 'id="job-retry"' in html and 'id="job-cancel"' not in html
    assert "empty means the relay" not in html


def test_job_buttons_confirm_then_call_the_service(member):
    hitl = request_for(member)
    user = staff(member.workspace)
    ops = client_for(user)
    page = ops.get(f"/admin/queueapp/job/{hitl.job_id}/change/").content.decode()
    assert 'id="job-cancel"' in page and 'id="job-retry"' not in page
    confirm = ops.get(f"/admin/queueapp/job/{hitl.job_id}/cancel/")
    assert confirm.status_code == 200 and 'id="confirm-cancel"' in confirm.content.decode()
    assert Job.objects.get(pk=hitl.job_id).state == "awaiting_approval", "nothing before the confirmation"
    done = ops.post(f"/admin/queueapp/job/{hitl.job_id}/cancel/", follow=True)
    assert [m.message for m in done.context["messages"]] == ["Cancelled (a running job is asked to abort)."]
    assert Job.objects.get(pk=hitl.job_id).state == "cancelled"
    assert HITLRequest.objects.get(pk=hitl.pk).state == "cancelled"
    again = ops.post(f"/admin/queueapp/job/{hitl.job_id}/cancel/", follow=True)
    assert [m.message for m in again.context["messages"]] == [
        f"Job {hitl.job_id}: Cannot cancel a job that is cancelled."
    ], "the service's refusal, as a message"
    retried = ops.post(f"/admin/queueapp/job/{hitl.job_id}/retry/", follow=True)
    assert [m.message for m in retried.context["messages"]] == [
        "Retried: the job is queued again with a fresh set of tries."
    ]
    assert Job.objects.get(pk=hitl.job_id).state == "awaiting_approval", "a retry never bypasses a decision"
    other = request_for(factories.caller())
    assert ops.get(f"/admin/queueapp/job/{other.job_id}/cancel/").status_code == 404
    assert ops.post(f"/admin/queueapp/job/{other.job_id}/cancel/").status_code == 404
    assert Job.objects.get(pk=other.job_id).state == "awaiting_approval"


def _messages(resp) -> list[str]:
    return [m.message for m in resp.context["messages"]]


def test_queue_pause_and_resume_in_the_admin_per_workspace_and_global(member):
    from queueapp.models import QueuePause

    ops = client_for(staff(member.workspace))
    listing = ops.get("/admin/queueapp/queuepause/").content.decode()
    assert 'id="pause-form"' in listing and "Every workspace" not in listing, "global pauses are for superusers"
    ask = ops.get("/admin/queueapp/queuepause/pause/", {"queue": "default", "workspace": str(member.workspace.pk)})
    assert 'id="confirm-pause"' in ask.content.decode() and not QueuePause.objects.exists()
    done = ops.post(
        "/admin/queueapp/queuepause/pause/", {"queue": "default", "workspace": str(member.workspace.pk)}, follow=True
    )
    assert _messages(done) == [f"Paused queue default for workspace {member.workspace.slug}."]
    pause = QueuePause.objects.get()
    assert (pause.queue, pause.workspace_id, pause.paused_by_id) == (
        "default",
        member.workspace.pk,
        done.context["user"].pk,
    )
    other = factories.caller().workspace
    refused = ops.post(
        "/admin/queueapp/queuepause/pause/", {"queue": "default", "workspace": str(other.pk)}, follow=True
    )
    assert _messages(refused)[0].startswith("workspace: Select a valid choice")
    refused = ops.post("/admin/queueapp/queuepause/pause/", {"queue": "default", "workspace": ""}, follow=True)
    assert _messages(refused) == ["Only superusers may pause a queue for every workspace."]
    assert QueuePause.objects.count() == 1

    root = client_for(staff(superuser=True))
    done = root.post("/admin/queueapp/queuepause/pause/", {"queue": "default", "workspace": ""}, follow=True)
    assert _messages(done) == ["Paused queue default for every workspace."]
    glob = QueuePause.objects.get(workspace__isnull=True)
    refused = ops.post(f"/admin/queueapp/queuepause/{glob.pk}/resume/", follow=True)
    assert _messages(refused) == ["Only superusers may resume a global pause."]
    assert 'id="confirm-resume"' in ops.get(f"/admin/queueapp/queuepause/{pause.pk}/resume/").content.decode()
    done = ops.post(f"/admin/queueapp/queuepause/{pause.pk}/resume/", follow=True)
    assert _messages(done) == [f"Resumed queue default for workspace {member.workspace.slug}."]
    done = root.post(f"/admin/queueapp/queuepause/{glob.pk}/resume/", follow=True)
    assert _messages(done) == ["Resumed queue default for every workspace."]
    assert not QueuePause.objects.exists()


def test_cancel_a_running_job_from_the_workers_page(member):
    from queueapp.models import Worker

    worker = Worker.objects.create(id="host:1:abc", hostname="host", pid=1, queues=["default"])
    running = helpers.job(member.workspace, clock.now(), state="running", started_ago_s=3)
    Job.objects.filter(pk=running.pk).update(worker_id=worker.id)
    ops = client_for(staff(member.workspace))
    page = ops.get("/admin/ops/workers/").content.decode()
    url = f"/admin/queueapp/job/{running.pk}/cancel/?from=workers"
    assert f'href="{url}"' in page
    assert 'id="confirm-cancel"' in ops.get(url).content.decode()
    done = ops.post(url, follow=True)
    assert done.redirect_chain[-1][0] == "/admin/ops/workers/"
    assert _messages(done) == ["Cancelled (a running job is asked to abort)."]
    assert Job.objects.get(pk=running.pk).cancel_requested_at is not None


def test_bulk_job_actions_ask_first(member):
    hitl = request_for(member)
    ops = client_for(staff(member.workspace))
    ask = ops.post("/admin/queueapp/job/", {"action": "cancel_selected", "_selected_action": [hitl.job_id]})
    html = ask.content.decode()
    assert 'id="confirm-cancel"' in html and 'name="post" value="yes"' in html and str(hitl.job_id) in html
    assert Job.objects.get(pk=hitl.job_id).state == "awaiting_approval", "nothing before the confirmation"
    done = ops.post(
        "/admin/queueapp/job/",
        {"action": "cancel_selected", "_selected_action": [hitl.job_id], "post": "yes"},
        follow=True,
    )
    assert _messages(done) == ["Cancelled (or asked to abort) 1 job(s)."]
    assert Job.objects.get(pk=hitl.job_id).state == "cancelled"


def test_every_dashboard_link_opens_its_list_for_the_chosen_workspace(member):
    ops = client_for(staff(superuser=True))  # the schedules pages also need model permissions
    helpers.hitl(member.workspace, clock.now(), created_ago_s=30, owner=member.user)
    html = ops.get("/admin/ops/dashboard/", {"workspace": str(member.workspace.pk)}).content.decode()
    links = set(re.findall(r'href="(/admin/(?:queueapp|schedules)/[^"]+\?[^"]+)"', html))
    assert len(links) >= 5, links
    for link in links:
        resp = ops.get(link.replace("&amp;", "&"))
        assert resp.status_code == 200 and "cl" in resp.context, link


def test_the_waiting_tiles_list_has_every_job_the_tile_counted(member):
    """The tile counts jobs due up to the dashboard's now, to the microsecond; its link must too
    (cut to the second, a job due earlier in the same second was counted but not listed)."""
    ops = client_for(staff(member.workspace))
    now = clock.now()
    clock.set_offset(clock.offset() + (0.5 - now.microsecond / 1e6) % 1.0)  # the dashboard's now: .5 s into a second
    try:
        due = clock.now().replace(microsecond=100_000)  # due earlier in that same second
        helpers.job(member.workspace, due, state="queued", due_ago_s=0)
        html = ops.get("/admin/ops/dashboard/").content.decode()
    finally:
        clock.set_offset(0)
    links = set(re.findall(r'href="(/admin/queueapp/job/\?[^"]*state__in[^"]*)"', html))  # the tile, the rows
    assert links
    for link in links:
        listed = ops.get(link.replace("&amp;", "&")).context["cl"].result_list
        assert len(listed) == 1, link


def test_the_owner_and_workspace_filters_list_a_bounded_number_of_choices(member, monkeypatch):
    from queueapp.admin import ScopeRelatedFilter

    monkeypatch.setattr(ScopeRelatedFilter, "CHOICES_MAX", 3)
    for _ in range(4):
        factories.workspace()
    ops = client_for(staff(superuser=True))
    resp = ops.get("/admin/queueapp/job/")
    assert resp.status_code == 200
    filters = {spec.title: spec for spec in resp.context["cl"].filter_specs}
    workspace = filters["workspace (the first 3)"]
    assert len(workspace.lookup_choices) == 3
    # A workspace past the first three still filters from the querystring.
    from hq.models import Workspace

    shown = [pk for pk, _ in workspace.lookup_choices]
    past = Workspace.objects.exclude(pk__in=[*shown, member.workspace.pk]).first()
    helpers.job(past, clock.now(), state="queued")
    helpers.job(member.workspace, clock.now(), state="queued")
    resp = ops.get("/admin/queueapp/job/", {"workspace__id__exact": str(past.pk)})
    assert resp.status_code == 200
    assert [j.workspace_id for j in resp.context["cl"].result_list] == [past.pk]
