"""Token authentication outcomes and their 401 bodies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hq import clock, services
from hq.models import Membership, PersonalAccessToken
from tests import factories

pytestmark = pytest.mark.django_db


def _err(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) >= {"code", "message", "fields"}
    return body["error"]


def test_me__valid_token(api, member):
    resp = api.get("/v1/me", **member.headers)
    assert resp.status_code == 200
    body = resp.json()
    assert body["email"] == member.user.email
    assert body["workspace_id"] == str(member.workspace.id)
    assert body["role"] == "member"


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer hq_pat_doesnotexist", "Token abc", "Bearer a b", "Basic dXNlcjpwYXNz"],
)
def test_auth__missing_or_bad_header_is_401(api, member, header):
    kwargs = {"HTTP_AUTHORIZATION": header} if header else {}
    resp = api.get("/v1/me", **kwargs)
    assert resp.status_code == 401
    assert _err(resp)["code"] in {"unauthenticated", "invalid_token"}
    assert resp["WWW-Authenticate"].startswith("Bearer")


def test_auth__revoked_token_is_401_at_once(api, member):
    assert api.get("/v1/me", **member.headers).status_code == 200
    services.token_revoke(token=PersonalAccessToken.objects.get(user=member.user))
    resp = api.get("/v1/me", **member.headers)
    assert resp.status_code == 401
    assert _err(resp)["code"] == "token_revoked"


def test_auth__expired_token_is_401(api, member):
    PersonalAccessToken.objects.filter(user=member.user).update(expires_at=clock.now() - timedelta(seconds=1))
    resp = api.get("/v1/me", **member.headers)
    assert resp.status_code == 401
    assert _err(resp)["code"] == "token_expired"


def test_auth__inactive_user_is_401(api, member):
    member.user.is_active = False
    member.user.save()
    assert api.get("/v1/me", **member.headers).status_code == 401


def test_auth__removed_membership_is_401(api, member):
    Membership.objects.filter(user=member.user).delete()
    assert api.get("/v1/me", **member.headers).status_code == 401


def test_auth__last_used_is_recorded(api, member):
    token = PersonalAccessToken.objects.get(user=member.user)
    assert token.last_used_at is None
    api.get("/v1/me", **member.headers)
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_token__clear_text_is_in_no_table(member):
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT prefix, token_hash, scopes::text FROM hq_personalaccesstoken")
        rows = cur.fetchall()
    assert rows
    for row in rows:
        assert all(member.token not in str(col) for col in row)
    token = PersonalAccessToken.objects.get(user=member.user)
    assert member.token.startswith("hq_pat_") and len(member.token) >= 7 + 43
    assert token.prefix == member.token[:12]
    assert token.token_hash != member.token and len(token.token_hash) == 64


def test_token__unknown_scope_refused(member):
    from hq.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as exc:
        services.token_create(user=member.user, workspace=member.workspace, scopes=["queue:read", "root"])
    assert "root" in exc.value.message


def test_token__other_workspace_token_sees_its_own_workspace(api):
    a = factories.caller()
    b = factories.caller()
    assert api.get("/v1/me", **a.headers).json()["workspace_id"] == str(a.workspace.id)
    assert api.get("/v1/me", **b.headers).json()["workspace_id"] == str(b.workspace.id)


def test_auth__a_cached_token_check_costs_no_query(api, member, django_assert_num_queries):
    assert api.get("/v1/me", **member.headers).status_code == 200  # a miss: one query, then cached
    with django_assert_num_queries(0):
        assert api.get("/v1/me", **member.headers).status_code == 200


def test_auth__a_revocation_made_elsewhere_takes_effect_within_the_cache_time(api, member, settings):
    """Another process revoking (here: a bare UPDATE, which empties no cache) is seen within HQ_AUTH_CACHE_S."""
    import time

    settings.HQ_AUTH_CACHE_S = 0.5
    assert api.get("/v1/me", **member.headers).status_code == 200
    PersonalAccessToken.objects.filter(user=member.user).update(revoked_at=clock.now())
    assert api.get("/v1/me", **member.headers).status_code == 200  # still trusted, as documented
    time.sleep(0.6)
    resp = api.get("/v1/me", **member.headers)
    assert resp.status_code == 401 and _err(resp)["code"] == "token_revoked"
