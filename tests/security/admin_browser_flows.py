"""A real browser (Debian's headless chromium) on the admin pages issue 13 changed: the login form
once sign-in is paused after failures, and a job and a schedule whose stored JSON is deeper than
the input guard allows. Screenshots go to test-artifacts/ (git-ignored) for a person to look at.

The suite keeps to two browser tests sharing one live server: these flows run inside
`tests/queueapp/test_admin_browser.py`'s console test, each in a session of its own.
"""

from __future__ import annotations

import time

from hq.display import CLIPPED
from hq.models import User
from tests.queueapp.test_admin_browser import ARTIFACTS, WAIT_S
from tests.security import world as world_mod
from tests.security.test_admin_json import store_deep_rows

PASSWORD = "a-long-test-password"


def _sign_in(browser, url: str, email: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(url)
    browser.find_element(By.ID, "id_username").send_keys(email)
    browser.find_element(By.ID, "id_password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def sign_in_is_paused_after_failures_with_a_clear_message(live_server, browser, settings) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    settings.HQ_AUTH_FAILURE_RATE = "3/hour"
    if time.time() % 3600 > 3590:  # stay inside one fixed window
        time.sleep(3600 - time.time() % 3600 + 0.1)
    wait = WebDriverWait(browser, WAIT_S)
    ops = User.objects.create_superuser("locked@example.com", PASSWORD)
    login = f"{live_server.url}/admin/login/?next=/admin/"
    for _ in range(3):
        _sign_in(browser, login, ops.email, "not-the-password")
        note = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.errornote")))
        assert "Please enter the correct" in note.text
    _sign_in(browser, login, ops.email, PASSWORD)
    note = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.errornote")))
    assert "Too many failed sign-ins" in note.text and "try again in" in note.text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-login-throttled.png"))
    browser.get(f"{live_server.url}/admin/")
    assert "/admin/login/" in browser.current_url  # the right password did not sign in


def deep_stored_json_renders_clipped(live_server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    w = world_mod.build()
    store_deep_rows(w)
    ops = User.objects.create_superuser("deep@example.com", PASSWORD)
    _sign_in(
        browser, f"{live_server.url}/admin/login/?next=/admin/queueapp/job/{w.job.pk}/change/", ops.email, PASSWORD
    )
    # The arguments are the third row of the summary at the top of the job's page.
    args = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#job-summary pre.hq-json")))
    assert CLIPPED in args.text and '"to": "ops"' in args.text
    note = browser.find_element(By.CSS_SELECTOR, "#job-summary p.help").text
    assert note.startswith("Nested 901 levels deep")
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.ID, "job-summary"))
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-job-deep-args.png"))

    # A schedule's page edits its args: the input holds them clipped, with the note as its help.
    browser.get(f"{live_server.url}/admin/schedules/schedule/{w.schedule.pk}/change/")
    args = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".field-action_args textarea")))
    value = args.get_property("value")
    assert CLIPPED in value and '"prompt"' in value
    help_text = browser.find_element(By.CSS_SELECTOR, ".field-action_args .help").text
    assert help_text.startswith("Nested 901 levels deep")
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.CSS_SELECTOR, ".field-action_args"))
    browser.save_screenshot(str(ARTIFACTS / "admin-schedule-deep-args.png"))


def a_schedule_page_shows_its_args_indented(live_server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    w = world_mod.build()
    ops = User.objects.create_superuser("args@example.com", PASSWORD)
    _sign_in(
        browser,
        f"{live_server.url}/admin/login/?next=/admin/schedules/schedule/{w.task.pk}/change/",
        ops.email,
        PASSWORD,
    )
    args = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".field-action_args textarea")))
    value = args.get_property("value")
    assert '\n  "room_id"' in value and CLIPPED not in value, "indented, nothing left out"
    assert "Nested" not in browser.find_element(By.CSS_SELECTOR, ".field-action_args .help").text
    trigger = browser.find_element(By.CSS_SELECTOR, ".field-trigger textarea").get_property("value")
    assert '"expr": "0 9 * * *"' in trigger
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.CSS_SELECTOR, ".field-trigger"))
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-schedule.png"))
