"""hq.db's column-wise bulk writes, on PostgreSQL: the scheduler and bulk enqueue rely on them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hq import db
from queueapp.models import Job, JobEvent
from tests import factories

T0 = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


@pytest.fixture
def ws(db):  # noqa: ARG001 - the db fixture
    return factories.workspace()


def _job_columns(ws, n: int) -> dict[str, list]:
    return {
        "id": [uuid.uuid4() for _ in range(n)],
        "workspace_id": [ws.pk] * n,
        "function": ["hq.echo"] * n,
        "args": [{"i": i, "nested": {"s": "ünï"}} for i in range(n)],
        "due_at": [T0 + timedelta(seconds=i) for i in range(n)],
        "correlation_id": ["same"] * n,
    }


def test_bulk_insert_writes_varying_and_constant_columns_and_defaults(ws):
    cols = _job_columns(ws, 3)
    assert db.bulk_insert(Job, cols) == 3
    rows = {j.pk: j for j in Job.objects.filter(pk__in=cols["id"])}
    assert len(rows) == 3
    for i, pk in enumerate(cols["id"]):
        job = rows[pk]
        assert job.args == {"i": i, "nested": {"s": "ünï"}}
        assert job.due_at == T0 + timedelta(seconds=i)
        assert job.correlation_id == "same"
        # Left out: the field defaults.
        assert (job.state, job.queue, job.attempts, job.max_tries, job.result) == ("queued", "default", 0, 3, None)
        assert job.idempotency_key is None


def test_bulk_insert_all_constant_columns_and_an_auto_key(ws):
    job_id = uuid.uuid4()
    db.bulk_insert(Job, {"id": [job_id], "workspace_id": [ws.pk], "function": ["hq.echo"]})
    assert db.bulk_insert(JobEvent, {"job_id": [job_id] * 4, "kind": ["submitted"] * 4, "at": [T0] * 4}) == 4
    events = list(JobEvent.objects.filter(job_id=job_id))
    assert len({e.pk for e in events}) == 4  # the database numbered them
    assert [(e.kind, e.at, e.detail, e.actor_id) for e in events] == [("submitted", T0, {}, None)] * 4


def test_bulk_insert_refuses_ragged_or_unknown_columns(ws):
    with pytest.raises(ValueError, match="one value per row"):
        db.bulk_insert(Job, {"id": [uuid.uuid4()], "workspace_id": [ws.pk, ws.pk], "function": ["a"]})
    with pytest.raises(ValueError, match="no column"):
        db.bulk_insert(Job, {"id": [uuid.uuid4()], "workspace_id": [ws.pk], "nope": [1]})
    assert db.bulk_insert(Job, {"id": []}) == 0
    assert not Job.objects.exists()


def test_bulk_update_sets_each_rows_own_values(ws):
    cols = _job_columns(ws, 3)
    db.bulk_insert(Job, cols)
    other = uuid.uuid4()
    db.bulk_insert(Job, {"id": [other], "workspace_id": [ws.pk], "function": ["hq.echo"]})
    ids = cols["id"]
    db.bulk_update(
        Job,
        [ids[2], ids[0]],
        {"state": ["cancelled", "failed"], "error": ["", "boom"], "result": [None, {"x": [1]}]},
    )
    got = {j.pk: (j.state, j.error, j.result) for j in Job.objects.all()}
    assert got[ids[2]] == ("cancelled", "", None)
    assert got[ids[0]] == ("failed", "boom", {"x": [1]})
    assert got[ids[1]] == ("queued", "", None)
    assert got[other] == ("queued", "", None)
    with pytest.raises(ValueError, match="one value per row"):
        db.bulk_update(Job, [ids[1]], {"state": ["failed", "failed"]})
