"""The live dashboard in a real browser (Debian's headless chromium): it updates in place without a
page load, its tiles and rows open the admin lists filtered to what they count, a function failing
every attempt is highlighted, chart text renders at 11 px or more in a 1280 px window, and with
JavaScript off the page still renders in full and reloads itself. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from hq import clock
from hq import services as hq_services
from hq.models import Membership, User
from queueapp.models import DepthState, QueueDepthSample
from queueapp.observability import depth
from tests.observability.helpers import job
from tests.queueapp.test_admin_browser import ARTIFACTS, WAIT_S, browser  # noqa: F401 - the shared fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"
MARKER = "window.__hqNoReload"

#: Per SVG text of the charts: its computed font size times the SVG's scale (rendered width over
#: viewBox width), the size it is drawn at in CSS pixels; and the height of its box, which is larger.
CHART_TEXT_PX = """
return Array.from(document.querySelectorAll('#ops-charts svg.hq-chart')).flatMap(function (svg) {
  var scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return Array.from(svg.querySelectorAll('text')).map(function (t) {
    return [parseFloat(getComputedStyle(t).fontSize) * scale, t.getBoundingClientRect().height, t.textContent];
  });
});
"""


def _sign_in(driver, live_server, email: str, next_url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{live_server.url}/admin/login/?next={next_url}")
    driver.find_element(By.ID, "id_username").send_keys(email)
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def _ops(ws) -> User:
    ops = User.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    hq_services.membership_set(user=ops, workspace=ws, role=Membership.Role.ADMIN)
    return ops


def _an_hour_of_depth(ws, now) -> None:
    """What the depth sampler would have written over the last hour: a backlog building and draining."""
    minute = depth.minute_of(now)
    for ago in range(1, 60):
        backlog = max(0, 40 - abs(ago - 25) * 2)
        for queue, share in (("default", 1.0), ("mail", 0.4)):
            for state, jobs in ((DepthState.WAITING, backlog * share), (DepthState.RUNNING, 4 * share + ago % 3)):
                if int(jobs):
                    QueueDepthSample.objects.create(
                        at=minute - timedelta(minutes=ago), workspace=ws, queue=queue, state=state, jobs=int(jobs)
                    )


def _listed_jobs(driver) -> set[str]:
    """The ids of the jobs the jobs list shows."""
    from selenium.webdriver.common.by import By

    hrefs = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#result_list a")]
    return {m.group(1) for h in hrefs if (m := re.search(r"/queueapp/job/([0-9a-f-]{36})/change/", h or ""))}


def _full_page_screenshot(driver, name: str, width: int = 1280) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height + 140, 800), 4000))  # + the window's own frame
    driver.save_screenshot(str(ARTIFACTS / name))
    driver.set_window_size(width, 1000)


def test_dashboard_updates_in_place_and_its_links_open_the_filtered_lists(live_server, browser, member):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    ws = member.workspace
    ops = _ops(ws)
    now = clock.now()
    waiting = [job(ws, now, state="queued", queue="mail", function="mail.send", due_ago_s=20) for _ in range(2)]
    running = [job(ws, now, state="running", function="reports.build", started_ago_s=3 + i) for i in range(3)]
    for _ in range(4):
        job(ws, now, state="failed", function="flaky.fn", finished_ago_s=200, run_ms=30)
    for i in range(6):
        job(ws, now, state="succeeded" if i else "failed", function="steady.fn", finished_ago_s=100 + i, run_ms=20)
    _an_hour_of_depth(ws, now)
    depth.sample_depth(now)

    browser.set_window_size(1280, 1000)
    _sign_in(browser, live_server, ops.email, "/admin/ops/dashboard/")
    tile = wait.until(ec.presence_of_element_located((By.ID, "tile-waiting")))
    assert tile.text == "2"
    wait.until(ec.text_to_be_present_in_element((By.ID, "ops-live-status"), "Live: update"))
    assert not browser.find_elements(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]')  # scripts run: no reload

    # The highlight: flaky.fn failed every attempt this hour, steady.fn one in six.
    flaky = browser.find_element(By.CSS_SELECTOR, 'tr.ops-all-failing[data-function="flaky.fn"]')
    assert "100 %" in flaky.find_element(By.CSS_SELECTOR, ".ops-badge.all").text
    cell = flaky.find_element(By.TAG_NAME, "td")
    red = browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor", cell)
    assert red.startswith("rgba(183, 28, 28"), red
    steady = browser.find_element(By.CSS_SELECTOR, 'tr[data-function="steady.fn"]')
    assert "ops-failing" not in steady.get_attribute("class")
    assert browser.find_element(By.ID, "tile-failing-functions").text == "1"
    assert "50 % or more" in browser.find_element(By.ID, "ops-failing-rule").text

    # Depth over time: a chart per queue, one bar per sampled minute.
    depth_charts = browser.find_elements(By.CSS_SELECTOR, 'svg.hq-chart[aria-label^="Jobs in queue"]')
    assert len(depth_charts) == 2
    bars = depth_charts[0].find_elements(By.CSS_SELECTOR, "rect title")
    assert len({b.get_attribute("textContent").split()[0] for b in bars}) >= 50  # distinct minutes
    _full_page_screenshot(browser, "dashboard-live.png")

    # Jobs arrive and one finishes: the tiles change with no page load (the marker survives).
    browser.execute_script(f"{MARKER} = 'still here'")
    more = [job(ws, now, state="queued", queue="mail", due_ago_s=1) for _ in range(3)]
    wait.until(ec.text_to_be_present_in_element((By.ID, "tile-waiting"), "5"))
    running[0].state, running[0].finished_at = "succeeded", clock.now()
    running[0].save(update_fields=["state", "finished_at"])
    wait.until(ec.text_to_be_present_in_element((By.ID, "tile-running"), "2"))
    assert browser.execute_script(f"return {MARKER}") == "still here"
    assert browser.find_element(By.ID, "ops-live-status").text.startswith("Live: updated ")

    # A tile opens the jobs list showing exactly what it counted.
    browser.find_element(By.ID, "tile-waiting-link").click()
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))
    assert browser.execute_script(f"return typeof {MARKER}") == "undefined"  # a real navigation
    assert _listed_jobs(browser) == {str(j.pk) for j in waiting + more}
    browser.save_screenshot(str(ARTIFACTS / "dashboard-link-waiting.png"))
    browser.back()
    wait.until(ec.element_to_be_clickable((By.ID, "tile-running-link"))).click()
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))
    assert _listed_jobs(browser) == {str(j.pk) for j in running[1:]}
    # A function's row opens that function's jobs.
    browser.back()
    row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-function="flaky.fn"]')))
    row.find_element(By.LINK_TEXT, "flaky.fn").click()
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 4 and all("flaky.fn" in r.text for r in rows)


def test_chart_text_renders_at_11_px_or_more_in_a_1280_px_window(live_server, browser, member):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    ops = _ops(member.workspace)
    now = clock.now()
    for i in range(30):
        job(member.workspace, now, state="succeeded", finished_ago_s=60 * i + 5, run_ms=40, wait_ms=10 * i)
    _an_hour_of_depth(member.workspace, now)
    browser.set_window_size(1280, 1000)
    _sign_in(browser, live_server, ops.email, "/admin/ops/dashboard/")
    wait.until(ec.presence_of_element_located((By.ID, "ops-charts")))
    sizes = browser.execute_script(CHART_TEXT_PX)
    assert len(sizes) > 50
    smallest = min(sizes)
    assert smallest[0] >= 11, smallest  # the drawn font size, CSS px
    assert min(s[1] for s in sizes) >= 11, smallest  # and each label's box
    charts_wide = browser.execute_script(
        "return Array.from(document.querySelectorAll('#ops-charts svg.hq-chart'))"
        ".map(s => s.getBoundingClientRect().width)"
    )
    assert len(set(round(w) for w in charts_wide)) == 1  # every chart the same size, side by side
    browser.save_screenshot(str(ARTIFACTS / "dashboard-charts-1280.png"))
    # Wider windows draw them larger, within bounds (at most 1.25 times: 15 px).
    browser.set_window_size(1920, 1000)
    sizes = browser.execute_script(CHART_TEXT_PX)
    assert 11 <= min(s[0] for s in sizes) and max(s[0] for s in sizes) <= 15.01


def test_without_javascript_the_page_renders_in_full_and_reloads_itself(live_server, browser, member):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    ops = _ops(member.workspace)
    now = clock.now()
    job(member.workspace, now, state="queued", due_ago_s=3)
    _an_hour_of_depth(member.workspace, now)
    _sign_in(browser, live_server, ops.email, "/admin/")
    wait.until(ec.presence_of_element_located((By.ID, "content")))
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    browser.get(f"{live_server.url}/admin/ops/dashboard/")
    wait.until(ec.presence_of_element_located((By.ID, "ops-charts")))
    assert browser.find_element(By.ID, "tile-waiting").text == "1"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#ops-charts svg.hq-chart")) >= 6
    status = browser.find_element(By.ID, "ops-live-status").text
    assert status == "Reloads every 30 s (JavaScript is off)."
    refresh = browser.find_elements(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]')
    assert [m.get_attribute("content") for m in refresh] == ["30"]
    _full_page_screenshot(browser, "dashboard-no-javascript.png")
