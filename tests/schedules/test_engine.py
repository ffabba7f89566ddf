"""The schedule engine: firing exactly once, catch-up, quarantine, actions through a real worker."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.db.models import Count

from hq import clock, messaging
from hq.models import Plan, Room, RoomMessage
from queueapp.models import Job, Worker
from schedules import engine, services, triggers
from schedules.models import Schedule, ScheduleFire
from tests import factories
from tests.conftest import shift_clock_before_minute, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def room(member) -> Room:
    member.workspace.plan = Plan.objects.create(name=f"big-{member.workspace.slug}", max_schedules=10_000)
    member.workspace.save()
    return messaging.room_create(workspace=member.workspace, creator=member.user, name="general")


def make(member, room, *, expr="* * * * *", tz="UTC", action="send_message", args=None, due_ago_s=None) -> Schedule:
    args = args or {"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "hello"}}
    s = services.schedule_create(
        workspace=member.workspace,
        owner=member.user,
        name="t",
        trigger={"kind": "cron", "expr": expr, "tz": tz},
        action=action,
        args=args,
    )
    if due_ago_s is not None:
        # The latest slot at or before now (minus due_ago_s): due at once, and the next slot is in the future.
        before = clock.now() - timedelta(seconds=due_ago_s)
        slot, _ = triggers.latest_fire_at_or_before(s.trigger, before=before, not_before=before - timedelta(days=8))
        Schedule.objects.filter(pk=s.pk).update(next_fire_at=slot)
        s.refresh_from_db()
    return s


def test_pass_fires_due_once_and_advances(member, room):
    s = make(member, room, expr="0 0 * * *", due_ago_s=0)
    slot = s.next_fire_at
    assert services.scheduler_pass() == 1
    assert services.scheduler_pass() == 0
    fire = ScheduleFire.objects.get()
    assert fire.slot == slot and fire.skipped_slots == 0 and not fire.manual
    job = Job.objects.get(pk=fire.job_id)
    assert job.function == "schedules.fire" and job.args == {"fire_id": str(fire.id)} and job.state == "queued"
    s.refresh_from_db()
    assert s.next_fire_at == triggers.next_fire_after(s.trigger, clock.now())


def test_a_pass_costs_as_many_queries_for_twenty_due_schedules_as_for_one(member, room):
    """The hot path: the claim, the fire rows, the jobs and the advance are statements per batch, not per row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_of_a_pass_firing(n: int) -> int:
        for _ in range(n):
            make(member, room, expr="0 0 * * *", due_ago_s=0)
        with CaptureQueriesContext(connection) as ctx:
            assert engine.scheduler_pass() == n
        return len(ctx.captured_queries)

    assert queries_of_a_pass_firing(1) == queries_of_a_pass_firing(20)


def test_a_slot_that_already_fired_is_skipped_without_stalling_the_batch(member, room):
    """The unique (schedule, slot) constraint guards a slot; the pass skips it rather than trip it."""
    from django.db import IntegrityError, transaction

    a = make(member, room, expr="0 0 * * *", due_ago_s=0)
    slot = a.next_fire_at
    assert services.scheduler_pass() == 1
    first = ScheduleFire.objects.get(schedule=a)
    with pytest.raises(IntegrityError), transaction.atomic():
        ScheduleFire.objects.create(schedule=a, slot=slot, manual=False)
    ScheduleFire.objects.create(schedule=a, slot=slot, manual=True)  # a manual fire may share the time
    b = make(member, room, expr="0 0 * * *", due_ago_s=0)
    Schedule.objects.filter(pk=a.pk).update(next_fire_at=slot)  # set back to a slot that fired
    assert services.scheduler_pass() == 1  # b fires; a is not fired twice, and the batch commits
    assert ScheduleFire.objects.filter(schedule=b, manual=False).count() == 1
    assert list(ScheduleFire.objects.filter(schedule=a, manual=False)) == [first]
    a.refresh_from_db()
    assert a.state == "active" and a.next_fire_at > slot


