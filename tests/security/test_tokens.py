"""Tokens: hashed at rest, exact match only, revocation at once, failed-auth throttling per client IP."""

from __future__ import annotations

import hashlib
import re
import time

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client, override_settings

from hq import redis as hq_redis
from hq import services
from hq.models import PersonalAccessToken, User
from tests import factories

pytestmark = pytest.mark.django_db


def _tables_containing(needle: str) -> list[str]:
    """Every table holding `needle` in any column (each row rendered as text)."""
    found = []
    with connection.cursor() as cur:
        for table in connection.introspection.table_names():
            cur.execute(f'SELECT 1 FROM "{table}" t WHERE strpos(t::text, %s) > 0 LIMIT 1', [needle])
            if cur.fetchone():
                found.append(table)
    return found


def test_clear_tokens_are_in_no_column_of_any_table(api):
    admin = factories.caller(admin=True)
    member = factories.caller(ws=admin.workspace, scopes=["queue:read"])
    for caller in (admin, member):
        assert api.get("/v1/me", **caller.headers).status_code == 200
    assert api.post("/v1/queue/jobs", {"function": "hq.echo"}, format="json", **admin.headers).status_code == 202
    # One issued in the admin, the way an operator would (shown once, in a message).
    root = User.objects.create_superuser("root@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(root)
    resp = client.post(
        "/admin/hq/personalaccesstoken/add/",
        {"user": str(admin.user.pk), "workspace": str(admin.workspace.pk), "name": "ops", "scopes": ["queue:read"]},
    )
    assert resp.status_code == 302, resp.content[:500]
    shown = " ".join(m.message for m in get_messages(resp.wsgi_request))
    from_admin = re.search(r"hq_pat_[A-Za-z0-9_-]{43}", shown).group(0)
    assert api.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {from_admin}").status_code == 200

    for clear in (admin.token, member.token, from_admin):
        assert _tables_containing(clear) == [], clear
        secret = clear.removeprefix("hq_pat_")
        assert _tables_containing(secret[8:]) == [], "not even the secret part past the display prefix"
        row = PersonalAccessToken.objects.get(token_hash=hashlib.sha256(clear.encode()).hexdigest())
        assert row.prefix == clear[:12]


def _variants(token: str) -> list[str]:
    last = "A" if token[-1] != "A" else "B"
    first = "A" if token[7] != "A" else "B"
    return [
        token[:-1] + last,  # the last character differs
        token[:7] + first + token[8:],  # the first secret character differs
        token[:-1],  # one short
        token + "A",  # one long
        token.swapcase(),
        token[:12],  # the display prefix
        hashlib.sha256(token.encode()).hexdigest(),  # the stored hash itself
        "hq_pat_" + hashlib.sha256(token.encode()).hexdigest(),
    ]


def test_only_the_exact_token_authenticates(api, member):
    assert api.get("/v1/me", **member.headers).status_code == 200
    for variant in _variants(member.token):
        resp = api.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {variant}")
        assert resp.status_code == 401, variant
        assert resp.json()["error"]["code"] == "invalid_token"


def test_revocation_is_effective_on_the_next_request(api, member):
    assert api.get("/v1/me", **member.headers).status_code == 200
    services.token_revoke(token=PersonalAccessToken.objects.get(user=member.user))
    resp = api.get("/v1/me", **member.headers)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "token_revoked"


def test_revocation_in_the_admin_is_effective_on_the_next_request(api, member):
    root = User.objects.create_superuser("root@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(root)
    token = PersonalAccessToken.objects.get(user=member.user)
    assert api.post("/v1/queue/jobs", {"function": "hq.echo"}, format="json", **member.headers).status_code == 202
    resp = client.post(
        "/admin/hq/personalaccesstoken/", {"action": "revoke", "_selected_action": [str(token.pk)]}, follow=True
    )
    assert resp.status_code == 200
    resp = api.post("/v1/queue/jobs", {"function": "hq.echo"}, format="json", **member.headers)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "token_revoked"


# --- failed-auth throttling ----------------------------------------------------------------------

BAD = {"HTTP_AUTHORIZATION": "Bearer hq_pat_" + "x" * 43}


@pytest.fixture
def three_per_minute(settings):
    settings.HQ_AUTH_FAILURE_RATE = "3/min"
    # Stay inside one window: the counter is per fixed minute.
    if time.time() % 60 > 55:
        time.sleep(60 - time.time() % 60 + 0.1)


def test_failures_from_one_ip_are_throttled(api, member, three_per_minute):
    for _ in range(3):
        assert api.get("/v1/me", **BAD).status_code == 401
    resp = api.get("/v1/me", **BAD)
    assert resp.status_code == 429
    error = resp.json()["error"]
    assert error["code"] == "auth_throttled" and 1 <= error["detail"]["retry_after_s"] <= 61
    assert 1 <= int(resp["Retry-After"]) <= 61
    # A valid token is never refused by the failure throttle: one broken client behind a shared
    # address must not lock out everyone there (issue 14); spoofed forwarding changes nothing.
    assert api.get("/v1/me", **member.headers).status_code == 200
    assert api.get("/v1/me", HTTP_X_FORWARDED_FOR="10.9.9.9", **BAD).status_code == 429
    # Requests without credentials are not what the throttle counts: still 401.
    assert api.get("/v1/me").status_code == 401
    # Another address is not affected.
    assert api.get("/v1/me", REMOTE_ADDR="10.0.0.2", **member.headers).status_code == 200
    other_bad = {"HTTP_AUTHORIZATION": "Bearer hq_pat_" + "z" * 43}  # BAD itself is throttled everywhere
    assert api.get("/v1/me", REMOTE_ADDR="10.0.0.2", **other_bad).status_code == 401
    window = str(int(time.time() // 60))
    assert int(hq_redis.client().get(hq_redis.key("authfail", "address", "127.0.0.1", window))) == 3
    assert int(hq_redis.client().get(hq_redis.key("authfail", "address", "10.0.0.2", window))) == 1


def test_one_bad_token_is_throttled_from_any_address(api, member, three_per_minute):
    """Failures count per credential too: a client retrying one bad token from many addresses."""
    for n in range(3):
        assert api.get("/v1/me", REMOTE_ADDR=f"10.0.1.{n}", **BAD).status_code == 401
    assert api.get("/v1/me", REMOTE_ADDR="10.0.1.9", **BAD).status_code == 429
    other = {"HTTP_AUTHORIZATION": "Bearer hq_pat_" + "y" * 43}
    assert api.get("/v1/me", REMOTE_ADDR="10.0.1.9", **other).status_code == 401
    assert api.get("/v1/me", REMOTE_ADDR="10.0.1.9", **member.headers).status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "Bearer hq_pat_revoked", "Bearer hq_pat_expired"],
)
def test_every_kind_of_refused_credential_counts(api, member, three_per_minute, header):
    from datetime import timedelta

    from hq import clock

    if header.endswith("revoked"):
        issued = services.token_create(user=member.user, workspace=member.workspace)
        services.token_revoke(token=issued.token)
        header = f"Bearer {issued.clear}"
    elif header.endswith("expired"):
        issued = services.token_create(
            user=member.user, workspace=member.workspace, expires_at=clock.now() - timedelta(seconds=1)
        )
        header = f"Bearer {issued.clear}"
    for _ in range(3):
        assert api.get("/v1/me", HTTP_AUTHORIZATION=header).status_code == 401
    assert api.get("/v1/me", HTTP_AUTHORIZATION=header).status_code == 429


def test_successful_requests_do_not_count(api, member, three_per_minute):
    for _ in range(10):
        assert api.get("/v1/me", **member.headers).status_code == 200
    for _ in range(3):
        assert api.get("/v1/me", **BAD).status_code == 401
    assert api.get("/v1/me", **BAD).status_code == 429


def test_throttle_fails_open_when_redis_is_down(api, member, three_per_minute, closed_port):
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{closed_port}/1", HQ_REDIS_TIMEOUT_S=0.05):
        hq_redis.reset()
        try:
            for _ in range(5):
                assert api.get("/v1/me", **BAD).status_code == 401
            assert api.get("/v1/me", **member.headers).status_code == 200
        finally:
            hq_redis.reset()
