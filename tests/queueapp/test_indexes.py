"""The job tables' indexes as migration 0007 leaves them: partial where a column is mostly empty,
and the foreign keys kept (only their full indexes went)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def _rows(sql: str, params: list[str]) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def test_the_user_foreign_keys_stay_while_their_full_indexes_are_gone():
    keys = _rows(
        "SELECT conrelid::regclass::text, a.attname FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)"
        " WHERE c.contype = 'f' AND c.conrelid = ANY(%s::regclass[])",
        ["{queueapp_job,queueapp_jobevent}"],
    )
    assert {("queueapp_job", "owner_id"), ("queueapp_jobevent", "actor_id")} <= set(keys)
    names = {
        r[0]
        for r in _rows(
            "SELECT indexname FROM pg_indexes WHERE tablename = ANY(%s)", [["queueapp_job", "queueapp_jobevent"]]
        )
    }
    assert not names & {"queueapp_job_owner_id_f54f1d10", "queueapp_jobevent_actor_id_ac85e1e6", "jobevent_at"}


@pytest.mark.parametrize(
    ("name", "predicate"),
    [
        ("job_owner", "(owner_id IS NOT NULL)"),
        ("jobevent_actor", "(actor_id IS NOT NULL)"),
        ("job_finished_at", "(finished_at IS NOT NULL)"),
        ("job_ws_finished_at", "(finished_at IS NOT NULL)"),
        ("job_ws_corr_set", "(NOT ((correlation_id)::text = ''::text))"),
    ],
)
def test_mostly_empty_columns_are_indexed_only_where_set(name, predicate):
    (definition,) = _rows("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])[0]
    assert definition.endswith(f"WHERE {predicate}")
