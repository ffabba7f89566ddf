#!/usr/bin/env python
"""Soak: steady submits, approvals and schedule changes for N minutes, then lost/duplicated counts.

Loopback only and bounded in time and count. It uses its own PostgreSQL database `hq_soak`
(dropped and created) and Redis db 15 with the prefix `hqsoak:`, runs one `manage.py runworker`
(jobs, relay, reaper, HITL expiry, scheduler), and drives the services in this process:

- every tick: one `hq.echo` job with a priority (spread over -100..100; some with an idempotency
  key submitted twice), and one gated job (`require_approval`) that a second admin approves or
  rejects on the next tick; every 3rd tick a `hq.echo` with a unique key that 3 ticks in a row
  share (a duplicate, or with `on_conflict: "replace"` a debounce, while the first waits);
- every 10 ticks: a new every-minute schedule (send_message), and a pause/resume of an older one;
- limits: every tick a `tests.keyed` job (50 ms) on one of 4 keys `soak:N` limited to 2 running
  (a KeyLimit), every 2nd tick a `tests.one_at_a_time` job (its registration: one at a time), and
  every 10th a `hq.echo` on the key `soakrate:1` limited to 3 starts a second; all with priorities.

A thread samples the database every 50 ms: the running jobs per `soak:N` key, and the keys with two
jobs waiting at once (never: a unique key has one holder). At the end it waits for the queue to
drain and prints: jobs accepted, lost (accepted but not finished), started twice, fires
duplicated per (schedule, slot), the most running per limited key (database samples, and inside
the bodies), the most starts of the rated key in any second, and the worker's memory growth (VmRSS
at 30 s and at the end). Exit code 1 when anything was lost or doubled, or a limit was exceeded.

    .venv/bin/python bench/soak.py --minutes 2 --rate 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DB = os.environ.get("HQ_SOAK_DB", "hq_soak")  # another database and Redis keep a second checkout apart
ENV = {
    "DJANGO_SETTINGS_MODULE": "hq.settings",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": os.environ.get("HQ_SOAK_REDIS_URL", "redis://127.0.0.1:6379/15"),
    "HQ_REDIS_PREFIX": "hqsoak:",
    "DEBUG": "1",
    "HQ_PLUGINS": "tests.plugin",
    "HQ_RELAY_GRACE_S": "3",
    "HQ_DB_APPLICATION_NAME": "hq-soak",
}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def reset_database(db: str = DB, env: dict[str, str] = ENV) -> None:
    """Drop and create `db`, then migrate it (bench/rss_soak.py uses it for its own database)."""
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db}")
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env={**os.environ, **env}, check=True
    )


def _echo_jobs(q: Any, ws: Any, user: Any, tick: int) -> list[Any]:
    """A tick's `hq.echo` submits (module docstring); returns the ids of the jobs they answered with."""
    key = f"k{tick // 2}" if tick % 5 == 0 else None  # every 5th: a repeated idempotency key
    job, _ = q.job_submit(
        workspace=ws,
        owner=user,
        submission=q.Submission(
            function="hq.echo", args={"t": tick}, idempotency_key=key, priority=(tick * 37) % 201 - 100
        ),
    )
    if tick % 3:
        return [job.pk]
    # Three ticks in a row share a unique key: the later submits find the first while it waits.
    unique, _ = q.job_submit(
        workspace=ws,
        owner=user,
        submission=q.Submission(
            function="hq.echo",
            args={"u": tick},
            unique_key=f"u{tick // 9}",
            on_conflict="replace" if tick % 2 else None,
            defer_by_seconds=0.5,
        ),
    )
    return [job.pk, unique.pk]


def _limited_jobs(q: Any, ws: Any, user: Any, tick: int) -> list[Any]:
    """A tick's keyed and limited submits (module docstring); returns their ids."""
    priority = (tick * 53) % 201 - 100
    subs = [
        q.Submission(
            function="tests.keyed",
            args={"key": f"soak:{tick % 4}", "seconds": 0.05},
            concurrency_key=f"soak:{tick % 4}",
            priority=priority,
        )
    ]
    if tick % 2 == 0:
        subs.append(q.Submission(function="tests.one_at_a_time", args={"seconds": 0.02}, priority=priority))
    if tick % 10 == 0:
        subs.append(q.Submission(function="hq.echo", args={"r": tick}, concurrency_key="soakrate:1"))
    return [q.job_submit(workspace=ws, owner=user, submission=sub)[0].pk for sub in subs]


