"""Row locks taken by schedule work must not block job submits in the same workspace.

A fire job used to lock its schedule with select_related("workspace", "owner"), which locked the
workspace and owner rows FOR UPDATE too; every insert that references the workspace (a job, an
event) then waited at COMMIT for the foreign-key check, and with a worker's START in the mix the
soak run ended in a deadlock. Each test holds a lock in this thread and submits from another
connection with a lock timeout: a submit that waits on the lock fails instead of passing.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from hq import messaging
from hq.models import Plan
from queueapp import services as queue_services
from queueapp.models import Job
from schedules import services
from schedules.models import Schedule

pytestmark = pytest.mark.django_db(transaction=True)


def submit_elsewhere(member) -> BaseException | None:
    """Submit a job on another connection that gives up after 2 s of waiting for a lock."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cur:
                    cur.execute("SET LOCAL lock_timeout = '2s'")
                queue_services.job_submit(
                    workspace=member.workspace,
                    owner=member.user,
                    submission=queue_services.Submission(function="hq.echo", args={}),
                )
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    return errors[0] if errors else None


@pytest.fixture
def schedule(member) -> Schedule:
    member.workspace.plan = Plan.objects.create(name=f"p-{member.workspace.slug}", max_schedules=100)
    member.workspace.save()
    room = messaging.room_create(workspace=member.workspace, creator=member.user, name="r")
    return services.schedule_create(
        workspace=member.workspace,
        owner=member.user,
        name="t",
        trigger={"kind": "cron", "expr": "* * * * *", "tz": "UTC"},
        action="send_message",
        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "x"}},
    )


def test_a_locked_schedule_does_not_lock_its_workspace(member, schedule):
    with transaction.atomic():
        services._locked(schedule)  # what the lifecycle services and the fire job (fire_run) hold
        assert submit_elsewhere(member) is None
    assert Job.objects.filter(function="hq.echo").count() == 1


def test_the_plan_check_does_not_block_submits(member, schedule):
    with transaction.atomic():
        services._check_plan(member.workspace)  # held while a schedule is created or resumed
        assert submit_elsewhere(member) is None
    assert Job.objects.filter(function="hq.echo").count() == 1
