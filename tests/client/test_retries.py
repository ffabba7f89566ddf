"""Safe retries: a submit whose answer is lost is sent again with the same idempotency key, and HQ
records one job; a call that is not safe to repeat is never sent twice."""

from __future__ import annotations

import json

import pytest
from hq_client import Client, TransportError, submission

from queueapp.models import Job
from tests.client.conftest import FAST_RETRY
from tests.client.proxy import DroppingProxy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lossy(hq_url):
    """A proxy in front of the live server that drops the answer to the first POST."""
    proxy = DroppingProxy(hq_url, method="POST", drop_first=1)
    yield proxy
    proxy.close()


def posted(proxy: DroppingProxy) -> list[dict]:
    return [json.loads(body) for method, _, body in proxy.seen if method == "POST"]


def test_a_submit_whose_answer_is_lost_is_retried_with_its_key_and_records_one_job(lossy, caller):
    with Client(lossy.url, caller.token, retry=FAST_RETRY) as hq:
        job = hq.job_submit("tests.count", {"order": 1}, defer_by_seconds=3600)

    first, second = posted(lossy)
    assert first == second and first["idempotency_key"] == job["idempotency_key"]
    assert lossy.upstream_statuses == [202, 200]  # recorded, then the same job replayed
    rows = Job.objects.filter(function="tests.count")
    assert [str(row.pk) for row in rows] == [job["id"]]


def test_a_callers_own_key_is_kept_across_retries(lossy, caller):
    with Client(lossy.url, caller.token, retry=FAST_RETRY) as hq:
        job = hq.job_submit("tests.count", idempotency_key="invoice-42", defer_by_seconds=3600)
        again = hq.job_submit("tests.count", idempotency_key="invoice-42", defer_by_seconds=3600)
    assert job["idempotency_key"] == "invoice-42" and again["id"] == job["id"]
    assert [body["idempotency_key"] for body in posted(lossy)] == ["invoice-42"] * 3
    assert Job.objects.filter(idempotency_key="invoice-42").count() == 1


def test_a_batch_whose_answer_is_lost_is_retried_and_records_each_job_once(lossy, caller):
    items = [submission("tests.count", {"i": i}, defer_by_seconds=3600) for i in range(5)]
    with Client(lossy.url, caller.token, retry=FAST_RETRY) as hq:
        jobs = hq.jobs_submit_batch(items)
    first, second = posted(lossy)
    assert first == second and len({item["idempotency_key"] for item in first["jobs"]}) == 5
    assert all(job["replayed"] for job in jobs)  # the retry's answer: the jobs the lost one recorded
    assert sorted(str(pk) for pk in Job.objects.values_list("pk", flat=True)) == sorted(j["id"] for j in jobs)


def test_a_write_that_is_not_safe_to_repeat_is_sent_once_and_raises(lossy, caller):
    with Client(lossy.url, caller.token, retry=FAST_RETRY) as hq:
        with pytest.raises(TransportError):
            hq.room_create("ops")
        assert [room["name"] for room in hq.rooms()] == ["ops"]  # it was recorded; the client cannot know
    assert len(posted(lossy)) == 1


def test_no_answer_at_all_raises_transport_error_after_the_tries(closed_port, caller):
    with Client(f"http://127.0.0.1:{closed_port}", caller.token, retry=FAST_RETRY) as hq:
        with pytest.raises(TransportError) as raised:
            hq.job_submit("tests.count")
    assert raised.value.status is None and "no answer" in str(raised.value)
