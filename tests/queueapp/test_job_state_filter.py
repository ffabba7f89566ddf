"""The jobs list's state filter shows the states asked for by `?state__in=` (the dashboard's links)
as selected, instead of "All"; a screenshot under test-artifacts/."""

from __future__ import annotations

import re

import pytest

from hq import clock
from tests.observability.helpers import job
from tests.queueapp.test_admin_browser import ARTIFACTS, WAIT_S, browser  # noqa: F401 - the shared fixture
from tests.queueapp.test_admin_hitl import client_for, staff

LIST = "/admin/queueapp/job/"


def state_filter(html: str) -> list[tuple[bool, str, str]]:
    """(selected, href, label) of each entry of the sidebar's state filter."""
    block = html.split('data-filter-title="state"')[1].split("</details>")[0]
    return [
        (bool(selected), href.replace("&amp;", "&"), label)
        for selected, href, label in re.findall(r'<li( class="selected")?>\s*<a href="([^"]*)">([^<]*)</a>', block)
    ]


@pytest.mark.django_db
def test_state_filter__state_in_shows_the_chosen_set_selected(member):
    now = clock.now()
    for state in ("queued", "deferred", "running"):
        job(member.workspace, now, state=state, started_ago_s=1 if state == "running" else None)
    c = client_for(staff(member.workspace))

    entries = state_filter(c.get(LIST + "?state__in=queued,deferred&due_at__lte=2999-01-01T00:00:00Z").content.decode())
    selected = [label for on, _, label in entries if on]
    assert selected == ["Waiting (queued, deferred)"], entries
    # Choosing one state leaves the set (and keeps the other parameters).
    queued = next(href for _, href, label in entries if label == "Queued")
    assert "state__exact=queued" in queued and "state__in" not in queued and "due_at__lte" in queued
    all_href = next(href for _, href, label in entries if label == "All")
    assert "state__in" not in all_href and "state__exact" not in all_href
    # The rows are those of the set.
    rows = c.get(LIST + "?state__in=queued,deferred").content.decode().split('id="result_list"')[1]
    assert rows.count("hq-state-queued") == 1 and rows.count("hq-state-deferred") == 1
    assert "hq-state-running" not in rows.split("</table>")[0]

    # Any other set is shown as it was asked for; with none, "All" is selected.
    entries = state_filter(c.get(LIST + "?state__in=running,failed").content.decode())
    assert [label for on, _, label in entries if on] == ["running, Failed"]
    entries = state_filter(c.get(LIST).content.decode())
    assert [label for on, _, label in entries if on] == ["All"]
    entries = state_filter(c.get(LIST + "?state__exact=queued").content.decode())
    assert [label for on, _, label in entries if on] == ["Queued"]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_state_filter__the_dashboards_waiting_link_in_a_browser(live_server, browser, member):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from hq.models import User

    now = clock.now()
    for state in ("queued", "deferred", "queued", "succeeded"):
        # Due 5 s ago: the tile's link says due_at__lte=<now>, to the microsecond.
        job(member.workspace, now, state=state, due_ago_s=5, finished_ago_s=30 if state == "succeeded" else None)
    ops = staff(member.workspace)
    User.objects.filter(pk=ops.pk).update(password="")
    ops.set_password("a-long-test-password")
    ops.save()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/ops/dashboard/")
    browser.find_element(By.ID, "id_username").send_keys(ops.email)
    browser.find_element(By.ID, "id_password").send_keys("a-long-test-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "a.ops-tile[href*='state__in']"))).click()
    selected = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, 'details[data-filter-title="state"] li.selected'))
    )
    assert selected.text == "Waiting (queued, deferred)"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "jobs-list-state-in-filter.png"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 3, browser.current_url
