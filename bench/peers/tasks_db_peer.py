"""django-tasks-db for the tasks bench (run by bench/tasks_bench.py with .run/bench-tasks-db/bin/python).

No HQ code: its own Django (5.2 with the django-tasks backport, as django-tasks-db's "compat" extra
installs on Python 3.11), its own PostgreSQL database (created and dropped by the bench), and a
minimal project this driver writes to --home: a settings module (`tdb_bench_settings`: only
django_tasks_db and what it needs, TASKS on `django_tasks_db.DatabaseBackend`) and the task module
(`tdb_bench_tasks.noop`, the same no-op body as HQ's side).

    install:  `migrate` (django_tasks_db's table and indexes).
    enqueue:  empty the task table, then N `noop.enqueue()` from one thread, each in autocommit
              (one INSERT and its commit, as a caller outside a transaction gets); with --atomic
              all N inside one `transaction.atomic()` block, its commit timed too. Prints JSON.
    drain:    `db_worker --batch --interval 0 --no-startup-delay --no-reload` (run everything
              ready, then exit) in this process, as `manage.py db_worker` runs it: one task at a
              time. Then the window from its rows, min(started_at) -> max(finished_at) (both
              stamped by the worker: `claim` in the claiming transaction, `set_successful` in the
              save that records the success), and the rows' statuses. Prints JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

from common import timed_calls

SETTINGS = """
SECRET_KEY = "tasks-db-bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_tasks_db"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {databases!r}
TASKS = {{"default": {{"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}}}
LOGGING_CONFIG = None
"""

TASKS_MODULE = '''
"""The tasks bench's no-op task on django-tasks-db."""
from django_tasks import task


@task
def noop() -> None:
    """Do nothing."""
'''


def setup(home: Path, dbname: str) -> None:
    """Write the project to `home` (idempotent) and start Django on it."""
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": dbname,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }
    home.mkdir(parents=True, exist_ok=True)
    (home / "tdb_bench_settings.py").write_text(SETTINGS.format(databases=databases))
    (home / "tdb_bench_tasks.py").write_text(TASKS_MODULE)
    sys.path.insert(0, str(home))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tdb_bench_settings"
    import django

    django.setup()


def enqueue(n: int, atomic: bool) -> dict:
    from django.db import connection, transaction
    from django_tasks_db.models import DBTaskResult
    from tdb_bench_tasks import noop

    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {DBTaskResult._meta.db_table}")
    took = timed_calls(noop.enqueue, n, transaction.atomic if atomic else None)
    ready = DBTaskResult.objects.filter(status="READY").count()
    if ready != n:
        raise SystemExit(f"enqueued {n}, the table holds {ready} ready")
    return {"enqueue_s": took}


def drain(n: int) -> dict:
    from django.core.management import call_command
    from django.db.models import Count, Max, Min
    from django_tasks_db.models import DBTaskResult

    t_ready = time.time()
    call_command(
        "db_worker", batch=True, interval=0, startup_delay=False, reload=False, stdout=io.StringIO(), verbosity=1
    )
    t_exit = time.time()
    span = DBTaskResult.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    statuses = dict(DBTaskResult.objects.values_list("status").annotate(c=Count("id")).values_list("status", "c"))
    # worker_ids lists each worker that claimed the row: one entry means it ran once.
    once = sum(1 for ids in DBTaskResult.objects.values_list("worker_ids", flat=True) if len(ids) == 1)
    first, last = span["first"], span["last"]
    return {
        "n": n,
        "first_start": first.timestamp() if first else None,
        "last_finish": last.timestamp() if last else None,
        "t_ready": t_ready,
        "t_exit": t_exit,
        "statuses": statuses,
        "ran_once": once,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["install", "enqueue", "drain"])
    p.add_argument("--db", required=True, help="PostgreSQL database on 127.0.0.1:5432 (user postgres)")
    p.add_argument("--home", required=True, help="directory for the settings and task modules")
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--atomic", action="store_true", help="enqueue all N inside one transaction")
    a = p.parse_args()
    setup(Path(a.home), a.db)
    if a.command == "install":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return 0
    out = enqueue(a.n, a.atomic) if a.command == "enqueue" else drain(a.n)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
