"""Each test starts with no metric increments: none buffered from an earlier test, none in Redis."""

from __future__ import annotations

import pytest

from hq import metrics
from hq import redis as hq_redis


@pytest.fixture(autouse=True)
def _clean_metrics(_clean_redis):
    metrics.reset_buffer()  # waits for a flush in flight, so nothing lands after the flush below
    hq_redis.client().flushdb()
    yield