def test_a_backlog_larger_than_a_batch_fires_each_schedule_once_over_two_connections(member, room, settings):
    """Past a full claim a second transaction on its own connection claims too (SKIP LOCKED, as a
    second scheduler would): every schedule fires once, and no extra connection stays open."""
    from django.db import connection

    settings.HQ_SCHEDULER_BATCH, settings.HQ_SCHEDULER_CONNECTIONS = 3, 2
    schedules = [make(member, room, expr="0 0 * * *", due_ago_s=0) for _ in range(10)]
    slots = {s.pk: s.next_fire_at for s in schedules}
    app = connection.settings_dict["OPTIONS"]["application_name"]

    def backends() -> int:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app])
            return int(cur.fetchone()[0])

    before = backends()
    assert engine.scheduler_pass() == 10
    fires = list(ScheduleFire.objects.values_list("schedule_id", "slot"))
    assert sorted(fires) == sorted(slots.items())
    assert Job.objects.filter(function="schedules.fire").count() == 10
    assert not Schedule.objects.filter(next_fire_at__lte=clock.now()).exists()
    wait_for(lambda: backends() == before, timeout=10, what="the second connection closed")


def test_a_tick_fires_what_is_due_and_returns_the_earliest_next_fire(member, room):
    due = make(member, room, expr="0 0 * * *", due_ago_s=0)
    later = make(member, room, expr="30 * * * *")
    fired, earliest = engine.scheduler_tick()
    due.refresh_from_db()
    assert fired == 1 and ScheduleFire.objects.get().schedule_id == due.pk
    assert earliest == min(due.next_fire_at, later.next_fire_at) > clock.now()
    assert engine.scheduler_tick() == (0, earliest)  # idle: nothing claimed, the same answer
    Schedule.objects.update(state="paused", next_fire_at=None)
    assert engine.scheduler_tick() == (0, None)


def test_downtime_fires_latest_missed_slot_once(member, room):
    s = make(member, room, expr="0 8 * * *", tz="Europe/Stockholm")
    # Six daily slots before the latest one, whatever the time of day the test runs at (counting
    # back from "now" made it 7 between 08:00 and 09:00 in Stockholm).
    latest, _ = triggers.latest_fire_at_or_before(
        s.trigger, before=clock.now(), not_before=clock.now() - timedelta(days=2)
    )
    six_before = triggers.next_fire_after(s.trigger, latest - timedelta(days=6, minutes=1))
    Schedule.objects.filter(pk=s.pk).update(next_fire_at=six_before)
    assert services.scheduler_pass() == 1
    fire = ScheduleFire.objects.get()
    assert fire.skipped_slots == 6
    assert fire.slot == latest > six_before


def test_corrupted_trigger_is_quarantined_and_the_loop_goes_on(member, room):
    bad = make(member, room, due_ago_s=0)
    good = make(member, room, due_ago_s=0)
    Schedule.objects.filter(pk=bad.pk).update(trigger={"kind": "cron", "expr": "99 * * * *", "tz": "UTC"})
    assert services.scheduler_pass() == 1
    bad.refresh_from_db()
    assert bad.state == "quarantined" and bad.next_fire_at is None and "Trigger" in bad.state_reason
    assert ScheduleFire.objects.get().schedule_id == good.pk


@pytest.mark.parametrize(
    ("field", "stored"),
    [
        ("trigger", "garbage"),
        ("trigger", {}),
        ("trigger", [1, 2]),
        ("trigger", {"kind": "rrule", "expr": "FREQ=DAILY", "tz": "UTC"}),  # no dtstart
        ("trigger", {"kind": "cron", "expr": "0 * * * *", "tz": "Mars/Olympus"}),
        ("trigger", {"kind": "cron", "expr": ["0"], "tz": "UTC"}),
        # Stored before the cost rules: every minute of Monday 29 February would cost a minute of CPU.
        (
            "trigger",
            {
                "kind": "rrule",
                "expr": "FREQ=MINUTELY;INTERVAL=11;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYHOUR=23;BYMINUTE=59",
                "tz": "UTC",
                "dtstart": "1900-01-01T00:00:00",
            },
        ),
        ("action", "gone_plugin.action"),
    ],
)
def test_every_shape_of_corrupted_row_is_quarantined_and_the_pass_goes_on(member, room, field, stored):
    bad = make(member, room, due_ago_s=0)
    good = make(member, room, due_ago_s=0)
    Schedule.objects.filter(pk=bad.pk).update(**{field: stored})
    assert services.scheduler_pass() == 1
    bad.refresh_from_db()
    assert bad.state == "quarantined" and bad.next_fire_at is None and bad.state_reason
    assert ScheduleFire.objects.get().schedule_id == good.pk


