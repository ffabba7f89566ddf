"""Django's PostgreSQL backend, with a pool that checks a connection at most once a second.

psycopg's own check (what CONN_HEALTH_CHECKS gives Django's pool) is a round trip to PostgreSQL
for every connection handed out, a quarter of the time of a job submit. `check` makes that round
trip only for a connection not verified in the last `RECHECK_AFTER_S`, or whose socket already says
it is broken; a connection in steady use was proven moments ago. One that died since (PostgreSQL
restarted) fails its statement, the request answers 503 with Retry-After (hq.api.middleware), and
the pool discards it when it comes back. settings picks this backend for every PostgreSQL URL.
"""

from __future__ import annotations

import time
from typing import Any

from django.db.backends.postgresql import base
from psycopg import pq
from psycopg_pool import ConnectionPool

RECHECK_AFTER_S = 1.0


def check(conn: Any) -> None:
    """Raise (so the pool discards `conn`) when it is broken; verify it at most once a second."""
    now = time.monotonic()
    fresh = now - getattr(conn, "_hq_checked_at", float("-inf")) < RECHECK_AFTER_S
    if fresh and not conn.closed and conn.pgconn.status == pq.ConnStatus.OK:
        return
    ConnectionPool.check_connection(conn)
    conn._hq_checked_at = now  # only a round trip that succeeded counts as verified


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        # Django's PostgreSQL DatabaseWrapper.pool (5.1+) is missing from django-stubs 5.2.
        pool: ConnectionPool | None = super().pool  # type: ignore[misc]
        # Django builds the pool with psycopg's check when CONN_HEALTH_CHECKS is on and passes no
        # way to choose another; psycopg_pool keeps it in `_check` (pinned in requirements.lock;
        # tests/hq/test_pgbackend.py fails if that changes).
        if pool is not None and getattr(pool, "_check", None) is not None and pool._check is not check:
            pool._check = check
        return pool
