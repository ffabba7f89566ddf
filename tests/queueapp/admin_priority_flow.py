"""The job list in the admin shows each job's priority and filters by band (issue 18); driven by the
one browser test in test_admin_browser.py, signed in as a staff admin of `member`'s workspace."""

from __future__ import annotations

from pathlib import Path

from queueapp import services

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def ops_sees_job_priorities_and_filters_by_band(live_server, browser, member) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ids = {}
    for priority, name in ((80, "urgent"), (0, "plain"), (-40, "backfill")):
        job, _ = services.job_submit(
            workspace=member.workspace,
            owner=member.user,
            submission=services.Submission(
                function="hq.echo", args={"what": name}, priority=priority, defer_by_seconds=3600
            ),
        )
        ids[name] = str(job.pk)
    wait = WebDriverWait(browser, 15)
    browser.get(f"{live_server.url}/admin/queueapp/job/?state=deferred")
    table = wait.until(ec.presence_of_element_located((By.ID, "result_list")))
    headers = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert "PRIORITY" in [h.upper() for h in headers], headers
    column = [h.upper() for h in headers].index("PRIORITY")
    shown = {}
    for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
        cells = row.find_elements(By.CSS_SELECTOR, "th, td")
        full_id = cells[1].find_element(By.CSS_SELECTOR, "code").get_attribute("title")  # the short id's hover
        shown[full_id] = cells[column].text.strip()
    assert shown == {ids["urgent"]: "80", ids["plain"]: "0", ids["backfill"]: "-40"}, shown
    filters = browser.find_element(By.ID, "changelist-filter").text
    assert "By priority" in filters and "Above 0 (starts first; last 7 days unless dated)" in filters
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "job-priorities.png"))

    browser.get(f"{live_server.url}/admin/queueapp/job/?state=deferred&priority_band=low")
    table = wait.until(ec.presence_of_element_located((By.ID, "result_list")))
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    shown_ids = [r.find_elements(By.CSS_SELECTOR, "th, td")[1].find_element(By.CSS_SELECTOR, "code") for r in rows]
    assert [code.get_attribute("title") for code in shown_ids] == [ids["backfill"]]
