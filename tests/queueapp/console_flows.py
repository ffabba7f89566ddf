"""A real browser (Debian's headless chromium) on the ops console's lists and buttons: the dense job
list, times with seconds and a zone, and every button changing state through its service.

DECISIONS allows at most two browser tests, sharing one live server, so these flows run inside
`tests/queueapp/test_admin_browser.py`'s console test. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re

from hq import clock, messaging
from hq.models import User
from queueapp.models import Job
from schedules import services as schedule_services
from tests import factories
from tests.observability import helpers

#: An instant as the console shows it: UTC to the second.
EXACT_UTC = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def _wait(browser):
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.queueapp.test_admin_browser import WAIT_S

    return WebDriverWait(browser, WAIT_S)


def _shot(browser, name: str, *, full: bool = True) -> None:
    from tests.queueapp.test_admin_browser import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    if full:
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1400, min(max(height + 140, 900), 4000))
    browser.save_screenshot(str(ARTIFACTS / name))
    browser.set_window_size(1400, 1000)


def _superuser(live_server, browser, email: str, next_url: str) -> User:
    from tests.security.admin_browser_flows import PASSWORD, _sign_in

    ops = User.objects.create_superuser(email, PASSWORD)
    _sign_in(browser, f"{live_server.url}/admin/login/?next={next_url}", ops.email, PASSWORD)
    return ops


def ops_scans_the_job_list_and_the_schedule_list(live_server, browser) -> None:
    """50 dense rows a page with short ids, badges, previews and counts; the schedule list's times
    are relative with the exact instant (seconds, zone) on hover, and crons read in words."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    owner = factories.caller()
    now = clock.now()
    for i in range(55):
        state = ("succeeded", "failed", "queued", "running")[i % 4]
        j = helpers.job(
            owner.workspace,
            now,
            state=state,
            function=("mail.send", "reports.build", "hq.echo")[i % 3],
            finished_ago_s=30 + i * 40 if state in ("succeeded", "failed") else None,
            run_ms=1500 + i * 10 if state in ("succeeded", "failed") else None,
            started_ago_s=5 + i if state == "running" else None,
        )
        Job.objects.filter(pk=j.pk).update(
            args={"to": f"user{i}@example.com", "order": 1000 + i}, correlation_id=f"order-{1000 + i}"
        )
    room = messaging.room_create(workspace=owner.workspace, creator=owner.user, name="general")
    schedule_services.schedule_create(
        workspace=owner.workspace,
        owner=owner.user,
        name="New York standup",
        trigger={"kind": "cron", "expr": "30 9 * * MON-FRI", "tz": "America/New_York"},
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "Standup!"}},
    )
    _superuser(live_server, browser, "lists.ops@example.com", "/admin/queueapp/job/")
    wait = _wait(browser)
    browser.set_window_size(1400, 1000)
    rows = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, "#result_list tbody tr")))
    assert len(rows) == 50
    first = rows[0]
    short = first.find_element(By.CSS_SELECTOR, ".hq-id code")
    assert len(short.text) == 8 and len(short.get_attribute("title")) == 36
    assert first.find_element(By.CSS_SELECTOR, ".hq-badge").value_of_css_property("background-color") != (
        "rgba(0, 0, 0, 0)"
    )
    assert re.fullmatch(EXACT_UTC, first.find_element(By.CSS_SELECTOR, "time.hq-when").get_attribute("title"))
    counts = browser.find_element(By.ID, "job-state-counts").text.replace(" ", "")
    running = Job.objects.filter(state="running").count()
    assert f"running{running}" in counts and running >= 13, counts  # this flow's 13 and earlier flows' jobs
    _shot(browser, "job-list.png", full=False)
    # One row is one line high: nothing wraps (about 30 px at the admin's font size).
    assert max(r.size["height"] for r in rows) < 40, [r.size["height"] for r in rows]

    browser.get(f"{live_server.url}/admin/schedules/schedule/")
    cell = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "td.field-trigger_summary"))).text
    assert "30 9 * * MON-FRI" in cell and "at 09:30 on Monday to Friday, America/New_York" in cell
    hover = browser.find_element(By.CSS_SELECTOR, "td.field-next_fire time").get_attribute("title")
    assert re.fullmatch(EXACT_UTC + r" \(09:30:00 America/New_York\)", hover), hover
    _shot(browser, "schedule-list.png", full=False)


