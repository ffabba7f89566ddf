"""Liveness and readiness probes."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest, JsonResponse

from hq import redis as hq_redis


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up."""
    return JsonResponse({"status": "ok"})


def _database_check() -> str | None:
    """None when PostgreSQL (or SQLite) answers; else why not, without addresses or credentials."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return None
    except DatabaseError as exc:
        cause = exc.__cause__
        if cause is not None and cause.__class__.__name__ == "PoolTimeout":
            # PostgreSQL refusing or unreachable, or every pooled connection busy
            return f"no connection within {settings.HQ_DB_POOL_TIMEOUT_S:g} s"
        return f"unreachable ({exc.__class__.__name__})"


def readyz(request: HttpRequest) -> JsonResponse:
    """The database and Redis both answer; else 503 naming which does not, and why.

    Answers within `HQ_DB_POOL_TIMEOUT_S` plus `HQ_REDIS_TIMEOUT_S` at worst (each check waits at
    most that long).
    """
    problems = {"database": _database_check(), "redis": hq_redis.check()}
    checks = {name: "ok" if problem is None else f"error: {problem}" for name, problem in problems.items()}
    failing = [name for name, problem in problems.items() if problem is not None]
    if not failing:
        return JsonResponse({"status": "ok", "checks": checks})
    body = {
        "status": "unavailable",
        "checks": checks,
        "error": {
            "code": "unavailable",
            "message": "Not ready: " + "; ".join(f"{name} {problems[name]}" for name in failing) + ".",
            "fields": {},
            "detail": {"dependency": failing[0], "dependencies": failing, "checks": checks},
        },
    }
    response = JsonResponse(body, status=503)
    response["Retry-After"] = str(settings.HQ_UNAVAILABLE_RETRY_AFTER_S)
    return response
