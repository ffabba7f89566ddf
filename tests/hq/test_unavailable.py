"""503, never 500, when PostgreSQL is away: the API, plain views, the admin, middleware, /readyz.

The database really is away: the connection is closed and pointed at a port nothing listens on,
so every query raises psycopg's own OperationalError, as when PostgreSQL is down or refusing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from rest_framework.test import APIClient

from hq import redis as hq_redis
from hq.models import User
from queueapp.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def database_away(transactional_db, closed_port) -> Iterator[None]:
    """PostgreSQL refuses this process's connections until the test ends."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", str(closed_port)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)
        connection.ensure_connection()


def assert_unavailable(resp, dependency: str = "database") -> None:
    assert resp.status_code == 503, resp.content
    assert int(resp["Retry-After"]) >= 1
    error = resp.json()["error"]
    assert error["code"] == "unavailable"
    assert error["detail"]["dependency"] == dependency
    assert set(error) == {"code", "message", "fields", "detail"}


def test_api_submit_is_503_with_the_envelope(member, database_away):
    resp = APIClient().post("/v1/queue/jobs", {"function": "hq.echo"}, format="json", **member.headers)
    assert_unavailable(resp)
    assert "database" in resp.json()["error"]["message"]


def test_api_read_is_503(member, database_away):
    assert_unavailable(APIClient().get("/v1/queue/jobs", **member.headers))


def test_metrics_scrape_is_503(admin, database_away):
    assert_unavailable(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {admin.token}"))


def test_admin_page_is_a_plain_503(transactional_db, closed_port):
    staff = User.objects.create_superuser(email="ops@example.com", password="pw-ops-12345")
    client = Client()
    client.force_login(staff)  # the session lives in PostgreSQL: the next page must read it
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = str(closed_port)
    try:
        resp = client.get("/admin/queueapp/job/")
    finally:
        connection.close()
        connection.settings_dict.update(saved)
    assert resp.status_code == 503
    assert resp["Content-Type"].startswith("text/html")
    assert int(resp["Retry-After"]) >= 1
    assert b"Service unavailable" in resp.content


class LookupMiddleware:
    """A middleware that reads the database before any view (as a tenant or site lookup would)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        Job.objects.exists()
        return self.get_response(request)


def test_a_database_error_inside_middleware_is_503(settings, member, database_away):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.hq.test_unavailable.LookupMiddleware"]
    # Django turns the error into a 500 inside the chain; the outer middleware makes it a 503.
    client = APIClient(raise_request_exception=False)
    assert_unavailable(client.get("/v1/me", **member.headers))
    resp = Client(raise_request_exception=False).get("/admin/login/")
    assert resp.status_code == 503 and b"Service unavailable" in resp.content


class RedisLookupMiddleware:
    """A middleware that needs Redis (as a plugin's session or rate store would)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        hq_redis.client().get(hq_redis.key("plugin", "x"))
        return self.get_response(request)


def test_redis_away_under_code_that_needs_it_is_503_naming_redis(settings, member, closed_port):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.hq.test_unavailable.RedisLookupMiddleware"]
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/1"
    hq_redis.reset()
    try:
        resp = APIClient(raise_request_exception=False).get("/v1/me", **member.headers)
    finally:
        hq_redis.reset()
    assert_unavailable(resp, dependency="redis")
    assert resp.json()["error"]["message"].startswith("Redis is not available")


def test_readyz_names_the_database(database_away):
    resp = Client().get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["checks"]["database"] == "error: unreachable (OperationalError)"
    assert body["checks"]["redis"] == "ok"
    assert body["error"]["detail"]["dependency"] == "database"
    assert int(resp["Retry-After"]) >= 1


def test_database_back_serves_again(member, closed_port):
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = str(closed_port)
    try:
        assert APIClient().get("/v1/me", **member.headers).status_code == 503
    finally:
        connection.close()
        connection.settings_dict.update(saved)
    assert APIClient().get("/v1/me", **member.headers).status_code == 200


@override_settings(HQ_UNAVAILABLE_RETRY_AFTER_S=7)
def test_retry_after_is_the_setting(member, database_away):
    resp = APIClient().get("/v1/me", **member.headers)
    assert resp["Retry-After"] == "7"
    assert resp.json()["error"]["detail"]["retry_after_s"] == 7
