#!/usr/bin/env python
"""HQ queue benchmark against bare ARQ, in one run (`make bench`, or `.venv/bin/python bench/run.py`).

Phases (each baseline runs right before its HQ counterpart, so they share the machine's noise):
  1. setup: PostgreSQL database `hq_bench` (drop + create + migrate), Redis db 15 with the key
     prefix `hqbench:` (FLUSHDB before each phase), a token from `manage.py create_token`.
  2. bare ARQ drain: N no-op jobs enqueued with `ArqRedis.enqueue_job`, drained by a plain
     `arq.Worker` subprocess (burst, max_jobs 100, keep_result 0, poll_delay 0.01).
     Drain time = first `on_job_start` -> last `after_job_end` (wall clock, in the worker).
  3. HQ drain: N `hq.noop` jobs through `queueapp.services.job_submit`, drained by one
     `manage.py runworker --burst --concurrency 100`. Drain time = min(first_started_at) ->
     max(finished_at) of the Job rows. Checks: all succeeded, one `started` event per job.
     Then (--priorities, on by default) the same with priorities spread over -100..100: its rate
     over the plain drain's in the same round (issue 18 asks for >= 0.9x).
  3b. durable PostgreSQL peers (--peers, on by default), in every round after HQ: pgqueuer (its
     defaults, batch size 100), procrastinate (its defaults, concurrency 100), oban-py with --oban;
     drivers in bench/peers/, run in throwaway venvs under .run/, each peer in its own database.
  4. API: the production server (granian WSGI, as `make run` and docker-compose start it) + 16
     keep-alive client threads POSTing {"function":"hq.noop"} M times, then GET /v1/me M times (the
     floor: the same stack doing nothing); compared with `enqueue_job` from asyncio at concurrency
     16. Then 1,000-job batches through POST /v1/queue/jobs/batch from 2 clients, and in-process
     `job_submit` (one thread) and `jobs_submit_many` (1,000 per call).
  5. enqueue->start latency at a steady rate: HQ = first_started_at - created_at (PostgreSQL)
     with a long-running `manage.py runworker`, jobs POSTed through that server; bare ARQ = on_job_start
     time - job.enqueue_time with ARQ's default poll_delay (0.5 s).
Results: printed and written to bench/RESULTS-queue.md. Misses are reported, never an exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import math
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
DB_NAME = os.environ.get("HQ_BENCH_DB", "hq_bench")  # another name keeps a second checkout's runs apart
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_DB = 15
# Another port keeps a second checkout's runs off the shared server (bench/arq_worker.py reads it too).
REDIS_PORT = int(os.environ.get("HQ_BENCH_REDIS_PORT", "6379"))
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/{REDIS_DB}"
PREFIX = "hqbench:"
EMAIL = "bench@example.com"
CONCURRENCY = 100  # worker max_jobs / --concurrency, both sides
CLIENTS = 16  # API / enqueue concurrency, both sides

HQ_ENV = {
    "DJANGO_SETTINGS_MODULE": "hq.settings",
    "DATABASE_URL": DB_URL,
    "REDIS_URL": REDIS_URL,
    "HQ_REDIS_PREFIX": PREFIX,
    "DEBUG": "0",
    "SECRET_KEY": "bench",
    "ALLOWED_HOSTS": "127.0.0.1",
    "HQ_THROTTLE_RATE": "1000000/min",
    "HQ_DB_APPLICATION_NAME": "hq_bench",
    "PYTHONUNBUFFERED": "1",
    # One workspace submits every job, as one application does on the peers (which have no tenants):
    # run as a single-tenant deployment is told to (README, "Fair share"), so that one workspace may
    # hold every slot rather than the default half.
    "HQ_WORKSPACE_SHARE": "1",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def env_for(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HQ_ENV)
    env.update(extra)
    return env


# --- processes -------------------------------------------------------------------------------


class Procs:
    """Every subprocess the bench starts, each in its own session, stopped by its own id."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.items: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        p.bench_name = name  # type: ignore[attr-defined]
        self.items.append(p)
        return p

    def stop(self, p: subprocess.Popen, grace: float = 15.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # its own process group (start_new_session)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                log(f"{p.bench_name} did not stop in {grace}s; killing")  # type: ignore[attr-defined]
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        else:
            # the leader is gone; make sure no child of its group lingers
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop_all(self) -> None:
        for p in reversed(self.items):
            try:
                self.stop(p)
            except Exception as exc:  # noqa: BLE001
                log(f"could not stop {p.pid}: {exc}")


def end_run(
    procs: Procs, tmp: Path, ok: bool, keep_logs: bool, lock: object, cleanup: Callable[[], None] | None = None
) -> None:
    """A bench's end, whatever happened: stop every subprocess, run the bench's own cleanup, drop
    the logs of a run that went well (else say where they are), release the bench lock."""
    procs.stop_all()
    if cleanup is not None:
        try:
            cleanup()
        except Exception as exc:  # noqa: BLE001
            print(f"cleanup failed: {exc}", file=sys.stderr)
    if ok and not keep_logs:
        shutil.rmtree(tmp, ignore_errors=True)
    elif not ok:
        print(f"Subprocess logs kept in {tmp}", file=sys.stderr)
    lock.close()  # type: ignore[attr-defined]


LOCK_PATH = Path(tempfile.gettempdir()) / "hq-bench.lock"


def bench_lock(timeout: float = 600):  # noqa: ANN201
    """One bench at a time on this machine: they share hq_bench and Redis db 15."""
    import fcntl

    f = open(LOCK_PATH, "w")  # noqa: SIM115
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            f.write(str(os.getpid()))
            f.flush()
            return f
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SystemExit(f"another bench run still holds {LOCK_PATH} after {timeout:.0f} s") from None
            if not announced:
                log(f"another bench run holds {LOCK_PATH}; waiting for it (at most {timeout:.0f} s)")
                announced = True
            time.sleep(1)


def manage(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    r = subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if r.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float, what: str, step: float = 0.05, proc: subprocess.Popen | None = None) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode} (see its log)")
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


# --- CPU accounting --------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def descendants(pid: int) -> set[int]:
    """Child processes of pid, recursively (e.g. the worker under a profiler wrapper)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            for k in kids:
                if k not in found:
                    found.add(k)
                    todo.append(k)
    return found


class CpuSampler(threading.Thread):
    """Samples the CPU time of the worker process, of Redis and of hq_bench's PostgreSQL backends.

    Every `interval` s: wall time, cumulative CPU per pid, machine busy/total. `between(t0, t1)`
    turns samples into CPU seconds spent inside a window (a pid first seen inside the window counts
    from its first sample), so process start-up outside the drain window is not charged.
    """

    def __init__(self, worker_pid: int, interval: float = 0.02, wrapped: bool = False, db: str = DB_NAME) -> None:
        super().__init__(daemon=True)
        self.root = worker_pid
        # wrapped: worker_pid is a profiler that runs the worker as its child; charge only the child
        self.groups: dict[str, set[int]] = {"worker": set() if wrapped else {worker_pid}, "redis": set(), "pg": set()}
        try:
            self.groups["redis"].add(int(redis_client().info("server")["process_id"]))
        except Exception:  # noqa: BLE001
            pass
        self.db = db
        self.interval = interval
        self.samples: list[tuple[float, dict[int, float], tuple[int, int]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        import psycopg

        conn = psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={self.db}", autocommit=True)
        next_scan = 0.0
        try:
            while not self.halt.is_set():
                now = time.time()
                if now >= next_scan:
                    rows = conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.db]
                    ).fetchall()
                    self.groups["pg"].update(r[0] for r in rows)
                    self.groups["worker"].update(descendants(self.root))
                    next_scan = now + 0.2
                cpu = {}
                for pids in self.groups.values():
                    for pid in pids:
                        v = proc_cpu_s(pid)
                        if v is not None:
                            cpu[pid] = v
                self.samples.append((time.time(), cpu, machine_cpu()))
                self.halt.wait(self.interval)
        finally:
            conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(5)

    def between(self, t0: float, t1: float) -> dict[str, float]:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        out: dict[str, float] = {}
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids:
                vals = [s[1][pid] for s in inside if pid in s[1]]
                if len(vals) >= 2:
                    total += vals[-1] - vals[0]
            out[name] = total
        if len(inside) >= 2:
            (b0, a0), (b1, a1) = inside[0][2], inside[-1][2]
            out["machine_busy"] = (b1 - b0) / max(a1 - a0, 1)
            out["span"] = inside[-1][0] - inside[0][0]
        return out


# --- setup -----------------------------------------------------------------------------------


def setup_database() -> str:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB_NAME}")
    manage(["migrate", "--noinput"], env_for(DEBUG="1"))
    out = manage(["create_token", "--email", EMAIL, "--workspace", "bench", "--admin"], env_for(DEBUG="1"))
    return out.strip().splitlines()[-1].strip()


def configure_django() -> None:
    os.environ.update(HQ_ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def redis_client():  # noqa: ANN201
    import redis

    return redis.Redis.from_url(REDIS_URL)


def reset_state() -> None:
    """Empty Redis db 15 and the job tables of hq_bench."""
    from django.db import connection

    redis_client().flushdb()
    with connection.cursor() as cur:
        cur.execute("TRUNCATE queueapp_jobevent, queueapp_job CASCADE")  # events reference jobs unchecked


WATCHED = ("queueapp", "hq")


def code_snapshot() -> dict[str, float]:
    """mtime of every .py under the code the bench exercises (another engineer may be editing it)."""
    return {str(p): p.stat().st_mtime for d in WATCHED for p in (ROOT / d).rglob("*.py")}


def code_state(watched: tuple[str, ...] = WATCHED) -> str:
    def git(*a: str) -> str:
        r = subprocess.run(["git", "--no-optional-locks", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return r.stdout

    head = git("rev-parse", "--short", "HEAD").strip() or "?"
    lines = [ln for ln in git("status", "--porcelain", "--", *watched).splitlines() if ln.strip()]
    modified = [ln[3:] for ln in lines if not ln.startswith("??")]
    new = len(lines) - len(modified)
    if not lines:
        return f"{head} (clean)"
    return f"{head} + uncommitted changes to {', '.join(modified) or 'no tracked file'}; {new} new file(s)"


def machine_facts(pg_version: str, redis_version: str, watched: tuple[str, ...] = WATCHED) -> dict[str, str]:
    """What every bench reports of the machine and the code (each adds its own libraries' versions)."""
    return {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(os.cpu_count()),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "redis": redis_version,
        "code": code_state(watched),
    }


def machine_info() -> dict[str, str]:
    import arq
    import django
    import granian

    (pg,) = sql_one("SHOW server_version")
    return {
        **machine_facts(pg, str(redis_client().info("server")["redis_version"])),
        "arq": getattr(arq, "VERSION", "?"),
        "django": django.get_version(),
        "granian": granian.__version__,
    }


# --- bare ARQ --------------------------------------------------------------------------------


async def arq_enqueue(n: int, concurrency: int) -> float:
    """Enqueue n no-op jobs with ArqRedis.enqueue_job from `concurrency` coroutines; return seconds."""
    from arq.connections import RedisSettings, create_pool

    pool = await create_pool(RedisSettings(host="127.0.0.1", port=REDIS_PORT, database=REDIS_DB))
    left = [n]

    async def one() -> None:
        while left[0] > 0:
            left[0] -= 1
            assert await pool.enqueue_job("noop") is not None

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return time.perf_counter() - t0
    finally:
        await pool.aclose()


async def arq_enqueue_paced(rate: float, seconds: float) -> int:
    """Enqueue at a steady rate (absolute schedule, each enqueue its own task); return how many."""
    from arq.connections import RedisSettings, create_pool

    pool = await create_pool(RedisSettings(host="127.0.0.1", port=REDIS_PORT, database=REDIS_DB))
    total = int(rate * seconds)
    tasks = []
    try:
        t0 = time.perf_counter()
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(pool.enqueue_job("noop")))
        await asyncio.gather(*tasks)
        return total
    finally:
        await pool.aclose()


