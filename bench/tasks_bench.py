#!/usr/bin/env python
"""Django task backends benchmark (issue 17), in one run (`.venv/bin/python bench/tasks_bench.py`).

HQ's django.tasks backends against django-tasks-db 0.13.0 (Django's own database backend, split
out of django-tasks), the same no-op task on both, in the same run. Each round runs every figure
once, the two sides back to back; the report gives the median of the rounds (3 by default) with
the lowest and highest, and each ratio is the median of the rounds' ratios.

HQ's side: database `hq_bench_tasks` (drop, create, migrate), Redis HQ_BENCH_REDIS_URL (default
db 15 on 6379, prefix `hqbenchtasks:`, FLUSHDB between phases), workspace `bench-tasks`, and the
plugin app `bench.taskapp` (HQ_PLUGINS) whose `tasks.noop` every process discovers at start-up.
  1. enqueue, autocommit: N `noop.enqueue()` from one thread of this process, each its own
     transaction (the job row and event committed, then pushed to Redis by the pusher thread; timed
     until the last push is made), as a caller outside a transaction gets.
  2. enqueue, one transaction: N `noop.enqueue()` inside one `transaction.atomic()`; the commit
     and the N pushes after it are timed too.
  3. drain: the N jobs of 2 run by ONE `manage.py runworker --burst --concurrency 100`; window =
     min(first_started_at) -> max(finished_at) of the job rows.
  4. remote batch: N task-shaped jobs through POST /v1/queue/jobs/batch, 1,000 per request, to
     the production web server (granian, as `make run` starts it), from one caller (`remote_enqueuer`
     below: the REMOTE backend's batch helper, whose default BATCH_CONCURRENCY has 3 requests under
     way at once from the calling thread); then from 2 callers at once, N/2 each.
django-tasks-db's side: bench/peers/tasks_db_peer.py in the throwaway venv .run/bench-tasks-db
(bench/peers/requirements-tasks-db.txt), its own database `hq_bench_tasks_db`:
  1./2. N `noop.enqueue()` from one thread, autocommit / inside one transaction;
  3. drain: `db_worker --batch` (one process; it runs one task at a time), --drain-db-jobs tasks
     (default 1,000: it drains ~100/s here, and 5,000 would take the bench past two minutes);
     window = min(started_at) -> max(finished_at) of its rows.
Results: printed and written to bench/RESULTS-tasks.md. Misses are reported, never an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers.common import timed_calls  # noqa: E402
from bench.run import HQ_ENV as RUN_HQ_ENV  # noqa: E402
from bench.run import (  # noqa: E402
    PEERS,
    PY,
    PeerVenv,
    Procs,
    bench_lock,
    end_run,
    log,
    machine_facts,
    manage,
    median_spread,
    sql_one,
    start_web,
)
from bench.run import env_for as run_env_for  # noqa: E402
from bench.scheduler_bench import admin_sql  # noqa: E402

BENCH = ROOT / "bench"
DB_NAME = os.environ.get("HQ_BENCH_TASKS_DB", "hq_bench_tasks")
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
TDB_DB = os.environ.get("HQ_BENCH_TASKS_PEER_DB", "hq_bench_tasks_db")
REDIS_URL = os.environ.get("HQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
PREFIX = "hqbenchtasks:"
EMAIL = "bench-tasks@example.com"
WORKSPACE = "bench-tasks"
CONCURRENCY = 100
BATCH = 1000  # jobs per POST /v1/queue/jobs/batch, the route's limit and the client helper's chunk
GOAL_ENQUEUE = 2000.0  # tasks/s, in-process enqueue on one thread (issue 17)
GOAL_REMOTE_BATCH = 10000.0  # tasks/s, the remote backend's batch helper (issue 17)
TDB_VENV = PeerVenv("bench-tasks-db", "requirements-tasks-db.txt", lambda: shutil.which("python3") or sys.executable)

HQ_ENV = {
    **RUN_HQ_ENV,  # bench/run.py's, with this bench's database, Redis and plugin
    "DATABASE_URL": DB_URL,
    "REDIS_URL": REDIS_URL,
    "HQ_REDIS_PREFIX": PREFIX,
    "HQ_DB_APPLICATION_NAME": "hq_bench_tasks",
    "HQ_PLUGINS": "bench.taskapp",
    "HQ_TASKS_WORKSPACE": WORKSPACE,
}


def env_for(**extra: str) -> dict[str, str]:
    return run_env_for(**{**HQ_ENV, **extra})


# --- HQ's side ----------------------------------------------------------------------------------


def setup_hq() -> str:
    """Database, workspace and a token; then Django in this process, with the bench's plugin."""
    admin_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)", f"CREATE DATABASE {DB_NAME}")
    manage(["migrate", "--noinput"], env_for(DEBUG="1"))
    out = manage(["create_token", "--email", EMAIL, "--workspace", WORKSPACE, "--admin"], env_for(DEBUG="1"))
    os.environ.update(HQ_ENV)
    import django

    django.setup()
    return out.strip().splitlines()[-1].strip()