def test_send_message_end_to_end(api, member, room, burst):
    s = make(member, room, due_ago_s=0)
    services.scheduler_pass()
    burst()
    fire = ScheduleFire.objects.get()
    assert fire.status == "succeeded" and fire.lag_ms is not None and fire.lag_ms >= 0
    msg = RoomMessage.objects.get(room=room)
    assert (msg.kind, msg.body, msg.schedule_id) == ("bot", "hello", s.pk)
    body = api.get(f"/v1/scheduled-tasks/{s.pk}", **member.headers).json()
    assert body["run_count"] == 1 and body["last_run_status"] == "succeeded" and body["last_run_lag_ms"] >= 0


def test_trigger_ai_end_to_end(member, room, burst):
    messaging.message_post(room=room, body="Sales were up 4% this week.", author=member.user)
    make(member, room, action="trigger_ai", args={"room_id": str(room.id), "prompt": "Summarise the week"}, due_ago_s=0)
    services.scheduler_pass()
    burst()
    reply = RoomMessage.objects.get(room=room, kind="agent")
    assert "HQ built-in agent" in reply.body and "Summarise the week" in reply.body
    assert "1 earlier message" in reply.body
    assert ScheduleFire.objects.get().status == "succeeded"


def test_run_query_end_to_end(member, room, burst):
    messaging.note_create(workspace=member.workspace, author=member.user, title="Q3 plan", tags=["plan"])
    messaging.note_create(workspace=member.workspace, author=member.user, title="Lunch", tags=["food"])
    query = messaging.stored_query_create(
        workspace=member.workspace, owner=member.user, name="Plans", filters={"tags": ["plan"]}
    )
    make(member, room, action="run_query", args={"room_id": str(room.id), "query_id": str(query.id)}, due_ago_s=0)
    services.scheduler_pass()
    burst()
    msg = RoomMessage.objects.get(room=room)
    assert msg.msgtype == "swp.markdown"
    assert msg.body.startswith("**Plans**: 1 note") and "- Q3 plan (" in msg.body and "Lunch" not in msg.body


def test_args_invalid_at_fire_time_quarantines(member, room, burst):
    s = make(member, room, due_ago_s=0)
    room.members.clear()  # the owner left the room: the args no longer validate
    services.scheduler_pass()
    burst()
    s.refresh_from_db()
    fire = ScheduleFire.objects.get()
    assert s.state == "quarantined" and "room_id" in s.state_reason
    assert fire.status == "skipped" and not RoomMessage.objects.exists()


def test_failures_pause_after_threshold(member, room, burst, settings):
    settings.HQ_SCHEDULE_MAX_CONSECUTIVE_FAILURES = 2
    s = make(member, room, action="trigger_ai", args={"room_id": str(room.id), "prompt": "hi"})
    member.workspace.agents.update(backend="openai_compatible")  # no such backend configured: each fire fails
    for _ in range(2):
        services.schedule_fire_now(schedule=s, actor=member.user)
        burst()
    s.refresh_from_db()
    assert s.failure_count == 2 and s.consecutive_failure_count == 2
    assert s.state == "paused" and "2 consecutive failures" in s.state_reason


@pytest.fixture
def shifted_clock(procs):
    """This process and its subprocesses 5 s before a minute boundary; restored afterwards."""
    yield shift_clock_before_minute(procs, 5)
    clock.set_offset(0)


