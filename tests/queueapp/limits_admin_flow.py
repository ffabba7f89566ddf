"""A real browser on the limits admin: a bad limit (a concurrency of 0, a rate of "10/fortnight")
is a form error under its field and saves nothing; a good one is listed; the jobs list shows each
job's concurrency key and whether a limit holds it.

Runs inside `tests/queueapp/test_admin_browser.py`'s console test (DECISIONS allows two browser
tests sharing one live server). Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

from hq.models import User
from queueapp import services
from queueapp.models import KeyLimit
from tests import factories


def ops_sets_a_key_limit_and_a_bad_one_is_refused(live_server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.queueapp.test_admin_browser import ARTIFACTS, WAIT_S
    from tests.security.admin_browser_flows import PASSWORD, _sign_in

    wait = WebDriverWait(browser, WAIT_S)
    ops = User.objects.create_superuser("limits.ops@example.com", PASSWORD)
    _sign_in(browser, f"{live_server.url}/admin/login/?next=/admin/queueapp/keylimit/add/", ops.email, PASSWORD)

    def fill(concurrency: str, rate: str) -> None:
        field = wait.until(ec.presence_of_element_located((By.ID, "id_pattern")))
        field.clear()
        field.send_keys("customer:*")
        for name, value in (("id_concurrency", concurrency), ("id_rate", rate)):
            browser.find_element(By.ID, name).clear()
            browser.find_element(By.ID, name).send_keys(value)
        browser.find_element(By.NAME, "_save").click()

    fill("0", "10/fortnight")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".errornote")))
    concurrency_errors = browser.find_element(By.CSS_SELECTOR, ".field-concurrency").text
    rate_errors = browser.find_element(By.CSS_SELECTOR, ".field-rate").text
    assert "at least 1" in concurrency_errors.lower(), concurrency_errors
    assert "N/period" in rate_errors, rate_errors
    assert not KeyLimit.objects.exists(), "a refused limit saves nothing"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "key-limit-refused.png"))

    fill("2", "60/min")
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert "customer:*" in message.text
    limit = KeyLimit.objects.get()
    assert (limit.pattern, limit.concurrency, limit.rate, limit.rate_interval_s) == ("customer:*", 2, "60/min", 1.0)
    assert limit.like_pattern == "customer:%"
    assert "customer:*" in browser.find_element(By.ID, "result_list").text
    browser.save_screenshot(str(ARTIFACTS / "key-limits.png"))

    owner = factories.caller()
    services.job_submit(
        workspace=owner.workspace,
        owner=owner.user,
        submission=services.Submission(function="hq.echo", args={}, concurrency_key="customer:7"),
    )
    browser.get(f"{live_server.url}/admin/queueapp/job/")
    listed = wait.until(ec.presence_of_element_located((By.ID, "result_list"))).text
    assert "customer:7" in listed and "HELD BY A LIMIT" in listed.upper()
    assert "held by a limit" in browser.find_element(By.ID, "changelist-filter").text.lower()
    browser.save_screenshot(str(ARTIFACTS / "jobs-with-keys.png"))
