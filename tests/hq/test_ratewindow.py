"""The request throttle and its counter (hq.ratewindow), against the suite's real Redis."""

from __future__ import annotations

import time
import uuid

import pytest

from hq import redis as hq_redis
from hq.ratewindow import Admission
from tests import factories


@pytest.fixture
def inside_one_window() -> None:
    # The windows are fixed minutes and hours: start where the next boundary is not seconds away.
    if time.time() % 60 > 50:
        time.sleep(60 - time.time() % 60 + 0.1)


def incrby_calls() -> int:
    return int(hq_redis.client().info("commandstats").get("cmdstat_incrby", {}).get("calls", 0))


def test_a_token_over_its_rate_gets_429_and_others_do_not(api, member, settings, inside_one_window):
    settings.HQ_THROTTLE_RATE = "4/min"
    for _ in range(4):
        assert api.get("/v1/me", **member.headers).status_code == 200
    resp = api.get("/v1/me", **member.headers)
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "throttled"
    assert 1 <= int(resp["Retry-After"]) <= 61
    other = factories.caller()
    assert api.get("/v1/me", **other.headers).status_code == 200


def test_one_process_admits_exactly_the_limit_in_few_round_trips(inside_one_window):
    admission = Admission("throttle-test", "1000/h")
    key = (str(uuid.uuid4()),)
    before = incrby_calls()
    allowed = [admission.allow(key)[0] for _ in range(1200)]
    assert allowed.count(True) == 1000 and allowed[:1000] == [True] * 1000
    # Leases grow to 1 % of the limit (10): about 100 round trips for 1,000 requests, not 1,000,
    # and none for the requests refused after the count reached the limit.
    assert incrby_calls() - before <= 200


def test_processes_share_one_limit_and_waste_at_most_a_lease_each(inside_one_window):
    processes = [Admission("throttle-test", "1000/h") for _ in range(3)]
    key = (str(uuid.uuid4()),)
    allowed = sum(processes[i % 3].allow(key)[0] for i in range(1500))
    assert 1000 - 3 * 10 <= allowed <= 1000


def test_a_quiet_key_is_counted_exactly():
    admission = Admission("throttle-test", "1000/h")
    key = (str(uuid.uuid4()),)
    admission.allow(key)
    (count,) = admission.window.counts([key])
    assert count == 1