def test_an_idle_scheduler_is_woken_by_a_change_and_fires_on_the_slot(api, member, room, procs, shifted_clock):
    """No coarse tick: a scheduler asleep with nothing due (300 s cap) hears the new schedule, then
    sleeps exactly until its slot."""
    procs.worker("--scheduler-only")
    wait_for(Worker.objects.exists, timeout=30, what="the scheduler")
    time.sleep(0.5)  # its first pass found nothing: it is asleep for up to 300 s
    body = factories.every_minute_task(room.id)
    created = api.post("/v1/scheduled-tasks", body, format="json", **member.headers)
    assert created.status_code == 201, created.content
    slot = Schedule.objects.get(pk=created.json()["id"]).next_fire_at
    assert 0 < (slot - clock.now()).total_seconds() < 6
    wait_for(ScheduleFire.objects.exists, timeout=20, what="the fire")
    fire = ScheduleFire.objects.get()
    assert fire.slot == slot and not fire.manual
    assert timedelta(0) <= fire.created_at - slot < timedelta(seconds=2), "fired on its slot, not on a tick"


def test_two_scheduler_processes_fire_each_slot_once(member, room, procs):
    schedules = [make(member, room, expr="0 0 * * *", due_ago_s=0) for _ in range(150)]
    procs.env["HQ_SCHEDULER_BATCH"] = "10"
    a, b = procs.worker("--scheduler-only"), procs.worker("--scheduler-only")
    # Both up (a worker's row is written once its SIGTERM handler is in place): on a loaded machine
    # one could fire everything while the other still starts, and the SIGTERM below would kill it.
    wait_for(lambda: Worker.objects.filter(pid__in=[a.pid, b.pid]).count() == 2, timeout=60, what="both up")
    wait_for(lambda: ScheduleFire.objects.count() >= 150, timeout=120, what="all schedules fired")
    for p in (a, b):
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    per_slot = ScheduleFire.objects.values("schedule_id", "slot").annotate(n=Count("id"))
    assert all(row["n"] == 1 for row in per_slot)
    fired = {row["schedule_id"] for row in per_slot}
    assert fired == {s.pk for s in schedules}, "no schedule missed"
    assert Job.objects.filter(function="schedules.fire").count() == ScheduleFire.objects.count()
    assert len(set(Job.objects.values_list("correlation_id", flat=True))) == 150


def test_scheduler_killed_mid_batch_then_restarted(member, room, procs):
    for _ in range(400):
        make(member, room, expr="0 0 * * *", due_ago_s=0)
    procs.env["HQ_SCHEDULER_BATCH"] = "5"
    victim = procs.worker("--scheduler-only")
    wait_for(lambda: ScheduleFire.objects.exists(), timeout=30, what="the first fires")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert ScheduleFire.objects.count() < 400, "killed before the end of the run"
    survivor = procs.worker("--scheduler-only")
    wait_for(lambda: ScheduleFire.objects.count() >= 400, timeout=60, what="the rest fired")
    survivor.send_signal(signal.SIGTERM)
    survivor.wait(timeout=30)
    assert ScheduleFire.objects.count() == 400
    assert Job.objects.filter(function="schedules.fire").count() == 400
    assert not ScheduleFire.objects.values("schedule_id").annotate(n=Count("id")).filter(n__gt=1).exists()


def test_fire_now_keeps_cadence_and_runs_while_paused(member, room, burst):
    s = make(member, room)
    before = s.next_fire_at
    services.schedule_pause(schedule=s, actor=member.user)
    fire = services.schedule_fire_now(schedule=s, actor=member.user)
    assert fire.manual
    burst()
    assert ScheduleFire.objects.get().status == "succeeded"
    s = services.schedule_resume(schedule=s)
    assert s.next_fire_at >= before


def test_archive_cancels_pending_fire_jobs(member, room):
    s = make(member, room, due_ago_s=0)
    services.scheduler_pass()
    fire = ScheduleFire.objects.get()
    services.schedule_archive(schedule=s, actor=member.user)
    fire.refresh_from_db()
    assert fire.status == "skipped"
    assert Job.objects.get(pk=fire.job_id).state == "cancelled"
    s.refresh_from_db()
    assert s.state == "archived" and s.next_fire_at is None
