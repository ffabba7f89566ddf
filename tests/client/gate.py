"""Close the test database to new connections (a real 503 from the live server), as the fault tests do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def database_gate() -> Iterator[Callable[[bool], None]]:
    """`allow(False)` refuses new connections to the test database (open ones, the test's, stay);
    it is always reopened at the end."""
    s = connection.settings_dict
    admin_url = f"postgresql://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/postgres"
    conn = psycopg.connect(admin_url, autocommit=True)

    def allow(yes: bool) -> None:
        conn.execute(f'ALTER DATABASE "{s["NAME"]}" ALLOW_CONNECTIONS {"true" if yes else "false"}')

    try:
        yield allow
    finally:
        allow(True)
        conn.close()
