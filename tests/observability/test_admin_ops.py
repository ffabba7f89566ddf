"""The ops console: dashboard and workers pages (staff only), the admin index link, the schedules owner
filter, and job and schedule actions changing state through the services."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from hq import clock
from hq import services as hq_services
from hq.models import Membership, User
from queueapp import services
from queueapp.models import Job, JobEvent
from queueapp.observability import depth
from schedules.models import Schedule
from tests import factories
from tests.observability.helpers import fire, hitl, job, schedule

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/ops/dashboard/"
WORKERS = "/admin/ops/workers/"


def staff(ws=None, *, role: str = "admin", superuser: bool = False) -> User:
    user = User.objects.create_user(email=f"ops{User.objects.count()}@example.com", password="pw", is_staff=True)
    if superuser:
        User.objects.filter(pk=user.pk).update(is_superuser=True)
        user.refresh_from_db()
    if ws is not None:
        hq_services.membership_set(user=user, workspace=ws, role=role)
    return user


def client_for(user: User) -> Client:
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def busy(admin):
    now = clock.now()
    for _ in range(3):
        job(admin.workspace, now, state="succeeded", finished_ago_s=90, wait_ms=40, run_ms=200)
    job(admin.workspace, now, state="failed", finished_ago_s=300, wait_ms=40, run_ms=200)
    job(admin.workspace, now, state="queued", due_ago_s=12)
    hitl(admin.workspace, now, created_ago_s=7200, owner=admin.user)
    s = schedule(admin.workspace, admin.user, name="digest", failures=2)
    fire(s, now, created_ago_s=600, status="succeeded", lag_ms=120)
    other = factories.caller()
    job(other.workspace, now, state="queued", queue="secret-queue", due_ago_s=5)
    depth.sample_depth(now)  # what the workers' depth_sampler side task writes each minute
    return other


def test_dashboard__renders_charts_for_staff_of_the_workspace(admin, busy):
    page = client_for(staff(admin.workspace)).get(DASHBOARD)
    assert page.status_code == 200
    html = page.content.decode()
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in html  # no script: reloads
    assert html.count('class="hq-chart"') == 7  # 5 queue charts (one queue's depth) and 2 schedule charts
    for title in (
        "Jobs per minute by outcome, last hour",
        "Jobs per minute by outcome, last 24 hours",
        "Wait time (due → start), last 24 hours",
        "Queue depth: default, last hour",
        "HITL requests pending, by age",
        "Schedule fire lag (slot → job start), last 24 hours",
    ):
        assert title in html
    assert "<script" not in html.split('id="ops-charts"')[1]  # charts are plain SVG
    assert re.search(r'id="tile-waiting">1<', html) and re.search(r'id="tile-hitl">1<', html)
    assert re.search(r'id="tile-failing">1<', html)
    assert "<title>" in html and "succeeded: 3</title>" in html  # the minute bar of the three successes
    assert "secret-queue" not in html  # another workspace's queue


def test_dashboard__superusers_see_every_workspace_and_may_narrow(admin, busy):
    root = client_for(staff(superuser=True))
    html = root.get(DASHBOARD).content.decode()
    assert "secret-queue" in html and re.search(r'id="tile-waiting">2<', html)
    narrowed = root.get(f"{DASHBOARD}?workspace={busy.workspace.pk}").content.decode()
    assert re.search(r'id="tile-waiting">1<', narrowed) and "digest" not in narrowed


def test_dashboard_and_workers__refused_to_anyone_but_staff(member):
    anonymous = Client()
    plain = client_for(member.user)
    for url in (DASHBOARD, WORKERS):
        for c in (anonymous, plain):
            resp = c.get(url)
            assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/"), url


def test_admin_index_links_the_ops_pages(admin):
    html = client_for(staff(admin.workspace)).get("/admin/").content.decode()
    assert f'href="{DASHBOARD}"' in html and f'href="{WORKERS}"' in html


def test_workers_page__live_workers_heartbeat_and_running_jobs(admin, busy):
    services.worker_heartbeat(
        worker_id="box-1:42:abc",
        hostname="box-1",
        pid=42,
        queues=["default", "mail"],
        concurrency=8,
        running=2,
        jobs_done=17,
    )
    now = clock.now()
    mine = job(admin.workspace, now, state="running", function="reports.build", started_ago_s=4)
    theirs = job(busy.workspace, now, state="running", function="their.secret", started_ago_s=4)
    Job.objects.filter(pk__in=[mine.pk, theirs.pk]).update(worker_id="box-1:42:abc")
    html = client_for(staff(admin.workspace)).get(WORKERS).content.decode()
    assert "box-1:42:abc" in html and "default, mail" in html and "s ago" in html
    assert "reports.build" in html and f"/admin/queueapp/job/{mine.pk}/change/" in html
    assert "their.secret" not in html
    root = client_for(staff(superuser=True)).get(WORKERS).content.decode()
    assert "their.secret" in root and "reports.build" in root


def test_schedule_owner_filter_lists_exactly_the_users_with_schedules(admin, member):
    schedule(admin.workspace, admin.user, name="a")
    schedule(admin.workspace, admin.user, name="b", state="archived")
    factories.caller(ws=admin.workspace)  # no schedules
    elsewhere = factories.caller()
    schedule(elsewhere.workspace, elsewhere.user, name="c")
    root = client_for(staff(superuser=True)).get("/admin/schedules/schedule/").content.decode()
    assert set(re.findall(r"\?owner=([0-9a-f-]{36})", root)) == {str(admin.user.pk), str(elsewhere.user.pk)}
    viewer = staff(admin.workspace)
    viewer.user_permissions.set(Permission.objects.filter(codename__in=["view_schedule", "change_schedule"]))
    mine = client_for(viewer).get("/admin/schedules/schedule/").content.decode()
    assert set(re.findall(r"\?owner=([0-9a-f-]{36})", mine)) == {str(admin.user.pk)}


def test_job_actions__retry_and_cancel_through_the_services(admin, member):
    now = clock.now()
    failed = job(admin.workspace, now, state="failed", finished_ago_s=60, wait_ms=1, run_ms=1, owner=member.user)
    waiting = job(admin.workspace, now, state="queued", due_ago_s=1, owner=member.user)
    ops = staff(admin.workspace)
    c = client_for(ops)
    changelist = "/admin/queueapp/job/"
    c.post(changelist, {"action": "retry_selected", "_selected_action": [str(failed.pk)], "post": "yes"})
    c.post(changelist, {"action": "cancel_selected", "_selected_action": [str(waiting.pk)], "post": "yes"})
    failed.refresh_from_db()
    waiting.refresh_from_db()
    assert failed.state == "queued" and waiting.state == "cancelled"
    assert JobEvent.objects.filter(job=failed, kind="retry", actor=ops, from_state="failed").exists()
    assert JobEvent.objects.filter(job=waiting, kind="cancel", actor=ops, to_state="cancelled").exists()
    # staff who administer some workspace, but only belong to this one, do not even see its jobs
    elsewhere_admin = staff(factories.workspace())
    hq_services.membership_set(user=elsewhere_admin, workspace=admin.workspace, role="member")
    elsewhere = client_for(elsewhere_admin)
    assert str(failed.pk) not in elsewhere.get(changelist).content.decode()
    elsewhere.post(changelist, {"action": "cancel_selected", "_selected_action": [str(failed.pk)], "post": "yes"})
    assert Job.objects.get(pk=failed.pk).state == "queued"


def test_job_changelist__filters_state_queue_function_owner_and_dates(admin, member):
    now = clock.now()
    job(admin.workspace, now, state="queued", function="alpha.fn", queue="q1", owner=member.user)
    job(admin.workspace, now, state="failed", function="beta.fn", queue="q2", finished_ago_s=5, run_ms=1, wait_ms=1)
    c = client_for(staff(admin.workspace))
    html = c.get("/admin/queueapp/job/").content.decode()
    for param in (
        "state__exact=queued",
        "queue=q1",
        "function=alpha.fn",
        f"owner__id__exact={member.user.pk}",
        "created_at__gte=",
    ):
        assert param in html, param

    def rows(query: str) -> str:
        html = c.get(f"/admin/queueapp/job/?{query}").content.decode()
        return html.split('id="result_list"')[1].split("</table>")[0] if 'id="result_list"' in html else ""

    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    since = quote(today.isoformat(sep=" "))
    assert "alpha.fn" in rows(f"created_at__gte={since}&function=alpha.fn")
    future = quote((today + timedelta(days=2)).isoformat(sep=" "))
    assert rows(f"created_at__gte={future}") == ""  # no rows: the result table is not even drawn
    assert "alpha.fn" in rows(f"owner__id__exact={member.user.pk}") and "beta.fn" not in rows(
        f"owner__id__exact={member.user.pk}"
    )


def test_schedule_actions__through_the_services_with_the_api_rules(admin, member):
    s = schedule(admin.workspace, member.user, name="member's schedule")
    bystander = staff(admin.workspace, role="member")
    bystander.user_permissions.set(Permission.objects.filter(codename__in=["view_schedule", "change_schedule"]))
    changelist = "/admin/schedules/schedule/"
    resp = client_for(bystander).post(changelist, {"action": "pause", "_selected_action": [str(s.pk)], "post": "yes"})
    assert resp.status_code == 403, "a plain member administers no workspace"
    assert Schedule.objects.get(pk=s.pk).state == "active"
    ops = staff(admin.workspace, role=Membership.Role.ADMIN)
    ops.user_permissions.set(Permission.objects.filter(codename__in=["view_schedule", "change_schedule"]))
    c = client_for(ops)
    c.post(changelist, {"action": "pause", "_selected_action": [str(s.pk)], "post": "yes"})
    s.refresh_from_db()
    assert s.state == "paused" and s.state_reason == f"Paused by {ops.label}."
    c.post(changelist, {"action": "fire_now", "_selected_action": [str(s.pk)], "post": "yes"})
    assert s.fires.filter(manual=True).count() == 1
    c.post(changelist, {"action": "archive", "_selected_action": [str(s.pk)], "post": "yes"})
    s.refresh_from_db()
    assert s.state == "archived" and s.fires.get(manual=True).status == "skipped"  # its pending fire was dropped


def test_schedule_page__quarantine_reason_and_only_the_recent_fires(admin):
    s = schedule(admin.workspace, admin.user, name="q", state="quarantined", reason="Args: room is gone")
    now = clock.now()
    for i in range(25):
        fire(s, now, created_ago_s=3600 * (i + 1), status="succeeded", lag_ms=1000 + i)
    html = client_for(staff(superuser=True)).get(f"/admin/schedules/schedule/{s.pk}/change/").content.decode()
    assert "Args: room is gone" in html
    import re

    lags = {int(n) for n in re.findall(r">\s*(10\d\d)\s*<", html)}  # lag_ms cells, not digits inside ids
    assert lags == set(range(1000, 1020))  # the 20 latest fires
