"""New jobs reach Redis once their transaction commits: one push for the jobs a transaction writes
outside savepoints, a hook of its own for each job written inside one (queueapp.enqueue)."""

from __future__ import annotations

import pytest
from django.db import transaction

from queueapp import services, transport
from queueapp.models import Job
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def _submit(caller: factories.Caller, i: int) -> Job:
    job, _ = services.job_submit(
        workspace=caller.workspace,
        owner=caller.user,
        submission=services.Submission(function="hq.echo", args={"i": i}),
    )
    return job


def _queued_ids() -> set[str]:
    from hq import redis as hq_redis

    entries = hq_redis.client().zrange(transport.queue_key("default"), 0, -1)
    return {entry.decode().split(":")[0] for entry in entries}


def test_jobs_of_one_transaction__pushed_once_it_commits_without_a_rolled_back_savepoints_jobs():
    caller = factories.caller()
    with transaction.atomic():
        first = _submit(caller, 1)
        with pytest.raises(RuntimeError), transaction.atomic():
            dropped = _submit(caller, 2)
            raise RuntimeError("this savepoint rolls back")
        with transaction.atomic():
            kept = _submit(caller, 3)
        last = _submit(caller, 4)
        assert transport.queue_length("default") == 0  # nothing before the commit
    assert _queued_ids() == {str(j.pk) for j in (first, kept, last)}
    assert not Job.objects.filter(pk=dropped.pk).exists()


def test_a_rolled_back_transaction__pushes_nothing_and_the_next_one_pushes_its_own():
    caller = factories.caller()
    with pytest.raises(RuntimeError), transaction.atomic():
        _submit(caller, 1)
        raise RuntimeError("the caller changes its mind")
    assert transport.queue_length("default") == 0
    with transaction.atomic():
        job = _submit(caller, 2)
    assert _queued_ids() == {str(job.pk)}
    alone = _submit(caller, 3)  # autocommit: pushed at once
    assert _queued_ids() == {str(job.pk), str(alone.pk)}


def test_a_submit_is_one_statement_and_a_transactions_jobs_one_commit_hook():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    caller = factories.caller()
    with CaptureQueriesContext(connection) as alone:
        _submit(caller, 0)
    assert [q["sql"].split()[:3] for q in alone.captured_queries] == [["WITH", "new_jobs", "AS"]]
    with CaptureQueriesContext(connection) as many, transaction.atomic():
        for i in range(1, 6):
            _submit(caller, i)
        # One hook hands on the five pushes (and counts) in one Redis call; two a job before.
        assert len(connection.run_on_commit) == 1
    statements = [q["sql"].split()[0] for q in many.captured_queries]
    assert statements == ["BEGIN", *["WITH"] * 5, "COMMIT"]  # one INSERT a job
    assert transport.queue_length("default") == 6
