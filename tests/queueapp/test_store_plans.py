"""The worker's prepared statements keep to keyed lookups, whatever the table held when planned."""

from __future__ import annotations

import asyncio
import re

import pytest

from queueapp import store, transitions

pytestmark = pytest.mark.django_db(transaction=True)


def _plan(sql: str) -> str:
    """The plan the worker's pooled connection uses for `sql`, prepared on an empty job table."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, sql)
    nulls = ", ".join("NULL" for _ in names)

    async def explain() -> str:
        s = store.PgStore()
        await s.open()
        try:
            async with s.pool.connection() as conn:
                await conn.execute(f"PREPARE probe AS {text}")
                cur = await conn.execute(f"EXPLAIN EXECUTE probe({nulls})")
                rows = await cur.fetchall()
                await conn.execute("DEALLOCATE probe")
        finally:
            await s.close()
        return "\n".join(row[0] for row in rows)

    return asyncio.run(explain())


@pytest.mark.parametrize("name", ["START_SQL", "FINISH_SQL", "UNMARK_SQL"])
def test_the_worker_statements_plan_no_sequential_scan_of_jobs(name):
    plan = _plan(getattr(transitions, name))
    assert "queueapp_job" in plan
    assert "Seq Scan on queueapp_job" not in plan, plan
    assert "Seq Scan on queueapp_jobevent" not in plan, plan
