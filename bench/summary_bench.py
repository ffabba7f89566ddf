#!/usr/bin/env python
"""Time the observability summary over a million jobs (`.venv/bin/python bench/summary_bench.py`).

Setup: PostgreSQL database `hq_bench_summary` (or `--database`; dropped and created, migrated), 10 workspaces, then
1,000,000 jobs spread over 30 days in one `INSERT ... SELECT FROM generate_series` (a realistic mix:
~95 % finished, the rest queued, deferred, awaiting approval or running; 4 queues, 8 functions;
one workspace holds 40 %) written in time order as a live table is, 500 schedules and 100,000
fires, then VACUUM ANALYZE.

Measured: `queueapp.observability.summary` for one workspace (what the API answers) and for every
workspace (a superuser's dashboard), median of 5 runs after a warm-up. Target: under 200 ms.
Then the admin's jobs list on the same data (`bench/admin_bench.py`, target < 300 ms a page).
Also measured, without a target: one minute's queue-depth sample (the `depth_sampler` side task),
and the admin dashboard's live part (`/admin/ops/dashboard/live/`, which its page fetches every
few seconds) for one workspace and for a superuser.
The database is dropped at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "hq_bench_summary"
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
TARGET_MS = 200.0

JOBS_SQL = """
INSERT INTO queueapp_job (
    id, workspace_id, owner_id, function, args, queue, state, correlation_id, idempotency_key,
    idempotency_hash, attempts, max_tries, tries_base, timeout_s, retry_backoff_s, due_at, result,
    error, worker_id, cancel_requested_at, created_at, dispatched_at, started_at, first_started_at,
    finished_at, updated_at)
SELECT gen_random_uuid(), ws, NULL, fn, '{}'::jsonb, q, st, '', NULL, '', att, 3, 0, 300, 2.0, due,
       NULL, '', CASE WHEN st = 'running' THEN 'bench:1:abc' ELSE '' END, NULL, created, created,
       started, started, finished, COALESCE(finished, started, created)
  FROM (
    SELECT ws, fn, q, st, created, due,
           CASE WHEN st IN ('succeeded', 'failed') OR st = 'running' THEN due + wait END AS started,
           CASE WHEN st IN ('succeeded', 'failed') THEN due + wait + run
                WHEN st IN ('cancelled', 'rejected') THEN due + wait END AS finished,
           CASE WHEN st IN ('succeeded', 'failed', 'running') THEN 1 ELSE 0 END AS att
      FROM (
        SELECT (%(workspaces)s::uuid[])[CASE WHEN r1 < 0.4 THEN 1 ELSE 2 + floor(r1 * 9)::int %% 9 END] AS ws,
               (ARRAY['hq.echo','mail.send','mail.digest','reports.build','reports.export',
                      'agents.run','schedules.fire','billing.sync'])[1 + floor(r2 * 8)::int] AS fn,
               (ARRAY['default','default','mail','reports'])[1 + floor(r3 * 4)::int] AS q,
               CASE WHEN created > %(now)s - interval '2 hours' AND r4 < 0.06 THEN
                         (ARRAY['queued','deferred','awaiting_approval','running'])[1 + floor(r4 / 0.015)::int]
                    WHEN created <= %(now)s - interval '2 hours' AND r4 < 0.0004 THEN 'awaiting_approval'
                    WHEN r4 < 0.90 THEN 'succeeded'
                    WHEN r4 < 0.96 THEN 'failed'
                    WHEN r4 < 0.99 THEN 'cancelled'
                    ELSE 'rejected' END AS st,
               created,
               CASE WHEN r4 BETWEEN 0.015 AND 0.03 AND created > %(now)s - interval '2 hours'
                    THEN created + interval '3 hours' ELSE created END AS due,
               make_interval(secs => -ln(1 - random()) * 0.05) AS wait,
               make_interval(secs => -ln(1 - random()) * 0.8) AS run
          FROM (
            SELECT random() AS r1, random() AS r2, random() AS r3, random() AS r4,
                   %(now)s - make_interval(secs => random() * 30 * 86400) AS created
              FROM generate_series(1, %(n)s)
          ) raw
      ) shaped
  ) timed
 ORDER BY created  -- rows land in time order, as a live table's do (appended as jobs come in)
