"""A real browser (Debian's headless chromium) approves a HITL request in the admin; the job then runs.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`make system-deps`); without them the test fails
with that instruction, it is never skipped. The approval page's screenshot is saved under
test-artifacts/ (git-ignored).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hq import services as hq_services
from hq.models import Membership, User
from queueapp import services
from queueapp.models import HITLRequest, Job
from tests.hq.member_admin_flow import ops_deactivates_a_user_and_sees_their_schedules_quarantined
from tests.plugin.hq_plugin import runs
from tests.queueapp.admin_priority_flow import ops_sees_job_priorities_and_filters_by_band
from tests.schedules.admin_flow import ops_pauses_a_schedule_after_confirming_and_a_bad_cron_is_refused

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_S = 15


@pytest.fixture
def browser():
    """A headless chromium driven by Debian's chromedriver; no download, ever."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"Browser test needs {', '.join(missing)}: run `make system-deps` (scripts/system-deps.sh installs "
            "Debian's chromium and chromium-driver).",
            pytrace=False,
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("Browser test needs selenium: install the dev extras (`make install`).", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def test_staff_approves_in_the_admin_with_a_click_and_the_job_runs(live_server, browser, burst, member, settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    ops = User.objects.create_user(email="ops@example.com", password="a-long-test-password", is_staff=True)
    hq_services.membership_set(user=ops, workspace=member.workspace, role=Membership.Role.ADMIN)
    job, _ = services.job_submit(
        workspace=member.workspace,
        owner=member.user,
        submission=services.Submission(
            function="tests.gated",
            args={"channel": "#ops", "message": "Deploy 1.4.2 to production"},
            approval_reason="Release train, week 48",
        ),
    )
    hitl = HITLRequest.objects.get(job=job)

    browser.get(f"{live_server.url}/admin/login/?next=/admin/queueapp/hitlrequest/")
    browser.find_element(By.ID, "id_username").send_keys(ops.email)
    browser.find_element(By.ID, "id_password").send_keys("a-long-test-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))

    browser.find_element(By.LINK_TEXT, "tests.gated").click()
    wait.until(ec.element_to_be_clickable((By.ID, "hitl-approve"))).click()
    comment = wait.until(ec.presence_of_element_located((By.ID, "id_comment")))
    page = browser.find_element(By.ID, f"hitl-{hitl.pk}").text
    assert "tests.gated" in page and "Release train, week 48" in page and '"channel": "#ops"' in page
    comment.send_keys("Approved for the release window.")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "hitl-approval.png"))

    browser.find_element(By.ID, "confirm-decision").click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert message.text == "Approved: the job is queued."
    hitl.refresh_from_db()
    assert (hitl.state, hitl.decided_by, hitl.decided_via) == ("approved", ops, "admin")
    assert hitl.comment == "Approved for the release window."
    # The request's History page says who approved it and why (hq.admin_actions.log_done).
    browser.get(f"{live_server.url}/admin/queueapp/hitlrequest/{hitl.pk}/history/")
    entries = wait.until(ec.presence_of_element_located((By.ID, "change-history"))).text
    assert "Approved: Approved for the release window." in entries and ops.email in entries, entries
    browser.save_screenshot(str(ARTIFACTS / "hitl-history.png"))

    burst()
    job = Job.objects.get(pk=job.pk)
    assert job.state == "succeeded" and runs(job.pk) == 1
    browser.get(f"{live_server.url}/admin/queueapp/job/{job.pk}/change/")
    timeline = wait.until(ec.presence_of_element_located((By.ID, "events-group"))).text
    assert "approved" in timeline and "succeeded" in timeline
    # The job list's priority column and filter (issue 18), still signed in as ops.
    ops_sees_job_priorities_and_filters_by_band(live_server, browser, member)

    # Second part, same live server and browser: a superuser deactivates the requester.
    ops_deactivates_a_user_and_sees_their_schedules_quarantined(live_server, browser, member)
    # The schedules admin: a bulk action through its confirmation page; a bad cron is a form error.
    ops_pauses_a_schedule_after_confirming_and_a_bad_cron_is_refused(live_server, browser)

    # Issue 13's admin pages: stored JSON deeper than the guard, indented args, paused sign-in (last:
    # it pauses sign-in from this address).
    from tests.security import admin_browser_flows as flows

    flows.deep_stored_json_renders_clipped(live_server, browser)
    flows.a_schedule_page_shows_its_args_indented(live_server, browser)
    # Issue 18's limits admin, before the paused sign-in (which must stay last).
    from tests.queueapp.limits_admin_flow import ops_sets_a_key_limit_and_a_bad_one_is_refused

    ops_sets_a_key_limit_and_a_bad_one_is_refused(live_server, browser)
    # Issue 19's console (before the paused sign-in too): dense lists, times, and every button
    # through its service.
    from tests.queueapp import console_flows

    console_flows.ops_scans_the_job_list_and_the_schedule_list(live_server, browser)
    console_flows.ops_retries_a_job_from_its_page(live_server, browser)
    console_flows.ops_uses_every_button(live_server, browser)
    flows.sign_in_is_paused_after_failures_with_a_clear_message(live_server, browser, settings)