def reset_hq() -> None:
    """No jobs in the database, nothing in the bench's Redis database."""
    from django.db import connection

    from hq import redis as hq_redis
    from queueapp import enqueue

    enqueue.pushes_flush()  # the pusher's last pushes land before the flush, not in the next phase
    hq_redis.client().flushdb()
    with connection.cursor() as cur:
        cur.execute("TRUNCATE queueapp_jobevent, queueapp_job CASCADE")  # events reference jobs unchecked


def hq_recorded(n: int) -> dict[str, bool]:
    """Every job of the phase recorded as a queued task job and pushed to Redis."""
    from queueapp import transport

    (jobs,) = sql_one(
        "SELECT count(*) FROM queueapp_job WHERE function = %s AND state = 'queued'", ["bench.taskapp.tasks.noop"]
    )
    return {f"{n:,} task jobs recorded": jobs == n, f"{n:,} pushed to Redis": transport.queue_length("default") == n}


def hq_enqueue(n: int, atomic: bool) -> dict:
    """N `noop.enqueue()` on this thread: each in autocommit, or all in one transaction; timed until
    the pusher thread has made every push."""
    from django.db import transaction

    from bench.taskapp.tasks import noop
    from queueapp import enqueue

    reset_hq()
    took = timed_calls(noop.enqueue, n, transaction.atomic if atomic else None)
    t0 = time.perf_counter()
    enqueue.pushes_flush()  # the pushes still with the pusher thread (README, "Django tasks"), timed too
    took += time.perf_counter() - t0
    return {"rate": n / took, "s": took, "checks": hq_recorded(n)}


def hq_drain(procs: Procs, n: int, r: int) -> dict:
    """The jobs enqueued in one transaction, run by one burst worker; the window from the rows."""
    enq = hq_enqueue(n, atomic=True)
    return _burst_drain(procs, n, f"hq-drain-{r}", enq)


def hq_noop_drain(procs: Procs, n: int, r: int) -> dict:
    """The same drain of N plain `hq.noop` jobs (HQ's own no-op function, async, no task signals):
    what the task drain's cost is measured against."""
    from django.db import transaction

    from hq import clock
    from hq.models import Workspace
    from queueapp import enqueue, registry

    reset_hq()
    fn, ws = registry.get_function("hq.noop"), Workspace.objects.get(slug=WORKSPACE)
    assert fn is not None
    with transaction.atomic():
        enqueue.jobs_insert([enqueue.new_job(fn, workspace_id=ws.pk, args={}, now=clock.now()) for _ in range(n)])
    return _burst_drain(procs, n, f"hq-noop-drain-{r}", {"checks": {}}, function="hq.noop")