class Sampler:
    """Samples the database every 50 ms in a thread: the most running per `soak:N` key and per
    limited function, and how often a unique key had two jobs waiting."""

    def __init__(self) -> None:
        import threading

        self.most: dict[str, int] = {}
        self.unique_doubled = 0
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stop.is_set():
                with connection.cursor() as cur:
                    cur.execute(
                        "SELECT COALESCE(concurrency_key, function), count(*) FROM queueapp_job"
                        " WHERE state = 'running' AND (concurrency_key LIKE 'soak:%%'"
                        " OR function = 'tests.one_at_a_time') GROUP BY 1"
                    )
                    for scope, n in cur.fetchall():
                        self.most[scope] = max(self.most.get(scope, 0), n)
                    cur.execute(
                        "SELECT count(*) FROM (SELECT 1 FROM queueapp_job WHERE unique_key IS NOT NULL"
                        " AND attempts = 0 AND state IN ('queued', 'deferred')"
                        " GROUP BY workspace_id, function, unique_key HAVING count(*) > 1) d"
                    )
                    self.unique_doubled += cur.fetchone()[0]
                self.samples += 1
                time.sleep(0.05)
        finally:
            connection.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="how long to drive load (default 2)")
    ap.add_argument("--rate", type=float, default=20.0, help="ticks per second (default 20)")
    ap.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for the drain")
    args = ap.parse_args()
    if not 0 < args.minutes <= 60 or not 0 < args.rate <= 200:
        ap.error("--minutes must be in (0, 60] and --rate in (0, 200]")

    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    reset_database()
    import django

    django.setup()
    import redis
    from django.db.models import Count

    from hq import services as hq_services
    from hq.models import Membership, Plan
    from queueapp import services as q
    from queueapp.models import FINISHED_STATES, HITLRequest, Job, JobEvent
    from schedules import services as s
    from schedules.models import ScheduleFire

    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    owner = hq_services.token_provision(email="soak@example.com", workspace="soak", admin=True).token
    approver = hq_services.token_provision(email="approver@example.com", workspace="soak", admin=True).token
    ws = owner.workspace
    Membership.objects.filter(workspace=ws).update(role="admin")
    ws.plan = Plan.objects.create(name="soak", max_schedules=100_000)
    ws.save()
    from hq import messaging

    room = messaging.room_create(workspace=ws, creator=owner.user, name="soak")
    from queueapp import limits
    from queueapp.models import KeyLimit

    limits.key_limit_save(KeyLimit(pattern="soak:*", concurrency=2))
    limits.key_limit_save(KeyLimit(pattern="soakrate:*", rate="3/s"))
    sampler = Sampler()
    limited: set = set()

    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runworker", "--concurrency", "50"],
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    accepted: set = set()
    pending_gates: list = []
    schedules: list = []
    rss_start = 0
    try:
        sampler.thread.start()
        t0 = time.monotonic()
        tick = 0
        while time.monotonic() - t0 < args.minutes * 60:
            tick += 1
            accepted.update(_echo_jobs(q, ws, owner.user, tick))
            limited.update(_limited_jobs(q, ws, owner.user, tick))
            gated, _ = q.job_submit(
                workspace=ws,
                owner=owner.user,
                submission=q.Submission(
                    function="hq.echo", args={"gated": tick}, requires_approval=True, approval_reason="soak"
                ),
            )
            accepted.add(gated.pk)
            for hitl in pending_gates:
                q.hitl_decide(
                    request=hitl,
                    actor=approver.user,
                    decision="approve" if tick % 3 else "reject",
                    via="api",
                    comment="soak",
                )
            pending_gates = list(HITLRequest.objects.filter(job_id=gated.pk))
            if tick % 10 == 0:
                schedules.append(
                    s.schedule_create(
                        workspace=ws,
                        owner=owner.user,
                        name=f"soak {tick}",
                        trigger={"kind": "cron", "expr": "* * * * *", "tz": "Europe/Stockholm"},
                        action="send_message",
                        args={"room_id": str(room.id), "content": {"msgtype": "swp.text", "body": "tick"}},
                    )
                )
                if len(schedules) > 2:
                    old = schedules[-3]
                    s.schedule_pause(schedule=old, actor=owner.user)
                    s.schedule_resume(schedule=old)
            if not rss_start and time.monotonic() - t0 > 30:
                rss_start = rss_kb(worker.pid)
            time.sleep(max(0.0, t0 + tick / args.rate - time.monotonic()))
        for hitl in pending_gates:
            q.hitl_decide(request=hitl, actor=approver.user, decision="approve", via="api")
        accepted |= limited
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            if not Job.objects.filter(pk__in=accepted).exclude(state__in=FINISHED_STATES).exists():
                break
            time.sleep(0.5)
        rss_end = rss_kb(worker.pid)
    finally:
        sampler.stop.set()
        sampler.thread.join(timeout=10)
        worker.terminate()
        worker.wait(timeout=60)

    lost = Job.objects.filter(pk__in=accepted).exclude(state__in=FINISHED_STATES).count()
    twice = (
        JobEvent.objects.filter(job_id__in=accepted, kind="started")
        .values("job_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    dup_fires = (
        ScheduleFire.objects.filter(manual=False)
        .values("schedule_id", "slot")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    states = dict(Job.objects.filter(pk__in=accepted).values_list("state").annotate(n=Count("id")))
    print(f"soak: {args.minutes} min at {args.rate}/s ticks; jobs accepted {len(accepted)} {states}")
    print(f"schedules {len(schedules)}, fires {ScheduleFire.objects.count()}")
    print(f"lost {lost}, started twice {twice}, duplicated fires {dup_fires}")
    from tests.plugin.hq_plugin import keyed_most

    inside = {f"soak:{i}": keyed_most(f"soak:{i}") for i in range(4)}
    rated = sorted(
        JobEvent.objects.filter(kind="started", job__concurrency_key="soakrate:1").values_list("at", flat=True)
    )
    rate_most = max((sum(1 for u in rated[i:] if (u - t).total_seconds() < 1) for i, t in enumerate(rated)), default=0)
    over = (
        any(n > 2 for scope, n in sampler.most.items() if scope.startswith("soak:"))
        or sampler.most.get("tests.one_at_a_time", 0) > 1
        or any(n > 2 for n in inside.values())
        or rate_most > 3
        or sampler.unique_doubled > 0
    )
    print(
        f"limited jobs {len(limited)}; most running (database, {sampler.samples} samples) {sampler.most}; "
        f"inside the bodies {inside}; soakrate:1 (3/s) most starts in 1 s {rate_most} of {len(rated)}; "
        f"unique keys seen with two jobs waiting {sampler.unique_doubled}"
    )
    if rss_start:
        print(
            f"worker RSS {rss_start / 1024:.1f} MiB at 30 s -> {rss_end / 1024:.1f} MiB at the end "
            f"({(rss_end - rss_start) / 1024:+.1f} MiB)"
        )
    return 1 if (lost or twice or dup_fires or over) else 0


if __name__ == "__main__":
    sys.exit(main())
