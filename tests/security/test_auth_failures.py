"""One failure counter for every way in: the admin login, /metrics and API tokens.

The admin login had no guessing throttle (40 wrong passwords in 26 s, then the right one worked)
and /metrics did not count failed tokens. Now each failure counts against the client's address
(all three share it) and, at the admin login, against the username too; past
`HQ_AUTH_FAILURE_RATE` the right credential is refused as well until the window ends. Without
Redis nothing is counted or refused.
"""

from __future__ import annotations

import time

import pytest
from django.test import Client, override_settings

from hq import auth_failures
from hq import redis as hq_redis
from hq.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"
LOGIN = "/admin/login/?next=/admin/"
BAD_TOKEN = {"HTTP_AUTHORIZATION": "Bearer hq_pat_" + "x" * 43}


@pytest.fixture
def three_per_minute(settings):
    settings.HQ_AUTH_FAILURE_RATE = "3/min"
    settings.METRICS_TOKEN = "scrape-secret-1"
    # Stay inside one window: the counter is per fixed minute.
    if time.time() % 60 > 55:
        time.sleep(60 - time.time() % 60 + 0.1)


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_superuser("ops@example.com", PASSWORD)


def sign_in(email: str, password: str, ip: str = "127.0.0.1") -> tuple[int, Client, str]:
    """POST the admin login form from `ip`; (status, the client, the page's text)."""
    client = Client(REMOTE_ADDR=ip)
    resp = client.post(LOGIN, {"username": email, "password": password, "next": "/admin/"})
    return resp.status_code, client, resp.content.decode() if resp.status_code != 302 else ""


def signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


# --- the admin login ----------------------------------------------------------------------------------


def test_admin_login_refuses_even_the_right_password_after_the_limit(staff, three_per_minute):
    for _ in range(3):
        status, _, page = sign_in(staff.email, "wrong")
        assert status == 200 and "Please enter the correct" in page
    status, client, page = sign_in(staff.email, PASSWORD)
    assert status == 429
    assert "Too many failed sign-ins" in page and "try again in" in page
    assert not signed_in(client)
    resp = Client().post(LOGIN, {"username": staff.email, "password": PASSWORD})
    assert 1 <= int(resp["Retry-After"]) <= 61


def test_admin_login_counts_per_username_from_any_address(staff, three_per_minute):
    for i in range(3):
        assert sign_in(staff.email, "wrong", ip=f"10.0.0.{i + 1}")[0] == 200
    # A fourth address, the right password: the account is paused.
    assert sign_in(staff.email, PASSWORD, ip="10.0.0.9")[0] == 429
    # The name is matched without case or surrounding spaces.
    assert sign_in(f"  {staff.email.upper()} ", PASSWORD, ip="10.0.0.9")[0] == 429
    # Another account from that address is not affected.
    other = User.objects.create_superuser("other@example.com", PASSWORD)
    status, client, _ = sign_in(other.email, PASSWORD, ip="10.0.0.9")
    assert status == 302 and signed_in(client)


def test_admin_login_counts_per_address_across_usernames(staff, three_per_minute):
    for i in range(3):
        assert sign_in(f"guess{i}@example.com", "wrong", ip="10.0.0.5")[0] == 200
    assert sign_in(staff.email, PASSWORD, ip="10.0.0.5")[0] == 429
    status, client, _ = sign_in(staff.email, PASSWORD, ip="10.0.0.6")
    assert status == 302 and signed_in(client)


def test_a_non_staff_or_inactive_sign_in_counts_as_a_failure(staff, three_per_minute):
    User.objects.create_user("member@example.com", PASSWORD)
    User.objects.create_superuser("gone@example.com", PASSWORD, is_active=False)
    assert sign_in("member@example.com", PASSWORD)[0] == 200
    assert sign_in("gone@example.com", PASSWORD)[0] == 200
    assert sign_in("member@example.com", PASSWORD)[0] == 200
    assert sign_in(staff.email, PASSWORD)[0] == 429


def test_successful_sign_ins_do_not_count(staff, three_per_minute):
    for _ in range(5):
        status, client, _ = sign_in(staff.email, PASSWORD)
        assert status == 302 and signed_in(client)
    assert sign_in(staff.email, "wrong")[0] == 200


