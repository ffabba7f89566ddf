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
        services.schedule_locked(schedule)  # what the lifecycle services and the fire job (fire_run) hold
        assert submit_elsewhere(member) is None
    assert Job.objects.filter(function="hq.echo").count() == 1


def test_the_plan_check_does_not_block_submits(member, schedule):
    with transaction.atomic():
        services._check_plan(member.workspace)  # held while a schedule is created or resumed
        assert submit_elsewhere(member) is None
    assert Job.objects.filter(function="hq.echo").count() == 1


def test_concurrent_partial_patches_of_args_both_land(api, member):
    """A PATCH of args merges into the row as it is once locked, not into what it read before."""
    from rest_framework.test import APIClient

    created = api.post(
        "/v1/api/schedules",
        {
            "name": "digest",
            "trigger": {"kind": "cron", "expr": "0 8 * * MON", "tz": "Europe/Stockholm"},
            "prompt": "old prompt",
            "deliver_to": {"kind": "web_inbox"},
        },
        format="json",
        **member.headers,
    )
    assert created.status_code == 201, created.content
    sid = created.json()["schedule"]["id"]
    replies: list = []

    def patch_prompt() -> None:
        try:
            replies.append(
                APIClient().patch(
                    f"/v1/api/schedules/{sid}", {"args": {"prompt": "new prompt"}}, format="json", **member.headers
                )
            )
        finally:
            connections.close_all()

    with transaction.atomic():
        s = services.schedule_locked(Schedule.objects.get(pk=sid))  # another writer holds the row...
        s.args = {**s.args, "reset_each_fire": True}
        s.save(update_fields=["args"])
        t = threading.Thread(target=patch_prompt)
        t.start()
        t.join(1.0)  # ...while the PATCH reads the row and waits for the lock
        assert t.is_alive(), "the PATCH must wait for the lock"
    t.join(30)
    assert replies and replies[0].status_code == 200, replies
    args = Schedule.objects.get(pk=sid).args
    assert (args["prompt"], args["reset_each_fire"]) == ("new prompt", True)