"""

SCHEDULES_SQL = """
INSERT INTO schedules_schedule (
    id, workspace_id, owner_id, name, description, trigger, action, args, state, state_reason,
    next_fire_at, last_fire_at, last_fire_status, fire_count, failure_count, consecutive_failure_count,
    last_fire_lag_ms, last_run_conversation_id, created_at, updated_at)
SELECT gen_random_uuid(), (%(workspaces)s::uuid[])[1 + i %% 10], %(owner)s, 'schedule ' || i, NULL,
       '{"kind": "cron", "expr": "0 * * * *", "tz": "Europe/Stockholm"}'::jsonb, 'send_message', '{}'::jsonb,
       st, CASE WHEN st = 'quarantined' THEN 'Trigger: bench' ELSE '' END,
       CASE WHEN st = 'active' THEN %(now)s + interval '1 hour' END, NULL, '', 0, 0,
       CASE WHEN i %% 37 = 0 THEN 3 ELSE 0 END, NULL, NULL, %(now)s, %(now)s
  FROM (SELECT i, (ARRAY['active','active','active','active','active','active','paused','paused',
                         'quarantined','archived'])[1 + i %% 10] AS st
          FROM generate_series(1, 500) i) s
"""

FIRES_SQL = """
INSERT INTO schedules_schedulefire (
    id, schedule_id, slot, manual, job_id, status, skipped_slots, lag_ms, error, conversation_id,
    created_at, started_at, finished_at)
SELECT gen_random_uuid(), s.id, date_trunc('hour', %(now)s) - make_interval(hours => h), false, NULL,
       CASE WHEN random() < 0.95 THEN 'succeeded' ELSE 'failed' END, 0, (random() * 2000)::int, '', NULL,
       date_trunc('hour', %(now)s) - make_interval(hours => h),
       date_trunc('hour', %(now)s) - make_interval(hours => h),
       date_trunc('hour', %(now)s) - make_interval(hours => h)
  FROM schedules_schedule s CROSS JOIN generate_series(0, 199) h