def bare_drain(procs: Procs, tmp: Path, n: int) -> dict:
    reset_state()
    enq_s = asyncio.run(arq_enqueue(n, CLIENTS))
    assert redis_client().zcard("arq:queue") == n
    out = tmp / "arq-drain.json"
    t0 = time.perf_counter()
    p = procs.start("arq-drain", [PY, str(BENCH / "arq_worker.py"), "drain", "--out", str(out)], env_for())
    sampler = CpuSampler(p.pid)
    sampler.start()
    try:
        p.wait(timeout=60 + n / 50)
    finally:
        sampler.stop()
    wall = time.perf_counter() - t0
    st = json.loads(out.read_text())
    if st["ended"] != n or st["complete"] != n:
        raise RuntimeError(f"bare ARQ drained {st['ended']}/{n} (complete {st['complete']}, failed {st['failed']})")
    drain = st["last_end"] - st["first_start"]
    return {
        "n": n,
        "enqueue_s": enq_s,
        "drain_s": drain,
        "rate": n / drain,
        "wall_s": wall,
        "startup_s": st["first_start"] - st["t_proc"],
        "cpu": sampler.between(st["first_start"], st["last_end"]),
    }


def bare_latency(procs: Procs, tmp: Path, rate: float, seconds: float) -> dict:
    reset_state()
    out = tmp / "arq-latency.txt"
    p = procs.start("arq-serve", [PY, str(BENCH / "arq_worker.py"), "serve", "--out", str(out)], env_for())
    try:
        wait_for(lambda: Path(str(out) + ".ready").exists(), 30, "bare ARQ worker start", proc=p)
        total = asyncio.run(arq_enqueue_paced(rate, seconds))
        wait_for(lambda: out.exists() and out.read_text().count("\n") >= total, 10, "bare ARQ jobs to start", proc=p)
    finally:
        procs.stop(p)
    lat = [float(x) for x in out.read_text().split()]
    return {"n": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat)}


# --- HQ --------------------------------------------------------------------------------------


def bench_principal():  # noqa: ANN201
    from django.db.models import Q

    from hq.models import User, Workspace

    return Workspace.objects.get(Q(slug="bench") | Q(name="bench")), User.objects.get(email=EMAIL)


def spread_priority(i: int) -> int:
    """The i-th job's priority in the priority drain: every value of -100..100 in turn, shuffled
    (37 is prime to 201), so that each start takes the head of a different band."""
    return (i * 37) % 201 - 100


def hq_submit(n: int, priorities: bool = False) -> float:
    from queueapp.services import Submission, job_submit

    ws, user = bench_principal()
    t0 = time.perf_counter()
    for i in range(n):
        fields = {"priority": spread_priority(i)} if priorities else {}  # none: the code before priorities runs too
        job_submit(workspace=ws, owner=user, submission=Submission(function="hq.noop", args={}, **fields))
    return time.perf_counter() - t0


def pg_floor(tmp: Path, rows: int, seconds: int = 3) -> float | None:
    """Rows/s of the bare INSERT of `rows` jobs and their events, one statement and one commit per
    transaction, on one connection (pgbench, prepared, a C client): what PostgreSQL alone allows
    `job_submit` (rows=1) and `jobs_submit_many` (rows=1000) on this machine. None without pgbench."""
    pgbench = shutil.which("pgbench")
    if not pgbench:
        return None
    ws, user = bench_principal()
    script = tmp / f"insert-{rows}.sql"
    script.write_text(
        "WITH j AS (INSERT INTO queueapp_job (id, workspace_id, owner_id, function, args, queue, state,"
        " correlation_id, idempotency_hash, max_tries, timeout_s, retry_backoff_s, due_at, created_at, updated_at,"
        " dispatched_at, attempts, tries_base, error, worker_id, result)"
        f" SELECT gen_random_uuid(), '{ws.pk}', '{user.pk}', 'hq.noop', '{{}}', 'default', 'queued', '', '', 1, 300,"
        f" 2.0, now(), now(), now(), now(), 0, 0, '', '', NULL FROM generate_series(1, {rows}) RETURNING id)"
        " INSERT INTO queueapp_jobevent (job_id, kind, from_state, to_state, attempt, actor_id, detail, at)"
        f" SELECT id, 'submitted', '', 'queued', 0, '{user.pk}', '{{}}', now() FROM j;\n"
    )
    out = subprocess.run(
        [
            pgbench,
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-n",
            "-M",
            "prepared",
            "-c",
            "1",
            "-T",
            str(seconds),
            "-f",
            str(script),
            DB_NAME,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    tps = re.search(r"tps = ([0-9.]+)", out.stdout)
    if not tps:
        log(f"pgbench failed: {out.stderr.strip()[-300:]}")
    return float(tps.group(1)) * rows if tps else None


def hq_submit_many(n: int, per_call: int = 1000) -> float:
    from queueapp.services import Submission, jobs_submit_many

    ws, user = bench_principal()
    t0 = time.perf_counter()
    for start in range(0, n, per_call):
        batch = [Submission(function="hq.noop", args={"i": i}) for i in range(start, min(start + per_call, n))]
        jobs_submit_many(workspace=ws, owner=user, submissions=batch)
    return time.perf_counter() - t0


def api_batches(port: int, token: str, calls: int, per_call: int, concurrency: int) -> dict:
    """`calls` batch submits of `per_call` jobs each; jobs/s counts only jobs committed (202)."""
    body = json.dumps({"jobs": [{"function": "hq.noop", "args": {"i": i}} for i in range(per_call)]}).encode()
    out = api_load(port, token, calls, concurrency, ("POST", "/v1/queue/jobs/batch", body))
    out["jobs_per_s"] = calls * per_call / out["elapsed_s"]
    return out


def transport_queue_key() -> str:
    from queueapp import transport

    return transport.queue_key("default")


def sql_one(query: str, params: tuple = ()):  # noqa: ANN201
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()


def sql_all(query: str, params: tuple = ()) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def hq_drain(
    procs: Procs,
    n: int,
    wrap: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    name: str = "hq-drain",
    cmd: list[str] | None = None,
    priorities: bool = False,
) -> dict:
    from queueapp import transport

    reset_state()
    submit_s = hq_submit(n, priorities)
    queued = transport.queue_length("default")
    if queued != n:
        raise RuntimeError(f"after job_submit Redis holds {queued} of {n} pushes")
    argv = [*(wrap or []), *(cmd or [PY, "manage.py", "runworker", "--burst", "--concurrency", str(CONCURRENCY)])]
    # A backend reports its statistics when idle at most once a second: let this process's submits
    # be reported before the snapshot, so that the phase counts the worker's work alone.
    time.sleep(1.1)
    sql_one("SELECT 1")
    time.sleep(0.2)
    work_before = work_counters()
    t0 = time.perf_counter()
    p = procs.start(name, argv, env_for(**(extra_env or {})))
    poller = VisibilityPoller(step=0.01).begin()
    sampler = CpuSampler(p.pid, wrapped=bool(wrap))
    sampler.start()
    try:
        rc = p.wait(timeout=120 + n / 20)
    finally:
        sampler.stop()
        visibility = poller.stop()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"runworker --burst exited {rc}")
    time.sleep(0.5)  # a backend reports its statistics as it exits, just after the worker does
    work = {k: v - work_before.get(k, 0) for k, v in work_counters().items()}
    entries = index_entries(work_before.get("wal_lsn", 0.0), work_before.get("wal_lsn", 0.0) + work.get("wal_lsn", 0.0))
    total, ok, first, last, min_att, max_att = sql_one(
        "SELECT count(*), count(*) FILTER (WHERE state = 'succeeded'), min(first_started_at), max(finished_at),"
        " min(attempts), max(attempts) FROM queueapp_job"
    )
    (started,) = sql_one("SELECT count(*) FROM queueapp_jobevent WHERE kind = 'started'")
    (dups,) = sql_one(
        "SELECT count(*) FROM (SELECT job_id FROM queueapp_jobevent WHERE kind = 'started'"
        " GROUP BY job_id HAVING count(*) > 1) d"
    )
    drain = (last - first).total_seconds()
    gaps, gap_s = sql_one(
        "SELECT count(*), coalesce(sum(g), 0) FROM (SELECT extract(epoch FROM first_started_at"
        " - lag(first_started_at) OVER (ORDER BY first_started_at)) AS g FROM queueapp_job) x WHERE g > 0.1"
    )
    checks = {
        f"all {n} succeeded": total == n and ok == n,
        f"started events == {n}": started == n,
        "no job started twice": dups == 0 and min_att == 1 and max_att == 1,
    }
    return {
        "n": n,
        "submit_s": submit_s,
        "drain_s": drain,
        "rate": n / drain,
        "wall_s": wall,
        "succeeded": ok,
        "started_events": started,
        "checks": checks,
        "cpu": sampler.between(first.timestamp(), last.timestamp()),
        "gaps": int(gaps),
        "gap_s": float(gap_s),
        "work": work,
        "index_entries": entries,
        "visibility": visibility,
    }


JOB_TABLES = ("queueapp_job", "queueapp_jobevent")


def work_counters() -> dict[str, float]:
    """PostgreSQL's and Redis's own counts of the work done; the difference of two calls is a phase's.

    Commits and rows are hq_bench's; WAL records, bytes and syncs are the whole cluster's (another
    database's work on this machine counts too); Redis commands are the server's (db 15 is the bench's).
    """
    import psycopg

    out: dict[str, float] = {}
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={DB_NAME}", autocommit=True) as c:
        c.execute("SELECT pg_stat_clear_snapshot()")
        row = c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (DB_NAME,)).fetchone()
        out["pg_commits"] = float(row[0]) if row else 0.0
        wal = c.execute("SELECT wal_records, wal_bytes, wal_sync FROM pg_stat_wal").fetchone()
        if wal:
            out["wal_records"], out["wal_bytes"], out["wal_syncs"] = (float(x) for x in wal)
        lsn = c.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()
        out["wal_lsn"] = float(lsn[0]) if lsn else 0.0
        for rel, ins, upd, hot in c.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            (list(JOB_TABLES),),
        ):
            out[f"{rel}.ins"], out[f"{rel}.upd"], out[f"{rel}.hot"] = float(ins), float(upd), float(hot)
    stats = redis_client().info("commandstats")
    for cmd, st in stats.items():
        out[f"redis.{cmd.removeprefix('cmdstat_')}"] = float(st["calls"])
    return out


