#!/usr/bin/env python
"""Which server should run HQ's web tier? Each candidate under the same load, one after another.

    .venv/bin/python bench/web_servers.py [--requests 3000] [--clients 16] [--servers a,b,...]

For each server: start it on a free 127.0.0.1 port against database `hq_webbench` (created and
migrated here) and Redis db 15 with the key prefix `hqwebbench:`, warm it up, then send
`--requests` requests from `--clients` keep-alive client threads (raw HTTP/1.1 on sockets, so
the client costs little of the two cores it shares with the server), three times:

- `GET /healthz`: no authentication, no database, no Redis (the server and Django's own cost);
- `GET /v1/me`: an authenticated endpoint that does nothing but authenticate (the floor);
- `POST /v1/queue/jobs` with `{"function": "hq.noop"}` (no worker runs; jobs stay queued).

Reported per server and endpoint: requests/s, p50 and p99 latency, the server's CPU time per
request (user + system of its whole process group: steadier than requests/s on a shared machine),
non-2xx answers, TCP connects, and the most PostgreSQL connections the server held
(pg_stat_activity by application_name, sampled every 50 ms). Every measurement stops after
`--seconds` even if requests are left. Servers that are not installed (uvicorn and granian are
not HQ dependencies) are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DB_NAME = "hq_webbench"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
APP_NAME = "hq_webbench"

# name -> (argv after the interpreter, module that must be importable)
SERVERS: dict[str, tuple[list[str], str]] = {
    "gunicorn-sync-w2": (["-m", "gunicorn", "hq.wsgi", "-w", "2", "--log-level", "warning"], "gunicorn"),
    "gunicorn-sync-w4": (["-m", "gunicorn", "hq.wsgi", "-w", "4", "--log-level", "warning"], "gunicorn"),
    "gunicorn-gthread-w2t4": (
        ["-m", "gunicorn", "hq.wsgi", "-w", "2", "--threads", "4", "--log-level", "warning"],
        "gunicorn",
    ),
    "gunicorn-gthread-w2t8": (
        ["-m", "gunicorn", "hq.wsgi", "-w", "2", "--threads", "8", "--log-level", "warning"],
        "gunicorn",
    ),
    "uvicorn-w2": (
        ["-m", "uvicorn", "hq.asgi:application", "--workers", "2", "--log-level", "warning", "--no-access-log"],
        "uvicorn",
    ),
    "granian-wsgi-w2": (
        ["-m", "granian", "--interface", "wsgi", "hq.wsgi:application", "--workers", "2", "--log-level", "warning"],
        "granian",
    ),
    "granian-wsgi-w2t8": (
        [
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "hq.wsgi:application",
            "--workers",
            "2",
            "--blocking-threads",
            "8",
            "--log-level",
            "warning",
        ],
        "granian",
    ),
    "granian-asgi-w2": (
        ["-m", "granian", "--interface", "asgi", "hq.asgi:application", "--workers", "2", "--log-level", "warning"],
        "granian",
    ),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bind_args(name: str, port: int) -> list[str]:
    if name.startswith("gunicorn"):
        return ["-b", f"127.0.0.1:{port}"]
    return ["--host", "127.0.0.1", "--port", str(port)]


def importable(module: str) -> bool:
    return subprocess.run([PY, "-c", f"import {module}"], capture_output=True).returncode == 0


# --- the client --------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection on a raw socket; reconnects when the server closes it."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.sock: socket.socket | None = None
        self.buf = b""
        self.connects = 0

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.connects += 1

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read_response(self) -> tuple[int, bool]:
        assert self.sock is not None
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed before a response")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip().lower()
        length = int(headers.get(b"content-length", b"0"))
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed mid-body")
            rest += chunk
        self.buf = rest[length:]
        return status, headers.get(b"connection") == b"close"

    def send(self) -> int:
        for attempt in (1, 2):
            fresh = self.sock is None
            if fresh:
                self._connect()
            try:
                self.sock.sendall(self.request)
                status, close = self._read_response()
            except (ConnectionResetError, BrokenPipeError):
                # a kept-alive socket the server closed before reading the request
                self.close()
                if fresh or attempt == 2:
                    raise
                continue
            if close:
                self.close()
            return status
        raise AssertionError


def http_request(method: str, path: str, token: str, body: bytes = b"") -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token}",
        "Accept: application/json",
    ]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def load(port: int, request: bytes, n: int, clients: int, seconds: float, ok: int) -> dict:
    """Send `n` requests from `clients` threads (stopping after `seconds`); latencies and statuses."""
    left = [n]
    lock = threading.Lock()
    lat: list[float] = []
    bad: dict[int, int] = {}
    conns = [Client(port, request) for _ in range(clients)]
    deadline = time.monotonic() + seconds

    def run(c: Client) -> None:
        mine: list[float] = []
        mybad: dict[int, int] = {}
        while time.monotonic() < deadline:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            t = time.perf_counter()
            try:
                status = c.send()
            except OSError:
                status = 0
            mine.append(time.perf_counter() - t)
            if status != ok:
                mybad[status] = mybad.get(status, 0) + 1
        with lock:
            lat.extend(mine)
            for k, v in mybad.items():
                bad[k] = bad.get(k, 0) + v

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    ms = [x * 1000 for x in lat]
    return {
        "n": len(lat),
        "rps": len(lat) / elapsed,
        "p50": pct(ms, 50),
        "p99": pct(ms, 99),
        "bad": bad,
        "connects": sum(c.connects for c in conns),
    }


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


# --- PostgreSQL --------------------------------------------------------------------------------------


def pg_connections() -> int:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]).fetchone()
        return int(row[0])


class PgSampler(threading.Thread):
    """The most server connections seen while it runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.peak = 0

    def run(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            while not self.stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]
                ).fetchone()
                self.peak = max(self.peak, int(row[0]))
                self.stop.wait(0.05)


