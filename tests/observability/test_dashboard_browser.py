"""A real browser (Debian's headless chromium) opens the ops dashboard from the admin index, then
the token form and the notes list, which show the staff user's own workspace only; the screenshots
are saved under test-artifacts/ (git-ignored) for a person to look at.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`make system-deps`); without them the test fails
with that instruction (the `browser` fixture), it is never skipped.
"""

from __future__ import annotations

import random

import pytest
from django.contrib.auth.models import Permission

from hq import clock, messaging
from hq import services as hq_services
from hq.models import Membership, User
from tests import factories
from tests.observability.helpers import fire, hitl, job, schedule
from tests.queueapp.test_admin_browser import ARTIFACTS, WAIT_S, browser  # noqa: F401 - the shared fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _a_busy_day(caller) -> None:
    """A day of jobs with a failure spike an hour ago, some waiting work, HITL requests and fires."""
    rng = random.Random(7)
    now = clock.now()
    ws = caller.workspace
    for i in range(400):
        ago_s = rng.uniform(0, 86400) if i < 300 else rng.uniform(0, 3600)
        spike = 3000 < ago_s < 4200
        state = "failed" if (spike and rng.random() < 0.6) or rng.random() < 0.04 else "succeeded"
        job(
            ws,
            now,
            state=state,
            queue=rng.choice(["default", "default", "mail", "reports"]),
            function=rng.choice(["hq.echo", "mail.send", "reports.build"]),
            finished_ago_s=ago_s,
            wait_ms=rng.lognormvariate(4, 1.2),
            run_ms=rng.lognormvariate(6, 1),
        )
    for _ in range(12):
        job(ws, now, state="queued", queue=rng.choice(["default", "mail"]), due_ago_s=rng.uniform(0, 90))
    for i in range(3):
        job(ws, now, state="running", queue="reports", function="reports.build", started_ago_s=5 + i)
    for ago_s in (300, 5000, 20000, 90000):
        hitl(ws, now, created_ago_s=ago_s, owner=caller.user)
    s = schedule(ws, caller.user, name="hourly digest", failures=2)
    schedule(ws, caller.user, name="broken", state="quarantined", reason="Trigger: unknown time zone Mars/Base")
    for hour in range(24):
        fire(s, now, created_ago_s=hour * 3600 + 30, status="succeeded", lag_ms=int(rng.lognormvariate(5, 0.6)))