# A B-tree record that adds an entry to an index: an insert into a leaf page, into a posting list,
# or the insert that split a leaf (the split record carries it).
_BTREE_ENTRY = re.compile(r"desc: (?:INSERT_LEAF|INSERT_POST|SPLIT_L|SPLIT_R)\b.*?blkref #0: rel \d+/\d+/(\d+)")


def index_entries(lsn_from: float, lsn_to: float) -> dict[str, int]:
    """Entries added to each index of the job tables between two WAL positions, read from the WAL
    itself with pg_waldump (so a partial index counts only the rows its condition admits).

    Empty when pg_waldump or the WAL directory cannot be read (another machine's layout)."""

    def lsn(x: float) -> str:
        n = int(x)
        return f"{n >> 32:X}/{n & 0xFFFFFFFF:X}"

    rels = {
        str(node): name
        for name, node in sql_all(
            "SELECT c.relname, pg_relation_filenode(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = ANY(%s::regclass[])",
            (list(JOB_TABLES),),
        )
    }
    (data_dir,) = sql_one("SHOW data_directory")
    waldump = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_waldump"), reverse=True)), None)
    if waldump is None:
        return {}
    try:
        out = subprocess.run(
            [str(waldump), "-p", f"{data_dir}/pg_wal", "-s", lsn(lsn_from), "-e", lsn(lsn_to), "-r", "Btree"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    counts = dict.fromkeys(rels.values(), 0)
    for m in _BTREE_ENTRY.finditer(out):
        name = rels.get(m.group(1))
        if name is not None:
            counts[name] += 1
    return counts if sum(counts.values()) else {}


def work_rows(h: dict) -> list[tuple[str, str, str, str]]:
    """Per-job counts of what the HQ drain asked of PostgreSQL and Redis (the table's last column: the count)."""
    w, n = h.get("work") or {}, h["n"]
    if not w:
        return []
    idx = {t: int(sql_one("SELECT count(*) FROM pg_indexes WHERE tablename = %s", (t,))[0]) for t in JOB_TABLES}
    entries = h.get("index_entries") or {}
    busiest = sorted(entries.items(), key=lambda kv: (-kv[1], kv[0]))
    redis = sorted(((k[6:], v) for k, v in w.items() if k.startswith("redis.") and v > 0), key=lambda kv: -kv[1])
    per = lambda x: f"{x / n:.3f}"  # noqa: E731
    return [
        ("  per job: PostgreSQL commits (hq_bench)", "", per(w.get("pg_commits", 0)), ""),
        (
            "  per job: job rows updated (of them HOT) / event rows inserted",
            "",
            f"{per(w.get('queueapp_job.upd', 0))} ({per(w.get('queueapp_job.hot', 0))}) / "
            f"{per(w.get('queueapp_jobevent.ins', 0))}",
            "",
        ),
        (
            f"  per job: index entries written, from the WAL ({idx['queueapp_job']} job indexes, "
            f"{idx['queueapp_jobevent']} event): " + ", ".join(f"{k} {v / n:.2f}" for k, v in busiest[:4]) + ", ...",
            "",
            per(sum(entries.values())) if entries else "not read",
            "",
        ),
        (
            "  per job: WAL records / bytes / syncs (whole cluster)",
            "",
            f"{per(w.get('wal_records', 0))} / {w.get('wal_bytes', 0) / n:.0f} / {per(w.get('wal_syncs', 0))}",
            "",
        ),
        (
            "  per job: Redis commands (whole server): " + ", ".join(f"{c} {v / n:.3f}" for c, v in redis[:6]),
            "",
            per(sum(v for _, v in redis)),
            "",
        ),
    ]


class ApiClient:
    """One keep-alive HTTP/1.1 connection (http.client reopens it when the server closes it)."""

    BODY = json.dumps({"function": "hq.noop"}).encode()

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.connects = 0

    def post(self, method: str = "POST", path: str = "/v1/queue/jobs", body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn.sock is None:
                self.connects += 1
            try:
                self.conn.request(method, path, self.BODY if body is None and method == "POST" else body, self.headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # a kept-alive socket the server had closed before reading the request
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError

    def close(self) -> None:
        self.conn.close()


def _run_script():  # noqa: ANN202 - scripts/run.py, the one place that says how HQ is served
    import importlib.util

    spec = importlib.util.spec_from_file_location("hq_run_script", ROOT / "scripts" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_web(procs: Procs, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """The production web server, started as `make run` and docker-compose start it (granian);
    `env`: another bench's environment instead of this one's."""
    port = free_port()
    run = _run_script()
    p = procs.start("web", run.web_server_argv("127.0.0.1", port), run.web_env(env or env_for()))

    def up() -> bool:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except OSError:
            return False

    wait_for(up, 30, "the web server", step=0.1, proc=p)
    return p, port


def api_load(
    port: int, token: str, m: int, concurrency: int, request: tuple = ("POST", "/v1/queue/jobs", None), ok: int = 202
) -> dict:
    """`m` requests (`request` = method, path, body) from `concurrency` keep-alive client threads."""
    left = [m]
    lock = threading.Lock()
    lat: list[float] = []
    bad: list[int] = []
    clients = [ApiClient(port, token) for _ in range(concurrency)]

    def run(c: ApiClient) -> None:
        mine: list[float] = []
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            t = time.perf_counter()
            status, _ = c.post(*request)
            mine.append(time.perf_counter() - t)
            if status != ok:
                bad.append(status)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    t0, wall0 = time.perf_counter(), time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
    ms = [x * 1000 for x in lat]
    return {
        "n": m,
        "elapsed_s": elapsed,
        "window": (wall0, wall0 + elapsed),
        "rps": m / elapsed,
        "p50": pct(ms, 50),
        "p99": pct(ms, 99),
        "errors": len(bad),
        "statuses": sorted(set(bad)),
        "connects": sum(c.connects for c in clients),
    }


def api_paced(port: int, token: str, rate: float, seconds: float, senders: int = 4) -> list[dict]:
    """POST at a steady rate (absolute schedule); return per-request send time, status and job id."""
    total = int(rate * seconds)
    q: queue.Queue[int | None] = queue.Queue()
    rows: list[dict] = []
    lock = threading.Lock()

    def sender() -> None:
        c = ApiClient(port, token)
        try:
            while (i := q.get()) is not None:
                t_send = time.time()
                status, body = c.post()
                t_resp = time.time()
                job_id = json.loads(body).get("id") if status == 202 else None
                with lock:
                    rows.append({"i": i, "sent": t_send, "resp": t_resp, "status": status, "id": job_id})
        finally:
            c.close()

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        q.put(i)
    for _ in threads:
        q.put(None)
    for t in threads:
        t.join()
    return rows


class VisibilityPoller(threading.Thread):
    """When each job's start and end became visible to a reader, from its own connection.

    Every `step` seconds it reads the rows whose start or end was recorded since its last read (the
    API reads the same committed rows, with no cache). A row's lag is the wall time at the read that
    first saw it minus the instant recorded in it: `started_at` (stamped as the START batch is built)
    and `finished_at` (stamped as the body ended). The poll step bounds the error.
    """

    def __init__(self, step: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.step = step
        self.stop_flag = threading.Event()
        self.ready = threading.Event()  # connected and read once: what happens from now on is timed
        self.start_lag: dict[str, float] = {}
        self.end_lag: dict[str, float] = {}

    def run(self) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={DB_NAME}", autocommit=True) as c:
            c.execute("SET enable_seqscan = off")  # this session only: the index scans below, whatever the stats
            since = time.time() - 1
            while not self.stop_flag.is_set():
                seen = time.time()
                # Rows running now, and rows finished since the last read: two small index scans (the
                # partial indexes of running and finished jobs), so that polling every few ms takes
                # little from the drain it watches (a scan of the whole table did: 10-20% of a core).
                rows = c.execute(
                    "SELECT id::text, extract(epoch FROM started_at), extract(epoch FROM finished_at)"
                    " FROM queueapp_job WHERE state = 'running'"
                    " UNION ALL SELECT id::text, extract(epoch FROM started_at), extract(epoch FROM finished_at)"
                    " FROM queueapp_job WHERE finished_at >= to_timestamp(%s) AND started_at IS NOT NULL",
                    (since - 1,),
                ).fetchall()
                for job_id, started, finished in rows:
                    if not self.ready.is_set():  # happened before the poller was ready: not timed
                        self.start_lag[job_id] = self.end_lag[job_id] = float("nan")
                        continue
                    if job_id not in self.start_lag:
                        self.start_lag[job_id] = (seen - float(started)) * 1000
                    if finished is not None and job_id not in self.end_lag:
                        self.end_lag[job_id] = (seen - float(finished)) * 1000
                since = seen
                self.ready.set()
                self.stop_flag.wait(self.step)

    def begin(self) -> VisibilityPoller:
        self.start()
        self.ready.wait(30)
        return self

    def stop(self) -> dict[str, float]:
        self.stop_flag.set()
        self.join(10)
        s = [x for x in self.start_lag.values() if not math.isnan(x)]
        e = [x for x in self.end_lag.values() if not math.isnan(x)]
        if not s or not e:
            return {}
        return {
            "n": len(e),
            "start_p50": pct(s, 50),
            "start_p99": pct(s, 99),
            "end_p50": pct(e, 50),
            "end_p99": pct(e, 99),
            "max": max(s + e),
        }


def hq_latency(
    procs: Procs,
    port: int,
    token: str,
    rate: float,
    seconds: float,
    backlog: Callable[[], object] | None = None,
    settle_s: float = 0.0,
    worker_env: dict[str, str] | None = None,
) -> dict:
    """Enqueue->start of jobs POSTed at `rate` for `seconds` to a running worker. `backlog` submits
    other work first (bench/limits_bench.py: keyed jobs held by a limit), given `settle_s` seconds
    with the worker before the measure; `worker_env` adds to the worker's environment."""
    from django.db import connection

    reset_state()
    if backlog is not None:
        backlog()
    r = redis_client()
    worker = procs.start(
        "hq-worker", [PY, "manage.py", "runworker", "--concurrency", str(CONCURRENCY)], env_for(**(worker_env or {}))
    )
    poller = VisibilityPoller()
    try:
        wait_for(lambda: r.pubsub_numsub(PREFIX + "nudge")[0][1] >= 1, 30, "runworker to subscribe", proc=worker)
        time.sleep(settle_s)
        api_paced(port, token, rate, 0.4)  # warm-up, not measured (the server's workers, the worker's pool)
        time.sleep(0.5)
        poller.begin()
        rows = api_paced(port, token, rate, seconds)
        ids = [x["id"] for x in rows if x["id"]]
        if len(ids) != len(rows):
            raise RuntimeError(f"{len(rows) - len(ids)} POSTs failed: {sorted({x['status'] for x in rows})}")

        def all_started() -> bool:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM queueapp_job WHERE id = ANY(%s::uuid[]) AND first_started_at IS NOT NULL",
                    [ids],
                )
                return cur.fetchone()[0] == len(ids)

        wait_for(all_started, 15, "HQ jobs to start", step=0.2, proc=worker)
        time.sleep(0.2)
    finally:
        visibility = poller.stop() if poller.is_alive() else {}
        procs.stop(worker, grace=30)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id::text, extract(epoch FROM created_at), extract(epoch FROM first_started_at)"
            " FROM queueapp_job WHERE id = ANY(%s::uuid[])",
            [ids],
        )
        db = {i: (float(c), float(s)) for i, c, s in cur.fetchall()}
    server = [(db[x["id"]][1] - db[x["id"]][0]) * 1000 for x in rows]
    client = [(db[x["id"]][1] - x["sent"]) * 1000 for x in rows]
    resp = [(x["resp"] - x["sent"]) * 1000 for x in rows]
    span = max(x["sent"] for x in rows) - min(x["sent"] for x in rows)
    return {
        "n": len(rows),
        "achieved_rate": (len(rows) - 1) / span if span else float("nan"),
        "p50": pct(server, 50),
        "p99": pct(server, 99),
        "max": max(server),
        "client_p50": pct(client, 50),
        "client_p99": pct(client, 99),
        "post_p50": pct(resp, 50),
        "post_p99": pct(resp, 99),
        "visibility": visibility,
    }


# --- durable PostgreSQL peers (pgqueuer, procrastinate) -----------------------------------------
# Each runs in the throwaway venv .run/bench-peers (bench/peers/requirements.txt, exact versions),
# never the project's, through a driver script in bench/peers/ that imports no Django and no HQ.

PEERS = BENCH / "peers"
PEER_DB_PREFIX = os.environ.get("HQ_BENCH_PEER_DB_PREFIX", "hq_bench_peer")
PEER_DBS = {
    "pgqueuer": f"{PEER_DB_PREFIX}_pgq",
    "procrastinate": f"{PEER_DB_PREFIX}_proc",
    "oban": f"{PEER_DB_PREFIX}_oban",
}
PEER_GOALS = (  # (side, label): HQ's median drain ratio against it should reach 1.0 (issue 16)
    ("pgq-default", "HQ drain >= 1.0x pgqueuer with its defaults"),
    ("pgq-100", "(aim) HQ drain >= 1.0x pgqueuer at batch size 100"),
)


def python312() -> str | None:
    """A Python 3.12 that runs, for oban-py: python3.12 on PATH (not a pyenv shim for a version
    pyenv does not select), else pyenv's newest 3.12."""
    pyenv = sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python"))[::-1]
    for cand in [shutil.which("python3.12"), *pyenv]:
        check = [cand or "", "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 12))"]
        if cand and subprocess.run(check, capture_output=True, check=False).returncode == 0:
            return cand
    return None


class PeerVenv:
    """A throwaway venv under .run/ (never the project's) holding one requirements file's exact pins."""

    def __init__(self, name: str, requirements: str, base: Callable[[], str | None]) -> None:
        self.path = ROOT / ".run" / name
        self.py = self.path / "bin" / "python"
        self.requirements = PEERS / requirements
        self.base = base  # finds the interpreter to build the venv with, when it is needed

    def pins(self) -> dict[str, str]:
        pins = {}
        for line in self.requirements.read_text().splitlines():
            name, sep, version = line.split("#")[0].strip().partition("==")
            if sep:
                pins[name] = version
        return pins

    def installed(self) -> dict[str, str] | None:
        """The pinned packages' versions installed in the venv (None: no usable venv)."""
        if not self.py.exists():
            return None
        code = "import importlib.metadata as m, json, sys; print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
        r = subprocess.run([str(self.py), "-c", code, *self.pins()], capture_output=True, text=True, check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def ensure(self) -> str:
        """Reuse the venv when it holds the pinned versions, else (re)build it; raise on failure."""
        rel, req = os.path.relpath(self.path, ROOT), os.path.relpath(self.requirements, ROOT)
        if self.installed() == self.pins():
            return f"reused {rel}"
        if not self.py.exists():
            base = self.base()
            if not base:
                raise RuntimeError(f"no interpreter to build {rel} with")
            shutil.rmtree(self.path, ignore_errors=True)
            r = subprocess.run([base, "-m", "venv", str(self.path)], capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"{base} -m venv {rel} failed: {r.stderr.strip()[-300:]}")
        pip = [str(self.py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(self.requirements)]
        r = subprocess.run(pip, capture_output=True, text=True, timeout=900, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"pip install -r {req} failed: {r.stderr.strip()[-400:]}")
        if self.installed() != self.pins():
            raise RuntimeError(f"{rel} holds {self.installed()}, not {self.pins()}")
        return f"built {rel} (pip install -r {req})"

    def versions(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.pins().items())


PEER_VENV = PeerVenv("bench-peers", "requirements.txt", lambda: shutil.which("python3") or sys.executable)
OBAN_VENV = PeerVenv("bench-oban", "requirements-oban.txt", python312)  # oban-py needs Python 3.12
VENV_OF = {"pgqueuer": PEER_VENV, "procrastinate": PEER_VENV, "oban": OBAN_VENV}
TOOLS_VENV = PeerVenv("bench-tools", "requirements-tools.txt", lambda: shutil.which("python3") or sys.executable)


def find_py_spy(given: str | None) -> str | None:
    """py-spy: the one given, else on PATH, else the bench's tools venv (built when absent)."""
    if given or shutil.which("py-spy"):
        return given or shutil.which("py-spy")
    try:
        log(f"py-spy: {TOOLS_VENV.ensure()}")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log(f"py-spy unavailable ({exc}); the profile uses cProfile")
        return None
    return str(TOOLS_VENV.path / "bin" / "py-spy")


def peer_sides(jobs: int, slow_jobs: int, oban: bool) -> list[dict]:
    """The peers' drain configurations, in the order each round runs them."""
    sides = [
        {"key": "pgq-default", "peer": "pgqueuer", "label": "pgqueuer, its defaults (batch 10)", "n": jobs, "argv": []},
        {
            "key": "pgq-100",
            "peer": "pgqueuer",
            "label": "pgqueuer, batch size 100",
            "n": jobs,
            "argv": ["--batch-size", "100"],
        },
        {
            "key": "proc-1",
            "peer": "procrastinate",
            "label": "procrastinate, its defaults (concurrency 1)",
            "n": slow_jobs,
            "argv": [],
        },
        {
            "key": "proc-100",
            "peer": "procrastinate",
            "label": "procrastinate, concurrency 100",
            "n": slow_jobs,
            "argv": ["--concurrency", "100"],
        },
    ]
    if oban:
        sides.append({"key": "oban-100", "peer": "oban", "label": "oban-py, queue limit 100", "n": jobs, "argv": []})
    return sides


def peer_dsn(peer: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{PEER_DBS[peer]}"


def peer_cmd(peer: str, command: str, *argv: str) -> list[str]:
    return [str(VENV_OF[peer].py), str(PEERS / f"{peer}_peer.py"), command, "--dsn", peer_dsn(peer), *argv]


def peer_databases(peers: list[str], create: bool) -> None:
    """Drop these peers' databases; with create, make each anew and install that peer's schema."""
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as c:
        for peer in peers:
            c.execute(f"DROP DATABASE IF EXISTS {PEER_DBS[peer]} WITH (FORCE)")
            if create:
                c.execute(f"CREATE DATABASE {PEER_DBS[peer]}")
    for peer in peers if create else ():
        r = subprocess.run(peer_cmd(peer, "install"), capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{peer} schema install failed: {r.stderr.strip()[-400:]}")


def setup_peer_group(peers: list[str]) -> tuple[bool, str]:
    """Build or reuse the peers' venv and create their databases: (ready, what was done or why not)."""
    venv = VENV_OF[peers[0]]
    try:
        note = venv.ensure()
        peer_databases(peers, create=True)
    except Exception as exc:  # noqa: BLE001 - whatever stops them, the rest of the bench runs
        try:
            peer_databases(peers, create=False)
        except Exception:  # noqa: BLE001
            pass
        return False, f"{' and '.join(peers)} skipped: {exc}"
    return True, f"{note}: {venv.versions()}; databases {', '.join(PEER_DBS[p] for p in peers)}"


def setup_peers(jobs: int, slow_jobs: int, oban: bool) -> tuple[list[dict], str]:
    """The peer sides to drain and a note; no sides, and why, when they cannot run here."""
    groups = [["pgqueuer", "procrastinate"]] + ([["oban"]] if oban else [])
    done = [setup_peer_group(g) for g in groups]
    ready = {p for g, (ok, _) in zip(groups, done, strict=True) if ok for p in g}
    sides = [s for s in peer_sides(jobs, slow_jobs, oban) if s["peer"] in ready]
    note = "; ".join(note for _, note in done)
    return sides, note if sides else f"peers skipped: {note}"


def peer_drain(procs: Procs, tmp: Path, side: dict) -> dict:
    """Enqueue side["n"] no-op jobs in bulk, then drain them with one worker process of that peer."""
    n, peer = side["n"], side["peer"]
    r = subprocess.run(
        peer_cmd(peer, "enqueue", "--n", str(n)), capture_output=True, text=True, timeout=120 + n / 50, check=False
    )
    if r.returncode != 0:
        raise RuntimeError(f"{peer} enqueue failed: {r.stderr.strip()[-400:]}")
    enqueue_s = json.loads(r.stdout.strip().splitlines()[-1])["enqueue_s"]
    out = tmp / f"{side['key']}.json"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    p = procs.start(side["key"], peer_cmd(peer, "drain", "--n", str(n), "--out", str(out), *side["argv"]), env_for())
    sampler = CpuSampler(p.pid, db=PEER_DBS[peer])
    sampler.start()
    try:
        rc = p.wait(timeout=120 + n / 20)
    finally:
        sampler.stop()
    wall = time.perf_counter() - t0
    if rc != 0 or not out.exists():
        raise RuntimeError(f"{side['key']} worker exited {rc} (see {tmp / (side['key'] + '.log')})")
    st = json.loads(out.read_text())
    drain = st["last_finish"] - st["first_start"]
    checks = {
        f"all {n} started once and recorded succeeded by the worker": st["started"] == n and st["finished"] == n,
        f"the database holds {n} succeeded, none unfinished": st["db"]["succeeded"] == n
        and st["db"]["unfinished"] == 0,
    }
    return {
        "n": n,
        "enqueue_s": enqueue_s,
        "drain_s": drain,
        "rate": n / drain,
        "wall_s": wall,
        "startup_s": st["first_start"] - st["t_proc"],
        "writes": st["writes"],
        "db": st["db"]["detail"],
        "checks": checks,
        "cpu": sampler.between(st["first_start"], st["last_finish"]),
    }


def peer_round(procs: Procs, tmp: Path, sides: list[dict], failed: dict[str, str], r: int, rounds: int) -> dict:
    """One round of every peer side still running; a side that fails is noted and left out from then on."""
    out = {}
    for side in sides:
        if side["key"] in failed:
            continue
        log(f"round {r}/{rounds}: {side['label']} drain, {side['n']} jobs")
        try:
            d = out[side["key"]] = peer_drain(procs, tmp, side)
        except (OSError, RuntimeError, KeyError, ValueError, subprocess.TimeoutExpired) as exc:
            failed[side["key"]] = str(exc)
            log(f"  {side['key']} failed, left out from now on: {exc}")
            continue
        log(
            f"  {d['rate']:.0f} jobs/s (window {d['drain_s']:.2f} s, enqueue {d['enqueue_s']:.2f} s, worker CPU "
            f"{cpu_ms(d, 'worker'):.3f} ms/job, PG {cpu_ms(d, 'pg'):.3f} ms/job, {d['writes']} status writes); "
            f"checks {'all pass' if all(d['checks'].values()) else d['checks']}"
        )
    return out


def median_spread(values: list[float]) -> tuple[float, float, float]:
    s = sorted(values)
    return s[len(s) // 2], s[0], s[-1]


def summarize_peers(sides: list[dict], per_round: list[dict], hq_rates: list[float], failed: dict[str, str]) -> dict:
    """Per side: median rate (lowest-highest) and the median of HQ's ratio to it in the same round."""
    out = {}
    for side in sides:
        got = [(rnd[side["key"]], hq) for rnd, hq in zip(per_round, hq_rates, strict=True) if side["key"] in rnd]
        if not got:
            continue
        rate = median_spread([d["rate"] for d, _ in got])
        ratio = median_spread([hq / d["rate"] for d, hq in got])
        mid = sorted(got, key=lambda dh: dh[0]["rate"])[len(got) // 2][0]
        out[side["key"]] = {
            "label": side["label"],
            "n": side["n"],
            "rounds": len(got),
            "rate": rate,
            "ratio": ratio,
            "worker_ms": cpu_ms(mid, "worker"),
            "pg_ms": cpu_ms(mid, "pg"),
            "checks": all(all(d["checks"].values()) for d, _ in got),
            "failed": failed.get(side["key"], ""),
        }
    return out


class PeerRounds:
    """The peers' part of the drain rounds: set up once, every side once per round, then summed up."""

    def __init__(self) -> None:
        self.sides: list[dict] = []
        self.per_round: list[dict] = []
        self.hq_rates: list[float] = []  # HQ's rate in the same round, for the ratios
        self.failed: dict[str, str] = {}
        self.note = ""

    def setup(self, enabled: bool, jobs: int, slow_jobs: int, oban: bool) -> None:
        if enabled:
            log("peers: throwaway venvs under .run/, one database each")
            self.sides, self.note = setup_peers(jobs, slow_jobs, oban)
            log(f"  {self.note}")

    def round(self, procs: Procs, tmp: Path, hq_rate: float, r: int, rounds: int) -> None:
        if self.sides:
            self.hq_rates.append(hq_rate)
            self.per_round.append(peer_round(procs, tmp, self.sides, self.failed, r, rounds))

    def report(self, res: dict) -> None:
        if self.note:
            res["peers_note"] = self.note
        if self.sides:
            res["peers"] = summarize_peers(self.sides, self.per_round, self.hq_rates, self.failed)

    def close(self) -> None:
        if self.sides:
            peer_databases(sorted({s["peer"] for s in self.sides}), create=False)


def render_peers(res: dict) -> tuple[list[str], list[str], list[tuple[str, bool]], list[tuple[str, bool]]]:
    """The peers' drain table (text, markdown), issue 16's goals against them, and their checks."""
    note, peers = res.get("peers_note", ""), res.get("peers", {})
    if not peers:
        return (["", note], ["", note], [], []) if note else ([], [], [], [])
    b_rate = median_spread([b for b, _ in res["drain_rounds"]])
    h_rate = median_spread([h for _, h in res["drain_rounds"]])
    rows = [
        (
            "bare ARQ (max_jobs 100)",
            res["bare_drain"]["n"],
            b_rate,
            median_spread([h / b for b, h in res["drain_rounds"]]),
        ),
        ("HQ (runworker --concurrency 100)", res["hq_drain"]["n"], h_rate, None),
    ]
    rows += [(p["label"], p["n"], p["rate"], p["ratio"]) for p in peers.values()]
    cells = [
        (
            label,
            f"{n:,}",
            f"{fmt(rate[0])} ({fmt(rate[1], 0)}-{fmt(rate[2], 0)})",
            f"{ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f}x)" if ratio else "",
        )
        for label, n, rate, ratio in rows
    ]
    head = (
        "Drain, one worker process (median of rounds)",
        "jobs",
        "jobs/s (lowest-highest)",
        "HQ / side (lowest-highest)",
    )
    w = [max(len(c[i]) for c in [head, *cells]) for i in range(4)]
    text = ["", "  ".join(f"{h:<{w[i]}}" if i == 0 else f"{h:>{w[i]}}" for i, h in enumerate(head))]
    text += ["-" * (sum(w) + 6)]
    text += ["  ".join(f"{c:<{w[i]}}" if i == 0 else f"{c:>{w[i]}}" for i, c in enumerate(row)) for row in cells]
    md = ["", "## Drain against the durable PostgreSQL queues", "", f"Peers: {note}.", ""]
    md += [
        "| " + " | ".join(head) + " | worker CPU / job (ms) | PostgreSQL CPU / job (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    b, h = res["bare_drain"], res["hq_drain"]  # the round with the median HQ/ARQ ratio
    cpu = [(fmt(cpu_ms(b, "worker"), 3), "-"), (fmt(cpu_ms(h, "worker"), 3), fmt(cpu_ms(h, "pg"), 3))]
    cpu += [(fmt(p["worker_ms"], 3), fmt(p["pg_ms"], 3)) for p in peers.values()]
    md += [f"| {' | '.join(c)} | {wc} | {pc} |" for c, (wc, pc) in zip(cells, cpu, strict=True)]
    for p in peers.values():
        if p["failed"]:
            text.append(f"{p['label']}: failed after {p['rounds']} round(s): {p['failed']}")
            md.append(f"\n{p['label']}: failed after {p['rounds']} round(s): {p['failed']}")
    goals = [
        (f"{label} (median {peers[key]['ratio'][0]:.2f}x)", peers[key]["ratio"][0] >= 1.0)
        for key, label in PEER_GOALS
        if key in peers
    ]
    checks = [(f"{p['label']}: every job started once and succeeded, every round", p["checks"]) for p in peers.values()]
    return text, md, goals, checks


# --- profiling (--profile) ------------------------------------------------------------------

PROFILE_RULES = [  # first match wins: (label, frame name in the stack)
    ("HQ store: START SQL", "PgStore._start_many"),  # batched store (rows flushed by a Batcher task)
    ("HQ store: FINISH SQL", "PgStore._finish_many"),
    ("HQ store: START SQL", "PgStore.start"),  # unbatched store, or waiting on a batch
    ("HQ store: FINISH SQL", "PgStore.finish"),
    ("HQ: clear ended attempts from ARQ's keys (one MULTI per batch)", "HQWorker._forget_finished"),
    ("HQ store: batching", "Batcher."),
    ("HQ: claim from Redis (one Lua call per free slots)", "HQWorker.claim_fairly"),
    ("HQ: run_attempt/_execute (outside the store)", "Runtime.run_attempt"),
    ("HQ: burst drained check", "HQWorker._drained"),
    ("HQ: poll iteration (abort check, heartbeat)", "HQWorker._poll_iteration"),
    ("HQ: task per attempt (run_claimed)", "HQWorker.run_claimed"),
]
STORE_PARTS = [  # inside PgStore.*: (label, frame names)
    (
        "pool checkout/return",
        (
            "AsyncConnectionPool",
            "AsyncConnectionPool.connection",
            "AsyncConnectionPool.getconn",
            "AsyncConnectionPool.putconn",
            "AsyncConnectionPool._putconn",
        ),
    ),
    ("libpq send (socket write)", ("BaseCursor._send_query_prepared", "BaseCursor._send_query")),
    ("parameter adaptation (dump)", ("PostgresQuery.dump", "PostgresQuery.convert")),
    ("wait for reply (loop add/remove reader)", ("wait_async", "AsyncConnection.wait")),
    ("fetch/parse result rows", ("AsyncCursor.fetchone", "AsyncCursor.fetchall", "BaseCursor._select_current_result")),
    ("clock.now / params / Jsonb", ("now", "Jsonb.__init__")),
]


def pyspy_summary(path: Path, n: int, worker_cpu_ms: float) -> str:
    """Attribute py-spy's raw (collapsed) samples of the worker to the hot path's parts."""
    from collections import Counter

    cats: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, cnt = line.rpartition(" ")
        c = int(cnt)
        frames = stack.split(";")
        names = [f.split(" (")[0] for f in frames]
        total += c
        if "BaseEventLoop._run_once" not in names:
            cats["(outside the event loop: start-up imports, relay/heartbeat threads)"] += c
            continue
        if names[-1] == "EpollSelector.select":
            cats["(event loop: epoll wait)"] += c
            continue
        for label, key in PROFILE_RULES:
            hit = next(
                (i for i, nm in enumerate(names) if nm == key or (key.endswith(".") and nm.startswith(key))), None
            )
            if hit is not None:
                cats[label] += c
                if label.startswith("HQ store"):
                    rest = names[hit + 1 :]
                    part = next((lb for lb, keys in STORE_PARTS if any(k in rest for k in keys)), "other")
                    parts[part] += c
                    leaves[frames[-1]] += c
                break
        else:
            cats["event loop: scheduling, callbacks, I/O readiness"] += c
    busy = total - sum(v for k, v in cats.items() if k.startswith("("))
    out = [
        f"py-spy samples: {total}; in the event loop, not idle: {busy} (= {worker_cpu_ms:.3f} ms worker CPU/job "
        "measured in the drain window; shares below scale to it)"
    ]
    for k, v in cats.most_common():
        share = "" if k.startswith("(") else f"  ~{worker_cpu_ms * v / busy:.3f} ms/job"
        out.append(f"  {v:6d} {100 * v / total:5.1f}%  {k}{share}")
    store = sum(parts.values())
    out.append(f"  inside the HQ store ({store} samples):")
    for k, v in parts.most_common():
        out.append(f"    {v:6d} {100 * v / max(store, 1):5.1f}%  {k}")
    out.append("  top leaf frames inside the HQ store:")
    for k, v in leaves.most_common(6):
        out.append(f"    {v:6d}  {k}")
    return "\n".join(out)


def cprofile_summary(path: Path, top: int = 25) -> str:
    import io
    import pstats

    s = io.StringIO()
    pstats.Stats(str(path), stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def run_profile(procs: Procs, tmp: Path, n: int, py_spy: str | None) -> dict:
    if py_spy:
        out = tmp / "hq-worker.pyspy.txt"
        wrap = [py_spy, "record", "--format", "raw", "--rate", "250", "--output", str(out), "--"]
        d = hq_drain(procs, n, wrap=wrap, name="hq-drain-pyspy")
        cpu_ms = d["cpu"]["worker"] / n * 1000
        text = pyspy_summary(out, n, cpu_ms)
        shutil.copy(out, BENCH / "hq-worker.pyspy.txt")
        tool = "py-spy (sampling, 250 Hz)"
    else:
        out = tmp / "hq-worker.prof"
        d = hq_drain(procs, n, wrap=[PY, "-m", "cProfile", "-o", str(out)], name="hq-drain-cprofile")
        # cProfile runs the worker in the same process: the wrapper is the worker
        text = cprofile_summary(out)
        shutil.copy(out, BENCH / "hq-worker.prof")
        tool = "cProfile (deterministic; coroutine resumptions count as calls)"
    return {"tool": tool, "rate": d["rate"], "text": text}


# --- report ----------------------------------------------------------------------------------


def fmt_cpu(cpu: dict) -> str:
    parts = (("server", "worker"), ("PostgreSQL", "pg"), ("Redis", "redis"), ("client", "client"))
    return " / ".join(f"{label} {cpu[key]:.0f}" for label, key in parts)


def fmt(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def cpu_ms(d: dict, key: str) -> float:
    return d["cpu"].get(key, 0.0) / d["n"] * 1000


def render(info: dict, args: argparse.Namespace, res: dict, total_s: float) -> tuple[str, list[str]]:
    b, h = res["bare_drain"], res["hq_drain"]
    drain_ratio = h["rate"] / b["rate"]
    rows = [
        (
            f"Drain throughput (jobs/s), 1 worker, concurrency {CONCURRENCY}",
            fmt(b["rate"]),
            fmt(h["rate"]),
            f"{drain_ratio:.2f}x",
        ),
        (
            f"  ratio: median of {len(res['drain_rounds'])} interleaved rounds (lowest-highest); "
            "the table shows the median round",
            " / ".join(fmt(x) for x, _ in res["drain_rounds"]),
            " / ".join(fmt(y) for _, y in res["drain_rounds"]),
            f"{drain_ratio:.2f}x ({min(y / x for x, y in res['drain_rounds']):.2f}-"
            f"{max(y / x for x, y in res['drain_rounds']):.2f}x)",
        ),
        ("  drain window (s): first start -> last finish", fmt(b["drain_s"], 2), fmt(h["drain_s"], 2), ""),
        ("  HQ: pauses > 100 ms between job starts (count, s)", "", f"{h['gaps']}, {h['gap_s']:.2f}", ""),
        *(
            [
                (
                    "  HQ with the default fair share (one workspace holds at most half the slots), one round",
                    "",
                    fmt(res["hq_drain_fair"]["rate"], 1),
                    "",
                )
            ]
            if res.get("hq_drain_fair")
            else []
        ),
        *(
            [
                (
                    "  HQ with priorities spread over -100..100 (each round's plain drain / this; ratio: median, "
                    "lowest-highest)",
                    " / ".join(fmt(x) for x, _ in res["priority_rounds"]),
                    " / ".join(fmt(y) for _, y in res["priority_rounds"]),
                    "{:.2f}x ({:.2f}-{:.2f}x)".format(*median_spread([y / x for x, y in res["priority_rounds"]])),
                )
            ]
            if res.get("priority_rounds")
            else []
        ),
        ("  worker process wall time incl. start-up (s)", fmt(b["wall_s"], 2), fmt(h["wall_s"], 2), ""),
        (
            "  worker CPU per job (ms), in the window",
            fmt(cpu_ms(b, "worker"), 3),
            fmt(cpu_ms(h, "worker"), 3),
            f"{cpu_ms(h, 'worker') / max(cpu_ms(b, 'worker'), 1e-9):.2f}x",
        ),
        (
            "  worker busy (% of one core), in the window",
            fmt(100 * b["cpu"]["worker"] / b["drain_s"], 0),
            fmt(100 * h["cpu"]["worker"] / h["drain_s"], 0),
            "",
        ),
        ("  PostgreSQL backends CPU per job (ms)", "-", fmt(cpu_ms(h, "pg"), 3), ""),
        ("  Redis CPU per job (ms)", fmt(cpu_ms(b, "redis"), 3), fmt(cpu_ms(h, "redis"), 3), ""),
        (
            "  machine busy (% of all cores), in the window",
            fmt(100 * b["cpu"].get("machine_busy", 0), 0),
            fmt(100 * h["cpu"].get("machine_busy", 0), 0),
            "",
        ),
    ]
    rows += visibility_rows("drain, polled every 10 ms", h.get("visibility") or {})
    rows += work_rows(h)
    rows += phase_rows(res) if "api" in res else []  # none with --only drain
    rows += [
        (
            "(info) drain-phase enqueue: enqueue_job x16 / job_submit x1 (/s)",
            fmt(b["n"] / b["enqueue_s"]),
            fmt(h["n"] / h["submit_s"]),
            "",
        ),
    ]
    goals = [(f"HQ drain throughput >= 1.0x bare ARQ ({drain_ratio:.2f}x)", drain_ratio >= 1.0)]
    if "hq_latency" in res:
        hl = res["hq_latency"]
        goals.append((f"HQ enqueue->start p50 <= 5 ms ({hl['p50']:.1f} ms)", hl["p50"] <= 5))
        goals.append((f"HQ enqueue->start p99 <= 20 ms ({hl['p99']:.1f} ms)", hl["p99"] <= 20))
        if hl.get("visibility"):
            mx = hl["visibility"]["max"]
            goals.append(
                (f"HQ start and end visible to a reader within 100 ms at {args.rate:g}/s (max {mx:.0f} ms)", mx <= 100)
            )
    if h.get("visibility"):
        mx = h["visibility"]["max"]
        goals.append((f"HQ start and end visible within 100 ms in the drain (max {mx:.0f} ms)", mx <= 100))
    peer_text, peer_md, peer_goals, peer_checks = render_peers(res)
    goals += peer_goals
    checks = list(h["checks"].items()) + [("checks pass in every round", res["drain_checks"])]
    w0 = max(len(r[0]) for r in rows)
    lines = [f"{'Figure':<{w0}}  {'bare ARQ':>10}  {'HQ':>14}  {'HQ/ARQ':>7}", "-" * (w0 + 37)]
    lines += [f"{r[0]:<{w0}}  {r[1]:>10}  {r[2]:>14}  {r[3]:>7}" for r in rows]
    lines += peer_text
    lines += [""] + [f"{'PASS' if ok else 'FAIL'}  goal: {g}" for g, ok in goals]
    lines += [f"{'PASS' if ok else 'FAIL'}  check: HQ drain {c}" for c, ok in checks]
    lines += [f"{'PASS' if ok else 'FAIL'}  check: {c}" for c, ok in peer_checks]

    md = ["# Queue benchmark: HQ vs bare ARQ", ""]
    md += [
        f"Generated by `bench/run.py {' '.join(sys.argv[1:])}`".rstrip() + f" in {total_s:.0f} s. "
        "Another workload may share the machine: compare ratios from one run, not absolute figures.",
        "",
    ]
    if res.get("warning"):
        md += [f"**{res['warning']}**", ""]
        lines += ["", res["warning"]]
    md += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info.items()]
    md += [
        "",
        f"Parameters: jobs={args.jobs}, requests={args.requests}, rate={args.rate}/s, seconds={args.seconds}, "
        f"worker concurrency={CONCURRENCY}, client concurrency={CLIENTS}.",
        "",
    ]
    md += ["| figure | bare ARQ | HQ | HQ / bare ARQ |", "|---|---:|---:|---:|"]
    md += [f"| {r[0].strip()} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
    md += peer_md
    md += ["", "## Goals and checks", ""]
    md += [f"- **{'PASS' if ok else 'FAIL'}** {g}" for g, ok in goals]
    md += [f"- **{'PASS' if ok else 'FAIL'}** HQ drain: {c}" for c, ok in checks]
    md += [f"- **{'PASS' if ok else 'FAIL'}** {c}" for c, ok in peer_checks]
    if res.get("profile"):
        pf = res["profile"]
        md += [
            "",
            f"## Worker profile: {pf['tool']}",
            "",
            f"`runworker --burst` draining {args.jobs} jobs under the profiler ({pf['rate']:.0f} jobs/s with its "
            "overhead).",
            "",
            "```",
            pf["text"],
            "```",
        ]
    md += ["", "## How each figure is measured", "", METHOD + (PEER_METHOD if res.get("peers") else "")]
    return "\n".join(lines), md


def phase_rows(res: dict) -> list[tuple[str, str, str, str]]:
    """The table's rows after the drain: enqueue, API, batch, in-process submit, latency."""
    ba, ha = res["bare_enqueue"], res["api"]
    bl, hl = res["bare_latency"], res["hq_latency"]
    return [
        (
            f"Enqueue rate, concurrency {CLIENTS} (enqueue_job vs API POST /s)",
            fmt(ba["rate"]),
            fmt(ha["rps"]),
            f"{ha['rps'] / ba['rate']:.2f}x",
        ),
        ("  HQ POST latency p50 / p99 (ms)", "", f"{fmt(ha['p50'])} / {fmt(ha['p99'])}", ""),
        ("  CPU per POST (us): web server / PostgreSQL / Redis / client threads", "", fmt_cpu(ha["cpu_us"]), ""),
        ("  CPU per floor GET (us), same columns", "", fmt_cpu(res["floor"]["cpu_us"]), ""),
        (
            "  floor: authenticated GET /v1/me, same server and clients (/s); POST / floor",
            "",
            fmt(res["floor"]["rps"]),
            f"{ha['rps'] / res['floor']['rps']:.2f}x",
        ),
        (
            f"Batch submit, {res['batch']['per_call']:,} jobs per POST /v1/queue/jobs/batch (jobs/s)",
            fmt(ba["rate"]),
            fmt(res["batch"]["jobs_per_s"]),
            f"{res['batch']['jobs_per_s'] / ba['rate']:.2f}x",
        ),
        ("  batch call latency p50 / p99 (ms)", "", f"{fmt(res['batch']['p50'])} / {fmt(res['batch']['p99'])}", ""),
        (
            "In-process submit, one thread (enqueue_job x16 vs job_submit /s)",
            fmt(ba["rate"]),
            fmt(res["inproc"]["single"]),
            f"{res['inproc']['single'] / ba['rate']:.2f}x",
        ),
        (
            "In-process jobs_submit_many, 1,000 per call (/s)",
            fmt(ba["rate"]),
            fmt(res["inproc"]["many"]),
            f"{res['inproc']['many'] / ba['rate']:.2f}x",
        ),
        (
            "  PostgreSQL alone: the bare job+event INSERT, one connection (pgbench), 1 / 1,000 rows per commit (/s)",
            "",
            " / ".join(fmt(v) if v else "-" for v in (res["pg_floor"]["single"], res["pg_floor"]["many"])),
            "",
        ),
        ("Enqueue->start latency p50 (ms)", fmt(bl["p50"]), fmt(hl["p50"]), f"{hl['p50'] / bl['p50']:.3f}x"),
        ("Enqueue->start latency p99 (ms)", fmt(bl["p99"]), fmt(hl["p99"]), f"{hl['p99'] / bl['p99']:.3f}x"),
        (
            "  HQ from the client's POST send: p50 / p99 (ms)",
            "",
            f"{fmt(hl['client_p50'])} / {fmt(hl['client_p99'])}",
            "",
        ),
        *visibility_rows("at this rate", hl.get("visibility") or {}),
    ]


def visibility_rows(where: str, v: dict) -> list[tuple[str, str, str, str]]:
    """How long after it happened a reader saw a start and an end (`VisibilityPoller`)."""
    if not v:
        return []
    return [
        (
            f"  HQ {where}: start / end visible to a reader after, p50 / p99 (ms); max",
            "",
            f"{fmt(v['start_p50'])}/{fmt(v['start_p99'])} / {fmt(v['end_p50'])}/{fmt(v['end_p99'])}",
            fmt(v["max"]),
        )
    ]


METHOD = """\
- Both sides run on the same machine in the same run, baseline immediately before HQ; PostgreSQL
  database `hq_bench` (dropped, created and migrated first), Redis db 15 (FLUSHDB before each phase),
  HQ key prefix `hqbench:`. Ratios, not absolute figures, are what to compare across runs.
- **Drain throughput.** N no-op jobs are queued first, then ONE worker subprocess drains them.
  Each side drains `--rounds` times (3 by default), interleaved bare, HQ, bare, HQ...: the ratio is
  the median round's, with the lowest and highest round beside it, and that round's figures fill
  the drain rows (this machine's speed drifts by up to 2x between minutes).
  Bare ARQ: `ArqRedis.enqueue_job` (16 coroutines), then `bench/arq_worker.py drain` = plain
  `arq.Worker(burst=True, max_jobs=100, keep_result=0, poll_delay=0.01)`; its `on_job_start` /
  `after_job_end` hooks record wall-clock times; window = first start -> last end (after ARQ's own
  bookkeeping). HQ: `queueapp.services.job_submit(Submission("hq.noop", {}))` N times (real
  service: Job + JobEvent rows, push to ARQ on commit), then `manage.py runworker --burst
  --concurrency 100`, with `HQ_WORKSPACE_SHARE=1` (one workspace submits every job, as one
  application does on the peers, which have no tenants: HQ runs as the README tells a single-tenant
  deployment to; one more round with the default share of 0.5 is shown for reference); window =
  min(Job.first_started_at) -> max(Job.finished_at), both stamped by the
  worker's START/FINISH SQL. Process start, Django setup, pool opening and the burst worker's initial
  relay pass are outside both windows; the whole process wall time is shown for reference.
  Pauses: gaps of more than 100 ms between consecutive first_started_at values inside the window.
  Correctness: every job `succeeded`, `started` JobEvents == N, no job with more than one.
  PostgreSQL alone: pgbench (a C client, prepared) runs the bare INSERT of the job rows and their
  events for 3 s on one connection, one commit per statement, 1 row and 1,000 rows per statement:
  the most `job_submit` and `jobs_submit_many` could reach on this machine's PostgreSQL and disk.
  CPU: a sampler thread reads /proc every 20 ms (utime+stime of the worker process, of Redis, and
  of every PostgreSQL backend connected to hq_bench) and charges what was spent inside the window.
- **API throughput.** The production server (`scripts/run.py`'s `web_server_argv`: granian WSGI,
  2 processes x 5 threads, DEBUG=0), 16 client threads each with an `http.client` keep-alive
  connection POSTing `{"function":"hq.noop"}` to /v1/queue/jobs; 64 warm-up requests first (not
  counted); rate = M / elapsed, latency = request send -> response read per request. CPU per
  request: the sampler's /proc readings of the server's processes, hq_bench's PostgreSQL backends,
  Redis and this process (the client threads) inside each phase, divided by M. No worker
  runs meanwhile. The floor is the same M requests as authenticated GET /v1/me. Batches: 20 POSTs
  of 1,000 jobs from 2 clients; jobs/s counts jobs committed, and the run checks every one was
  recorded and pushed. The client threads share the 2 cores with the server, PostgreSQL and Redis.
  Baseline: M `enqueue_job` calls from 16 asyncio coroutines in one process.
- **Enqueue->start latency.** Jobs arrive at a steady rate on an absolute schedule for the given
  seconds. HQ: `manage.py runworker` (not burst, all side tasks) already subscribed to its nudge
  channel; POSTs through the same server (4 sender threads); latency = first_started_at - created_at
  (both from PostgreSQL, stamped by the service in the request and by the worker's START SQL);
  also shown from the client's send time. Bare ARQ: `bench/arq_worker.py serve`, ARQ's default
  poll_delay 0.5 s, max_jobs 100; latency = `on_job_start` time - the job's `enqueue_time`.
- Percentiles are nearest-rank."""

PEER_METHOD = """
- **Drain against the durable PostgreSQL queues** (`--peers`, on by default; `--no-peers` leaves
  them out). pgqueuer and procrastinate, at the exact versions in `bench/peers/requirements.txt`,
  run in the throwaway venv `.run/bench-peers` (the bench builds it with `python3 -m venv` and
  pip when it is absent or holds other versions; never the project's venv; without it the report
  says "peers skipped" and why) through `bench/peers/pgqueuer_peer.py` and
  `procrastinate_peer.py`, which import no Django and no HQ code. Each peer has its own
  database (`hq_bench_peer_pgq`, `hq_bench_peer_proc`: dropped, created and given the peer's schema
  by the peer's own call, `Queries.install()` / `schema_manager.apply_schema_async()`, at the
  start; dropped at the end). Every round, right after bare ARQ and HQ, drains: pgqueuer with its
  defaults, pgqueuer at batch size 100, procrastinate with its defaults, procrastinate at
  concurrency 100. Each empties the peer's tables, enqueues N no-op jobs in one bulk call
  (pgqueuer `Queries.enqueue` with lists, procrastinate `Task.batch_defer_async`) before the worker
  starts, then ONE worker process drains them. pgqueuer as `pgq run FACTORY --mode drain
  [--batch-size 100]` runs it: `pgqueuer.run` on pgqueuer's own `asyncio_run` (uvloop, which
  pgqueuer installs), one asyncpg connection, a QueueManager with one entrypoint; its defaults are
  batch_size 10 and no concurrency cap. procrastinate: `App.run_worker_async(wait=False)` (stop
  when no job is left) on the stdlib asyncio loop as `procrastinate worker` runs it, its default
  psycopg pool, concurrency 1 (its default) or 100 (for a no-op, 100 only adds contention: see the
  rates). The job functions do nothing but note the time of their first call (the same work as
  `hq.noop` and bare ARQ's `noop`). Window = first start -> last finish, wall clock in the worker
  process as for bare ARQ: first start = the first job body entered; last finish = when the
  status write that recorded the last job's success returned, i.e. was committed. pgqueuer writes
  it in batches (`JobStatusLogBuffer`: at batch_size entries, every ~0.1 s and on exit, each batch
  one autocommit `Queries.log_jobs` statement moving the jobs from `pgqueuer` to `pgqueuer_log`);
  procrastinate once per job (`JobManager.finish_job`: `procrastinate_finish_job`, committed when
  its pooled connection is returned). The driver wraps that method and stamps the time after it
  returned. Correctness, every round: each body ran once, each success was written, and the
  database holds N succeeded (pgqueuer_log 'successful' rows; procrastinate_jobs status
  'succeeded') and nothing unfinished. procrastinate drains `--slow-peer-jobs` jobs (1,000 by
  default, at most N) because it is slow: rates, not windows, are compared. Per side: the median
  rate over the rounds (lowest-highest) and the median of HQ's ratio to it, each round's HQ rate
  over that side's rate in the same round. CPU: the same sampler, over that peer's database's
  backends. oban-py only with `--oban` (off by default: it needs Python 3.12; venv
  `.run/bench-oban` from `bench/peers/requirements-oban.txt`, built with `python3.12` from PATH or
  pyenv, else "oban skipped" and why): `bench/peers/oban_peer.py`, as `oban start --queues
  default:100` runs it (uvloop, orjson, `Oban.create_pool` defaults), jobs in one
  `Oban.enqueue_many`; oban has no burst mode, so the driver stops it once every completion was
  acknowledged; last finish = when its batched acknowledgement (`Query.ack_jobs`: one UPDATE per
  job in one transaction) that recorded the last job 'completed' returned."""


def api_and_latency(procs: Procs, tmp: Path, args: argparse.Namespace, res: dict, token: str) -> None:
    """The phases after the drain rounds (left out by --only drain): enqueue, API, batch, in-process
    submit, the PostgreSQL floor and enqueue->start latency; their figures go into res."""
    log(f"bare ARQ enqueue: {args.requests} enqueue_job at concurrency {CLIENTS}")
    reset_state()
    s = asyncio.run(arq_enqueue(args.requests, CLIENTS))
    res["bare_enqueue"] = {"n": args.requests, "elapsed_s": s, "rate": args.requests / s}
    log(f"  {args.requests / s:.0f} enqueues/s")

    reset_state()
    web, port = start_web(procs)
    api_load(port, token, 64, CLIENTS)  # warm-up
    reset_state()
    log(f"HQ API: {args.requests} POSTs at concurrency {CLIENTS} to the production server on port {port}")
    web_cpu = CpuSampler(web.pid)
    web_cpu.groups["client"] = {os.getpid()}  # the client threads (and this sampler)
    web_cpu.start()
    res["api"] = a = api_load(port, token, args.requests, CLIENTS)
    (count,) = sql_one("SELECT count(*) FROM queueapp_job")
    log(
        f"  {a['rps']:.0f} req/s, p50 {a['p50']:.1f} ms, p99 {a['p99']:.1f} ms, errors {a['errors']}, "
        f"connections opened {a['connects']}, jobs recorded {count}"
    )
    if a["errors"] or count != args.requests:
        raise RuntimeError(f"API phase: {a['errors']} errors {a['statuses']}, {count} jobs recorded")
    log(f"floor: {args.requests} authenticated GET /v1/me at concurrency {CLIENTS}")
    res["floor"] = f = api_load(port, token, args.requests, CLIENTS, ("GET", "/v1/me", None), ok=200)
    web_cpu.stop()
    for phase in (a, f):
        spent = web_cpu.between(*phase["window"])
        phase["cpu_us"] = {k: spent.get(k, 0.0) / phase["n"] * 1e6 for k in ("worker", "pg", "redis", "client")}
    log(f"  CPU per request (us) POST {fmt_cpu(a['cpu_us'])}; floor {fmt_cpu(f['cpu_us'])}")
    log(f"  {f['rps']:.0f} req/s, p50 {f['p50']:.1f} ms; POST / floor {a['rps'] / f['rps']:.2f}x")

    reset_state()
    calls, per_call = (5, 1000) if args.quick else (20, 1000)
    log(f"HQ batch: {calls} POST /v1/queue/jobs/batch of {per_call} jobs, 2 clients")
    res["batch"] = bt = api_batches(port, token, calls, per_call, 2)
    bt["per_call"] = per_call
    (count,) = sql_one("SELECT count(*) FROM queueapp_job")
    (pushed,) = (redis_client().zcard(transport_queue_key()),)
    log(f"  {bt['jobs_per_s']:.0f} jobs/s, call p50 {bt['p50']:.0f} ms; recorded {count}, pushed {pushed}")
    if bt["errors"] or count != calls * per_call or pushed != count:
        raise RuntimeError(f"batch: {bt['errors']} errors {bt['statuses']}, {count} recorded, {pushed} pushed")

    reset_state()
    n_single, n_many = (300, 5000) if args.quick else (args.requests, 20_000)
    log(f"HQ in-process: job_submit x{n_single} on one thread, jobs_submit_many x{n_many}")
    res["inproc"] = {"single": n_single / hq_submit(n_single)}
    reset_state()
    res["inproc"]["many"] = n_many / hq_submit_many(n_many)
    log(f"  job_submit {res['inproc']['single']:.0f}/s, jobs_submit_many {res['inproc']['many']:.0f}/s")
    reset_state()
    res["pg_floor"] = {"single": pg_floor(tmp, 1), "many": pg_floor(tmp, 1000)}
    reset_state()
    log(f"  PostgreSQL alone (pgbench, the bare INSERT): {res['pg_floor']}")

    log(f"bare ARQ enqueue->start: {args.rate}/s for {args.seconds} s, default poll_delay")
    res["bare_latency"] = bl = bare_latency(procs, tmp, args.rate, args.seconds)
    log(f"  p50 {bl['p50']:.1f} ms, p99 {bl['p99']:.1f} ms over {bl['n']} jobs")

    log(f"HQ enqueue->start: POST {args.rate}/s for {args.seconds} s with runworker running")
    res["hq_latency"] = hl = hq_latency(procs, port, token, args.rate, args.seconds)
    log(
        f"  p50 {hl['p50']:.1f} ms, p99 {hl['p99']:.1f} ms over {hl['n']} jobs "
        f"(achieved {hl['achieved_rate']:.1f}/s; from client send p50 {hl['client_p50']:.1f} ms)"
    )
    procs.stop(web)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=5000, help="jobs drained per side (default 5000)")
    ap.add_argument("--requests", type=int, default=2000, help="API POSTs / ARQ enqueues (default 2000)")
    ap.add_argument("--rate", type=float, default=50.0, help="jobs/s for the latency phase (default 50)")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of the latency phase (default 10)")
    ap.add_argument(
        "--rounds", type=int, default=3, help="drain rounds per side, interleaved bare/HQ (default 3; --quick: 1)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: at most 500 jobs, 300 requests, 3 s")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also drain N jobs under a profiler (py-spy when found, else cProfile) and attribute it",
    )
    ap.add_argument(
        "--py-spy", default=None, help="py-spy executable (default: on PATH, else the venv .run/bench-tools)"
    )
    ap.add_argument("--keep-logs", action="store_true", help="keep subprocess logs even on success")
    ap.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also drain pgqueuer and procrastinate in every round, in the venv .run/bench-peers (default: on)",
    )
    ap.add_argument(
        "--slow-peer-jobs",
        type=int,
        default=1000,
        help="jobs per procrastinate drain (default 1000, at most --jobs; it drains ~100-300/s)",
    )
    ap.add_argument(
        "--oban",
        action="store_true",
        help="with the peers, also oban-py (needs Python 3.12; venv .run/bench-oban); off by default",
    )
    ap.add_argument(
        "--priorities",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also drain N jobs with priorities spread over -100..100 in every round, after HQ's plain drain "
        "(default: on)",
    )
    ap.add_argument("--only", choices=["drain"], default=None, help="drain: the drain rounds alone, no API/latency")
    args = ap.parse_args()
    if args.quick:
        args.jobs, args.requests, args.seconds = min(args.jobs, 500), min(args.requests, 300), min(args.seconds, 3)
        args.rounds = 1
    py_spy = find_py_spy(args.py_spy) if args.profile else None

    lock = bench_lock()  # held until this process exits
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hqbench-"))
    procs = Procs(tmp)
    res: dict = {}
    ok = False
    peers = PeerRounds()
    try:
        log(f"setup: database {DB_NAME} (drop, create, migrate), Redis db {REDIS_DB}, token; logs in {tmp}")
        code_before = code_snapshot()
        token = setup_database()
        configure_django()
        info = machine_info()
        log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        peers.setup(args.peers, args.jobs, min(args.slow_peer_jobs, args.jobs), args.oban)

        # The machine's speed drifts between minutes: each round drains both sides back to back, and
        # the report takes the round with the median ratio (its figures fill the table) and the spread.
        rounds = []
        prioritised: list[tuple[float, float]] = []  # (plain, priorities spread) drain rates per round
        for r in range(1, max(1, args.rounds) + 1):
            log(f"round {r}/{args.rounds}: bare ARQ drain, {args.jobs} jobs")
            b = bare_drain(procs, tmp, args.jobs)
            log(
                f"  {b['rate']:.0f} jobs/s (window {b['drain_s']:.2f} s, enqueue {b['enqueue_s']:.2f} s, "
                f"worker CPU {cpu_ms(b, 'worker'):.3f} ms/job)"
            )
            log(f"round {r}/{args.rounds}: HQ drain, {args.jobs} jobs via job_submit, then runworker --burst")
            h = hq_drain(procs, args.jobs)
            log(
                f"  {h['rate']:.0f} jobs/s (window {h['drain_s']:.2f} s, submit {h['submit_s']:.2f} s, worker CPU "
                f"{cpu_ms(h, 'worker'):.3f} ms/job, PG {cpu_ms(h, 'pg'):.3f} ms/job); ratio "
                f"{h['rate'] / b['rate']:.2f}x; checks {'all pass' if all(h['checks'].values()) else h['checks']}"
            )
            if args.priorities:
                log(f"round {r}/{args.rounds}: HQ drain, {args.jobs} jobs with priorities spread over -100..100")
                p = hq_drain(procs, args.jobs, name="hq-drain-priorities", priorities=True)
                log(
                    f"  {p['rate']:.0f} jobs/s (window {p['drain_s']:.2f} s, worker CPU {cpu_ms(p, 'worker'):.3f} "
                    f"ms/job); {p['rate'] / h['rate']:.2f}x the plain drain; checks "
                    f"{'all pass' if all(p['checks'].values()) else p['checks']}"
                )
                prioritised.append((h["rate"], p["rate"]))
            rounds.append((b, h))
            peers.round(procs, tmp, h["rate"], r, args.rounds)
        peers.report(res)
        rounds.sort(key=lambda bh: bh[1]["rate"] / bh[0]["rate"])
        res["bare_drain"], res["hq_drain"] = rounds[len(rounds) // 2]
        res["drain_rounds"] = [(b["rate"], h["rate"]) for b, h in rounds]
        res["drain_checks"] = all(all(h["checks"].values()) for _, h in rounds)
        res["priority_rounds"] = prioritised
        # For reference, one drain as a multi-tenant deployment runs it out of the box: one workspace
        # may hold only HQ_WORKSPACE_SHARE (default half) of a worker's slots.
        log(f"HQ drain with the default fair share (HQ_WORKSPACE_SHARE=0.5), {args.jobs} jobs, one round")
        res["hq_drain_fair"] = hq_drain(procs, args.jobs, extra_env={"HQ_WORKSPACE_SHARE": "0.5"})

        if args.only != "drain":  # --only drain: the drain rounds alone
            api_and_latency(procs, tmp, args, res, token)

        if args.profile:
            log(f"profile: HQ drain of {args.jobs} jobs under {'py-spy' if py_spy else 'cProfile'}")
            res["profile"] = run_profile(procs, tmp, args.jobs, py_spy)

        changed = sorted(k for k, v in code_snapshot().items() if code_before.get(k) != v)
        if changed:
            names = ", ".join(str(Path(c).relative_to(ROOT)) for c in changed)
            res["warning"] = f"WARNING: code under test changed during this run ({names}); figures may mix versions."
            log(res["warning"])
        total_s = time.perf_counter() - t_start
        table, md = render(info, args, res, total_s)
        print()
        print(table)
        if res.get("profile"):
            print(f"\nWorker profile ({res['profile']['tool']}):\n{res['profile']['text']}")
        (BENCH / "RESULTS-queue.md").write_text("\n".join(md) + "\n")
        print(f"\nWrote {BENCH / 'RESULTS-queue.md'} ({total_s:.0f} s total)")
        ok = True
        return 0
    finally:
        end_run(procs, tmp, ok, args.keep_logs, lock, peers.close)


if __name__ == "__main__":
    sys.exit(main())
