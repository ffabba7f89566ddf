"""The live dashboard over HTTP: its fragment endpoint (staff only, scoped like the page), the links of
its tiles and rows to the filtered admin lists, the failing-function highlight, and queue depth over
time from the samples the workers' `depth_sampler` side task writes each minute (a real worker)."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.test import Client

from hq import charts, clock
from queueapp.models import Job, QueueDepthSample
from queueapp.observability import Scope, depth, queue_panels
from tests import factories
from tests.conftest import shift_clock_before_minute, wait_for
from tests.observability.helpers import hitl, job, schedule
from tests.observability.test_admin_ops import client_for
from tests.observability.test_admin_ops import staff as staff_user

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/ops/dashboard/"
LIVE = "/admin/ops/dashboard/live/"


def staff(ws=None, *, superuser: bool = False) -> Client:
    """A signed-in staff client: an admin of `ws`, a superuser, or staff of no workspace."""
    return client_for(staff_user(ws, superuser=superuser))


def href(html: str, element_id: str) -> str:
    """The href of the element with this id, unescaped."""
    match = re.search(rf'id="{element_id}" href="([^"]*)"', html)
    assert match, element_id
    return unescape(match.group(1))


def result_ids(page) -> set[str]:
    """The job ids a jobs changelist lists."""
    assert page.status_code == 200
    return set(re.findall(r"/admin/queueapp/job/([0-9a-f-]{36})/change/", page.content.decode()))


@pytest.fixture
def two_workspaces(admin):
    now = clock.now()
    mine = {
        "queued": job(admin.workspace, now, state="queued", queue="mail", due_ago_s=30),
        "due": job(admin.workspace, now, state="deferred", queue="mail", due_ago_s=3),
        "later": job(admin.workspace, now, state="deferred", queue="mail", due_ago_s=-600),
        "running": job(admin.workspace, now, state="running", started_ago_s=4),
        "ok": job(admin.workspace, now, state="succeeded", function="reports.build", finished_ago_s=60, run_ms=5),
        "old_failure": job(admin.workspace, now, state="failed", finished_ago_s=7200, run_ms=5),
    }
    for _ in range(3):
        job(admin.workspace, now, state="failed", function="mail.send", finished_ago_s=120, run_ms=5)
    mine["hitl"] = hitl(admin.workspace, now, created_ago_s=60, owner=admin.user)
    other = factories.caller()
    job(other.workspace, now, state="queued", queue="secret-queue", due_ago_s=5)
    job(other.workspace, now, state="failed", function="their.secret", finished_ago_s=30, run_ms=5)
    return {"mine": mine, "other": other}


def test_live_fragment__the_tiles_charts_and_tables_alone_for_staff_of_the_workspace(admin, two_workspaces):
    resp = staff(admin.workspace).get(LIVE)
    assert resp.status_code == 200 and resp["X-HQ-Fragment"] == "ops-dashboard"
    assert "no-cache" in resp["Cache-Control"]
    html = resp.content.decode()
    assert "<html" not in html and "<body" not in html and 'id="ops-scope"' not in html  # the live part only
    assert re.search(r'id="tile-waiting">2<', html)  # queued + deferred and due; not the one due later
    assert re.search(r'id="tile-running">1<', html) and re.search(r'id="tile-hitl">1<', html)
    assert html.count('class="hq-chart"') >= 5 and 'id="ops-queues"' in html
    assert "secret-queue" not in html and "their.secret" not in html  # another workspace's


def test_live_fragment__refused_to_anyone_but_staff_and_scoped_to_their_workspaces(admin, member, two_workspaces):
    other = two_workspaces["other"]
    plain = Client()
    plain.force_login(member.user)
    for c in (Client(), plain):
        resp = c.get(LIVE)
        assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/")
        assert "X-HQ-Fragment" not in resp
    # Naming a workspace they do not administer shows their own, never the other one.
    html = staff(admin.workspace).get(f"{LIVE}?workspace={other.workspace.pk}").content.decode()
    assert "secret-queue" not in html and re.search(r'id="tile-waiting">2<', html)
    # Staff who administer no workspace get the explanation, not numbers.
    idle = staff()
    html = idle.get(LIVE).content.decode()
    assert 'id="ops-no-workspace"' in html and "tile-waiting" not in html
    # A superuser sees every workspace and may narrow to one, as on the page.
    root = staff(superuser=True)
    assert "secret-queue" in root.get(LIVE).content.decode()
    narrowed = root.get(f"{LIVE}?workspace={other.workspace.pk}").content.decode()
    assert "secret-queue" in narrowed and re.search(r'id="tile-waiting">1<', narrowed)


def test_page__renders_in_full_without_script_and_points_its_script_at_the_fragment(admin, two_workspaces):
    html = staff(admin.workspace).get(DASHBOARD).content.decode()
    assert re.search(r'id="tile-waiting">2<', html) and html.count('class="hq-chart"') >= 5
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in html
    assert html.count('http-equiv="refresh"') == 1  # only that one: a browser running scripts never reloads
    assert re.search(r'<script src="/static/queueapp/ops-dashboard\.js" defer>', html)
    assert f'data-url="{LIVE}"' in html and 'data-interval-s="5"' in html
    root = staff(superuser=True)
    ws = admin.workspace.pk
    assert f'data-url="{LIVE}?workspace={ws}"' in root.get(f"{DASHBOARD}?workspace={ws}").content.decode()


def test_tiles_and_rows__link_to_the_jobs_they_count_keeping_the_chosen_workspace(admin, two_workspaces):
    mine = two_workspaces["mine"]
    ops = staff(admin.workspace)
    html = ops.get(LIVE).content.decode()
    assert result_ids(ops.get(href(html, "tile-waiting-link"))) == {str(mine["queued"].pk), str(mine["due"].pk)}
    assert result_ids(ops.get(href(html, "tile-running-link"))) == {str(mine["running"].pk)}
    failed_1h = result_ids(ops.get(href(html, "tile-failing-functions-link")))
    assert len(failed_1h) == 3 and str(mine["old_failure"].pk) not in failed_1h  # mail.send's, this hour
    hitl_list = ops.get(href(html, "tile-hitl-link"))
    assert hitl_list.status_code == 200 and "state__exact=pending" in href(html, "tile-hitl-link")
    assert f"/admin/queueapp/hitlrequest/{mine['hitl'].pk}/change/" in hitl_list.content.decode()

    # A function's row: its name lists its jobs, its waiting count the waiting ones of it.
    row = re.search(r'<tr class="ops-queue[^"]*" data-queue="mail" data-function=""[^>]*>.*?</tr>', html, re.S)
    assert row
    waiting_link = unescape(re.findall(r'href="([^"]*)"', row.group(0))[2])
    assert result_ids(ops.get(waiting_link)) == {str(mine["queued"].pk), str(mine["due"].pk)}
    queue_link = unescape(re.findall(r'href="([^"]*)"', row.group(0))[0])
    assert result_ids(ops.get(queue_link)) == {str(mine[k].pk) for k in ("queued", "due", "later")}

    # A superuser who chose a workspace: the links keep it.
    root = staff(superuser=True)
    other = two_workspaces["other"]
    narrowed = root.get(f"{LIVE}?workspace={other.workspace.pk}").content.decode()
    link = href(narrowed, "tile-waiting-link")
    assert f"workspace__id__exact={other.workspace.pk}" in link
    theirs = result_ids(root.get(link))
    assert len(theirs) == 1 and theirs == {str(Job.objects.get(queue="secret-queue").pk)}


def test_schedule_tiles__link_to_the_failing_and_quarantined_schedules(admin):
    schedule(admin.workspace, admin.user, name="fine")
    schedule(admin.workspace, admin.user, name="flaky", failures=2)
    schedule(admin.workspace, admin.user, name="parked", state="quarantined", reason="owner left")
    schedule(admin.workspace, admin.user, name="gone", state="archived", failures=3)
    root = staff(superuser=True)
    html = root.get(LIVE).content.decode()
    assert re.search(r'id="tile-quarantined">1<', html)

    def names(url: str) -> set[str]:
        page = root.get(url).content.decode()
        return set(re.findall(r'/admin/schedules/schedule/[0-9a-f-]{36}/change/[^"]*">([^<]+)</a>', page))

    assert re.search(r'id="tile-failing">1<', html) is not None
    assert names(href(html, "tile-failing-link")) == {"flaky"}  # not the archived one, nor the fine one
    assert names(href(html, "tile-quarantined-link")) == {"parked"}
    assert "fine" in names(href(html, "tile-active-link"))
    schedules_table = html.split('id="ops-schedules"')[1]
    assert re.search(r'<tr class="ops-failing ops-all-failing"><td><a [^>]*>parked</a>', schedules_table)
    assert re.search(r'<tr class="ops-failing"><td><a [^>]*>flaky</a>', schedules_table)


@pytest.mark.parametrize(
    ("failed", "succeeded", "expected"),
    [(4, 0, "ops-failing ops-all-failing"), (2, 2, "ops-failing"), (2, 3, ""), (0, 0, None)],
)
def test_failing_functions__highlighted_at_half_their_attempts_and_more_strongly_at_all(
    admin, failed, succeeded, expected
):
    now = clock.now()
    for _ in range(failed):
        job(admin.workspace, now, state="failed", function="flaky.fn", finished_ago_s=300, run_ms=5)
    for _ in range(succeeded):
        job(admin.workspace, now, state="succeeded", function="flaky.fn", finished_ago_s=300, run_ms=5)
    job(admin.workspace, now, state="failed", function="flaky.fn", finished_ago_s=5000, run_ms=5)  # not this hour
    job(admin.workspace, now, state="succeeded", function="steady.fn", finished_ago_s=60, run_ms=5)
    html = staff(admin.workspace).get(LIVE).content.decode()
    assert "≥ 50 %" in html and "Red row: 50 % or more" in html  # the rule, written on the page
    row = re.search(
        r'<tr class="ops-function([^"]*)" data-queue="default" data-function="flaky.fn">(.*?)</tr>', html, re.S
    )
    steady = re.search(r'<tr class="ops-function([^"]*)" data-queue="default" data-function="steady.fn">', html)
    assert steady and steady.group(1) == ""
    if expected is None:
        assert row and row.group(1) == "" and "—" in row.group(2)  # nothing ran this hour: no rate
        assert re.search(r'id="tile-failing-functions">0<', html)
        return
    assert row and row.group(1).strip() == expected
    assert ("100 %</span>" in row.group(2)) is (failed and not succeeded)
    assert re.search(rf'id="tile-failing-functions">{1 if expected else 0}<', html)


# --- depth over time ---------------------------------------------------------------------------------------


def test_depth_sample__one_row_per_workspace_queue_and_state_with_jobs_once_a_minute(admin):
    now = clock.now().replace(second=10)  # + 1 s stays in the same minute
    other = factories.caller()
    for _ in range(3):
        job(admin.workspace, now, state="queued", queue="mail", due_ago_s=10)
    job(admin.workspace, now, state="deferred", queue="mail", due_ago_s=-900)
    job(admin.workspace, now, state="running", queue="mail", started_ago_s=3)
    hitl(admin.workspace, now, created_ago_s=30)
    job(other.workspace, now, state="queued", queue="mail", due_ago_s=1)
    job(admin.workspace, now, state="succeeded", queue="mail", finished_ago_s=5, run_ms=1)  # not live

    assert depth.sample_depth(now) == 5
    rows = {
        (r.workspace_id, r.queue, r.state): r.jobs
        for r in QueueDepthSample.objects.filter(at=now.replace(second=0, microsecond=0))
    }
    assert rows == {
        (admin.workspace.pk, "mail", "waiting"): 3,
        (admin.workspace.pk, "mail", "deferred"): 1,
        (admin.workspace.pk, "mail", "running"): 1,
        (admin.workspace.pk, "default", "awaiting_approval"): 1,
        (other.workspace.pk, "mail", "waiting"): 1,
    }
    job(admin.workspace, now, state="queued", queue="mail", due_ago_s=1)
    assert depth.sample_depth(now + timedelta(seconds=1)) == 0  # this minute is written already
    assert depth.sample_depth(now + timedelta(seconds=60)) == 5
    later = QueueDepthSample.objects.get(
        at=(now + timedelta(seconds=60)).replace(second=0, microsecond=0),
        workspace=admin.workspace,
        queue="mail",
        state="waiting",
    )
    assert later.jobs == 4


def test_depth_panels__stacked_bars_per_minute_for_each_queue_of_the_scope(admin):
    now = clock.now()
    other = factories.caller()
    minute = now.replace(second=0, microsecond=0)
    for ago, (waiting, running) in {30: (5, 1), 10: (2, 3), 0: (7, 0)}.items():
        at = minute - timedelta(minutes=ago)
        QueueDepthSample.objects.create(at=at, workspace=admin.workspace, queue="mail", state="waiting", jobs=waiting)
        if running:
            QueueDepthSample.objects.create(
                at=at, workspace=admin.workspace, queue="mail", state="running", jobs=running
            )
        QueueDepthSample.objects.create(at=at, workspace=other.workspace, queue="mail", state="waiting", jobs=100)
    QueueDepthSample.objects.create(
        at=minute - timedelta(minutes=61), workspace=admin.workspace, queue="mail", state="waiting", jobs=50
    )  # before the hour shown

    series = depth.depth_series(Scope.of([admin.workspace.pk], now), start=minute - timedelta(minutes=59), n=60)
    assert list(series) == ["mail"]
    assert series["mail"]["waiting"][59 - 30] == 5 and series["mail"]["running"][59 - 10] == 3
    assert series["mail"]["waiting"][59] == 7 and sum(series["mail"]["waiting"]) == 14

    svg = next(p.svg for p in queue_panels(Scope.of([admin.workspace.pk], now)) if p.title.startswith("Queue depth"))
    label = lambda ago: (minute - timedelta(minutes=ago)).strftime("%H:%M")  # noqa: E731
    assert f"<title>{label(10)} waiting: 2</title>" in svg and f"<title>{label(10)} running: 3</title>" in svg
    assert f"<title>{label(0)} waiting: 7</title>" in svg and ": 100</title>" not in svg  # not the other's
    assert svg.count("<rect") - svg.count('width="10" height="10"') == 5  # 5 bars, besides the legend's keys
    both = depth.depth_series(Scope.of(None, now), start=minute - timedelta(minutes=59), n=60)
    assert both["mail"]["waiting"][59] == 107


def test_depth_samples__pruned_by_retention_after_two_days(admin):
    from queueapp import retention

    now = clock.now()
    for days in (0, 1, 3):
        QueueDepthSample.objects.create(
            at=now - timedelta(days=days), workspace=admin.workspace, queue="mail", state="waiting", jobs=1
        )
    report = retention.prune()
    assert report.counts["depth_samples"] == 1
    assert QueueDepthSample.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_worker_side_task__samples_at_start_and_at_each_minute(admin, procs):
    now = clock.now()
    job(admin.workspace, now, state="queued", queue="mail", due_ago_s=1)
    shift_clock_before_minute(procs, 10)
    try:
        procs.worker("--no-jobs", "--only", "depth_sampler")
        minutes = lambda: sorted(set(QueueDepthSample.objects.values_list("at", flat=True)))  # noqa: E731
        first = wait_for(minutes, timeout=20, what="the first sample")
        second = wait_for(lambda: len(minutes()) >= 2 and minutes(), timeout=45, what="the next minute's sample")
    finally:
        clock.set_offset(0)
    assert second[1] - second[0] == timedelta(minutes=1) and second[0] == first[0]
    assert all(s.second == 0 and s.microsecond == 0 for s in second)
    rows = list(QueueDepthSample.objects.values_list("workspace_id", "queue", "state", "jobs"))
    assert rows == [(admin.workspace.pk, "mail", "waiting", 1)] * 2


# --- charts ------------------------------------------------------------------------------------------------


def test_line_chart__consecutive_points_joined_gaps_kept_lone_points_dotted():
    svg = charts.line_chart(
        title="t", labels=[f"{i:02d}:00" for i in range(6)], series={"p50": [1.0, 2.0, 3.0, None, 5.0, None]}
    )
    lines = re.findall(r'<polyline points="([^"]*)"', svg)
    assert len(lines) == 1 and len(lines[0].split()) == 3  # 00:00-02:00 joined, not across the gap
    assert svg.count('class="lone"') == 1  # 04:00 has no neighbour: a dot, else it would not show
    assert svg.count('fill="transparent"') == 4 and "<title>04:00 p50: 5</title>" in svg  # hover values


def test_charts__text_is_12_units_on_a_400_unit_drawing_shown_at_most_1_25_times_larger():
    """The size it renders at in the dashboard is measured in the browser test."""
    svg = charts.bar_chart(title="t", labels=["a"], series={"waiting": [1], "awaiting_approval": [2]})
    assert "font:12px sans-serif" in svg and 'viewBox="0 0 400 ' in svg and "max-width:500px" in svg