def _autocomplete_choices(driver) -> list[str] | bool:
    """The labels the open autocomplete offers, once its answer has come (False until then)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        found = driver.find_elements(By.CSS_SELECTOR, ".select2-results__option[role=option]")
        labels = [o.text for o in found if "loading-results" not in (o.get_attribute("class") or "")]
    except StaleElementReferenceException:
        return False
    return labels or False


def test_staff_opens_the_dashboard_from_the_admin_index_and_sees_only_their_workspace(  # noqa: F811
    live_server,
    browser,  # noqa: F811
    member,
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    ops = User.objects.create_user(email="ops@example.com", password="a-long-test-password", is_staff=True)
    hq_services.membership_set(user=ops, workspace=member.workspace, role=Membership.Role.ADMIN)
    _a_busy_day(member)
    for _ in range(3):  # a function that failed every time in the last hour
        job(member.workspace, clock.now(), state="failed", queue="mail", function="billing.charge", finished_ago_s=600)

    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys(ops.email)
    browser.find_element(By.ID, "id_password").send_keys("a-long-test-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The index starts with the console's section: Dashboard, HITL, Jobs, Schedules, Workers.
    dashboard_link = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#content-main #console-dashboard a")))
    sections = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#content-main caption")]
    assert sections[0] == "OPS CONSOLE" and "View site" not in browser.page_source, sections
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-index.png"))
    dashboard_link.click()
    wait.until(ec.presence_of_element_located((By.ID, "ops-charts")))

    charts = browser.find_elements(By.CSS_SELECTOR, "#ops-charts svg.hq-chart")
    assert len(charts) == 7 and all(c.size["height"] > 100 for c in charts)
    assert browser.find_element(By.ID, "tile-hitl").text == "4"
    assert browser.find_element(By.ID, "tile-quarantined").text == "1"
    assert "reports" in browser.find_element(By.ID, "ops-queues").text
    assert not browser.find_elements(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]')  # it updates in place
    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(1400, 1000)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(max(height + 140, 1000), 4000))  # + the window's own frame
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    # A function failing every time stands out.
    failing = browser.find_elements(By.CSS_SELECTOR, "#ops-queues tr.ops-function.ops-failing")
    assert [row.get_attribute("data-function") for row in failing] == ["billing.charge"], [r.text for r in failing]
    assert "ops-all-failing" in (failing[0].get_attribute("class") or "")
    assert failing[0].find_element(By.CSS_SELECTOR, "td").value_of_css_property("background-color") != (
        browser.find_element(By.CSS_SELECTOR, "#ops-queues tr.ops-function:not(.ops-failing) td").value_of_css_property(
            "background-color"
        )
    )
    # A tile leads to the list of what it counts.
    browser.find_element(By.CSS_SELECTOR, "a.ops-tile[href*=hitlrequest]").click()
    rows = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, "#result_list tbody tr")))
    assert len(rows) == 4 and "state__exact=pending" in browser.current_url

    # The same staff user, holding every model permission, on the hq pages: their workspace only.
    ops.user_permissions.set(Permission.objects.all())
    other = factories.caller(admin=True, email="umbra.boss@example.com")
    messaging.note_create(workspace=other.workspace, author=other.user, title="umbra: acquisition plans")
    messaging.note_create(workspace=member.workspace, author=member.user, title="Release checklist")
    second = factories.workspace("second-of-ops")
    hq_services.membership_set(user=ops, workspace=second, role=Membership.Role.ADMIN)
    messaging.note_create(workspace=second, author=ops, title="On-call rota")
    browser.set_window_size(1280, 800)
    browser.get(f"{live_server.url}/admin/hq/personalaccesstoken/add/")
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#id_user + .select2 .select2-selection"))).click()
    offered = sorted(wait.until(_autocomplete_choices))  # the users' labels
    assert offered == sorted([str(ops), str(member.user)]), offered  # not umbra.boss, of the other workspace
    workspaces = browser.find_element(By.ID, "id_workspace").get_attribute("outerHTML")
    assert other.workspace.slug not in workspaces
    browser.save_screenshot(str(ARTIFACTS / "token-add-scoped.png"))
    browser.get(f"{live_server.url}/admin/hq/note/")
    rows = wait.until(ec.presence_of_element_located((By.ID, "result_list"))).text
    assert "Release checklist" in rows and "On-call rota" in rows and "umbra" not in browser.page_source
    workspace_filter = browser.find_element(By.ID, "changelist-filter").text
    assert member.workspace.slug in workspace_filter and "second-of-ops" in workspace_filter
    assert other.workspace.slug not in workspace_filter
    browser.save_screenshot(str(ARTIFACTS / "notes-scoped.png"))

    # Staff who administer no workspace: the dashboard says why it is empty (it answered 500 once).
    idle = User.objects.create_user(email="idle@example.com", password="a-long-test-password", is_staff=True)
    hq_services.membership_set(user=idle, workspace=member.workspace)  # a plain member: not enough
    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/ops/dashboard/")
    browser.find_element(By.ID, "id_username").send_keys(idle.email)
    browser.find_element(By.ID, "id_password").send_keys("a-long-test-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    empty = wait.until(ec.presence_of_element_located((By.ID, "ops-no-workspace"))).text
    assert "you administer no workspace" in empty
    browser.save_screenshot(str(ARTIFACTS / "dashboard-no-workspace.png"))