def setup(env: dict[str, str], email: str) -> str:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    manage = [PY, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], env=env, check=True, cwd=ROOT)
    out = subprocess.run(
        [*manage, "create_token", "--email", email, "--workspace", "webbench", "--scopes", "queue:read,queue:write"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1]


def truncate_jobs() -> None:
    import psycopg

    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE queueapp_jobevent, queueapp_job CASCADE")


# --- one server --------------------------------------------------------------------------------------


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not answer /healthz")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def measure(name: str, env: dict[str, str], token: str, args: argparse.Namespace, logdir: Path) -> dict:
    argv, _ = SERVERS[name]
    port = free_port()
    out = open(logdir / f"{name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [PY, *argv, *bind_args(name, port)],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    result: dict = {"server": name}
    try:
        wait_up(port, proc)
        healthz = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        me = http_request("GET", "/v1/me", token)
        submit = http_request("POST", "/v1/queue/jobs", token, json.dumps({"function": "hq.noop"}).encode())
        load(port, me, 300, args.clients, 20, 200)  # warm-up: every worker, thread and connection
        load(port, submit, 300, args.clients, 20, 202)
        truncate_jobs()
        for label, request, ok in (("healthz", healthz, 200), ("me", me, 200), ("submit", submit, 202)):
            sampler = PgSampler()
            sampler.start()
            cpu0 = group_cpu_s(proc.pid)
            result[label] = load(port, request, args.requests, args.clients, args.seconds, ok)
            result[label]["cpu_ms"] = (group_cpu_s(proc.pid) - cpu0) * 1000 / max(result[label]["n"], 1)
            sampler.stop.set()
            sampler.join()
            result[label]["pg_peak"] = sampler.peak
            truncate_jobs()
        result["pg_after"] = pg_connections()
    finally:
        stop(proc)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint and server")
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="cap on each measurement")
    parser.add_argument("--rounds", type=int, default=1, help="measure every server this many times (medians)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, from: " + ", ".join(SERVERS))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}")
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "hq.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
            "REDIS_URL": args.redis_url,
            "HQ_REDIS_PREFIX": "hqwebbench:",
            "HQ_DB_APPLICATION_NAME": APP_NAME,
            "DEBUG": "0",
            "SECRET_KEY": "webbench",
            "ALLOWED_HOSTS": "127.0.0.1",
            "HQ_THROTTLE_RATE": "1000000/min",
            "LOG_LEVEL": "WARNING",
        }
    )
    token = setup(env, "webbench@example.com")
    logdir = Path(tempfile.mkdtemp(prefix="hq-webbench-"))
    log(
        f"{os.cpu_count()} cores; {args.clients} clients, {args.requests} requests per endpoint, "
        f"{args.rounds} round(s); server logs in {logdir}"
    )
    runnable = []
    for name in names:
        module = SERVERS[name][1]
        if importable(module):
            runnable.append(name)
        else:
            log(f"{name}: skipped ({module} is not installed)")
    results: dict[str, list[dict]] = {name: [] for name in runnable}
    failed = False
    # Round-robin, so the machine's noise (other work on a shared machine) falls on every server alike.
    for rnd in range(1, args.rounds + 1):
        for name in runnable:
            log(f"round {rnd}: {name} ...")
            try:
                r = measure(name, env, token, args, logdir)
            except RuntimeError as exc:
                log(f"{name}: failed ({exc}); see {logdir / (name + '.log')}")
                failed = True
                continue
            results[name].append(r)
            for label in ("healthz", "me", "submit"):
                x = r[label]
                log(
                    f"  {label:6} {x['rps']:7.0f}/s p50 {x['p50']:6.1f} ms p99 {x['p99']:6.1f} ms "
                    f"server CPU {x['cpu_ms']:.2f} ms/req bad {x['bad'] or 0} connects {x['connects']} "
                    f"pg peak {x['pg_peak']}"
                )
    print()
    print(f"Medians over {args.rounds} round(s); {args.clients} keep-alive clients; {os.cpu_count()} cores.")
    print()
    print(
        "| Server | `GET /healthz` req/s, CPU ms/req | `GET /v1/me` req/s | p50 / p99 ms | CPU ms/req "
        "| `POST /v1/queue/jobs` req/s | p50 / p99 ms | CPU ms/req | PG conns (peak) | non-2xx |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        if not runs:
            continue
        med = {
            label: {k: median([r[label][k] for r in runs]) for k in ("rps", "p50", "p99", "cpu_ms")}
            for label in ("healthz", "me", "submit")
        }
        hz, me, sub = med["healthz"], med["me"], med["submit"]
        peak = max(r[label]["pg_peak"] for r in runs for label in ("healthz", "me", "submit"))
        errors = sum(sum(r[label]["bad"].values()) for r in runs for label in ("healthz", "me", "submit"))
        print(
            f"| {name} | {hz['rps']:,.0f}, {hz['cpu_ms']:.2f} | {me['rps']:,.0f} | {me['p50']:.1f} / {me['p99']:.1f} "
            f"| {me['cpu_ms']:.2f} | {sub['rps']:,.0f} | {sub['p50']:.1f} / {sub['p99']:.1f} | {sub['cpu_ms']:.2f} "
            f"| {peak} | {errors} |"
        )
    if not failed:
        shutil.rmtree(logdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
