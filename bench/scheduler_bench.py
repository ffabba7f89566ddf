#!/usr/bin/env python
"""Schedule engine benchmark, in one run (`.venv/bin/python bench/scheduler_bench.py [--quick] [--keep]`).

Phases:
  1. setup: PostgreSQL database `hq_bench_sched` (drop + create + `manage.py migrate`), Redis db 15
     with the key prefix `hqbenchsched:` (FLUSHDB before each phase), one workspace + owner from
     `manage.py create_token`, its plan raised to 200,000 schedules, one room with the owner as
     member. Schedules are written with `INSERT ... SELECT generate_series` into schedules_schedule:
     cron `0 * * * *` UTC, action send_message to that room, state active (one schedule made first
     through `schedules.services.schedule_create` proves the trigger and args are what it writes).
  2. burst: N schedules (default 10,000) with next_fire_at = S, one slot a moment ahead (the next
     whole second at least 2 s away). ONE `manage.py runworker --scheduler-only` is started and
     subscribed before the rows are written, then nudged (as schedule_create's on_commit does).
     From PostgreSQL: all fired by = max(ScheduleFire.created_at) - S; fire-row lag = created_at -
     slot, p50/p99. created_at is stamped in Python while the batch is built, before its INSERT
     and COMMIT, so a poller (every 20 ms) also records when the rows became visible (committed)
     and when Redis' queue zset held every push. Checks: N fire rows, one per schedule, all for
     slot S; N `schedules.fire` jobs; N entries in hqbenchsched:arq:queue:default; every schedule
     advanced to the next hour. Goal: all fired within 2 s of the slot and p99 lag < 2 s.
     Run twice: first ("burst distinct") with every schedule on its own cron trigger (hour lists
     from the bits of i, five zones), so no next fire is shared between rows; then ("burst") all
     on one trigger.
     Then a diagnostic: the same N schedules made due again and fired by one in-process
     `scheduler_pass()` on one connection with timers around its parts.
  3. idle: N idle schedules (next_fire_at 1-31 days ahead) for N = 1,000; 10,000; 100,000 (the table
     grows, VACUUM ANALYZE after each step, as autovacuum would): one `scheduler_tick()` (what the
     scheduler side task calls) in this process, median of 50 after 5 warm-ups. Goal: < 2 ms and
     flat. EXPLAIN ANALYZE of the claim (also as a prepared statement's generic plan) and of the
     next-due read must show the partial index `schedule_due`.
  4. django-celery-beat at the same N (bench/beat_compare.py under a throwaway venv /tmp/beatvenv,
     own settings module, its own database `hq_bench_beat`), interleaved with step 3 per N.
Results: printed and written to bench/RESULTS-scheduler.md. Databases are dropped and Redis db 15
flushed at the end unless --keep. Misses are reported, never an exit code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Procs, bench_lock, end_run, log, machine_facts, manage, pct, proc_cpu_s, wait_for  # noqa: E402

BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
# The databases and the Redis database are the bench's own (dropped and flushed); another run on
# the same machine can point them elsewhere: HQ_BENCH_SCHED_DB, HQ_BENCH_BEAT_DB, HQ_BENCH_REDIS_URL.
DB_NAME = os.environ.get("HQ_BENCH_SCHED_DB", "hq_bench_sched")
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
BEAT_DB = os.environ.get("HQ_BENCH_BEAT_DB", "hq_bench_beat")
ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
REDIS_URL = os.environ.get("HQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
PREFIX = "hqbenchsched:"
EMAIL = "bench-sched@example.com"
WORKSPACE = "bench-sched"
MAX_SCHEDULES = 200_000
TRIGGER = {"kind": "cron", "expr": "0 * * * *", "tz": "UTC"}
BEAT_VENV = Path("/tmp/beatvenv")
BEAT_PY = BEAT_VENV / "bin" / "python"
BEAT_PACKAGES = ["django-celery-beat", "celery", "django>=5.2,<6"]
GOAL_BURST_S = 2.0
GOAL_IDLE_MS = 2.0
POLL_S = 0.02
WATCHED = ("schedules", "queueapp", "hq")

HQ_ENV = {
    "DJANGO_SETTINGS_MODULE": "hq.settings",
    "DATABASE_URL": DB_URL,
    "REDIS_URL": REDIS_URL,
    "HQ_REDIS_PREFIX": PREFIX,
    "DEBUG": "0",
    "SECRET_KEY": "bench",
    "ALLOWED_HOSTS": "127.0.0.1",
    "HQ_DB_APPLICATION_NAME": "hq_bench_sched",
    "HQ_CLOCK_OFFSET_S": "0",
    "LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
}

INSERT_SQL = """
INSERT INTO schedules_schedule (
    id, workspace_id, owner_id, name, description, trigger, action, args, state, state_reason,
    next_fire_at, last_fire_at, last_fire_status, fire_count, failure_count, consecutive_failure_count,
    last_fire_lag_ms, last_run_conversation_id, created_at, updated_at)
SELECT gen_random_uuid(), %(ws)s, %(owner)s, 'bench ' || i, NULL, {trigger}, 'send_message',
       %(args)s::jsonb, 'active', '', {next_fire_at}, NULL, '', 0, 0, 0, NULL, NULL, %(now)s, %(now)s
  FROM generate_series(%(lo)s::int, %(hi)s::int) i
