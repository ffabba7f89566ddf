"""Shared fixtures: real PostgreSQL (pytest-django) and this xdist worker's own Redis db."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rest_framework.test import APIClient

from hq import redis as hq_redis
from tests import factories
from tests.loopback import Loopback

if TYPE_CHECKING:
    from tests.chaos.servers import RedisServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `minutes` first: xdist hands out tests in this order, so one worker runs the
    long one from the start while the other goes through the rest (last, it ran alone at the end)."""
    items.sort(key=lambda item: item.get_closest_marker("minutes") is None)


@pytest.fixture(autouse=True)
def _clean_redis():
    """Flush this worker's Redis db (never db 0) around each test; pushes the pusher thread still
    holds (`queueapp.enqueue.Pusher`) land before the flush, not in the next test's Redis."""
    from queueapp import enqueue

    enqueue.pushes_flush()
    hq_redis.reset()
    client = hq_redis.client()
    assert client.connection_pool.connection_kwargs.get("db", 0) != 0, "tests must not use Redis db 0"
    client.flushdb()
    yield
    enqueue.pushes_flush()
    hq_redis.reset()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def member(db) -> factories.Caller:
    return factories.caller()


@pytest.fixture
def admin(db, member) -> factories.Caller:
    return factories.caller(ws=member.workspace, admin=True)


# --- workers ------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def run_burst(queues: list[str] | None = None, concurrency: int = 20) -> None:
    """Run a real HQ worker (ARQ underneath) in this process until what is due is done (what this
    process enqueued in the background included: the pusher is flushed first)."""
    from queueapp import enqueue, store
    from queueapp.worker import run_process

    enqueue.pushes_flush()
    asyncio.run(
        run_process(
            store=store.for_database(),
            queues=queues or ["default"],
            concurrency=concurrency,
            burst=True,
            install_signals=False,
        )
    )


@pytest.fixture
def burst(transactional_db):
    """Call to drain the queue with a real worker; needs committed data (transactional_db)."""
    return run_burst


@pytest.fixture
def worker_env(transactional_db) -> dict[str, str]:
    """Environment for subprocess workers: this test database, this xdist worker's Redis db."""
    from django.db import connection

    env = dict(os.environ)
    s = connection.settings_dict
    env["DATABASE_URL"] = (
        f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    )
    env["DJANGO_SETTINGS_MODULE"] = "hq.test_settings"
    env["PYTEST_XDIST_WORKER"] = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return env


class Procs:
    """Subprocesses started by a test, all stopped at its end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def worker(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runworker", *args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


@pytest.fixture
def procs(worker_env):
    p = Procs(worker_env)
    yield p
    p.stop_all()


def shift_clock_before_minute(procs: Procs, lead_s: float) -> float:
    """Shift this process's clock, and its subprocesses', to `lead_s` seconds before a minute boundary.

    The caller restores it with `clock.set_offset(0)`. Returns the offset in seconds.
    """
    from hq import clock

    now = clock.now()
    to_boundary = 60 - now.second - now.microsecond / 1e6
    offset = to_boundary - lead_s if to_boundary > lead_s else to_boundary + 60 - lead_s
    clock.set_offset(offset)
    procs.env = {**procs.env, "HQ_CLOCK_OFFSET_S": str(offset), "HQ_SCHEDULER_MAX_SLEEP_S": "300"}
    return offset


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


# --- the outside world ---------------------------------------------------------------------------


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    server = Loopback()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def slack(settings, loopback) -> Loopback:
    """Slack's Web API on the loopback server, with a bot token."""
    settings.SLACK_BOT_TOKEN = "xoxb-test-token"
    settings.SLACK_API_URL = f"{loopback.url}/api/"
    return loopback


@pytest.fixture
def msteams(settings, loopback) -> Iterator[Loopback]:
    """The Bot Framework and its token endpoint on the loopback server, with app credentials."""
    settings.TEAMS_APP_ID = "app-id-1"
    settings.TEAMS_APP_PASSWORD = "app-secret-1"
    settings.TEAMS_TOKEN_URL = f"{loopback.url}/oauth2/v2.0/token"
    settings.TEAMS_TOKEN_SCOPE = "https://api.botframework.com/.default"
    settings.TEAMS_SERVICE_URL = f"{loopback.url}/teams/"
    from delivery import teams

    teams.token_cache_clear()
    yield loopback
    teams.token_cache_clear()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, on this xdist worker's db. A subprocess worker reaches it
    only through HQ_TEST_REDIS_BASE (hq.test_settings sets REDIS_URL from it, over the env's). For
    tests that stop, restart or pause Redis: the shared server serves the other xdist worker too."""
    from django.conf import settings
    from django.test import override_settings

    from tests.chaos.servers import RedisServer

    server = RedisServer()
    server.start()
    db = settings.REDIS_URL.rsplit("/", 1)[1]
    with override_settings(REDIS_URL=f"{server.base}/{db}"):
        hq_redis.reset()
        yield server
    server.stop()
    hq_redis.reset()
