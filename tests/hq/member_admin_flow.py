"""A real browser (Debian's headless chromium) deactivates a user from the admin's user list; their
schedules then show as quarantined, with the reason, in the schedules list.

The suite keeps to two browser tests sharing one live server (each chromium session and live server
takes seconds to start), so this flow runs as the second part of
`tests/queueapp/test_admin_browser.py`'s console test rather than as a test of its own.

Screenshots of the confirmation page and the schedules list are saved under test-artifacts/
(git-ignored). Needs /usr/bin/chromium and /usr/bin/chromedriver (`make system-deps`); without them
the test fails with that instruction (the `browser` fixture), it is never skipped.
"""

from __future__ import annotations

from hq import messaging
from hq.models import User
from schedules import services
from schedules.models import Schedule

REASON = "Owner was deactivated."


def ops_deactivates_a_user_and_sees_their_schedules_quarantined(live_server, browser, member) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.queueapp.test_admin_browser import ARTIFACTS, WAIT_S

    wait = WebDriverWait(browser, WAIT_S)
    browser.delete_all_cookies()  # a new session: the superuser, who alone changes users
    User.objects.create_superuser("root@example.com", "a-long-test-password")
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="general")
    services.schedule_create(
        workspace=member.workspace,
        owner=member.user,
        name="Standup reminder",
        trigger={"kind": "cron", "expr": "0 9 * * MON-FRI", "tz": "Europe/Amsterdam"},
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "Standup!"}},
    )
    services.schedule_create(
        workspace=member.workspace,
        owner=member.user,
        name="Channel digest",
        trigger={"kind": "cron", "expr": "0 8 * * MON", "tz": "Europe/Stockholm"},
        action="run_agent",
        args={"prompt": "Summarise the channel.", "deliver_to": {"kind": "slack_channel", "channel_id": "C0CHAN"}},
    )

    browser.get(f"{live_server.url}/admin/login/?next=/admin/hq/user/")
    browser.find_element(By.ID, "id_username").send_keys("root@example.com")
    browser.find_element(By.ID, "id_password").send_keys("a-long-test-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))

    browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{member.user.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("deactivate_selected")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    table = wait.until(ec.presence_of_element_located((By.ID, "deactivate-users"))).text
    assert member.user.email in table and member.workspace.slug in table
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "user-deactivate-confirmation.png"))

    browser.find_element(By.ID, "confirm-deactivate").click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert message.text.startswith("Deactivated 1 user(s)")
    assert not User.objects.get(pk=member.user.pk).is_active

    browser.get(f"{live_server.url}/admin/schedules/schedule/?state__exact=quarantined")
    rows = wait.until(ec.presence_of_element_located((By.ID, "result_list"))).text
    assert "Standup reminder" in rows and "Channel digest" in rows and rows.count(REASON) == 2
    browser.save_screenshot(str(ARTIFACTS / "schedules-owner-deactivated.png"))
    assert set(Schedule.objects.values_list("state", "state_reason")) == {("quarantined", REASON)}
