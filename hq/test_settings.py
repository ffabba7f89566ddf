"""Settings for pytest: real PostgreSQL and Redis, one Redis db and key prefix per xdist worker."""

from __future__ import annotations

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_n = int(_worker.removeprefix("gw") or 0)
# Never db 0 (development), 9, 14 or 15 (reserved elsewhere): 1-8, then 10-13.
_free_dbs = [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13]
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hq")
os.environ["REDIS_URL"] = os.environ.get("HQ_TEST_REDIS_BASE", "redis://127.0.0.1:6379") + (
    f"/{_free_dbs[_n % len(_free_dbs)]}"
)
os.environ["HQ_REDIS_PREFIX"] = f"hqtest:{_worker}:"
os.environ.setdefault("HQ_DB_APPLICATION_NAME", f"hq-test-{_worker}")
os.environ.setdefault("HQ_PLUGINS", "tests.plugin,tests.client.taskapp")
# The test process connects without a pool: pytest-django's test transactions and the threads some
# tests start would each hold a pooled connection. Tests of the pool start servers and workers as
# subprocesses with HQ_DB_POOL_MAX set (tests/chaos/test_web_faults.py).
os.environ.setdefault("HQ_DB_POOL_MAX", "0")

from hq.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
HQ_HEARTBEAT_INTERVAL_S = 1.0  # dead after 3 s: short, yet not fooled by a loaded 2-core machine
HQ_RELAY_GRACE_S = 1.0
HQ_RELAY_INTERVAL_S = 0.2
HQ_WORKER_POLL_S = float(os.environ.get("HQ_TEST_POLL_S", "0.05"))
HQ_SHUTDOWN_GRACE_S = float(os.environ.get("HQ_TEST_GRACE_S", "2.0"))
HQ_THROTTLE_RATE = "100000/min"
_root_logger = LOGGING["root"]  # noqa: F405
assert isinstance(_root_logger, dict)  # it is; mypy types the values of hq.settings' LOGGING literal as object
_root_logger["level"] = "WARNING"
# Worker threads close their connections after each unit of work, so no session outlives a test.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
