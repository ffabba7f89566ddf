"""Shared fixtures: real PostgreSQL (pytest-django) and this xdist worker's own Redis db."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from hq import redis as hq_redis
from tests import factories


@pytest.fixture(autouse=True)
def _clean_redis():
    """Flush this worker's Redis db (never db 0) around each test."""
    hq_redis.reset()
    client = hq_redis.client()
    assert client.connection_pool.connection_kwargs.get("db", 0) != 0, "tests must not use Redis db 0"
    client.flushdb()
    yield
    hq_redis.reset()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def member(db) -> factories.Caller:
    return factories.caller()


@pytest.fixture
def admin(db, member) -> factories.Caller:
    return factories.caller(ws=member.workspace, admin=True)
