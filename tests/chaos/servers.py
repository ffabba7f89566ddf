"""Real processes for the fault tests: a private redis-server, the web server, load and a watch on
PostgreSQL connections."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import psycopg
import redis

from tests.conftest import ROOT, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server that a test can stop, freeze and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"redis://127.0.0.1:{self.port}"
        self.url = f"{self.base}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for the Redis fault tests"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.answers, timeout=10, what="redis-server")

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, the server never answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process dies on SIGKILL too; be explicit
            self.proc.send_signal(signal.SIGKILL)  # like a crash: nothing is saved
            self.proc.wait(timeout=10)


def run_script() -> ModuleType:
    """scripts/run.py (what `make run` runs), imported for its web server command."""
    spec = importlib.util.spec_from_file_location("hq_make_run", ROOT / "scripts" / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Process:
    """A subprocess in its own session, stopped (with its children) by its own process group."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def group(self) -> list[int]:
        """The live (not zombie) processes of its process group: it and everything it started."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid and fields[0] != "Z":  # after the name: state, ppid, pgrp
                pids.append(int(entry))
        return pids

    def stop(self, timeout: float = 40) -> None:
        """SIGTERM to the leader, which stops its own children; wait until the whole group is gone
        (nothing of it may still write while the test database is flushed), SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.poll()
            if not self.group():
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_http(port: int, proc: Process, timeout: float = 60) -> None:
    def up() -> bool:
        assert proc.alive(), f"the server exited:\n{proc.output()}"
        try:
            return http_get(port, "/healthz")[0] == 200
        except OSError:
            return False

    wait_for(up, timeout=timeout, interval=0.1, what="the web server")


@dataclass
class Answer:
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no HTTP answer (connection refused, reset or timed out)
    body: dict = field(default_factory=dict)
    retry_after: str | None = None


class Submitters:
    """Threads that each POST jobs over one keep-alive connection until stopped, pacing themselves."""

    def __init__(self, port: int, token: str, threads: int = 4, pause_s: float = 0.02) -> None:
        self.port, self.token, self.pause_s = port, token, pause_s
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Submitters:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=60)

    def _run(self) -> None:
        body = json.dumps({"function": "hq.noop"})
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stopping.is_set():
            t0 = time.monotonic()
            try:
                conn.request("POST", "/v1/queue/jobs", body, headers)
                resp = conn.getresponse()
                raw = resp.read()
                answer = Answer(t0, time.monotonic() - t0, resp.status, retry_after=resp.getheader("Retry-After"))
                try:
                    answer.body = json.loads(raw)
                except ValueError:
                    answer.body = {"raw": raw[:500].decode(errors="replace")}
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                answer = Answer(t0, time.monotonic() - t0, 0, {"exception": repr(exc)})
            with self.lock:
                self.answers.append(answer)
            self.stopping.wait(self.pause_s)
        conn.close()

    def between(self, start: float, end: float) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if start <= a.started < end]


class Connections(threading.Thread):
    """Counts PostgreSQL backends per application_name every 50 ms; keeps the largest counts."""

    def __init__(self, admin_url: str, names: list[str]) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(admin_url, autocommit=True)  # opened now, before any fault
        self.names = names
        self.peak = dict.fromkeys(names, 0)
        self.samples: dict[str, list[int]] = {n: [] for n in names}
        self.stopping = threading.Event()

    def count(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE application_name = ANY(%s) GROUP BY 1",
            [self.names],
        ).fetchall()
        counts = dict.fromkeys(self.names, 0)
        counts.update({name: n for name, n in rows})
        return counts

    def run(self) -> None:
        while not self.stopping.is_set():
            for name, n in self.count().items():
                self.peak[name] = max(self.peak[name], n)
                self.samples[name].append(n)
            self.stopping.wait(0.05)

    def __enter__(self) -> Connections:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(timeout=10)
        self.conn.close()
