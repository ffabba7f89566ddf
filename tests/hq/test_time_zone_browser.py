"""A real browser sets "My time zone" (a bad name first: a form error, nothing saved), then sees a
job's times in UTC and in that zone; screenshots under test-artifacts/."""

from __future__ import annotations

import pytest

from hq import clock
from hq import services as hq_services
from hq.models import Membership, User
from tests.observability.helpers import job
from tests.queueapp.test_admin_browser import ARTIFACTS, WAIT_S, browser  # noqa: F401 - the shared fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_sets_their_time_zone_and_sees_times_in_it(live_server, browser, member):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    ops = User.objects.create_user(email="ops@example.com", password="a-long-test-password", is_staff=True)
    hq_services.membership_set(user=ops, workspace=member.workspace, role=Membership.Role.ADMIN)
    row = job(member.workspace, clock.now(), state="succeeded", finished_ago_s=60, run_ms=800, wait_ms=20)
    ARTIFACTS.mkdir(exist_ok=True)

    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys(ops.email)
    browser.find_element(By.ID, "id_password").send_keys("a-long-test-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(ec.element_to_be_clickable((By.ID, "my-time-zone"))).click()
    field = wait.until(ec.presence_of_element_located((By.ID, "id_time_zone")))
    field.send_keys("Mars/Olympus_Mons")
    browser.find_element(By.ID, "save-time-zone").click()
    error = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#time-zone-form .errorlist")))
    assert "is not an IANA time zone" in error.text
    browser.save_screenshot(str(ARTIFACTS / "time-zone-error.png"))
    ops.refresh_from_db()
    assert ops.time_zone == ""

    field = browser.find_element(By.ID, "id_time_zone")
    field.clear()
    field.send_keys("Asia/Kolkata")
    browser.find_element(By.ID, "save-time-zone").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert "Asia/Kolkata" in browser.find_element(By.ID, "hq-now").text
    assert "(Asia/Kolkata)" in (browser.find_element(By.ID, "my-time-zone").get_attribute("textContent") or "")
    browser.save_screenshot(str(ARTIFACTS / "time-zone-saved.png"))
    ops.refresh_from_db()
    assert ops.time_zone == "Asia/Kolkata"

    browser.get(f"{live_server.url}/admin/queueapp/job/{row.pk}/change/")
    wait.until(ec.presence_of_element_located((By.ID, "job-summary")))
    created = browser.find_element(
        By.XPATH, "//dl[@id='job-summary']/dt[text()='Created']/following-sibling::dd[1]"
    ).text
    assert " UTC (" in created and created.endswith(" Asia/Kolkata)"), created
    browser.save_screenshot(str(ARTIFACTS / "job-page-viewer-zone.png"))