"""


def admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def setup_database(n_jobs: int) -> list[str]:
    """Create, migrate and fill the bench database; return the workspace ids (the first is the big one)."""
    from django.core.management import call_command
    from django.db import connection

    from hq import clock
    from hq import services as hq_services

    call_command("migrate", verbosity=0)
    workspaces = [hq_services.workspace_get_or_create(slug_or_name=f"bench-{i}")[0] for i in range(10)]
    owner, _ = hq_services.user_get_or_create(email="bench@example.com")
    ids = [str(w.pk) for w in workspaces]
    now = clock.now()
    params = {"workspaces": ids, "now": now, "n": n_jobs, "owner": owner.pk}
    with connection.cursor() as cur:
        started = time.perf_counter()
        cur.execute(JOBS_SQL, params)
        print(f"  inserted {n_jobs:,} jobs in {time.perf_counter() - started:.1f} s", flush=True)
        cur.execute(SCHEDULES_SQL, params)
        cur.execute(FIRES_SQL, params)
        cur.execute("VACUUM ANALYZE")  # what autovacuum does to a live table
        cur.execute("SELECT state, count(*) FROM queueapp_job GROUP BY state ORDER BY 2 DESC")
        print("  jobs by state: " + ", ".join(f"{s} {n:,}" for s, n in cur.fetchall()))
        cur.execute("SELECT count(*) FROM queueapp_job WHERE finished_at >= %s", [now - clock_day()])
        print(f"  finished in the last 24 h: {cur.fetchone()[0]:,}")
        cur.execute("SELECT count(*) FROM schedules_schedulefire")
        print(f"  schedule fires: {cur.fetchone()[0]:,}")
    return ids


def clock_day():
    from datetime import timedelta

    return timedelta(days=1)


def time_summary(workspace_ids: list[str] | None, runs: int) -> list[float]:
    from django.db import reset_queries

    from queueapp import observability

    observability.summary(workspace_ids=workspace_ids)  # warm-up: caches, plans
    timings = []
    for _ in range(runs):
        reset_queries()
        started = time.perf_counter()
        observability.summary(workspace_ids=workspace_ids)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def time_dashboard(workspace_ids: list[str], runs: int) -> None:
    """A depth sample per minute of the last hour, then the dashboard's live part as staff see it."""
    from datetime import timedelta

    from django.test import Client

    from hq import clock
    from hq import services as hq_services
    from hq.models import Membership, User, Workspace
    from queueapp.observability import depth

    first = depth.minute_of(clock.now()) - timedelta(minutes=59)
    timings = []
    for i in range(60):
        started = time.perf_counter()
        depth.sample_depth(first + timedelta(minutes=i))
        timings.append((time.perf_counter() - started) * 1000)
    print(f"  depth sample (all workspaces), median {statistics.median(timings):.1f} ms over 60 minutes")
    root = User.objects.create_superuser(email="bench-root@example.com", password="unused-bench-password")
    ops = User.objects.create_user(email="bench-ops@example.com", password="unused-bench-password", is_staff=True)
    hq_services.membership_set(
        user=ops, workspace=Workspace.objects.get(pk=workspace_ids[0]), role=Membership.Role.ADMIN
    )
    for label, user in (("one workspace (its admin, 40 % of jobs)", ops), ("all workspaces (superuser)", root)):
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        client.get("/admin/ops/dashboard/live/")  # warm-up
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            assert client.get("/admin/ops/dashboard/live/").status_code == 200
            timings.append((time.perf_counter() - started) * 1000)
        print(
            f"  dashboard live part, {label}: median {statistics.median(timings):.1f} ms over {runs} runs "
            f"({', '.join(f'{t:.0f}' for t in timings)} ms)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="Jobs to insert (default 1,000,000).")
    parser.add_argument("--runs", type=int, default=5, help="Timed runs per case (median reported).")
    parser.add_argument(
        "--admin-runs", type=int, default=20, help="Timed requests per admin page (bench/admin_bench.py)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    parser.add_argument(
        "--database",
        default=DB,
        help=f"Database to drop, create and fill (default {DB}); never DATABASE_URL's, which the bench would drop.",
    )
    args = parser.parse_args()
    db = args.database
    if not db.replace("_", "").isalnum():
        parser.error("--database takes letters, digits and underscores only")

    admin_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    admin_sql(f"CREATE DATABASE {db}")
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
    os.environ.setdefault("DEBUG", "1")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hq.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    try:
        print(f"Setting up {db} with {args.jobs:,} jobs...", flush=True)
        ids = setup_database(args.jobs)
        results = {}
        for label, scope in (("one workspace (API, 40 % of jobs)", ids[:1]), ("all workspaces (superuser)", None)):
            timings = time_summary(scope, args.runs)
            results[label] = statistics.median(timings)
            print(
                f"  summary, {label}: median {results[label]:.1f} ms over {args.runs} runs "
                f"({', '.join(f'{t:.0f}' for t in timings)} ms)"
            )
        time_dashboard(ids, args.runs)
        from bench import admin_bench  # the admin's jobs list, on the same million jobs

        admin_bench.report(ids, args.admin_runs)
        worst = max(results.values())
        verdict = "OK" if worst < TARGET_MS else "OVER"
        print(f"Result: worst median {worst:.1f} ms; target < {TARGET_MS:.0f} ms: {verdict}")
        print("Command: .venv/bin/python bench/summary_bench.py")
        return 0
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
