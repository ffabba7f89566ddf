"""The web tier under faults, as deployed: the production server and a worker as subprocesses.

4 threads submit jobs to the server (scripts/run.py's command: granian, 2 processes) while
(a) Redis is frozen with SIGSTOP for 8 s, (b) Redis is killed and restarted empty, and
(c) PostgreSQL refuses new connections to the test database (ALLOW_CONNECTIONS false, which binds
superusers too and touches no other database) and the server's own backends are terminated.
No answer may be a 5xx other than 503; Redis faults cost no submit its 202 and none more than
1 s; every 202 job ends `succeeded`, started once; and the server never holds more PostgreSQL
connections than its documented maximum (GRANIAN_WORKERS x HQ_DB_POOL_MAX).

Also `make run`'s own script, serving a few thousand requests over short-lived connections: its
connection count stays within the same maximum, and the admin's static files are served with
DEBUG=0.
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count

from queueapp.models import Job, JobEvent
from tests.chaos.servers import (
    Connections,
    Process,
    RedisServer,
    Submitters,
    free_port,
    http_get,
    run_script,
    wait_http,
)
from tests.conftest import ROOT, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

WEB_WORKERS = 2
POOL_MAX = 4  # HQ_DB_POOL_MAX per process, for the server and the worker
WORKER_POOL_MAX = 2  # HQ_WORKER_DB_POOL_MAX
REDIS_TIMEOUT_S = 0.5  # the default HQ_REDIS_TIMEOUT_S


def admin_url() -> str:
    s = connection.settings_dict
    return f"postgresql://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/postgres"


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database_gate():
    """Open and close the test database to new connections; always reopened at the end."""
    import psycopg

    name = connection.settings_dict["NAME"]
    conn = psycopg.connect(admin_url(), autocommit=True)

    def allow(yes: bool) -> None:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if yes else "false"}')

    yield allow
    allow(True)
    conn.close()


def started_counts(ids: list[str]) -> Counter:
    rows = JobEvent.objects.filter(job_id__in=ids, kind="started").values_list("job_id").annotate(n=Count("id"))
    return Counter({str(job_id): n for job_id, n in rows})


def test_submits_under_redis_and_postgres_faults(member, worker_env, redis_server, database_gate, tmp_path):
    tag = uuid.uuid4().hex[:8]
    web_app, worker_app = f"hq-faults-web-{tag}", f"hq-faults-worker-{tag}"
    env = {
        **worker_env,
        "HQ_TEST_REDIS_BASE": redis_server.base,  # test_settings picks this worker's db on it
        "HQ_DB_POOL_MAX": str(POOL_MAX),
        "HQ_WORKER_DB_POOL_MAX": str(WORKER_POOL_MAX),
        "HQ_DB_POOL_TIMEOUT_S": "1",
        "DEBUG": "0",
        "SECRET_KEY": "faults",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    run = run_script()
    port = free_port()
    web_env = run.web_env({**env, "GRANIAN_WORKERS": str(WEB_WORKERS), "HQ_DB_APPLICATION_NAME": web_app})
    web_env["HQ_DB_APPLICATION_NAME"] = web_app  # exactly this name, to count its backends
    server = Process(run.web_server_argv("127.0.0.1", port), web_env, tmp_path / "web.log")
    worker = Process(
        [sys.executable, str(ROOT / "manage.py"), "runworker", "--concurrency", "50"],
        {**env, "HQ_DB_APPLICATION_NAME": worker_app},
        tmp_path / "worker.log",
    )
    try:
        wait_http(port, server)
        marks: dict[str, float] = {}
        readyz: dict[str, tuple[int, dict]] = {}
        with Connections(admin_url(), [web_app, worker_app]) as pg, Submitters(port, member.token) as load:
            time.sleep(1.5)

            marks["frozen"] = time.monotonic()
            redis_server.freeze()
            time.sleep(1.5)
            readyz["frozen"] = ready(port)
            time.sleep(6.5)
            redis_server.thaw()
            marks["thawed"] = time.monotonic()
            time.sleep(1.5)

            marks["killed"] = time.monotonic()
            redis_server.stop()
            time.sleep(2)
            redis_server.start()  # empty, with a new run_id: the relay pushes every waiting job again
            marks["restarted"] = time.monotonic()
            time.sleep(1.5)

            marks["refusing"] = time.monotonic()
            database_gate(False)
            with pg.conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [web_app]
                )
            time.sleep(2)
            readyz["refusing"] = ready(port)
            time.sleep(2)
            database_gate(True)
            marks["accepting"] = time.monotonic()
            time.sleep(4)
        answers = load.answers
        assert server.alive(), server.output()
        assert worker.alive(), worker.output()

        # No answer is a 5xx other than 503, nor missing; 503 only while PostgreSQL refused.
        statuses = Counter(a.status for a in answers)
        assert set(statuses) <= {202, 503}, (statuses, [a.body for a in answers if a.status not in (202, 503)][:5])
        for a in answers:
            if a.status == 503:
                in_flight = a.started + a.seconds >= marks["refusing"] and a.started < marks["accepting"] + 8
                assert in_flight, "503 only while PostgreSQL refused"
                assert a.body["error"]["code"] == "unavailable"
                assert a.body["error"]["detail"]["dependency"] == "database"
                assert int(a.retry_after) >= 1
        assert statuses[503] >= 1, "requests came in while PostgreSQL refused"

        # Redis frozen or gone: every submit committed and answered 202, within 1 s.
        frozen = load.between(marks["frozen"], marks["thawed"])
        gone = load.between(marks["killed"], marks["restarted"])
        assert len(frozen) >= 20 and len(gone) >= 5, (len(frozen), len(gone))
        assert {a.status for a in frozen + gone} == {202}
        slowest = max(a.seconds for a in frozen + gone)
        assert slowest < 1.0, f"a submit took {slowest:.2f} s while Redis was away"
        assert readyz["frozen"][0] == 503
        assert readyz["frozen"][1]["checks"]["redis"] == f"error: no answer within {REDIS_TIMEOUT_S:g} s"
        assert readyz["frozen"][1]["error"]["detail"]["dependency"] == "redis"
        assert readyz["refusing"][0] == 503
        assert readyz["refusing"][1]["error"]["detail"]["dependency"] == "database"

        # Every accepted job runs, once; none is lost.
        ids = [a.body["id"] for a in answers if a.status == 202]
        assert len(set(ids)) == len(ids)
        wait_for(
            lambda: Job.objects.filter(pk__in=ids, state="succeeded").count() == len(ids),
            timeout=90,
            interval=0.5,
            what=f"all {len(ids)} accepted jobs to succeed",
        )
        counts = started_counts(ids)
        assert len(counts) == len(ids) and set(counts.values()) == {1}, "each job started exactly once"

        # Within the documented maxima throughout, faults included.
        assert 1 <= pg.peak[web_app] <= WEB_WORKERS * POOL_MAX, pg.peak
        assert 1 <= pg.peak[worker_app] <= POOL_MAX + WORKER_POOL_MAX, pg.peak
        # And back to serving after PostgreSQL returned.
        assert answers[-1].status == 202
    finally:
        server.stop()
        worker.stop()


def ready(port: int) -> tuple[int, dict]:
    import json

    status, _, body = http_get(port, "/readyz")
    return status, json.loads(body)


# --- make run ------------------------------------------------------------------------------------


def test_make_run_serves_thousands_of_requests_with_flat_connections(worker_env, tmp_path):
    """scripts/run.py as `make run` runs it (production settings, DEBUG=0), then 2,400 requests."""
    tag = uuid.uuid4().hex[:8]
    app = f"hq-makerun-{tag}"
    port = free_port()
    env = {k: v for k, v in worker_env.items() if k not in ("DJANGO_SETTINGS_MODULE", "HQ_DB_POOL_MAX", "REDIS_URL")}
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    env.update(
        {
            "HQ_PORT": str(port),
            "HQ_HOST": "127.0.0.1",
            "DEBUG": "0",
            "SECRET_KEY": "make-run",
            "ALLOWED_HOSTS": "127.0.0.1",
            "HQ_DB_APPLICATION_NAME": app,
            "REDIS_URL": os.environ["REDIS_URL"],  # this xdist worker's own Redis db
            "HQ_REDIS_PREFIX": f"hqtest:{worker}:",
            "HQ_PLUGINS": "tests.plugin",
            "HQ_THROTTLE_RATE": "1000000/min",
            "HQ_SHUTDOWN_GRACE_S": "2",
        }
    )
    log = tmp_path / "make-run.log"
    proc = Process([sys.executable, str(ROOT / "scripts" / "run.py")], env, log)
    try:
        token = wait_for(lambda: _token(log, proc), timeout=120, interval=0.2, what="make run's API token")
        wait_http(port, proc)
        per_process = 8  # HQ_DB_POOL_MAX's default
        maximum = int(_line(log, r"Web server: granian, (\d+) processes")) * per_process
        assert f"at most {maximum} PostgreSQL connections" in log.read_text()

        # The admin is styled with DEBUG=0: its stylesheet is served (collected, by WhiteNoise).
        status, headers, page = http_get(port, "/admin/login/")
        assert status == 200
        css = re.search(rb'href="(/static/admin/css/[^"]+\.css)"', page)
        assert css, page[:500]
        status, headers, _ = http_get(port, css.group(1).decode())
        assert status == 200 and headers["content-type"].startswith("text/css")

        with Connections(admin_url(), [f"{app}-web"]) as pg:
            counts = []
            for _ in range(3):  # 2,400 requests over 240 TCP connections
                statuses = _requests(port, token, total=800)
                assert set(statuses) <= {200, 202}, statuses
                counts.append(pg.count()[f"{app}-web"])
            peak = pg.peak[f"{app}-web"]
        # However many requests and client connections: never more than the pools' maximum.
        assert 1 <= peak <= maximum, (peak, maximum)
        assert all(1 <= n <= maximum for n in counts), counts
    finally:
        proc.stop()
    assert proc.proc.returncode == 0, proc.output()  # SIGTERM stops make run as Ctrl-C does


def _line(log: Path, pattern: str) -> str:
    match = re.search(pattern, log.read_text())
    assert match, log.read_text()[-2000:]
    return match.group(1)


def _token(log: Path, proc: Process) -> str | None:
    assert proc.alive(), proc.output()
    match = re.search(r"API token \(workspace 'dev', every scope\): (hq_pat_\S+)", log.read_text())
    return match.group(1) if match else None


def _requests(port: int, token: str, total: int, clients: int = 8, per_connection: int = 10) -> Counter:
    """`total` requests from `clients` threads, a new TCP connection every `per_connection` requests
    (a development server that kept one database connection per client thread leaked here)."""
    statuses: Counter = Counter()
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def run(n: int) -> None:
        mine: Counter = Counter()
        conn = None
        for i in range(n):
            if i % per_connection == 0:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if i % 2:
                conn.request("POST", "/v1/queue/jobs", '{"function": "hq.noop"}', headers)
            else:
                conn.request("GET", "/v1/me", headers=headers)
            resp = conn.getresponse()
            resp.read()
            mine[resp.status] += 1
        conn.close()
        with lock:
            statuses.update(mine)

    threads = [threading.Thread(target=run, args=(total // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


# --- the web's Redis client ----------------------------------------------------------------------


def test_a_frozen_redis_costs_one_timeout_then_fails_fast(redis_server, settings):
    """The first call waits HQ_REDIS_TIMEOUT_S; the next ones fail at once until HQ_REDIS_BACKOFF_S
    has passed, when one call tries again; once Redis answers, calls go through again."""
    import redis

    from hq import redis as hq_redis

    settings.REDIS_URL, settings.HQ_REDIS_TIMEOUT_S, settings.HQ_REDIS_BACKOFF_S = redis_server.url, 0.3, 1.0
    hq_redis.reset()
    try:
        client = hq_redis.client()
        assert client.ping() and hq_redis.check() is None
        redis_server.freeze()
        t0 = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert time.monotonic() - t0 >= 0.3
        t0 = time.monotonic()
        for _ in range(20):
            with pytest.raises(redis.ConnectionError, match="Redis skipped"):
                client.incr(hq_redis.key("x"))
        assert time.monotonic() - t0 < 0.3, "paused: no call waits for a timeout"
        assert hq_redis.check() == "no answer within 0.3 s"
        redis_server.thaw()
        time.sleep(1.1)  # the pause is over: the next call goes to Redis, which answers now
        assert client.incr(hq_redis.key("x")) == 1
        assert hq_redis.check() is None
        with pytest.raises(redis.ResponseError):
            client.hincrby(hq_redis.key("x"), "f", 1)  # a command's own error is an answer
        assert client.get(hq_redis.key("x")) == b"1"
    finally:
        redis_server.thaw()
        hq_redis.reset()