"""


def env_for(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HQ_ENV)
    env.update(extra)
    return env


def admin_sql(*statements: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
        for s in statements:
            c.execute(s)


def redis_client():  # noqa: ANN201
    import redis

    return redis.Redis.from_url(REDIS_URL)


def sql(query: str, params=None, fetch: str = "one"):  # noqa: ANN001, ANN201
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params)
        if fetch == "one":
            return cur.fetchone()
        if fetch == "all":
            return cur.fetchall()
        return None


def code_snapshot() -> dict[str, float]:
    return {str(p): p.stat().st_mtime for d in WATCHED for p in (ROOT / d).rglob("*.py")}


# --- setup -------------------------------------------------------------------------------------


def setup_database() -> None:
    admin_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)", f"CREATE DATABASE {DB_NAME}")
    manage(["migrate", "--noinput"], env_for(DEBUG="1"))
    manage(["create_token", "--email", EMAIL, "--workspace", WORKSPACE, "--admin"], env_for(DEBUG="1"))


def configure_django() -> None:
    os.environ.update(HQ_ENV)
    import django

    django.setup()


def setup_fixtures() -> dict:
    """Plan limit, a room with the owner in it; prove the SQL rows match what schedule_create writes."""
    from django.db.models import Q

    from hq.models import Room, User, Workspace
    from schedules import services

    ws = Workspace.objects.get(Q(slug=WORKSPACE) | Q(name=WORKSPACE))
    owner = User.objects.get(email=EMAIL)
    sql("UPDATE hq_plan SET max_schedules = %s WHERE id = %s", [MAX_SCHEDULES, ws.plan_id], fetch="none")
    room = Room.objects.create(workspace=ws, name="bench", created_by=owner)
    room.members.add(owner)
    args = {"room_id": str(room.pk), "content": {"msgtype": "swp.text", "body": "x"}}
    probe = services.schedule_create(
        workspace=ws, owner=owner, name="probe", trigger=TRIGGER, action="send_message", args=args
    )
    if probe.trigger != TRIGGER or probe.args != args:
        raise RuntimeError(f"schedule_create wrote trigger={probe.trigger} args={probe.args}; the SQL would differ")
    probe.delete()
    return {"ws": ws.pk, "owner": owner.pk, "args": json.dumps(args), "trigger": json.dumps(TRIGGER)}


def insert_schedules(fx: dict, lo: int, hi: int, next_fire_sql: str, triggers=None, **params) -> None:  # noqa: ANN001, ANN003
    """Rows lo..hi; all with TRIGGER, or row i with triggers[i - lo] when given."""
    from hq import clock

    trigger = "%(trigger)s::jsonb"
    if triggers is not None:
        params["triggers"] = [json.dumps(t) for t in triggers]
        trigger = "(%(triggers)s::jsonb[])[i - %(lo)s + 1]"
    sql(
        INSERT_SQL.format(next_fire_at=next_fire_sql, trigger=trigger),
        {**fx, "lo": lo, "hi": hi, "now": clock.now(), **params},
        fetch="none",
    )


ZONES = ("UTC", "Europe/Stockholm", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe")


def distinct_triggers(n: int) -> list[dict]:
    """N different cron triggers (hour lists from the bits of i, five zones): no two share a cache entry."""
    out = []
    for i in range(1, n + 1):
        hours = ",".join(str(h) for h in range(24) if i >> h & 1)
        out.append({"kind": "cron", "expr": f"0 {hours} * * *", "tz": ZONES[i % len(ZONES)]})
    return out


def reset_state(schedules: bool = True) -> None:
    redis_client().flushdb()
    jobs = "queueapp_jobevent, queueapp_job"  # events reference jobs unchecked: TRUNCATE's CASCADE skips them
    tables = f"schedules_schedule, {jobs}" if schedules else f"schedules_schedulefire, {jobs}"
    sql(f"TRUNCATE {tables} CASCADE", fetch="none")


def machine_info() -> dict[str, str]:
    import arq
    import django

    (pg,) = sql("SHOW server_version")
    return {
        **machine_facts(pg, str(redis_client().info("server")["redis_version"]), WATCHED),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "django": django.get_version(),
        "arq": getattr(arq, "VERSION", "?"),
    }


# --- burst ------------------------------------------------------------------------------------


class Poller(threading.Thread):
    """Every 20 ms: committed fire rows (own autocommit connection) and the Redis queue's length."""

    def __init__(self, zkey: str) -> None:
        super().__init__(daemon=True)
        import psycopg

        self.conn = psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={DB_NAME}", autocommit=True)
        self.backend_pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.r = redis_client()
        self.zkey = zkey
        self.samples: list[tuple[float, int, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                t = time.time()
                n = self.conn.execute("SELECT count(*) FROM schedules_schedulefire").fetchone()[0]
                z = self.r.zcard(self.zkey)
                self.samples.append((t, n, z))
                self.halt.wait(POLL_S)
        finally:
            self.conn.close()

    def first_time(self, idx: int, at_least: int) -> float | None:
        return next((s[0] for s in self.samples if s[idx] >= at_least), None)

    def visible_lags(self, slot: float) -> list[float]:
        """Each fire's first-seen time minus the slot (a step function of the samples)."""
        out: list[float] = []
        seen = 0
        for t, n, _ in self.samples:
            if n > seen:
                out += [t - slot] * (n - seen)
                seen = n
        return out


def pg_backends_cpu(exclude: set[int]) -> dict[int, float]:
    rows = sql(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [DB_NAME], fetch="all"
    )
    out = {}
    for (pid,) in rows:
        if pid in exclude:
            continue
        v = proc_cpu_s(pid)
        if v is not None:
            out[pid] = v
    return out


def run_burst(procs: Procs, fx: dict, n: int, distinct: bool = False) -> dict:
    """N schedules due at one slot S, fired by one scheduler process.

    distinct: every schedule has its own trigger (see distinct_triggers), so the pass computes N
    next fires instead of one per (trigger, slot).
    """
    from django.db import connection

    from hq import clock
    from queueapp import transport
    from schedules import engine, triggers

    reset_state()
    r = redis_client()
    zkey = transport.queue_key("default")
    name = "scheduler-distinct" if distinct else "scheduler"
    sched = procs.start(name, [PY, "manage.py", "runworker", "--scheduler-only"], env_for())
    wait_for(lambda: r.pubsub_numsub(PREFIX + "nudge")[0][1] >= 1, 60, "the scheduler to subscribe", proc=sched)
    time.sleep(0.5)  # its first pass (empty table) is done; it now sleeps until woken
    now = clock.now()
    slot = now.replace(microsecond=0) + dt.timedelta(seconds=3)
    t_ins = time.perf_counter()
    trigs = distinct_triggers(n) if distinct else None
    insert_schedules(fx, 1, n, "%(slot)s", triggers=trigs, slot=slot)
    sql("ANALYZE schedules_schedule", fetch="none")
    insert_s = time.perf_counter() - t_ins
    transport.nudge(engine.WAKE_MESSAGE)  # what schedule_create's on_commit does
    margin = (slot - clock.now()).total_seconds()
    log(
        f"  {n:,} schedules due at {slot:%H:%M:%S}Z written in {insert_s:.2f} s; "
        f"scheduler nudged {margin:.2f} s before S"
    )
    if margin < 0.3:
        procs.stop(sched)  # else it would still be firing during the next phase
        raise RuntimeError(f"setup overran the slot ({margin:.2f} s left); the machine is too busy")

    poller = Poller(zkey)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        mine = {cur.fetchone()[0], poller.backend_pid}
    time.sleep(max(0.0, margin - 0.3))
    cpu0_sched, cpu0_pg = proc_cpu_s(sched.pid), pg_backends_cpu(mine)
    poller.start()
    s_ts = slot.timestamp()
    deadline = s_ts + 60
    while time.time() < deadline:
        if poller.samples and poller.samples[-1][1] >= n and poller.samples[-1][2] >= n:
            break
        if sched.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(0.1)
    poller.halt.set()
    poller.join(5)
    cpu1_sched, cpu1_pg = proc_cpu_s(sched.pid), pg_backends_cpu(mine)
    time.sleep(0.5)  # would a second pass fire anything again? (it must not)
    procs.stop(sched)
    log_text = (procs.logdir / f"{name}.log").read_text(errors="replace")
    fired_lines = [int(x) for x in re.findall(r"scheduler fired (\d+) schedule", log_text)]

    total, schedules_fired, first, last, at_slot, odd = sql(
        "SELECT count(*), count(DISTINCT schedule_id), min(created_at), max(created_at),"
        " count(*) FILTER (WHERE slot = %s), count(*) FILTER (WHERE manual OR skipped_slots <> 0)"
        " FROM schedules_schedulefire",
        [slot],
    )
    lags = [
        float(x)
        for (x,) in sql("SELECT extract(epoch FROM created_at - slot) FROM schedules_schedulefire", fetch="all")
    ]
    (jobs,) = sql("SELECT count(*) FROM queueapp_job WHERE function = %s", [engine.FIRE_FUNCTION])
    (linked,) = sql("SELECT count(*) FROM schedules_schedulefire f JOIN queueapp_job j ON j.id = f.job_id")
    if distinct:
        rows = sql("SELECT trigger, next_fire_at FROM schedules_schedule WHERE state = 'active'", fetch="all")
        advanced = sum(1 for t, at in rows if at == triggers.next_fire_after(json.loads(t), slot))
        advanced_to = "its own next fire"
    else:
        nxt = triggers.next_fire_after(TRIGGER, slot)
        (advanced,) = sql("SELECT count(*) FROM schedules_schedule WHERE next_fire_at = %s AND state = 'active'", [nxt])
        advanced_to = f"{nxt:%H:%M}Z"
    zcard = r.zcard(zkey)
    batches = sql(
        "SELECT extract(epoch FROM j.created_at), count(*), extract(epoch FROM min(f.created_at)),"
        " extract(epoch FROM max(f.created_at)) FROM schedules_schedulefire f JOIN queueapp_job j ON j.id = f.job_id"
        " GROUP BY j.created_at ORDER BY 1",
        fetch="all",
    )
    batches = [(float(a), int(c), float(b0), float(b1)) for a, c, b0, b1 in batches]
    steps = []  # per batch: fire INSERT (until jobs_create's now), rest until the next batch
    for i, (job_at, cnt, _f0, f1) in enumerate(batches):
        rest = (batches[i + 1][2] - job_at) if i + 1 < len(batches) else None
        steps.append({"rows": cnt, "fire_insert_s": job_at - f1, "rest_s": rest})
    gaps = [b[2] - a[2] for a, b in zip(batches, batches[1:], strict=False)]
    vis = poller.visible_lags(s_ts)
    t_vis, t_push = poller.first_time(1, n), poller.first_time(2, n)
    pg_cpu = sum(v - cpu0_pg.get(pid, 0.0) for pid, v in cpu1_pg.items())
    res = {
        "n": n,
        "distinct": distinct,
        "slot": slot,
        "insert_s": insert_s,
        "margin_s": margin,
        "fired": total,
        "all_by_s": (last - slot).total_seconds() if last else float("nan"),
        "first_at_s": (first - slot).total_seconds() if first else float("nan"),
        "lag_p50": pct(lags, 50),
        "lag_p99": pct(lags, 99),
        "visible_by_s": (t_vis - s_ts) if t_vis else None,
        "visible_p50": pct(vis, 50),
        "visible_p99": pct(vis, 99),
        "pushed_by_s": (t_push - s_ts) if t_push else None,
        "batches": len(batches),
        "batch_rows": sorted({b[1] for b in batches}),
        "batch_gap_ms": statistics.median(gaps) * 1000 if gaps else float("nan"),
        "steps": steps,
        "sched_cpu_s": (cpu1_sched or 0) - (cpu0_sched or 0),
        "pg_cpu_s": pg_cpu,
        "passes": fired_lines,
        "jobs": jobs,
        "zcard": zcard,
    }
    res["checks"] = {
        f"{n:,} fire rows, one per schedule, all for slot S": total == n and schedules_fired == n and at_slot == n,
        "no manual or catch-up fire": odd == 0,
        f"{n:,} 'schedules.fire' jobs, each linked from its fire": jobs == n and linked == n,
        f"Redis {zkey} holds {n:,}": zcard == n,
        f"every schedule advanced to {advanced_to}": advanced == n,
    }
    res["goals"] = {
        f"all fired within {GOAL_BURST_S:.0f} s of the slot (max created_at - S = {res['all_by_s']:.2f} s)": total == n
        and res["all_by_s"] < GOAL_BURST_S,
        f"fire-row lag p99 < {GOAL_BURST_S:.0f} s ({res['lag_p99']:.2f} s)": total == n
        and res["lag_p99"] < GOAL_BURST_S,
    }
    vb, pb = res["visible_by_s"], res["pushed_by_s"]
    both = None if vb is None or pb is None else max(vb, pb)
    res["strict"] = (
        f"all committed and pushed to Redis within {GOAL_BURST_S:.0f} s "
        f"({'not all' if both is None else f'{both:.2f} s'})",
        both is not None and both < GOAL_BURST_S,
    )
    return res


def profile_pass(n: int) -> dict:
    """Make the N burst schedules due again and time one in-process scheduler_pass by its parts.

    With one connection (HQ_SCHEDULER_CONNECTIONS=1): the parts of batches run at once would overlap.
    """
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings

    from hq import clock, db
    from queueapp import enqueue
    from schedules import engine

    reset_state(schedules=False)
    due = clock.now().replace(microsecond=0) - dt.timedelta(seconds=1)
    sql("UPDATE schedules_schedule SET next_fire_at = %s", [due], fetch="none")
    sql("VACUUM ANALYZE schedules_schedule", fetch="none")
    t_ = Counter()

    def timed(key, fn):  # noqa: ANN001, ANN202
        def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                name = key(*a) if callable(key) else key
                t_[name] += time.perf_counter() - t0

        return wrapper

    patches = [
        (engine, "_claim", "select"),
        (engine, "next_fire", "next_fire"),
        (engine, "_not_yet_fired", "fired check"),
        (db, "bulk_insert", lambda model, *_: f"insert {model.__name__}"),
        (db, "bulk_update", "update"),
        (enqueue, "jobs_insert", "insert jobs"),
        (enqueue, "push", "push"),
        (enqueue, "_count", "metrics"),
    ]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    for mod, name, key in patches:
        setattr(mod, name, timed(key, getattr(mod, name)))
    connection.ensure_connection()
    connection._commit = timed("commit", connection._commit)
    try:
        with override_settings(HQ_SCHEDULER_CONNECTIONS=1):
            t0 = time.perf_counter()
            fired = engine.scheduler_pass()
            total = time.perf_counter() - t0
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)
        del connection._commit
    batches = max(-(-fired // settings.HQ_SCHEDULER_BATCH), 1)  # full batches; a last empty SELECT ends the pass
    ms = lambda s: s / batches * 1000  # noqa: E731 - per batch
    parts = [
        ("due SELECT ... FOR NO KEY UPDATE SKIP LOCKED, rows as tuples", ms(t_["select"])),
        (f"next_fire() x{n // batches} (cron, cached per trigger and slot)", ms(t_["next_fire"])),
        ("already-fired check: SELECT ... = ANY(array)", ms(t_["fired check"])),
        ("ScheduleFire INSERT ... unnest", ms(t_["insert ScheduleFire"])),
        ("Job + JobEvent INSERT ... unnest, one statement", ms(t_["insert jobs"])),
        ("advance schedules: UPDATE ... FROM unnest", ms(t_["update"])),
        ("COMMIT", ms(t_["commit"])),
        ("Redis push after commit (batched Lua, pipelined)", ms(t_["push"])),
        ("metrics on_commit callback", ms(t_["metrics"])),
    ]
    parts.append(("rest: loop, JobSpecs, column lists, hooks", ms(total) - sum(p[1] for p in parts)))
    return {"n": n, "fired": fired, "total_s": total, "batches": batches, "per_batch_ms": ms(total), "parts": parts}


# --- idle ------------------------------------------------------------------------------------


def explain(stmt: str, params: list, generic: bool = False) -> str:
    """EXPLAIN ANALYZE of one statement as the engine runs it (bound on the server), rolled back.

    generic: the plan PostgreSQL keeps for a prepared statement (the engine's are prepared after
    their first run), which cannot use a parameter's value to pick an index.
    """
    import psycopg
    from django.db import connection, transaction

    connection.ensure_connection()
    with transaction.atomic(), psycopg.Cursor(connection.connection) as cur:
        if generic:
            cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cur.execute("EXPLAIN (ANALYZE, COSTS OFF) " + stmt, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
        transaction.set_rollback(True)
    return plan


class StatementLog:
    """The statements this process sends to PostgreSQL meanwhile (Django's and raw psycopg's)."""

    def __enter__(self) -> list[str]:
        import psycopg

        self.sent: list[str] = []
        self.original = psycopg.Cursor.execute
        sent, original = self.sent, self.original

        def execute(cur, query, params=None, **kw):  # noqa: ANN001, ANN003, ANN202
            sent.append(query if isinstance(query, str) else repr(query))
            return original(cur, query, params, **kw)

        psycopg.Cursor.execute = execute
        return self.sent

    def __exit__(self, *exc: object) -> None:
        import psycopg

        psycopg.Cursor.execute = self.original


def measure_idle(n: int, iters: int) -> dict:
    from django.conf import settings
    from django.db import connection

    from hq import clock
    from schedules import engine

    for _ in range(5):
        engine.scheduler_tick()
    times, cpu = [], []
    fired = 0
    for _ in range(iters):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fired += engine.scheduler_tick()[0]
        t1 = time.perf_counter()
        cpu.append((time.thread_time() - c0) * 1000)
        times.append((t1 - t0) * 1000)
    with StatementLog() as stmts:
        engine.scheduler_tick()
    in_transaction = connection.connection.info.transaction_status != 0  # psycopg: 0 = idle, no transaction
    due_sql = engine.CLAIM_SQL.format(batch=settings.HQ_SCHEDULER_BATCH)
    now = [clock.now()]
    plans = {
        "due": explain(due_sql, now),
        "due (prepared, generic plan)": explain(due_sql, now, generic=True),
        "next_due_at": explain(engine.NEXT_DUE_SQL, []),
    }
    return {
        "n": n,
        "median_ms": statistics.median(times),
        "p90_ms": pct(times, 90),
        "cpu_ms": statistics.median(cpu),
        "fired": fired,
        "statements": len(stmts),
        "statement_heads": [
            "SELECT ... SKIP LOCKED" if "SKIP LOCKED" in x else "SELECT min(...)" if "min(" in x.lower() else x[:8]
            for x in stmts
        ],
        "left_open_transaction": in_transaction,
        "plans": plans,
        "index_used": all("schedule_due" in p for p in plans.values()),
        "due_sql": due_sql,
    }


# --- django-celery-beat ----------------------------------------------------------------------


def ensure_beat_venv() -> tuple[bool, str]:
    """A throwaway venv at /tmp/beatvenv (never the project's): reuse it if it imports, else build it."""
    check = "import django_celery_beat, celery, django, psycopg; print(django_celery_beat.__version__)"
    if BEAT_PY.exists():
        r = subprocess.run([str(BEAT_PY), "-c", check], capture_output=True, text=True, check=False)
        if r.returncode == 0:
            return True, f"reused {BEAT_VENV}"
        shutil.rmtree(BEAT_VENV, ignore_errors=True)
    base = shutil.which("python3") or sys.executable
    r = subprocess.run([base, "-m", "venv", str(BEAT_VENV)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return False, f"python3 -m venv {BEAT_VENV} failed: {r.stderr.strip()[-300:]}"
    pip = [str(BEAT_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    r = subprocess.run(
        [*pip, *BEAT_PACKAGES, "psycopg[binary]"], capture_output=True, text=True, timeout=900, check=False
    )
    if r.returncode != 0:
        return False, f"pip install {' '.join(BEAT_PACKAGES)} psycopg[binary] failed: {r.stderr.strip()[-400:]}"
    r = subprocess.run([str(BEAT_PY), "-c", check], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return False, f"installed but does not import: {r.stderr.strip()[-300:]}"
    return True, f"created {BEAT_VENV} (pip install {' '.join(BEAT_PACKAGES)} psycopg[binary])"


def run_beat(n: int, budget_s: float) -> dict:
    big = n > 10_000
    argv = [str(BEAT_PY), str(BENCH / "beat_compare.py"), "--n", str(n), "--pg", BEAT_DB, "--budget-s", str(budget_s)]
    # past 10,000: fewer repetitions and no separate parts, so the run fits the budget
    argv += ["--steady", "5", "--rebuilds", "1", "--no-parts"] if big else ["--steady", "20", "--rebuilds", "5"]
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH")}
    try:
        r = subprocess.run(
            argv,
            cwd=tempfile.gettempdir(),
            env=env,
            capture_output=True,
            text=True,
            timeout=budget_s + 180,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"n": n, "error": f"no answer within {budget_s + 180:.0f} s (setup included); killed"}
    if r.returncode != 0 or not r.stdout.strip():
        return {"n": n, "error": f"exit {r.returncode}: {r.stderr.strip()[-400:]}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


# --- report ----------------------------------------------------------------------------------


def f2(x, nd: int = 2, unit: str = "") -> str:  # noqa: ANN001
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:,.{nd}f}{unit}"


def render(info: dict, args: argparse.Namespace, res: dict, total_s: float) -> tuple[str, list[str]]:
    lines: list[str] = []
    md = ["# Schedule engine benchmark: burst, idle cost, django-celery-beat", ""]
    cmd = "bench/scheduler_bench.py " + " ".join(sys.argv[1:])
    md += [
        f"Generated by `.venv/bin/python {cmd.strip()}` in {total_s:.0f} s. Another workload may share the "
        "machine: compare figures from one run, not across runs.",
        "",
    ]
    if res.get("warning"):
        md += [f"**{res['warning']}**", ""]
        lines += [res["warning"], ""]
    md += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info.items()] + [""]

    verdicts: list[tuple[str, bool]] = []
    for key in ("burst", "burst_distinct"):
        verdicts += _render_burst(res.get(key), key.replace("_", " "), lines, md)
        lines.append("")

    p = res.get("profile")
    if p and "error" not in p:
        head = (
            f"Where a batch's time goes (diagnostic): the same {p['n']:,} schedules due again, ONE in-process "
            f"scheduler_pass() with timers: {p['total_s']:.2f} s, {p['batches']} batches, "
            f"{p['per_batch_ms']:.0f} ms/batch"
        )
        lines += ["", head] + [f"  {name:<64} {ms_:8.1f} ms" for name, ms_ in p["parts"]]
        md += ["", "### Where a batch's time goes", "", head + ".", "", "| part, per batch | ms |", "|---|---:|"]
        md += [f"| {name} | {ms_:.1f} |" for name, ms_ in p["parts"]]
        md.append(f"| total per batch | {p['per_batch_ms']:.1f} |")
    elif p:
        lines += ["", f"Profile: ERROR {p['error']}"]

    idle = res.get("idle", [])
    beat = {x["n"]: x for x in res.get("beat", [])}
    if idle:
        hdr = (
            "N idle",
            "HQ tick ms (p90)",
            "HQ client CPU ms",
            "beat steady tick ms",
            "beat rebuild tick ms",
            "beat first tick ms",
        )
        rows = []
        for x in idle:
            bt = beat.get(x["n"])
            if bt is None:
                bcols = ("not run",) * 3
            elif "error" in bt:
                bcols = ("error",) * 3
            else:
                to = " (cut at budget)" if bt.get("timed_out") else ""
                bcols = (
                    f2(bt.get("steady_tick_ms"), 1),
                    f2(bt.get("rebuild_tick_ms"), 0) + to,
                    f2(bt.get("first_tick_ms"), 0),
                )
            rows.append((f"{x['n']:,}", f"{x['median_ms']:.3f} ({x['p90_ms']:.3f})", f"{x['cpu_ms']:.3f}", *bcols))
        widths = [max(len(hdr[i]), *(len(r[i]) for r in rows)) for i in range(len(hdr))]
        lines += ["", "Idle cost per scheduler iteration vs django-celery-beat per tick (wall ms, median)"]
        lines += ["  " + "  ".join(h.rjust(widths[i]) for i, h in enumerate(hdr))]
        lines += ["  " + "  ".join(c.rjust(widths[i]) for i, c in enumerate(r)) for r in rows]
        md += ["", "## Idle cost, HQ vs django-celery-beat", ""]
        md += ["| " + " | ".join(hdr) + " |", "|" + "---:|" * len(hdr)]
        md += ["| " + " | ".join(r) + " |" for r in rows]
        md += [
            "",
            "HQ: one `scheduler_tick()` in-process, as the scheduler side task calls it (median of "
            f"{args.iters} after 5 warm-ups); statements sent per iteration: "
            + "; ".join(
                f"N={x['n']:,}: {x['statements']} ({', '.join(x['statement_heads'])})"
                + (", transaction left open" if x["left_open_transaction"] else "")
                for x in idle
            )
            + ".",
        ]
        first, last = idle[0], idle[-1]
        flat = last["median_ms"] <= max(first["median_ms"] * 1.5, first["median_ms"] + 0.3)
        verdicts.append(
            (
                f"goal: idle iteration < {GOAL_IDLE_MS:.0f} ms at every N "
                f"(max {max(x['median_ms'] for x in idle):.3f} ms)",
                all(x["median_ms"] < GOAL_IDLE_MS for x in idle),
            )
        )
        verdicts.append(
            (
                f"goal: idle flat from {first['n']:,} to {last['n']:,} ({first['median_ms']:.3f} -> "
                f"{last['median_ms']:.3f} ms; allowed +50 % or +0.3 ms)",
                flat,
            )
        )
        verdicts.append(
            ("check: EXPLAIN uses partial index schedule_due at every N", all(x["index_used"] for x in idle))
        )
        md += ["", f"EXPLAIN (ANALYZE, COSTS OFF) at N = {last['n']:,}:", "", "```", last["due_sql"]]
        lines += ["", f"EXPLAIN at N={last['n']:,}:"]
        for name, plan in last["plans"].items():
            md += ["", f"-- {name}", plan]
            lines += [f"  -- {name}"] + ["  " + ln for ln in plan.splitlines()]
        md.append("```")
    if res.get("beat_note"):
        md += ["", f"django-celery-beat: {res['beat_note']}"]
        lines += ["", f"django-celery-beat: {res['beat_note']}"]
    for bt in res.get("beat", []):
        if "error" in bt:
            md.append(f"- beat N={bt['n']:,}: {bt['error']}")
            lines.append(f"  beat N={bt['n']:,}: {bt['error']}")
        else:
            parts = (
                f"rebuild parts: all_as_schedule {f2(bt['all_as_schedule_ms'], 0)} ms + is_due x all "
                f"{f2(bt.get('is_due_all_ms'), 0)} ms; "
                if "all_as_schedule_ms" in bt
                else "rebuild parts not timed separately; "
            )
            extra = (
                f"setup {bt['setup_s']:.1f} s; entries {bt.get('entries', '-')}; {parts}"
                f"steady x{bt.get('steady_iters', 0)}, rebuild x{bt.get('rebuild_iters', 0)}; "
                f"measured in {bt['measure_s']:.0f} s; sent {bt['sent']}"
                + ("; measurement cut at the budget" if bt.get("timed_out") else "")
            )
            md.append(f"- beat N={bt['n']:,}: {extra}")
    md += ["", "## Goals and checks", ""] + [f"- **{'PASS' if ok else 'FAIL'}** {g}" for g, ok in verdicts]
    lines += [""] + [f"{'PASS' if ok else 'FAIL'}  {g}" for g, ok in verdicts]
    for ph, err in res.get("errors", {}).items():
        md.append(f"- **ERROR** in {ph}: {err}")
        lines.append(f"ERROR in {ph}: {err}")
    md += ["", "## How each figure is measured", "", METHOD]
    return "\n".join(lines), md


def _render_burst(b: dict | None, name: str, lines: list[str], md: list[str]) -> list[tuple[str, bool]]:
    """Append one burst's figures to the text and markdown reports; return its verdicts."""
    if not b:
        return []
    verdicts: list[tuple[str, bool]] = []
    if "error" not in b:
        rows = [
            ("schedules due in the same second (slot S)", f"{b['n']:,}"),
            ("all fire rows stamped by: max(created_at) - S", f2(b["all_by_s"], 3, " s")),
            ("first fire row stamped: min(created_at) - S", f2(b["first_at_s"], 3, " s")),
            ("fire-row lag p50 / p99: created_at - slot", f"{f2(b['lag_p50'], 3)} / {f2(b['lag_p99'], 3)} s"),
            ("all committed (visible to another connection) by", f2(b["visible_by_s"], 3, " s")),
            ("committed lag p50 / p99 (20 ms polling)", f"{f2(b['visible_p50'], 3)} / {f2(b['visible_p99'], 3)} s"),
            ("all pushed to Redis (zcard = N) by", f2(b["pushed_by_s"], 3, " s")),
            ("passes that fired (from its log)", ", ".join(f"{x:,}" for x in b["passes"]) or "-"),
            (
                "batches x rows; median batch-to-batch time",
                f"{b['batches']} x {'/'.join(str(x) for x in b['batch_rows'])}; {f2(b['batch_gap_ms'], 0)} ms",
            ),
            ("  per batch: fire INSERT / rest (median)", _steps(b["steps"])),
            ("scheduler process CPU / PostgreSQL backends CPU", f"{f2(b['sched_cpu_s'])} / {f2(b['pg_cpu_s'])} s"),
            ("fire jobs in PostgreSQL / entries in Redis queue", f"{b['jobs']:,} / {b['zcard']:,}"),
        ]
        w = max(len(r[0]) for r in rows)
        kind = "each with its own trigger" if b["distinct"] else "all with one trigger"
        lines += [f"Burst ({name}): ONE `runworker --scheduler-only`, {b['n']:,} schedules due at S, {kind}"]
        lines += [f"  {r[0]:<{w}}  {r[1]}" for r in rows]
        md += [f"## Burst ({name}): {b['n']:,} schedules due at S, {kind}", "", "| figure | value |", "|---|---:|"] + [
            f"| {r[0].strip()} | {r[1]} |" for r in rows
        ]
        verdicts += [(f"goal: {name} {g}", ok) for g, ok in b["goals"].items()]
        verdicts += [(f"check: {name} {c}", ok) for c, ok in b["checks"].items()]
        verdicts.append((f"(stricter, info) {name} {b['strict'][0]}", b["strict"][1]))
    else:
        lines += [f"Burst ({name}): ERROR {b['error']}"]
        md += [f"## Burst ({name})", "", f"ERROR: {b['error']}"]
        verdicts.append((f"goal: {name} ran", False))
    return verdicts


def _steps(steps: list[dict]) -> str:
    if not steps:
        return "-"
    med = lambda k: statistics.median([s[k] for s in steps if s[k] is not None] or [float("nan")]) * 1000  # noqa: E731
    return f"{med('fire_insert_s'):.0f} / {med('rest_s'):.0f} ms"


METHOD = """\
- Setup: database `hq_bench_sched` dropped, created, `manage.py migrate` (DEBUG=1, REDIS_URL db 15,
  HQ_REDIS_PREFIX=hqbenchsched:); `manage.py create_token` makes the workspace and owner;
  `UPDATE hq_plan SET max_schedules = 200000`; one room with the owner as member. Schedules are
  inserted with one `INSERT ... SELECT generate_series` (cron `0 * * * *` UTC, send_message to that
  room, active); `schedules.services.schedule_create` made one first, and its trigger and args are
  checked to equal the inserted ones. The scheduler process and this process run with DEBUG=0.
- Burst: `manage.py runworker --scheduler-only` is started and waited for (subscribed to the nudge
  channel), then N rows with next_fire_at = S (the whole second 2-3 s ahead) are inserted,
  ANALYZEd, and the scheduler is nudged as schedule_create would. From PostgreSQL afterwards:
  `max(schedules_schedulefire.created_at) - S` and `created_at - slot` per fire (nearest-rank
  p50/p99). created_at is stamped once per batch by `_create_fires` in Python before the batch's
  INSERTs, UPDATE and COMMIT, so it is earlier than the moment a fire exists for anyone else: a poller thread (own
  autocommit connection, every 20 ms) records when each fire row became visible and when the
  Redis zset `hqbenchsched:arq:queue:default` reached N (pushes happen after each batch's commit).
  Batches are told apart by their jobs' shared created_at (`jobs_create` stamps one `now` per
  batch): per batch, "fire INSERT" = jobs' created_at - fire created_at, "rest" = next batch's
  fire created_at - this batch's jobs' created_at (Job + JobEvent INSERTs, UPDATE, COMMIT, Redis
  push, next SELECT and next_fire loop). CPU:
  utime+stime of the scheduler process and of the database's PostgreSQL backends, read from /proc
  just before S and right after the last fire became visible.
- Where a batch's time goes: after the burst the same N schedules are set due (1 s ago) and ONE
  `scheduler_pass()` runs in this process on one connection (HQ_SCHEDULER_CONNECTIONS=1, so no two
  batches overlap) with timers wrapped (in this process only) around `engine._claim` (the due
  SELECT), `engine.next_fire`, `engine._not_yet_fired`, `hq.db.bulk_insert` (per model),
  `hq.db.bulk_update`, the connection's COMMIT, `enqueue.push` and `enqueue._count`. Figures are
  per batch; "rest" is the pass's total minus the timed parts. The burst itself runs with the
  default HQ_SCHEDULER_CONNECTIONS.
- Idle: the table is emptied, then grown to each N with next_fire_at 1-31 days ahead, then VACUUM
  ANALYZE. One iteration = `scheduler_tick()` exactly as the scheduler side task calls it (minus the
  thread hop), wall clock in this process; median and p90 of the timed iterations after 5 warm-ups;
  "client CPU" = this thread's CPU time per iteration (Django and psycopg, not PostgreSQL's), less
  sensitive to other load. The statements one iteration sends are logged at psycopg's
  `Cursor.execute` (psycopg's own BEGIN/COMMIT do not pass there; whether the iteration left a
  transaction open is read from the connection). EXPLAIN (ANALYZE) runs the engine's claim and
  next-due statements with the iteration's parameters, bound on the server as the engine does, the
  claim also under `plan_cache_mode = force_generic_plan` (inside rolled-back transactions).
- django-celery-beat: bench/beat_compare.py under /tmp/beatvenv (celery, django-celery-beat, Django
  5.2, psycopg; never the project venv), its own settings module in a temp dir, PostgreSQL database
  `hq_bench_beat`; N PeriodicTasks on one CrontabSchedule `0 * * * *` UTC; Celery with
  broker_url=memory:// and apply_entry overridden to count, so nothing is sent. first tick =
  `DatabaseScheduler(app)` (reads every row) + first `tick()` (is_due of every entry); rebuild
  tick = `PeriodicTasks.update_changed()` then `tick()` (any task edit does this, and beat forces it
  every 5 minutes); steady tick = `tick()` with no change (change query + schedules_equal over every
  entry; beat ticks at least every 5 s). Run right after HQ's idle figure at the same N; 100,000 only
  within a 60 s measurement budget."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burst", type=int, default=10_000, help="schedules due in the same second (default 10,000)")
    ap.add_argument("--idle", default="1000,10000,100000", help="idle table sizes (default 1000,10000,100000)")
    ap.add_argument("--iters", type=int, default=50, help="timed idle iterations per N (median reported)")
    ap.add_argument("--beat-budget-s", type=float, default=60.0, help="beat's measurement budget for N > 10,000")
    ap.add_argument("--no-beat", action="store_true", help="skip the django-celery-beat comparison")
    ap.add_argument("--quick", action="store_true", help="2,000 burst, idle 1k/10k")
    ap.add_argument("--keep", action="store_true", help="keep the databases and Redis db 15 afterwards")
    ap.add_argument("--keep-logs", action="store_true", help="keep the scheduler's log even on success")
    args = ap.parse_args()
    if args.quick:
        args.burst, args.idle = min(args.burst, 2000), "1000,10000"
    idle_ns = [int(x) for x in args.idle.split(",") if x.strip()]

    lock = bench_lock()
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hqbench-sched-"))
    procs = Procs(tmp)
    res: dict = {"errors": {}}
    ok = False
    try:
        log(f"setup: database {DB_NAME} (drop, create, migrate), Redis {REDIS_URL} prefix {PREFIX}; logs in {tmp}")
        code_before = code_snapshot()
        setup_database()
        configure_django()
        fx = setup_fixtures()
        info = machine_info()
        log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))

        for key, distinct in (("burst_distinct", True), ("burst", False)):
            kind = "each with its own trigger" if distinct else "one trigger"
            log(f"{key}: {args.burst:,} schedules due in one second ({kind}), one runworker --scheduler-only")
            try:
                res[key] = b = run_burst(procs, fx, args.burst, distinct=distinct)
                log(
                    f"  all stamped by S+{b['all_by_s']:.3f} s, lag p50 {b['lag_p50']:.3f} / "
                    f"p99 {b['lag_p99']:.3f} s; visible by S+{f2(b['visible_by_s'], 3)} s, pushed by "
                    f"S+{f2(b['pushed_by_s'], 3)} s; {b['batches']} batches, {b['batch_gap_ms']:.0f} ms apart"
                )
            except Exception as exc:  # noqa: BLE001
                res[key] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"  {key} failed: {exc}")
        if "error" not in res["burst"]:
            try:
                res["profile"] = p = profile_pass(args.burst)
                log(f"  in-process pass: {p['total_s']:.2f} s, {p['per_batch_ms']:.0f} ms per batch")
            except Exception as exc:  # noqa: BLE001
                res.setdefault("errors", {})["profile"] = f"{type(exc).__name__}: {exc}"

        beat_ok = False
        if not args.no_beat:
            log(f"django-celery-beat: throwaway venv {BEAT_VENV}")
            beat_ok, note = ensure_beat_venv()
            if beat_ok:
                admin_sql(f"DROP DATABASE IF EXISTS {BEAT_DB} WITH (FORCE)", f"CREATE DATABASE {BEAT_DB}")
            res["beat_note"] = note if beat_ok else f"could not run: {note}"
            log(f"  {res['beat_note']}")
        res["idle"], res["beat"] = [], []
        reset_state()
        have = 0
        for n in idle_ns:
            insert_schedules(fx, have + 1, n, "%(now)s + interval '1 day' + random() * interval '30 days'")
            have = n
            sql("VACUUM ANALYZE schedules_schedule", fetch="none")
            x = measure_idle(n, args.iters)
            res["idle"].append(x)
            log(f"idle N={n:,}: {x['median_ms']:.3f} ms (p90 {x['p90_ms']:.3f}); schedule_due used: {x['index_used']}")
            if beat_ok:
                budget = args.beat_budget_s if n > 10_000 else max(args.beat_budget_s, 120.0)
                bt = run_beat(n, budget)
                res["beat"].append(bt)
                if "error" in bt:
                    log(f"  beat N={n:,}: {bt['error']}")
                else:
                    log(
                        f"  beat N={n:,}: steady tick {f2(bt.get('steady_tick_ms'), 1)} ms, rebuild tick "
                        f"{f2(bt.get('rebuild_tick_ms'), 0)} ms, first tick {f2(bt.get('first_tick_ms'), 0)} ms"
                        + (" (cut at budget)" if bt.get("timed_out") else "")
                    )
        if res["beat"] and "error" not in res["beat"][0]:
            v = res["beat"][0]["versions"]
            res["beat_note"] += (
                f"; celery {v['celery']}, django-celery-beat {v['django-celery-beat']}, Django {v['django']}"
            )

        changed = sorted(k for k, v in code_snapshot().items() if code_before.get(k) != v)
        if changed:
            names = ", ".join(str(Path(c).relative_to(ROOT)) for c in changed)
            res["warning"] = f"WARNING: code under test changed during this run ({names}); figures may mix versions."
        total_s = time.perf_counter() - t_start
        table, md = render(info, args, res, total_s)
        print()
        print(table)
        (BENCH / "RESULTS-scheduler.md").write_text("\n".join(md) + "\n")
        print(f"\nWrote {BENCH / 'RESULTS-scheduler.md'} ({total_s:.0f} s total)")
        print(f"Command: .venv/bin/python bench/scheduler_bench.py {' '.join(sys.argv[1:])}".rstrip())
        ok = True
        return 0
    finally:

        def cleanup() -> None:
            from django.db import connections

            connections.close_all()
            if not args.keep:
                admin_sql(
                    f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)", f"DROP DATABASE IF EXISTS {BEAT_DB} WITH (FORCE)"
                )
                redis_client().flushdb()

        end_run(procs, tmp, ok, args.keep_logs, lock, cleanup)


if __name__ == "__main__":
    sys.exit(main())
