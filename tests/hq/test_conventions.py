"""Shared API conventions: error envelope, 404s, malformed JSON, body size, probes."""

from __future__ import annotations

import pytest
from django.test import override_settings

from hq import redis as hq_redis
from hq.api.pagination import parse_page
from hq.errors import ValidationFailed

pytestmark = pytest.mark.django_db


def test_unknown_api_path_is_envelope_404(api, member):
    resp = api.get("/v1/nowhere", **member.headers)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_oversize_body_is_413_envelope(api, member):
    body = b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    resp = api.generic("POST", "/v1/me", body, content_type="application/json", **member.headers)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("query", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "x"}, "limit"), ({"offset": "-1"}, "offset")],
)
def test_pagination__bounds(query, field):
    with pytest.raises(ValidationFailed) as exc:
        parse_page(query)
    assert field in exc.value.fields


def test_pagination__defaults_and_max():
    assert parse_page({}) == (100, 0)
    assert parse_page({"limit": "500", "offset": "20"}) == (500, 20)


def test_healthz(api):
    resp = api.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_readyz__ok(api):
    resp = api.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz__redis_down_is_503(api):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        hq_redis.reset()
        resp = api.get("/readyz")
    hq_redis.reset()
    assert resp.status_code == 503
    body = resp.json()
    assert body["checks"]["redis"].startswith("error")
    assert body["error"]["code"] == "unavailable"


def test_schema_and_docs(api):
    schema = api.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert b"openapi" in schema.content
    docs = api.get("/v1/docs")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
