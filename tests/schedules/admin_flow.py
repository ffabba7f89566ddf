"""A real browser (Debian's headless chromium) on the schedules admin: a bulk action asks first on a
confirmation page and then pauses through the service; a bad cron typed on a schedule's page is a
form error under the trigger, and nothing is saved.

DECISIONS allows two browser tests sharing one live server, so this flow runs inside
`tests/queueapp/test_admin_browser.py`'s console test rather than as a test of its own. Screenshots
of the confirmation page and of the form error are saved under test-artifacts/ (git-ignored).
"""

from __future__ import annotations

from hq import messaging
from hq.models import User
from schedules import services
from schedules.models import Schedule
from tests import factories


def ops_pauses_a_schedule_after_confirming_and_a_bad_cron_is_refused(live_server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.queueapp.test_admin_browser import ARTIFACTS, WAIT_S
    from tests.security.admin_browser_flows import PASSWORD, _sign_in

    wait = WebDriverWait(browser, WAIT_S)
    owner = factories.caller()
    room = messaging.room_create(workspace=owner.workspace, creator=owner.user, name="general")
    s = services.schedule_create(
        workspace=owner.workspace,
        owner=owner.user,
        name="Standup reminder",
        trigger={"kind": "cron", "expr": "0 9 * * MON-FRI", "tz": "Europe/Amsterdam"},
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "Standup!"}},
    )
    ops = User.objects.create_superuser("schedules.ops@example.com", PASSWORD)
    _sign_in(browser, f"{live_server.url}/admin/login/?next=/admin/schedules/schedule/", ops.email, PASSWORD)
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))

    browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{s.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("pause")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    rows = wait.until(ec.presence_of_element_located((By.ID, "schedule-rows"))).text
    assert "Standup reminder" in rows and owner.workspace.slug in rows
    assert "stops firing until it is resumed" in browser.find_element(By.ID, "schedule-consequence").text
    assert Schedule.objects.get(pk=s.pk).state == "active", "nothing happens before the confirmation"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "schedule-pause-confirmation.png"))

    browser.find_element(By.ID, "confirm-action").click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert message.text == "Paused 1 schedule(s)."
    assert Schedule.objects.get(pk=s.pk).state_reason == f"Paused by {ops.label}."

    browser.get(f"{live_server.url}/admin/schedules/schedule/{s.pk}/change/")
    trigger = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".field-trigger textarea")))
    trigger.clear()
    trigger.send_keys('{"kind": "cron", "expr": "0 25 * * MON-FRI", "tz": "Europe/Amsterdam"}')
    browser.find_element(By.CSS_SELECTOR, "input[name=_save]").click()
    error = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".field-trigger .errorlist"))).text
    assert error == "expr: cron hour value 25 is out of range 0-23"
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.CSS_SELECTOR, ".field-trigger"))
    browser.save_screenshot(str(ARTIFACTS / "schedule-bad-cron.png"))
    assert Schedule.objects.get(pk=s.pk).trigger == s.trigger
    assert "Trigger does not parse" not in browser.find_element(By.CSS_SELECTOR, ".field-upcoming").text