def _burst_drain(procs: Procs, n: int, name: str, enq: dict, function: str = "bench.taskapp.tasks.noop") -> dict:
    p = procs.start(name, [PY, "manage.py", "runworker", "--burst", "--concurrency", str(CONCURRENCY)], env_for())
    rc = p.wait(timeout=120 + n / 20)
    if rc != 0:
        raise RuntimeError(f"runworker --burst exited {rc} (see its log in {procs.logdir})")
    total, ok, first, last, once = sql_one(
        "SELECT count(*), count(*) FILTER (WHERE state = 'succeeded'), min(first_started_at), max(finished_at),"
        " count(*) FILTER (WHERE attempts = 1) FROM queueapp_job WHERE function = %s",
        (function,),
    )
    (started,) = sql_one("SELECT count(*) FROM queueapp_jobevent WHERE kind = 'started'")
    drain = (last - first).total_seconds()
    checks = {
        f"all {n:,} succeeded": total == n and ok == n,
        "each started once": once == n and started == n,
        **enq["checks"],
    }
    return {"enqueue": enq, "rate": n / drain, "s": drain, "checks": checks}


def remote_enqueuer(base_url: str, token: str) -> Callable[[Any, Sequence[tuple[Sequence[Any], dict[str, Any]]]], list]:
    """The remote backend's batch helper itself, `hq_client.django.enqueue_many(task, [(args, kwargs), ...])`:
    one POST /v1/queue/jobs/batch per 1,000 calls, each with its idempotency key, up to
    BATCH_CONCURRENCY (default 3) under way at once, and a TaskResult (and `task_enqueued`) per call.
    Its backend is TASKS["remote"], a RemoteBackend on this server, added to this process's settings
    as a remote project's settings.py would have it."""
    from django.conf import settings
    from django.test.utils import override_settings
    from hq_client.django import enqueue_many

    options = {"URL": base_url, "TOKEN": token}
    remote = {"BACKEND": "hq_client.django.RemoteBackend", "QUEUES": ["default"], "OPTIONS": options}
    override_settings(TASKS={**settings.TASKS, "remote": remote}).enable()
    return lambda task, calls: enqueue_many(task.using(backend="remote"), calls)


