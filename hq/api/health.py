"""Liveness and readiness probes."""

from __future__ import annotations

from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest, JsonResponse

from hq import redis as hq_redis


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """The database and Redis both answer; 503 naming what does not."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    checks["redis"] = "ok" if hq_redis.ping() else "error: unreachable"
    ready = all(v == "ok" for v in checks.values())
    body: dict = {"status": "ok" if ready else "unavailable", "checks": checks}
    if not ready:
        failing = ", ".join(k for k, v in checks.items() if v != "ok")
        body["error"] = {
            "code": "unavailable",
            "message": f"Not ready: {failing} unreachable.",
            "fields": {},
            "detail": checks,
        }
    return JsonResponse(body, status=200 if ready else 503)
