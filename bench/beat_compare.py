#!/usr/bin/env python
"""django-celery-beat's DatabaseScheduler over N crontab PeriodicTasks: the cost of one tick.

Run by bench/scheduler_bench.py with the THROWAWAY venv's interpreter (/tmp/beatvenv: celery,
django-celery-beat, Django 5.2, psycopg), never the project's; it imports nothing from HQ.

    /tmp/beatvenv/bin/python bench/beat_compare.py --n 10000 --pg hq_bench_beat   # or --sqlite FILE

A minimal Django settings module of its own is written to a temp dir (only django_celery_beat
and its dependencies installed). The tables are emptied, one CrontabSchedule `0 * * * *` (UTC) is
created and N enabled PeriodicTasks point at it (bulk_create, then `PeriodicTasks.update_changed()`
as the admin's saves would). Celery runs with `broker_url='memory://'` and `apply_entry` is
overridden to count instead of send, so nothing is published: only beat's evaluation is timed.

Measured, all wall clock in this process:
- first tick: `DatabaseScheduler(app=app)` (its initial read: every enabled row -> ModelEntry)
  plus the first `tick()` (populate_heap: `is_due()` of every entry, then heapify);
- rebuild tick: `PeriodicTasks.update_changed()` (any edit of any task does this) then `tick()`:
  schedule_changed() -> sync() + all_as_schedule() (reload every row) -> populate_heap(). Beat also
  forces this every 5 minutes (SCHEDULE_SYNC_MAX_INTERVAL) even with no change;
- steady tick: `tick()` with no change: the PeriodicTasks.last_change() query plus
  `schedules_equal(old, new)` over every entry, then a look at the heap's top. Beat ticks at
  least every 5 s (DEFAULT_MAX_INTERVAL) with the database scheduler.
Measurement stops after --budget-s seconds (SIGALRM) and reports what finished.
Prints one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = """
SECRET_KEY = "beat-bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_celery_beat"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {databases!r}
DJANGO_CELERY_BEAT_TZ_AWARE = True
LOGGING_CONFIG = None
"""


class OutOfTime(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001, ARG001
    raise OutOfTime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, required=True, help="PeriodicTasks to create")
    ap.add_argument("--pg", default=None, help="PostgreSQL database name on 127.0.0.1:5432 (user postgres)")
    ap.add_argument("--sqlite", default=None, help="SQLite file instead of PostgreSQL")
    ap.add_argument("--steady", type=int, default=20, help="steady ticks timed (median reported)")
    ap.add_argument("--rebuilds", type=int, default=5, help="at most this many rebuild ticks (median reported)")
    ap.add_argument("--budget-s", type=float, default=60.0, help="measurement time limit after setup")
    ap.add_argument("--no-parts", action="store_true", help="skip timing the rebuild's two parts separately")
    args = ap.parse_args()

    if args.pg:
        databases = {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": args.pg,
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": "5432",
            }
        }
    else:
        databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": args.sqlite}}
    tmp = Path(tempfile.mkdtemp(prefix="beatbench-"))
    (tmp / "beat_bench_settings.py").write_text(SETTINGS.format(databases=databases))
    sys.path.insert(0, str(tmp))
    os.environ["DJANGO_SETTINGS_MODULE"] = "beat_bench_settings"

    import celery
    import django
    from django.core.management import call_command

    django.setup()
    import django_celery_beat
    from celery import Celery
    from django.db import connection
    from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks
    from django_celery_beat.schedulers import DatabaseScheduler

    out: dict = {
        "n": args.n,
        "db": f"postgresql {args.pg}" if args.pg else "sqlite",
        "versions": {
            "celery": celery.__version__,
            "django-celery-beat": django_celery_beat.__version__,
            "django": django.get_version(),
        },
    }
    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cur:  # raw DELETEs: the ORM's delete() fires a change signal per row
        for model in (PeriodicTask, CrontabSchedule):
            cur.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")
    cron = CrontabSchedule.objects.create(
        minute="0", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.bulk_create(
        (PeriodicTask(name=f"bench-{i}", task="bench.noop", crontab=cron, enabled=True) for i in range(args.n)),
        batch_size=5000,
    )
    PeriodicTasks.update_changed()
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
    out["setup_s"] = time.perf_counter() - t0

    app = Celery("beatbench", set_as_current=True)
    app.conf.broker_url = "memory://"
    app.conf.timezone = "UTC"
    app.conf.enable_utc = True

    class NoSendScheduler(DatabaseScheduler):
        sent = 0

        def apply_entry(self, entry, producer=None):  # noqa: ANN001, ARG002
            NoSendScheduler.sent += 1  # would publish entry.task here; nothing is sent

    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, args.budget_s)
    try:
        t = time.perf_counter()
        sched = NoSendScheduler(app=app)
        t_init = time.perf_counter()
        sched.tick()
        t_tick = time.perf_counter()
        out["init_read_ms"] = (t_init - t) * 1000
        out["first_tick_ms"] = (t_tick - t) * 1000
        out["entries"] = len(sched.schedule)

        steady = []
        for _ in range(args.steady):
            t = time.perf_counter()
            sched.tick()
            steady.append((time.perf_counter() - t) * 1000)
        out["steady_tick_ms"] = statistics.median(steady)
        out["steady_iters"] = len(steady)

        if not args.no_parts:  # the rebuild's parts, once: reload every row, then is_due() of every entry
            t = time.perf_counter()
            fresh = sched.all_as_schedule()
            out["all_as_schedule_ms"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            for entry in fresh.values():
                entry.is_due()
            out["is_due_all_ms"] = (time.perf_counter() - t) * 1000
            del fresh

        rebuild = []
        for _ in range(args.rebuilds):
            PeriodicTasks.update_changed()
            time.sleep(0.002)  # last_update must move past the one the scheduler saw
            t = time.perf_counter()
            sched.tick()
            rebuild.append((time.perf_counter() - t) * 1000)
            out["rebuild_tick_ms"] = statistics.median(rebuild)
            out["rebuild_iters"] = len(rebuild)
    except OutOfTime:
        out["timed_out"] = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    out["measure_s"] = time.perf_counter() - t0 - out["setup_s"]
    out["sent"] = NoSendScheduler.sent
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
