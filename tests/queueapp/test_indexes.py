"""The job tables' indexes as migration 0007 leaves them: partial where a column is mostly empty,
and the foreign keys kept (only their full indexes went); and the plans that must use them."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import connection

from queueapp.services.jobs import KEYED_JOBS_SQL
from tests import factories

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


def test_an_events_job_is_not_checked_by_the_database_but_goes_with_its_job():
    """The worker's commits skip a foreign-key check per event; Django's cascade still deletes them."""
    keys = _rows(
        "SELECT confrelid::regclass::text FROM pg_constraint"
        " WHERE contype = 'f' AND conrelid = 'queueapp_jobevent'::regclass",
        [],
    )
    assert ("queueapp_job",) not in keys
    from hq import clock
    from queueapp.models import JobEvent
    from tests.observability import helpers

    job = helpers.job(factories.workspace(), clock.now(), state="succeeded", finished_ago_s=1)
    JobEvent.objects.create(job=job, kind="submitted", to_state="queued", attempt=0, at=clock.now())
    job.delete()
    assert not JobEvent.objects.filter(job_id=job.pk).exists()


@pytest.mark.parametrize(
    ("name", "predicate"),
    [
        ("job_owner_ws_created", "(owner_id IS NOT NULL)"),
        ("jobevent_actor", "(actor_id IS NOT NULL)"),
        ("job_finished_at", "(finished_at IS NOT NULL)"),
        ("job_ws_finished_at", "(finished_at IS NOT NULL)"),
        ("job_ws_corr_set", "(NOT ((correlation_id)::text = ''::text))"),
    ],
)
def test_mostly_empty_columns_are_indexed_only_where_set(name, predicate):
    (definition,) = _rows("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])[0]
    assert definition.endswith(f"WHERE {predicate}")


def test_a_batchs_key_lookup_probes_the_unique_index_key_by_key_on_a_generic_plan():
    """A batch of 1,000 keys against a workspace of 3,000 keyed jobs and no statistics (as after a
    TRUNCATE): one index probe per key, never a read of every job of the workspace (which an
    `= ANY(keys)` filter got once PostgreSQL switched to a generic plan: 100-150 ms a batch)."""
    ws = factories.workspace()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO queueapp_job (id, workspace_id, function, args, queue, state, due_at, created_at,"
            " updated_at, max_tries, timeout_s, retry_backoff_s, correlation_id, idempotency_key, idempotency_hash,"
            " attempts, tries_base, error, worker_id)"
            " SELECT gen_random_uuid(), %s, 'hq.noop', '{}', 'default', 'succeeded', now(), now(), now(), 1, 60, 2,"
            " '', 'key-' || i, '', 1, 0, '', '' FROM generate_series(1, 3000) AS i",
            [ws.pk],
        )
    keys = sorted([f"key-{i}" for i in (7, 70, 700)] + [f"hqc-{uuid.uuid4().hex}" for _ in range(997)])
    with psycopg.Cursor(connection.connection) as cur:  # server-side binding, as `db.fetch_binary` sends it
        cur.execute("SET plan_cache_mode = force_generic_plan")
        try:
            plan = [r[0] for r in cur.execute(f"EXPLAIN {KEYED_JOBS_SQL}", [keys, ws.pk], prepare=True).fetchall()]
            found = cur.execute(KEYED_JOBS_SQL, [keys, ws.pk], binary=True, prepare=True).fetchall()
        finally:
            cur.execute("RESET plan_cache_mode")
    text = "\n".join(plan)
    assert "Nested Loop" in text and "Index Scan using uniq_job_idempotency_key" in text, text
    assert "Seq Scan on queueapp_job" not in text and "Bitmap Heap Scan" not in text and "Hash" not in text, text
    assert len(found) == 3


def test_a_members_own_jobs_newest_first_are_read_from_the_owner_index_in_its_order():
    """One index serves a member's list (`owned_rows`, newest first) and the user foreign key."""
    from hq.models import PersonalAccessToken
    from hq.permissions import Principal, owned_rows
    from queueapp.api.views import JobViewSet
    from queueapp.models import Job

    member = factories.caller()
    token = PersonalAccessToken.objects.filter(user=member.user).first()
    principal = Principal(token=token, user=member.user, workspace=member.workspace, role="member")
    rows = owned_rows(principal, Job.objects.all()).order_by(*JobViewSet.order_by)[:50]
    with connection.cursor() as cur:
        cur.execute("SET enable_seqscan = off")  # an empty table would be read whole otherwise
        try:
            sql, params = rows.query.sql_with_params()
            cur.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(r[0] for r in cur.fetchall())
        finally:
            cur.execute("RESET enable_seqscan")
    assert "Index Scan using job_owner_ws_created" in plan and "Bitmap" not in plan, plan
    assert "Sort Key: queueapp_job.created_at DESC, queueapp_job.id" not in plan or "Incremental Sort" in plan, plan