def ops_retries_a_job_from_its_page(live_server, browser) -> None:
    """The job's page starts with its state, function, args and error; Retry asks first, then the
    service queues the job again and the page says so; the timeline reads as key: value."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    from queueapp import services

    owner = factories.caller()
    job, _ = services.job_submit(
        workspace=owner.workspace,
        owner=owner.user,
        submission=services.Submission(
            function="hq.echo", args={"invoice": 4411, "to": "billing@example.com"}, correlation_id="invoice-4411"
        ),
    )
    services.job_cancel(job=job, actor=owner.user)
    _superuser(live_server, browser, "jobs.ops@example.com", f"/admin/queueapp/job/{job.pk}/change/")
    wait = _wait(browser)
    summary = wait.until(ec.presence_of_element_located((By.ID, "job-summary"))).text
    assert summary.startswith("State\ncancelled"), summary
    assert "hq.echo" in summary and '"invoice": 4411' in summary and "invoice-4411" in summary
    assert re.search(r"Created\n" + EXACT_UTC, summary), summary
    _shot(browser, "job-page.png")

    browser.find_element(By.ID, "job-retry").click()
    consequence = wait.until(ec.presence_of_element_located((By.ID, "job-consequence"))).text
    assert "fresh set of tries" in consequence
    assert Job.objects.get(pk=job.pk).state == "cancelled", "nothing before the confirmation"
    _shot(browser, "job-retry-confirmation.png", full=False)
    browser.find_element(By.ID, "confirm-retry").click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert message.text == "Retried: the job is queued again with a fresh set of tries."
    assert Job.objects.get(pk=job.pk).state == "queued"
    summary = browser.find_element(By.ID, "job-summary").text
    assert summary.startswith("State\nqueued") and browser.find_elements(By.ID, "job-cancel")
    timeline = browser.find_element(By.ID, "events-group").text
    assert "retried" in timeline or "retry" in timeline, timeline


def ops_uses_every_button(live_server, browser) -> None:
    """HITL approve from a row of the list, a schedule's Archive… button, a queue paused and resumed,
    and a running job cancelled from the workers page: each asks first, then its service runs and
    the page says what happened."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    from queueapp import services
    from queueapp.models import HITLRequest, QueuePause, Worker
    from schedules.models import Schedule

    owner = factories.caller()
    job, _ = services.job_submit(
        workspace=owner.workspace,
        owner=owner.user,
        submission=services.Submission(
            function="tests.gated",
            args={"channel": "#ops", "message": "Rotate the API keys"},
            approval_reason="Quarterly key rotation",
        ),
    )
    hitl = HITLRequest.objects.get(job=job)
    room = messaging.room_create(workspace=owner.workspace, creator=owner.user, name="ops")
    schedule = schedule_services.schedule_create(
        workspace=owner.workspace,
        owner=owner.user,
        name="Nightly report",
        trigger={"kind": "cron", "expr": "0 2 * * *", "tz": "Europe/Amsterdam"},
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "Report"}},
    )
    worker = Worker.objects.create(id="ops-host:4242:abc", hostname="ops-host", pid=4242, queues=["default"])
    running = helpers.job(owner.workspace, clock.now(), state="running", function="reports.build", started_ago_s=42)
    Job.objects.filter(pk=running.pk).update(worker_id=worker.id)

    _superuser(live_server, browser, "buttons.ops@example.com", "/admin/queueapp/hitlrequest/")
    wait = _wait(browser)
    browser.set_window_size(1400, 1000)
    row = wait.until(ec.presence_of_element_located((By.ID, f"approve-{hitl.pk}")))
    assert "Quarterly key rotation" in browser.find_element(By.ID, "result_list").text
    _shot(browser, "hitl-list.png", full=False)
    row.click()
    wait.until(ec.presence_of_element_located((By.ID, "id_comment"))).send_keys("Go ahead.")
    browser.find_element(By.ID, "confirm-decision").click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert message.text == "Approved: the job is queued."
    assert browser.current_url.endswith("/admin/queueapp/hitlrequest/"), "back to the list"
    assert HITLRequest.objects.get(pk=hitl.pk).state == "approved"

    browser.get(f"{live_server.url}/admin/schedules/schedule/{schedule.pk}/change/")
    wait.until(ec.element_to_be_clickable((By.ID, "schedule-archive")))
    shown = browser.find_element(By.CSS_SELECTOR, ".field-next_fire_exact .readonly").text
    assert re.fullmatch(EXACT_UTC + r" \(02:00:00 Europe/Amsterdam\)", shown), shown
    _shot(browser, "schedule-page.png")
    browser.find_element(By.ID, "schedule-archive").click()
    wait.until(ec.element_to_be_clickable((By.ID, "confirm-archive"))).click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert message.text == "Archived: Nightly report."
    assert Schedule.objects.get(pk=schedule.pk).state == "archived"
    assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, ".object-tools a[id^=schedule-]")] == ["ERASE…"]
    assert not browser.find_elements(By.CSS_SELECTOR, "a.deletelink"), "no hard delete"

    browser.get(f"{live_server.url}/admin/queueapp/queuepause/")
    Select(wait.until(ec.presence_of_element_located((By.ID, "id_workspace")))).select_by_visible_text(
        owner.workspace.slug
    )
    browser.find_element(By.ID, "pause-submit").click()
    wait.until(ec.element_to_be_clickable((By.ID, "confirm-pause"))).click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert message.text == f"Paused queue default for workspace {owner.workspace.slug}."
    pause = QueuePause.objects.get(workspace=owner.workspace)
    Select(browser.find_element(By.ID, "id_workspace")).select_by_value("")  # every workspace
    browser.find_element(By.ID, "pause-submit").click()
    wait.until(ec.element_to_be_clickable((By.ID, "confirm-pause"))).click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert QueuePause.objects.filter(workspace__isnull=True, queue="default").exists()
    _shot(browser, "queue-pauses.png", full=False)
    browser.find_element(By.ID, f"resume-{pause.pk}").click()
    wait.until(ec.element_to_be_clickable((By.ID, "confirm-resume"))).click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert message.text == f"Resumed queue default for workspace {owner.workspace.slug}."
    assert not QueuePause.objects.filter(pk=pause.pk).exists()
    QueuePause.objects.filter(workspace__isnull=True).delete()  # leave no global pause to later flows

    # A heartbeat now: the test settings call a worker dead 3 s after its last one.
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat_at=clock.now())
    browser.get(f"{live_server.url}/admin/ops/workers/")
    cancel = wait.until(ec.element_to_be_clickable((By.ID, f"cancel-{running.pk}")))
    _shot(browser, "workers.png", full=False)
    cancel.click()
    wait.until(ec.element_to_be_clickable((By.ID, "confirm-cancel"))).click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success")))
    assert message.text == "Cancelled (a running job is asked to abort)."
    assert browser.current_url.endswith("/admin/ops/workers/")
    assert Job.objects.get(pk=running.pk).cancel_requested_at is not None