# --- /metrics -----------------------------------------------------------------------------------------------


def test_metrics_counts_failed_tokens_and_then_refuses_the_right_one(three_per_minute):
    client = Client()
    for _ in range(3):
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-secret").status_code == 401
    resp = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-1")
    assert resp.status_code == 429
    error = resp.json()["error"]
    assert error["code"] == "auth_throttled" and 1 <= error["detail"]["retry_after_s"] <= 61
    assert 1 <= int(resp["Retry-After"]) <= 61
    # Without a credential nothing is counted or throttled: still 401.
    assert client.get("/metrics").status_code == 401
    assert (
        Client(REMOTE_ADDR="10.0.0.2").get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-1").status_code == 200
    )


def test_metrics_counts_refused_pats_as_the_api_does_and_never_throttles_a_valid_one(admin, three_per_minute):
    """/metrics checks a PAT with the API's own token check: each refused one counts against the
    address and the token's prefix, the fourth is 429, and a valid admin PAT still scrapes."""
    client = Client()
    for _ in range(3):
        resp = client.get("/metrics", **BAD_TOKEN)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthenticated"
    resp = client.get("/metrics", **BAD_TOKEN)
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "auth_throttled"
    assert 1 <= int(resp["Retry-After"]) <= 61
    # The same bad token from another address: its prefix is throttled too, as on the API.
    assert Client(REMOTE_ADDR="10.0.0.3").get("/metrics", **BAD_TOKEN).status_code == 429
    assert client.get("/metrics", **admin.headers).status_code == 200
    window = str(int(time.time() // 60))
    assert int(hq_redis.client().get(hq_redis.key("authfail", "address", "127.0.0.1", window))) == 3


def test_metrics_failures_throttle_the_api_from_that_address(api, three_per_minute):
    for _ in range(3):
        assert Client().get("/metrics", **BAD_TOKEN).status_code == 401
    resp = api.get("/v1/me", HTTP_AUTHORIZATION="Bearer hq_pat_" + "y" * 43)
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "auth_throttled"


# --- one counter --------------------------------------------------------------------------------------------


def test_failures_anywhere_count_against_the_address_everywhere(api, staff, member, three_per_minute):
    assert api.get("/v1/me", **BAD_TOKEN).status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert sign_in("nobody@example.com", "wrong")[0] == 200
    # Three failures from 127.0.0.1, one through each door: the doors that take guessable secrets
    # are shut; a valid API token is never refused by the failure throttle (issue 14), a bad one is.
    assert api.get("/v1/me", **member.headers).status_code == 200
    assert api.get("/v1/me", **BAD_TOKEN).status_code == 429
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-1").status_code == 429
    assert sign_in(staff.email, PASSWORD)[0] == 429
    window = str(int(time.time() // 60))
    assert int(hq_redis.client().get(hq_redis.key("authfail", "address", "127.0.0.1", window))) == 3
    # The username is stored hashed, never as typed.
    assert not [k for k in hq_redis.client().keys("*") if b"nobody" in k]


def test_the_counter_keys_by_kind_and_identifier(three_per_minute):
    ip, name = auth_failures.address("10.1.1.1"), auth_failures.username("ops@example.com")
    assert auth_failures.username(" OPS@example.com ") == name
    auth_failures.record(ip, name)
    auth_failures.record(name)
    assert auth_failures.exceeded(ip) is None and auth_failures.exceeded(name) is None
    auth_failures.record(name)
    assert auth_failures.exceeded(ip) is None
    assert 1 <= auth_failures.exceeded(name) <= 61
    assert 1 <= auth_failures.exceeded(ip, name) <= 61


def test_everything_fails_open_when_redis_is_down(api, staff, member, three_per_minute, closed_port):
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{closed_port}/1", HQ_REDIS_TIMEOUT_S=0.05):
        hq_redis.reset()
        try:
            for _ in range(5):
                assert sign_in(staff.email, "wrong")[0] == 200
                assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
            status, client, _ = sign_in(staff.email, PASSWORD)
            assert status == 302 and signed_in(client)
            assert api.get("/v1/me", **member.headers).status_code == 200
        finally:
            hq_redis.reset()