def warm_up(enqueue_many: Callable) -> None:
    """A few small batches from 2 callers first, so that each web server process has loaded its
    code and checked the token before anything is timed."""
    from bench.taskapp.tasks import noop

    threads = [threading.Thread(target=enqueue_many, args=(noop, [((), {})] * 10)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def hq_remote(enqueue_many: Callable, n: int, callers: int) -> dict:
    """N calls of the task through the batch helper from `callers` threads at once (N/callers each)."""
    from bench.taskapp.tasks import noop

    reset_hq()
    share = n // callers
    threads = [threading.Thread(target=enqueue_many, args=(noop, [((), {})] * share)) for _ in range(callers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    return {"rate": share * callers / took, "s": took, "checks": hq_recorded(share * callers)}


# --- django-tasks-db's side -------------------------------------------------------------------------


def tdb(home: Path, command: str, *argv: str, timeout: float = 300) -> dict:
    """One run of the django-tasks-db driver in its venv; its JSON answer."""
    cmd = [str(TDB_VENV.py), str(PEERS / "tasks_db_peer.py"), command, "--db", TDB_DB, "--home", str(home), *argv]
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH")}
    r = subprocess.run(cmd, cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"tasks_db_peer.py {command} failed: {r.stderr.strip()[-400:]}")
    lines = r.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def setup_tdb(home: Path) -> str:
    note = TDB_VENV.ensure()
    admin_sql(f"DROP DATABASE IF EXISTS {TDB_DB} WITH (FORCE)", f"CREATE DATABASE {TDB_DB}")
    tdb(home, "install")
    return f"{note}: {TDB_VENV.versions()}; database {TDB_DB}"


def tdb_enqueue(home: Path, n: int, atomic: bool) -> dict:
    took = tdb(home, "enqueue", "--n", str(n), *(["--atomic"] if atomic else []))["enqueue_s"]
    return {"rate": n / took, "s": took, "checks": {}}


def tdb_drain(home: Path, n: int) -> dict:
    tdb(home, "enqueue", "--n", str(n), "--atomic")
    d = tdb(home, "drain", "--n", str(n), timeout=120 + n / 10)
    drain = d["last_finish"] - d["first_start"]
    checks = {
        f"all {n:,} SUCCESSFUL": d["statuses"] == {"SUCCESSFUL": n},
        "each claimed by one worker once": d["ran_once"] == n,
    }
    return {"rate": n / drain, "s": drain, "checks": checks}


# --- rounds and the report -----------------------------------------------------------------------------

#: (key, label, HQ's figure, django-tasks-db's figure or None)
FIGURES = [
    ("enqueue", "`enqueue()` from one thread, each in autocommit (tasks/s)", "hq_enqueue", "tdb_enqueue"),
    ("enqueue_atomic", "`enqueue()` x N inside one transaction, commit included (tasks/s)", "hq_atomic", "tdb_atomic"),
    ("drain", "Drain: first start -> last finish, one worker process (tasks/s)", "hq_drain", "tdb_drain"),
    ("noop_drain", "The same drain of HQ's plain `hq.noop` jobs, no task (jobs/s)", "hq_noop_drain", None),
    ("remote", "Remote batch helper's path, 1,000 per POST, one caller (tasks/s)", "hq_remote", None),
    ("remote2", "The same, 2 callers at once (tasks/s)", "hq_remote2", None),
]


def one_round(procs: Procs, home: Path, enqueue_many: Callable, args: argparse.Namespace, r: int) -> dict:
    """Every figure once, the two sides back to back."""
    n = args.tasks
    out: dict[str, dict] = {}
    steps: list[tuple[str, Callable[[], dict]]] = [
        ("tdb_enqueue", lambda: tdb_enqueue(home, n, atomic=False)),
        ("hq_enqueue", lambda: hq_enqueue(n, atomic=False)),
        ("tdb_atomic", lambda: tdb_enqueue(home, n, atomic=True)),
        ("hq_drain", lambda: hq_drain(procs, n, r)),
        ("hq_noop_drain", lambda: hq_noop_drain(procs, n, r)),
        ("tdb_drain", lambda: tdb_drain(home, args.drain_db_tasks)),
        ("hq_remote", lambda: hq_remote(enqueue_many, n, 1)),
        ("hq_remote2", lambda: hq_remote(enqueue_many, n, 2)),
    ]
    for key, step in steps:
        out[key] = step()
        log(f"  round {r}: {key} {out[key]['rate']:,.0f}/s ({out[key]['s']:.2f} s)")
    out["hq_atomic"] = out["hq_drain"]["enqueue"]
    return out


def summarize(rounds: list[dict]) -> list[dict]:
    rows = []
    for key, label, hq_key, tdb_key in FIGURES:
        row: dict[str, Any] = {"key": key, "label": label, "hq": median_spread([r[hq_key]["rate"] for r in rounds])}
        if tdb_key:
            row["tdb"] = median_spread([r[tdb_key]["rate"] for r in rounds])
            row["ratio"] = median_spread([r[hq_key]["rate"] / r[tdb_key]["rate"] for r in rounds])
        row["checks"] = {c: all(r[hq_key]["checks"].get(c, False) for r in rounds) for c in rounds[0][hq_key]["checks"]}
        if tdb_key:
            row["tdb_checks"] = {
                c: all(r[tdb_key]["checks"].get(c, False) for r in rounds) for c in rounds[0][tdb_key]["checks"]
            }
        rows.append(row)
    return rows


def spread(m: tuple[float, float, float], nd: int = 0, unit: str = "") -> str:
    return f"{m[0]:,.{nd}f}{unit} ({m[1]:,.{nd}f}-{m[2]:,.{nd}f})"


def render(info: dict[str, str], args: argparse.Namespace, rows: list[dict], note: str, total_s: float) -> list[str]:
    by = {row["key"]: row for row in rows}
    command = f".venv/bin/python bench/tasks_bench.py {' '.join(sys.argv[1:])}".rstrip()
    md = ["# Django task backends: HQ vs django-tasks-db", ""]
    md += [
        f"Generated by `{command}` in {total_s:.0f} s: median of {args.rounds} rounds (lowest-highest), each "
        "round running both sides back to back; ratios are the median of the rounds' ratios. Compare ratios "
        "from one run, not absolute figures.",
        "",
    ]
    md += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info.items()]
    md += [
        "",
        f"N = {args.tasks:,} tasks per figure (django-tasks-db's drain: {args.drain_db_tasks:,}); django-tasks-db: "
        f"{note}.",
        "",
        "| figure | django-tasks-db | HQ | HQ / django-tasks-db |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        tdb_cell = spread(row["tdb"]) if "tdb" in row else "-"
        ratio = spread(row["ratio"], 2, "x") if "ratio" in row else "-"
        md.append(f"| {row['label']} | {tdb_cell} | {spread(row['hq'])} | {ratio} |")
    enq, atomic, rem = by["enqueue"]["hq"][0], by["enqueue_atomic"]["hq"][0], by["remote"]["hq"][0]
    drain, noop = by["drain"]["hq"][0], by["noop_drain"]["hq"][0]
    goals = [
        (
            f"in-process `enqueue()` on one thread >= {GOAL_ENQUEUE:,.0f} tasks/s, autocommit ({enq:,.0f})",
            enq >= GOAL_ENQUEUE,
        ),
        (
            f"in-process `enqueue()` on one thread >= {GOAL_ENQUEUE:,.0f} tasks/s, one transaction ({atomic:,.0f})",
            atomic >= GOAL_ENQUEUE,
        ),
        (f"task drain >= 0.8x the `hq.noop` drain ({drain / noop:.2f}x)", drain >= 0.8 * noop),
        (f"remote batch helper >= {GOAL_REMOTE_BATCH:,.0f} tasks/s, one caller ({rem:,.0f})", rem >= GOAL_REMOTE_BATCH),
    ]
    checks = [(f"HQ {row['label'].split(' (')[0]}: {c}", ok) for row in rows for c, ok in row["checks"].items()]
    checks += [
        (f"django-tasks-db {row['label'].split(' (')[0]}: {c}", ok)
        for row in rows
        for c, ok in row.get("tdb_checks", {}).items()
    ]
    md += ["", "## Goals and checks", ""]
    md += [f"- **{'PASS' if ok else 'FAIL'}** goal: {g}" for g, ok in goals]
    md += [f"- **{'PASS' if ok else 'FAIL'}** check: {c} (every round)" for c, ok in checks]
    md += ["", "## How each figure is measured", "", METHOD.format(command=command)]
    return md


METHOD = """\
- Reproduce every figure with `{command}` (or `make bench`, which runs it as it is).
- HQ: database `hq_bench_tasks` (dropped, created, migrated), Redis from HQ_BENCH_REDIS_URL (db 15 on
  6379 by default; FLUSHDB and `TRUNCATE queueapp_job` before each phase), workspace `bench-tasks`,
  `HQ_PLUGINS=bench.taskapp` in this process, the worker and the web server: its `tasks.noop`
  (`@task`, body `pass`) is discovered at start-up by every one of them. DEBUG=0.
- Enqueue: `noop.enqueue()` N times in a loop on this process's one thread (the in-process
  backend: `job_submit` writes the job and its event; once committed, its push goes to the
  process's pusher thread, and the time runs until the pusher has made every push). Autocommit:
  each call its own transaction, as a caller outside `transaction.atomic()` gets. One transaction:
  the loop inside one `transaction.atomic()`, whose commit (and the N pushes on commit) is timed.
  Checks: N queued task jobs in PostgreSQL and N entries in the Redis queue.
- Drain: the one-transaction jobs, then ONE `manage.py runworker --burst --concurrency 100`;
  window = min(first_started_at) -> max(finished_at) of the job rows (stamped by the worker's START
  and FINISH statements); process start-up is outside it. Checks: all succeeded, each started once
  (attempts = 1, N `started` events). The `hq.noop` drain: N of HQ's own no-op jobs (an async
  function, no task signals) written in one statement, then the same burst worker and window: the
  task drain's cost against it is what running a job as a Django task adds.
- Remote batch: the production web server (`scripts/run.py`'s granian WSGI, 2 processes, as `make
  run` starts it) and `remote_enqueuer` in bench/tasks_bench.py: the remote backend's batch helper
  itself, `hq_client.django.enqueue_many` on a RemoteBackend (TASKS["remote"] in this process, its
  OPTIONS defaults), POST /v1/queue/jobs/batch with 1,000 task-shaped jobs a request (function
  `bench.taskapp.tasks.noop`, args `{{"args": [], "kwargs": {{}}}}`, queue, an idempotency key each),
  up to 3 requests under way at once over keep-alive connections (its default BATCH_CONCURRENCY;
  the caller is still one thread), and a TaskResult (and `task_enqueued`) per call; timed from the
  first request to the last answer (after 4 small warm-up batches, not counted, so that both server
  processes have loaded their code). 2 callers: two threads, N/2 each, at once. Checks: N jobs
  recorded and pushed.
- django-tasks-db: bench/peers/tasks_db_peer.py in the throwaway venv .run/bench-tasks-db (exact
  pins in bench/peers/requirements-tasks-db.txt; Django 5.2 and the django-tasks backport, its
  `compat` extra, on this Python 3.11), its own settings module with only `django_tasks_db` installed
  and TASKS on its DatabaseBackend, database `hq_bench_tasks_db`, the same no-op task. Enqueue:
  the table emptied, then N `noop.enqueue()` (one INSERT each) in autocommit / in one transaction.
  Drain: `db_worker --batch --interval 0 --no-startup-delay --no-reload` (exits when nothing is
  ready; it runs one task at a time, claiming each in its own transaction), run in the driver
  process; window = min(started_at) -> max(finished_at) of its rows (stamped by the worker as it
  claims each task and as it saves its success). Checks: every row SUCCESSFUL, each claimed by one
  worker once (`worker_ids` of length 1).
- Rounds run the figures in this order: django-tasks-db enqueue, HQ enqueue, django-tasks-db
  one-transaction enqueue, HQ one-transaction enqueue + drain, the `hq.noop` drain, django-tasks-db
  drain, remote batch (1, then 2 callers). The web server stays up, idle, through the other phases."""


def machine_info() -> dict[str, str]:
    import django

    from hq import redis as hq_redis

    (pg,) = sql_one("SHOW server_version")
    return {
        **machine_facts(pg, str(hq_redis.client().info("server")["redis_version"])),
        "django (HQ)": django.get_version(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=5000, help="tasks per figure (default 5,000)")
    ap.add_argument(
        "--drain-db-tasks", type=int, default=1000, help="tasks in django-tasks-db's drain (default 1,000; ~100/s)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds, median reported (default 3)")
    ap.add_argument("--keep-logs", action="store_true", help="keep subprocess logs even on success")
    args = ap.parse_args()

    lock = bench_lock()
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hqbench-tasks-"))
    procs = Procs(tmp)
    ok = False
    try:
        log(f"setup: database {DB_NAME}, Redis {REDIS_URL} prefix {PREFIX}; django-tasks-db in {TDB_VENV.path}")
        token = setup_hq()
        note = setup_tdb(tmp / "tdb")
        info = machine_info()
        log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + f"; {note}")
        _, port = start_web(procs, env_for())
        enqueue_many = remote_enqueuer(f"http://127.0.0.1:{port}", token)
        warm_up(enqueue_many)
        rounds = []
        for r in range(1, args.rounds + 1):
            log(f"round {r}/{args.rounds}: {args.tasks:,} tasks per figure")
            rounds.append(one_round(procs, tmp / "tdb", enqueue_many, args, r))
        rows = summarize(rounds)
        total_s = time.perf_counter() - t_start
        md = render(info, args, rows, note, total_s)
        print("\n".join(md))
        (BENCH / "RESULTS-tasks.md").write_text("\n".join(md) + "\n")
        print(f"\nWrote {BENCH / 'RESULTS-tasks.md'} ({total_s:.0f} s total)")
        ok = True
        return 0
    finally:

        def cleanup() -> None:
            from django.db import connections

            connections.close_all()
            admin_sql(*(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)" for db in (DB_NAME, TDB_DB)))

        end_run(procs, tmp, ok, args.keep_logs, lock, cleanup)


if __name__ == "__main__":
    sys.exit(main())
