"""HQ's PostgreSQL backend: the pool checks a connection by a round trip at most once a second."""

from __future__ import annotations

import copy
import time

import psycopg
import pytest
from django.db import connection

from hq.pgbackend import base

pytestmark = pytest.mark.django_db


def raw_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "server_side_binding", "prepare_threshold", "pool"):
        params.pop(key, None)
    return psycopg.connect(**params, autocommit=True)


def test_the_pool_django_builds_uses_hqs_check():
    settings = copy.deepcopy(connection.settings_dict)
    settings["CONN_HEALTH_CHECKS"] = True
    settings["CONN_MAX_AGE"] = 0
    settings["OPTIONS"] = {**settings.get("OPTIONS", {}), "pool": {"min_size": 0, "max_size": 1}}
    wrapper = base.DatabaseWrapper(settings, alias="pgbackend-test")
    try:
        assert wrapper.pool is not None and wrapper.pool._check is base.check
    finally:
        wrapper.close_pool()


def test_a_connection_killed_by_postgresql_is_refused_once_its_check_is_due():
    conn = raw_connection()
    base.check(conn)  # verified now
    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
    base.check(conn)  # within the second: trusted without a round trip
    conn._hq_checked_at -= base.RECHECK_AFTER_S
    with pytest.raises(psycopg.OperationalError):
        base.check(conn)
    conn.close()


def test_a_closed_connection_is_refused_at_once():
    conn = raw_connection()
    base.check(conn)
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        base.check(conn)


def test_a_healthy_connection_is_verified_again_after_a_second():
    conn = raw_connection()
    base.check(conn)
    first = conn._hq_checked_at
    base.check(conn)
    assert conn._hq_checked_at >= first
    conn._hq_checked_at = time.monotonic() - base.RECHECK_AFTER_S - 0.1
    base.check(conn)  # a round trip, and it passes
    assert time.monotonic() - conn._hq_checked_at < 1.0
    conn.close()
