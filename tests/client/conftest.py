"""The client's tests run against a live HQ: the Django app served on 127.0.0.1 (pytest-django's
live server, real PostgreSQL and Redis) and, where a job must run, a real worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hq_client import Client, RetryPolicy

from tests import factories
from tests.conftest import Procs, wait_for

#: Quick retries: the tests wait for behaviour, not for the production backoff.
FAST_RETRY = RetryPolicy(tries=4, base_s=0.01, cap_s=0.05)


@pytest.fixture
def caller(transactional_db) -> factories.Caller:
    """A workspace admin with a token holding every scope (committed: the live server reads it)."""
    return factories.caller(admin=True)


@pytest.fixture
def hq_url(live_server) -> str:
    return str(live_server.url)


@pytest.fixture
def hq(hq_url, caller) -> Iterator[Client]:
    """A client of the live server with `caller`'s token."""
    with Client(hq_url, caller.token, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
def worker(procs: Procs, live_server) -> Procs:
    """A real `runworker` subprocess on this test's database and Redis db, up before the test goes on."""
    from queueapp.models import Worker

    procs.worker()
    wait_for(lambda: Worker.objects.exists(), timeout=30, what="the worker's first heartbeat")
    return procs
